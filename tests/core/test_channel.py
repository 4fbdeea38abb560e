"""The channels (``_channel.py``): the transition table and the channel record, then, through the
client, join, leave, rejoin, stale join_refs, phx_error and phx_close, "unmatched topic", pushes
and their buffer, binary payloads, and presence."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

import pytest

from stx_proto import (
    DEFAULT_REJOIN_POLICY,
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    ChannelMessage,
    ChannelState,
    Client,
    Connected,
    Disconnected,
    Joined,
    JoinFailed,
    MessageReceived,
    Presence,
    PresenceChanged,
    PushFailed,
    PushFailure,
    ReplyReceived,
    RetryPolicy,
    SendBytes,
    SleepUntil,
    UsageError,
)
from stx_proto._channel import (
    TRANSITIONS,
    ChannelInput,
    ChannelRecord,
    IllegalTransition,
    Push,
)
from stx_proto._errors import StxWsError
from stx_proto._events import Output
from stx_proto.testing import Link, PhoenixServer, ServerConnection
from stx_proto.testing._server import JoinHandler, PushHandler

MakeLink = Callable[..., Link]  # the make_link fixture of conftest.py
UNMATCHED = {"reason": "unmatched topic"}


def connected(make_link: MakeLink, *topics: str, **options: Any) -> Link:
    """A connected link with ``topics`` joined, and its events forgotten."""
    link = make_link(**options)
    link.connect()
    for topic in topics:
        link.join(topic)
    link.take()
    return link


def server_with(
    pattern: str,
    *,
    on_join: JoinHandler | None = None,
    on_push: PushHandler | None = None,
) -> PhoenixServer:
    """A server with one scripted route, and every other topic accepted."""
    srv = PhoenixServer()
    srv.route(pattern, on_join=on_join, on_push=on_push)
    srv.route("*")
    return srv


def own_link(server: PhoenixServer, seed: int = 0, **options: Any) -> Link:
    """A connected link to ``server`` (for tests that need their own routes first)."""
    link = Link(Client("ws://test/socket", rng=Random(seed), **options), server)
    link.connect()
    link.take()
    return link


def conn_of(link: Link) -> ServerConnection:
    assert link.connection is not None
    return link.connection


def discard_output(client: Client) -> list[Output]:
    """Pull the client's output without carrying it out (the server never sees it)."""
    out: list[Output] = []
    while not isinstance(item := client.next_event(), SleepUntil):
        out.append(item)
    return out


def rejoin_delays(seed: int, attempts: list[int]) -> list[float]:
    rng = Random(seed)
    return [DEFAULT_REJOIN_POLICY.delay(n, rng) for n in attempts]


# --------------------------------------------------------------------------------------------
# Transition table and record


_EXPECTED_CHANNEL_TABLE = {
    ("closed", "join"): "joining",
    ("joining", "join_ok"): "joined",
    ("joining", "join_retry"): "errored",
    ("joining", "error"): "errored",
    ("joining", "rejoin"): "joining",
    ("joining", "leave"): "leaving",
    ("joining", "close"): "closed",
    ("joined", "error"): "errored",
    ("joined", "leave"): "leaving",
    ("joined", "close"): "closed",
    ("errored", "rejoin"): "joining",
    ("errored", "error"): "errored",
    ("errored", "close"): "closed",
    ("leaving", "close"): "closed",
}


@pytest.mark.parametrize("state", list(ChannelState))
@pytest.mark.parametrize("event", list(ChannelInput))
def test_channel_transition_every_pair(state: ChannelState, event: ChannelInput) -> None:
    ch = ChannelRecord("t", None, 1.0)
    ch.state = state
    expected = _EXPECTED_CHANNEL_TABLE.get((state.value, event.value))
    if expected is None:
        with pytest.raises(IllegalTransition, match=f"t: {event.value} in state {state.value}"):
            ch.transition(event)
        assert ch.state is state  # unchanged
    else:
        assert ch.transition(event) is ChannelState(expected)
        assert ch.state is ChannelState(expected)
    assert len(TRANSITIONS) == len(_EXPECTED_CHANNEL_TABLE)


def test_channel_record_and_push() -> None:
    ch = ChannelRecord("room:1", {"a": 1}, 5.0)
    assert ch.state is ChannelState.CLOSED
    assert (ch.join_ref, ch.leave_ref, ch.joined_once, ch.rejoin_attempts) == (None, None, False, 0)
    assert not ch.buffer
    assert not ch.in_flight
    assert ch.presence is None
    ch.join_ref = "3"
    assert repr(ch) == "<ChannelRecord 'room:1' closed join_ref='3'>"
    assert issubclass(IllegalTransition, StxWsError)
    push = Push("room:1", "ev", {"x": 1}, "4", 12.0)
    assert (push.topic, push.event, push.payload, push.ref, push.deadline, push.sent) == (
        "room:1",
        "ev",
        {"x": 1},
        "4",
        12.0,
        False,
    )


# --------------------------------------------------------------------------------------------
# Join


def test_join_when_connected(make_link: MakeLink) -> None:
    srv = server_with("room:*", on_join=lambda topic, payload, conn: ("ok", {"echo": payload}))
    link = connected(make_link, server=srv)
    client = link.client
    client.join(link.now, "room:1", {"since": 7})
    assert client.channel_state("room:1") is ChannelState.JOINING
    assert client.join_ref("room:1") == "1"
    link.pump()
    assert link.take() == [Joined("room:1", {"echo": {"since": 7}}, "1", rejoin=False)]
    assert client.channel_state("room:1") is ChannelState.JOINED
    assert client.topics == ("room:1",)
    (join,) = link.server_frames(event="phx_join")
    assert join == ChannelMessage("room:1", "phx_join", {"since": 7}, "1", "1")


def test_join_before_connect_is_sent_on_open(make_link: MakeLink) -> None:
    link = make_link()
    client = link.client
    client.join(0.0, "a", {"x": 1})
    client.join(0.0, "b")
    assert client.join_ref("a") is None
    assert client.channel_state("a") is ChannelState.JOINING
    link.connect()
    assert link.take() == [Connected(None), Joined("a", {}, "1"), Joined("b", {}, "2")]
    assert [(m.topic, m.payload) for m in link.server_frames()] == [("a", {"x": 1}), ("b", {})]


def test_join_payload_callable_is_evaluated_at_each_join(make_link: MakeLink) -> None:
    link = connected(make_link)
    seen: list[int] = []

    def payload() -> dict[str, int]:
        seen.append(len(seen) + 1)
        return {"n": seen[-1]}

    link.join("a", payload)
    assert seen == [1]
    conn_of(link).send_error("a")
    link.pump()
    link.advance_until(Joined)
    assert seen == [1, 2]
    link.drop()
    link.advance_until(Joined)
    assert [m.payload for m in link.server_frames(event="phx_join", everything=True)] == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
    ]


@pytest.mark.parametrize("state", ["joining", "joined", "errored"])
def test_duplicate_join_is_a_usage_error(make_link: MakeLink, state: str) -> None:
    link = connected(make_link)
    if state == "joining":
        link.client.join(link.now, "a")
    else:
        link.join("a")
    if state == "errored":
        conn_of(link).send_error("a")
        link.pump()
    assert link.client.channel_state("a").value == state
    with pytest.raises(UsageError, match=f"'a' is already {state}; leave it first"):
        link.client.join(link.now, "a")


def test_join_argument_errors(make_link: MakeLink) -> None:
    link = connected(make_link)
    client = link.client
    with pytest.raises(UsageError, match="topic must be a non-empty str"):
        client.join(0.0, "")
    with pytest.raises(UsageError, match="topic must be a non-empty str"):
        client.join(0.0, 5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="timeout must be > 0"):
        client.join(0.0, "a", timeout=0)
    assert client.topics == ()


@pytest.mark.parametrize("when_connected", [True, False])
def test_join_with_an_unencodable_payload_changes_nothing(
    make_link: MakeLink, when_connected: bool
) -> None:
    link = make_link()
    if when_connected:
        link.connect()
    link.take()
    client = link.client
    deadline = client.next_deadline()
    with pytest.raises(UsageError, match="message 'phx_join' to 'a' cannot be encoded"):
        client.join(link.now, "a", {"bad": object()})
    assert client.topics == ()
    assert client.next_deadline() == deadline
    assert discard_output(client) == []
    link.join("a")  # and the topic is still free
    assert link.client.channel_state("a") is (
        ChannelState.JOINED if when_connected else ChannelState.JOINING
    )


def test_first_join_refused_is_final(make_link: MakeLink) -> None:
    link = connected(make_link)
    link.server.refuse_joins["a"] = {"reason": "unauthorized"}
    link.join("a")
    assert link.take() == [
        JoinFailed("a", {"reason": "unauthorized"}),
        ChannelClosed("a", ChannelCloseReason.JOIN_FAILED, {"reason": "unauthorized"}),
    ]
    assert link.client.topics == ()
    link.advance(100.0)
    assert len(link.server_frames(event="phx_join")) == 1


def test_refused_rejoin_is_retried_with_backoff(make_link: MakeLink) -> None:
    link = connected(make_link, "a", seed=4)
    delays = rejoin_delays(4, [1, 2, 3])
    link.server.refuse_joins["a"] = {"reason": "busy"}
    link.advance(1.0)
    conn_of(link).send_error("a")
    link.pump()
    first_retry = 1.0 + delays[0]
    assert link.take() == [
        ChannelErrored("a", "phx_error", {"reason": "channel_crash"}, first_retry)
    ]
    link.advance_to(first_retry)
    second_retry = first_retry + delays[1]
    assert link.take() == [JoinFailed("a", {"reason": "busy"}, False, second_retry)]
    assert link.client.channel_state("a") is ChannelState.ERRORED
    link.advance_to(second_retry)
    third_retry = second_retry + delays[2]
    assert link.take() == [JoinFailed("a", {"reason": "busy"}, False, third_retry)]
    del link.server.refuse_joins["a"]
    link.advance_to(third_retry)
    (joined,) = link.take()
    assert joined == Joined("a", {}, link.client.join_ref("a") or "", rejoin=True)
    # Once the channel has stayed joined for stable_after, the next error waits the first
    # delay again.
    link.advance(DEFAULT_REJOIN_POLICY.stable_after)
    conn_of(link).send_error("a")
    link.pump()
    (errored,) = link.take()
    assert isinstance(errored, ChannelErrored)
    assert errored.retry_at == link.now + rejoin_delays(4, [1, 2, 3, 1])[3]


def test_a_channel_that_crashes_right_after_each_join_backs_off(make_link: MakeLink) -> None:
    # A join that succeeds and crashes at once is a crash loop, not a recovery: the backoff
    # keeps growing instead of restarting at the first delay every time.
    link = connected(make_link, "a", seed=5)
    delays = rejoin_delays(5, [1, 2, 3, 4])
    retry_at = link.now
    for attempt in range(4):
        conn_of(link).send_error("a")
        link.pump()
        (errored,) = link.take()
        assert isinstance(errored, ChannelErrored)
        assert errored.retry_at == retry_at + delays[attempt]
        retry_at = errored.retry_at
        link.advance_to(retry_at)
        assert [type(e) for e in link.take()] == [Joined]


def test_retry_policy_for_rejoins_is_configurable(make_link: MakeLink) -> None:
    policy = RetryPolicy(initial_backoff=7.0, max_backoff=7.0, jitter=False)
    link = connected(make_link, "a", rejoin=policy)
    conn_of(link).send_error("a")
    link.pump()
    (errored,) = link.take()
    assert isinstance(errored, ChannelErrored)
    assert errored.retry_at == link.now + 7.0


def test_first_join_timeout_sends_phx_leave_and_fails(make_link: MakeLink) -> None:
    link = connected(make_link, server=server_with("slow", on_join=lambda t, p, c: None))
    link.join("slow", timeout=5.0)
    link.advance(4.9)
    assert link.take() == []
    link.advance(0.1)
    assert link.take() == [
        JoinFailed("slow", None, timed_out=True),
        ChannelClosed("slow", ChannelCloseReason.JOIN_FAILED),
    ]
    (leave,) = link.server_frames(event="phx_leave")
    assert (leave.topic, leave.join_ref) == ("slow", "1")


def test_first_join_timeout_covers_the_wait_for_the_connection(make_link: MakeLink) -> None:
    link = make_link(timeout=3.0)
    link.network_up = False
    link.connect()
    link.join("a")
    link.advance(3.0)
    events = link.take()
    assert JoinFailed("a", None, timed_out=True) in events
    assert ChannelClosed("a", ChannelCloseReason.JOIN_FAILED) in events
    link.network_up = True
    link.advance_until(Connected)
    assert link.server_frames() == []  # no join, no leave


def test_rejoin_timeout_is_retried(make_link: MakeLink) -> None:
    answer = {"reply": True}

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any] | None:
        return ("ok", {}) if answer["reply"] else None

    link = make_link(seed=2, server=server_with("a", on_join=on_join))
    link.connect()
    link.join("a", timeout=2.0)
    link.take()
    answer["reply"] = False
    conn_of(link).send_error("a")
    link.pump()
    (errored,) = link.take()
    assert isinstance(errored, ChannelErrored) and errored.retry_at is not None
    link.advance_to(errored.retry_at)
    rejoin_ref = link.client.join_ref("a")
    link.advance(2.0)  # the rejoin's own timeout
    (failed,) = link.take()
    assert isinstance(failed, JoinFailed)
    assert failed.timed_out and failed.response is None and failed.retry_at is not None
    (leave,) = link.server_frames(event="phx_leave")
    assert leave.join_ref == rejoin_ref
    answer["reply"] = True
    link.advance_to(failed.retry_at)
    (joined,) = link.take()
    assert isinstance(joined, Joined) and joined.rejoin


def test_unmatched_topic_on_join_is_final() -> None:
    link = own_link(PhoenixServer())  # no routes at all
    link.join("nowhere")
    assert link.take() == [
        JoinFailed("nowhere", UNMATCHED),
        ChannelClosed("nowhere", ChannelCloseReason.JOIN_FAILED, UNMATCHED),
    ]


def test_unmatched_topic_on_a_rejoin_is_final_too(make_link: MakeLink) -> None:
    calls = [0]

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        calls[0] += 1
        return ("ok", {}) if calls[0] == 1 else ("error", UNMATCHED)

    link = make_link(server=server_with("a", on_join=on_join))
    link.connect()
    link.join("a")
    link.take()
    link.drop()
    link.advance_until(ChannelClosed)
    events = link.take()
    assert events[-2:] == [
        JoinFailed("a", UNMATCHED),
        ChannelClosed("a", ChannelCloseReason.JOIN_FAILED, UNMATCHED),
    ]
    link.advance(100.0)
    assert calls[0] == 2


def test_join_payload_callable_failing_on_open_fails_the_first_join(make_link: MakeLink) -> None:
    link = make_link()

    def payload() -> dict[str, Any]:
        raise RuntimeError("no cursor")

    link.client.join(0.0, "a", payload)
    link.connect()
    events = link.take()
    assert events[1:] == [
        JoinFailed("a", {"reason": "join payload failed", "error": "RuntimeError('no cursor')"}),
        ChannelClosed("a", ChannelCloseReason.JOIN_FAILED, events[1].response),
    ]
    assert link.server_frames(event="phx_join") == []


def test_join_payload_callable_failing_on_a_rejoin_is_retried(make_link: MakeLink) -> None:
    fail = [False]

    def payload() -> dict[str, Any]:
        if fail[0]:
            return {"bad": object()}  # cannot be encoded
        return {"ok": True}

    link = connected(make_link, seed=6)
    link.join("a", payload)
    link.take()
    fail[0] = True
    link.drop()
    link.advance_until(JoinFailed)
    (failed,) = link.of_type(JoinFailed)
    assert failed.response["reason"] == "join payload failed"
    assert "cannot be encoded" in failed.response["error"]
    assert failed.retry_at is not None
    assert link.client.channel_state("a") is ChannelState.ERRORED
    fail[0] = False
    link.advance_to(failed.retry_at)
    assert link.of_type(Joined)[-1] == Joined("a", {}, link.client.join_ref("a") or "", True)


def test_join_payload_callable_raising_while_connected_propagates(make_link: MakeLink) -> None:
    link = connected(make_link)

    def payload() -> dict[str, Any]:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        link.client.join(link.now, "a", payload)
    assert link.client.topics == ()
    assert discard_output(link.client) == []


# --------------------------------------------------------------------------------------------
# Stale join_refs, phx_error, phx_close


def test_stale_join_ref_frames_are_dropped_and_counted(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    old = link.client.join_ref("a")
    conn_of(link).send_error("a")
    link.pump()
    link.advance_until(Joined)
    new = link.client.join_ref("a")
    assert old == "1" and new is not None and new != old
    link.take()
    conn = conn_of(link)
    conn.push("a", "from_old_join", {}, join_ref=old)
    conn.push("a", "current", {})  # the current join_ref
    conn.broadcast("a", "fastlane", {})  # null join_ref: delivered
    link.pump()
    assert [e.message.event for e in link.take()] == ["current", "fastlane"]
    assert link.client.stats.stale_dropped == 1
    assert link.client.stats.messages == 2


def test_vsn_1_cannot_tell_stale_frames(make_link: MakeLink) -> None:
    link = connected(make_link, "a", vsn="1.0.0")
    assert link.client.vsn == "1.0.0"
    assert conn_of(link).vsn == "1.0.0"
    conn = conn_of(link)
    conn.push("a", "any", {"x": 1}, join_ref="999")  # V1 server frames carry no join_ref
    link.pump()
    ((msg,),) = [[e.message for e in link.take()]]
    assert (msg.event, msg.payload, msg.join_ref) == ("any", {"x": 1}, None)
    ref = link.push("a", "echo", {"y": 2})
    assert link.take() == [ReplyReceived("a", ref, "ok", {"y": 2})]
    with pytest.raises(UsageError):
        link.client.push(link.now, "a", "bin", b"\x00")  # no binary frames in vsn 1.0.0


def test_phx_error_errors_the_channel_and_rejoins(make_link: MakeLink) -> None:
    link = connected(make_link, "a", "b", seed=9)
    link.server.reply_delay = 1.0
    in_flight = link.push("a", "slow", {})
    link.advance(0.5)
    conn_of(link).send_error("a")
    link.pump()
    retry_at = 0.5 + rejoin_delays(9, [1])[0]
    assert link.take() == [
        PushFailed("a", in_flight, PushFailure.CHANNEL_ERRORED, True),
        ChannelErrored("a", "phx_error", {"reason": "channel_crash"}, retry_at),
    ]
    assert link.client.channel_state("a") is ChannelState.ERRORED
    assert link.client.join_ref("a") is None
    assert link.client.channel_state("b") is ChannelState.JOINED
    # A push made now waits for the rejoin.
    buffered = link.push("a", "after", {"n": 1})
    assert link.server_frames(event="after") == []
    link.advance_to(retry_at - 0.001)
    assert len(link.server_frames(event="phx_join")) == 2
    link.advance_to(retry_at)
    frames = link.server_frames(topic="a")
    assert [m.event for m in frames[-2:]] == ["phx_join", "after"]
    assert frames[-1].join_ref == frames[-2].ref
    link.advance(1.0)
    events = link.take()
    assert Joined("a", {}, frames[-2].ref or "", rejoin=True) in events
    assert ReplyReceived("a", buffered, "ok", {"n": 1}) in events


def test_phx_error_during_the_first_join_fails_it(make_link: MakeLink) -> None:
    link = connected(make_link, server=server_with("slow", on_join=lambda t, p, c: None))
    link.join("slow")
    conn_of(link).send_error("slow", join_ref=link.client.join_ref("slow"))
    link.pump()
    crash = {"reason": "channel_crash"}
    assert link.take() == [
        JoinFailed("slow", crash),
        ChannelClosed("slow", ChannelCloseReason.JOIN_FAILED, crash),
    ]


def test_phx_error_during_a_rejoin_errors_again(make_link: MakeLink) -> None:
    answer = [True]
    srv = server_with("a", on_join=lambda topic, payload, conn: ("ok", {}) if answer[0] else None)
    link = make_link(seed=1, server=srv)
    link.connect()
    link.join("a")
    link.take()
    answer[0] = False
    conn_of(link).send_error("a")
    link.pump()
    (first,) = link.take()
    assert isinstance(first, ChannelErrored) and first.retry_at is not None
    link.advance_to(first.retry_at)  # the rejoin is out, unanswered
    ref = link.client.join_ref("a")
    assert ref is not None
    conn_of(link).send_error("a", join_ref=ref)
    link.pump()
    (second,) = link.take()
    assert isinstance(second, ChannelErrored) and second.retry_at is not None
    assert second.retry_at > link.now
    # The rejoin's timeout was cancelled: nothing fires before the next rejoin.
    assert link.client.next_deadline() == second.retry_at


def test_phx_error_on_an_errored_channel_is_stale(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    conn = conn_of(link)
    conn.send_error("a")
    conn.send_error("a", join_ref=None)  # again, with no join_ref
    conn.broadcast("a", "fastlane", {})  # the server-side channel is gone
    link.pump()
    assert [type(e) for e in link.take()] == [ChannelErrored]
    assert link.client.stats.stale_dropped == 2


def test_phx_close_closes_for_good(make_link: MakeLink) -> None:
    link = connected(make_link, "a", "b")
    link.server.reply_delay = 5.0
    in_flight = link.push("a", "slow", {})
    conn_of(link).send_close("a")
    link.pump()
    assert link.take() == [
        PushFailed("a", in_flight, PushFailure.CHANNEL_CLOSED, True),
        ChannelClosed("a", ChannelCloseReason.SERVER_CLOSED, {}),
    ]
    assert link.client.topics == ("b",)
    with pytest.raises(UsageError, match="before joining it"):
        link.client.push(link.now, "a", "x")
    link.drop()
    link.advance_until(Joined)
    link.advance(10.0)
    assert [m.topic for m in link.server_frames(event="phx_join")] == ["b"]


def test_phx_close_while_leaving_is_the_leave(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    link.client.leave(link.now, "a")
    conn_of(link).send_close("a")  # the server closes before it sees the leave
    link.pump()
    assert link.take() == [ChannelClosed("a", ChannelCloseReason.LEFT, {})]


def test_unmatched_topic_reply_to_a_push_errors_and_rejoins(make_link: MakeLink) -> None:
    link = connected(make_link, "a", seed=5)
    del conn_of(link).joined["a"]  # the server lost the channel without telling
    ref = link.push("a", "x", {})
    retry_at = link.now + rejoin_delays(5, [1])[0]
    assert link.take() == [
        ReplyReceived("a", ref, "error", UNMATCHED),
        ChannelErrored("a", "unmatched topic", UNMATCHED, retry_at),
    ]
    link.advance_to(retry_at)
    (joined,) = link.take()
    assert isinstance(joined, Joined) and joined.rejoin


def test_unmatched_like_replies_that_are_not_unmatched(make_link: MakeLink) -> None:
    replies = iter(
        [("error", UNMATCHED), ("error", {"reason": "other"}), ("error", "text"), ("ok", UNMATCHED)]
    )
    link = make_link(server=server_with("a", on_push=lambda msg, conn: next(replies)))
    link.connect()
    link.join("a")
    link.take()
    for _ in range(4):
        link.push("a", "x", {})
    # The first carries the channel's join_ref: the channel answered it, so it is joined.
    assert [type(e) for e in link.take()] == [ReplyReceived] * 4
    assert link.client.channel_state("a") is ChannelState.JOINED


def test_unmatched_reply_while_leaving_only_answers_the_push(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    del conn_of(link).joined["a"]
    ref = link.client.push(link.now, "a", "x", {})
    link.client.leave(link.now, "a")
    link.pump()
    assert link.take() == [
        ReplyReceived("a", ref, "error", UNMATCHED),
        ChannelClosed("a", ChannelCloseReason.LEFT),
    ]


# --------------------------------------------------------------------------------------------
# Leave


def test_leave_sends_phx_leave_then_closes_on_reply(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    client = link.client
    client.leave(link.now, "a")
    assert client.channel_state("a") is ChannelState.LEAVING
    client.leave(link.now, "a")  # a no-op while leaving
    with pytest.raises(UsageError, match="while leaving"):
        client.push(link.now, "a", "x")
    link.pump()
    (leave,) = link.server_frames(event="phx_leave")
    assert (leave.topic, leave.join_ref) == ("a", "1")
    assert link.take() == [ChannelClosed("a", ChannelCloseReason.LEFT)]
    assert client.topics == ()
    assert client.channel_state("a") is ChannelState.CLOSED
    with pytest.raises(UsageError, match="leave 'a': not joined"):
        client.leave(link.now, "a")
    # The phx_close that follows the reply is expected: not counted as a drop.
    assert client.stats.unknown_topic_dropped == 0
    assert client.stats.stale_dropped == 0


def test_leave_timeout(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    client = link.client
    with pytest.raises(UsageError, match="timeout must be > 0"):
        client.leave(link.now, "a", timeout=-1)
    client.leave(link.now, "a", timeout=2.0)
    discard_output(client)  # the phx_leave never reaches the server
    link.advance(1.9)
    assert link.take() == []
    link.advance(0.1)
    assert link.take() == [ChannelClosed("a", ChannelCloseReason.LEFT)]


def test_leave_while_disconnected_closes_at_once(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    link.network_up = False
    link.drop()
    ref = link.push("a", "queued", {})
    link.take()
    link.leave("a")
    assert link.take() == [
        PushFailed("a", ref, PushFailure.CHANNEL_CLOSED),
        ChannelClosed("a", ChannelCloseReason.LEFT),
    ]
    link.network_up = True
    link.advance_until(Connected)
    link.advance(1.0)
    assert link.server_frames(topic="a") == []


def test_leave_an_errored_channel_closes_at_once(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    conn_of(link).send_error("a")
    link.pump()
    link.take()
    link.leave("a")
    assert link.take() == [ChannelClosed("a", ChannelCloseReason.LEFT)]
    link.advance(60.0)
    assert link.server_frames(event="phx_join", topic="a")[1:] == []


def test_leave_while_the_join_is_in_flight(make_link: MakeLink) -> None:
    link = connected(make_link)
    client = link.client
    client.join(link.now, "a")
    ref = client.push(link.now, "a", "buffered")
    client.leave(link.now, "a")
    link.pump()
    assert link.take() == [
        PushFailed("a", ref, PushFailure.CHANNEL_CLOSED),
        ChannelClosed("a", ChannelCloseReason.LEFT),
    ]
    assert link.server_frames(event="buffered") == []
    assert client.stats.stale_dropped >= 1  # the join's reply came for a leaving channel


def test_in_flight_push_keeps_its_reply_while_leaving() -> None:
    held: list[ChannelMessage] = []

    def on_push(msg: ChannelMessage, conn: ServerConnection) -> None:
        held.append(msg)  # answered by hand below

    srv = PhoenixServer()
    srv.route("a", on_push=on_push)
    link = own_link(srv)
    link.join("a")
    ref = link.push("a", "x", {})
    (push,) = held
    client = link.client
    client.leave(link.now, "a")
    leave = discard_output(client)  # the phx_leave is written after the reply below
    conn = conn_of(link)
    conn.reply(push, "ok", {"late": True})
    link.pump()
    assert link.take() == [Joined("a", {}, "1"), ReplyReceived("a", ref, "ok", {"late": True})]
    assert client.channel_state("a") is ChannelState.LEAVING
    (data,) = leave
    assert isinstance(data, SendBytes)
    conn.receive_data(data.data)
    link.pump()
    assert link.take() == [ChannelClosed("a", ChannelCloseReason.LEFT)]


def test_in_flight_push_fails_when_the_leave_completes(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    link.server.reply_delay = 5.0
    ref = link.push("a", "x", {})
    link.leave("a")
    assert link.take() == [
        PushFailed("a", ref, PushFailure.CHANNEL_CLOSED, True),
        ChannelClosed("a", ChannelCloseReason.LEFT),
    ]


def test_phx_error_while_leaving_closes_as_left(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    link.client.leave(link.now, "a")
    conn_of(link).send_error("a")
    link.pump()
    assert link.take() == [ChannelClosed("a", ChannelCloseReason.LEFT, {"reason": "channel_crash"})]


def test_drop_while_leaving_closes_as_left(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    link.client.leave(link.now, "a")
    discard_output(link.client)
    link.drop()
    events = link.take()
    assert events[0] == ChannelClosed("a", ChannelCloseReason.LEFT)
    link.advance_until(Connected)
    link.advance(1.0)
    assert link.server_frames(topic="a") == []


def test_join_while_leaving_replaces_the_channel(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    client = link.client
    client.leave(link.now, "a")
    client.join(link.now, "a", {"again": True})
    assert client.join_ref("a") == "3"
    link.pump()
    assert link.take() == [
        ChannelClosed("a", ChannelCloseReason.LEFT),
        Joined("a", {}, "3"),
    ]
    assert client.channel_state("a") is ChannelState.JOINED
    assert [m.event for m in link.server_frames(topic="a")] == ["phx_join", "phx_leave", "phx_join"]
    # The old leave's reply and phx_close carried the old join_ref.
    assert client.stats.stale_dropped == 2
    ref = link.push("a", "x", {})
    assert link.take() == [ReplyReceived("a", ref, "ok", {})]


@pytest.mark.parametrize("vsn", ["2.0.0", "1.0.0"])
def test_leave_then_join_survives_the_old_joins_phx_close(make_link: MakeLink, vsn: str) -> None:
    # vsn 1.0.0 frames carry no join_ref, but phx_close and phx_error carry ref = join_ref:
    # the old join's close must not close the new join of the same topic.
    link = connected(make_link, "room:1", vsn=vsn)
    link.client.leave(link.now, "room:1")
    link.client.join(link.now, "room:1", {"v": 2})
    link.pump()
    assert [type(e) for e in link.take()] == [ChannelClosed, Joined]
    assert link.client.channel_state("room:1") is ChannelState.JOINED
    conn_of(link).send_close("room:1")  # the current join's close still closes it
    link.pump()
    assert link.take() == [ChannelClosed("room:1", ChannelCloseReason.SERVER_CLOSED, {})]


# --------------------------------------------------------------------------------------------
# Pushes


def test_push_errors(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    client = link.client
    with pytest.raises(UsageError, match="push 'x' to 'b' before joining it"):
        client.push(link.now, "b", "x")
    for event in ("phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"):
        with pytest.raises(UsageError, match="reserved"):
            client.push(link.now, "a", event)
    with pytest.raises(UsageError, match="timeout must be > 0"):
        client.push(link.now, "a", "x", timeout=0)
    assert discard_output(client) == []


@pytest.mark.parametrize("joined", [True, False])
def test_push_with_an_unencodable_payload_changes_nothing(
    make_link: MakeLink, joined: bool
) -> None:
    link = connected(make_link)
    if joined:
        link.join("a")
    else:
        link.client.join(link.now, "a")
    link.take()
    client = link.client
    deadline = client.next_deadline()
    with pytest.raises(UsageError, match="message 'x' to 'a' cannot be encoded"):
        client.push(link.now, "a", "x", {"bad": {1, 2}})
    assert client.next_deadline() == deadline
    out = discard_output(client) if joined else []
    assert out == []
    link.pump()
    assert [e for e in link.take() if isinstance(e, (PushFailed, ReplyReceived))] == []
    assert link.server_frames(event="x") == []


@pytest.mark.parametrize("joined", [True, False])
def test_a_payload_no_text_frame_can_carry_is_refused_at_push(
    make_link: MakeLink, joined: bool
) -> None:
    link = connected(make_link, *(["a"] if joined else []))
    if not joined:
        link.client.join(link.now, "a")  # the push will wait for this join
    with pytest.raises(UsageError, match="UTF-8"):
        link.client.push(link.now, "a", "say", {"text": "half a pair: \ud800"})
    ref = link.client.push(link.now, "a", "say", {"text": "été"})
    link.pump()
    assert [e.ref for e in link.take(ReplyReceived)] == [ref]


def test_push_default_payload_and_reply(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    ref = link.push("a", "ping")
    (frame,) = link.server_frames(event="ping")
    assert frame == ChannelMessage("a", "ping", {}, ref, "1")
    assert link.take() == [ReplyReceived("a", ref, "ok", {})]


def test_binary_push_reply_and_broadcast(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    ref = link.push("a", "bin", b"\x00\x01\xff")
    (frame,) = link.server_frames(event="bin")
    assert frame.payload == b"\x00\x01\xff"
    assert link.take() == [ReplyReceived("a", ref, "ok", b"\x00\x01\xff")]
    link.server.broadcast("a", "bcast", b"\x02")
    link.server.push("a", "spush", b"\x03")
    link.pump()
    messages = [e.message for e in link.take()]
    assert [(m.event, m.payload, m.join_ref) for m in messages] == [
        ("bcast", b"\x02", None),
        ("spush", b"\x03", "1"),
    ]


def test_pushes_before_the_join_are_buffered_until_it_completes(make_link: MakeLink) -> None:
    link = connected(make_link, server=server_with("slow", on_join=lambda t, p, c: None))
    client = link.client
    client.join(link.now, "slow")
    r1 = client.push(link.now, "slow", "one", {"n": 1})
    r2 = client.push(link.now, "slow", "two", {"n": 2})
    link.pump()
    assert [m.event for m in link.server_frames(topic="slow")] == ["phx_join"]
    (join,) = link.server_frames(event="phx_join")
    conn_of(link).reply(join, "ok", {"late": 1})
    link.pump()
    assert [m.event for m in link.server_frames(topic="slow")] == ["phx_join", "one", "two"]
    assert all(m.join_ref == join.ref for m in link.server_frames(topic="slow"))
    assert link.take() == [
        Joined("slow", {"late": 1}, join.ref or ""),
        ReplyReceived("slow", r1, "ok", {"n": 1}),
        ReplyReceived("slow", r2, "ok", {"n": 2}),
    ]


def test_a_buffered_push_sends_what_was_pushed(make_link: MakeLink) -> None:
    # The caller may reuse or change its dict before the join completes; what goes out is
    # what push() was given, and a change the codec cannot encode cannot wedge the core.
    link = connected(make_link)
    link.client.join(link.now, "orders")  # the join is out, its reply not yet read
    order: dict[str, Any] = {"side": "buy", "qty": 10}
    raw = bytearray(b"\x01\x02")
    link.client.push(link.now, "orders", "place", order)
    link.client.push(link.now, "orders", "raw", raw)
    order["qty"] = 500
    order["ts"] = object()  # not JSON
    raw[0] = 9
    link.pump()
    pushes = [m.payload for m in link.server_frames(topic="orders") if m.event != "phx_join"]
    assert pushes == [{"side": "buy", "qty": 10}, b"\x01\x02"]
    assert [type(e) for e in link.take()] == [Joined, ReplyReceived, ReplyReceived]


def test_buffer_full(make_link: MakeLink) -> None:
    link = connected(make_link, max_buffered_pushes=2)
    client = link.client
    client.join(link.now, "a")
    refs = [client.push(link.now, "a", "p", {"i": i}) for i in range(3)]
    assert len(set(refs)) == 3
    assert link.take() == []
    link.pump()
    events = link.take()
    assert events[0] == PushFailed("a", refs[2], PushFailure.BUFFER_FULL)
    assert [e.ref for e in events if isinstance(e, ReplyReceived)] == refs[:2]
    assert len(link.server_frames(event="p")) == 2


def test_zero_buffer_fails_every_unjoined_push(make_link: MakeLink) -> None:
    link = connected(make_link, max_buffered_pushes=0)
    link.client.join(link.now, "a")
    ref = link.client.push(link.now, "a", "p")
    link.pump()
    assert link.take()[0] == PushFailed("a", ref, PushFailure.BUFFER_FULL)


def test_buffered_push_that_times_out_is_never_sent(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    link.network_up = False
    link.drop()
    link.take()
    stale = link.push("a", "stale", {}, timeout=1.0)
    fresh = link.push("a", "fresh", {}, timeout=100.0)
    link.advance(1.0)  # reconnect attempts fail meanwhile
    assert link.of_type(PushFailed) == [PushFailed("a", stale, PushFailure.TIMEOUT, False)]
    link.network_up = True
    link.advance_until(Joined)
    link.advance(0.0)
    assert [m.event for m in link.server_frames(topic="a")] == ["phx_join", "fresh"]
    assert ReplyReceived("a", fresh, "ok", {}) in link.take()


def test_sent_push_that_times_out() -> None:
    held: list[ChannelMessage] = []

    def on_push(msg: ChannelMessage, conn: ServerConnection) -> None:
        held.append(msg)  # no reply

    srv = PhoenixServer()
    srv.route("a", on_push=on_push)
    link = own_link(srv, timeout=4.0)
    link.join("a")
    link.take()
    ref = link.push("a", "x", {})
    link.advance(3.9)
    assert link.take() == []
    link.advance(0.1)
    assert link.take() == [PushFailed("a", ref, PushFailure.TIMEOUT, True)]
    conn_of(link).reply(held[0], "ok", {})  # too late: nobody awaits it
    link.pump()
    assert link.take() == []
    assert link.client.stats.stale_dropped == 1


def test_push_timeout_option(make_link: MakeLink) -> None:
    link = connected(make_link)
    link.client.join(link.now, "a")
    ref = link.client.push(link.now, "a", "x", timeout=0.5)
    discard_output(link.client)
    link.advance(0.5)
    assert PushFailed("a", ref, PushFailure.TIMEOUT, False) in link.take()


def test_cancel_push_withdraws_only_what_was_not_sent(make_link: MakeLink) -> None:
    link = connected(make_link, "sent")
    link.server.reply_delay = 10.0
    sent = link.push("sent", "slow", {})
    link.client.join(link.now, "waiting")
    queued = link.client.push(link.now, "waiting", "order", {"qty": 1})
    link.take()
    assert link.client.cancel_push(link.now, queued) is True
    link.pump()
    assert link.take(PushFailed) == [PushFailed("waiting", queued, PushFailure.CANCELLED, False)]
    assert link.client.cancel_push(link.now, queued) is False  # already ended
    assert link.client.cancel_push(link.now, sent) is False  # on the wire: its reply comes
    assert link.client.cancel_push(link.now, "no-such-ref") is False
    link.advance(11.0)
    assert [m.event for m in link.server_frames(topic="waiting")] == ["phx_join"]
    assert [type(e) for e in link.take() if getattr(e, "ref", None) == sent] == [PushFailed]


def test_reply_nobody_awaits_is_stale(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    conn = conn_of(link)
    conn.reply(ChannelMessage("a", "x", {}, "77", "1"), "ok", {})
    conn.reply(ChannelMessage("a", "x", {}, None, "1"), "ok", {})
    link.pump()
    assert link.take() == []
    assert link.client.stats.stale_dropped == 2


def test_duplicate_join_reply_is_stale(make_link: MakeLink) -> None:
    link = connected(make_link, "a")
    (join,) = link.server_frames(event="phx_join")
    conn_of(link).reply(join, "ok", {"again": True})
    link.pump()
    assert link.take() == []
    assert link.client.stats.stale_dropped == 1


# --------------------------------------------------------------------------------------------
# Connection loss and channels


def test_first_join_in_flight_when_the_link_drops(make_link: MakeLink) -> None:
    link = connected(make_link, server=server_with("slow", on_join=lambda t, p, c: None))
    link.join("slow", timeout=60.0)
    link.drop()
    # Not a ChannelErrored: the channel never joined, its first join just goes on.
    assert [type(e) for e in link.take()] == [Disconnected]
    link.advance_until(Connected)
    assert [m.event for m in link.server_frames()] == ["phx_join"]
    link.advance(60.0)
    assert link.take()[-2:] == [
        JoinFailed("slow", None, timed_out=True),
        ChannelClosed("slow", ChannelCloseReason.JOIN_FAILED),
    ]


def test_rejoin_in_flight_when_the_link_drops(make_link: MakeLink) -> None:
    answer = [True]
    srv = server_with("a", on_join=lambda t, p, c: ("ok", {}) if answer[0] else None)
    link = make_link(seed=3, server=srv)
    link.connect()
    link.join("a", timeout=5.0)
    answer[0] = False
    conn_of(link).send_error("a")
    link.pump()
    (errored,) = link.of_type(ChannelErrored)
    assert errored.retry_at is not None
    link.advance_to(errored.retry_at)
    link.take()
    link.drop()
    assert link.take()[0] == ChannelErrored("a", "transport_error")
    answer[0] = True
    link.advance(4.99)  # the rejoin's timeout would have fired by now if still armed
    assert link.of_type(JoinFailed) == []
    assert link.of_type(Joined) == [Joined("a", {}, link.client.join_ref("a") or "", True)]


def test_errored_channel_when_the_link_drops_is_rejoined_at_once(make_link: MakeLink) -> None:
    link = connected(make_link, "a", seed=12)
    conn_of(link).send_error("a")
    link.pump()
    link.take()
    link.drop()
    assert [type(e) for e in link.take()] == [Disconnected]  # no second ChannelErrored
    dis_at = link.client.next_deadline()
    assert dis_at is not None
    link.advance_to(dis_at)
    assert link.take()[:2] == [
        Connected(None),
        Joined("a", {}, link.client.join_ref("a") or "", True),
    ]


def test_in_flight_push_fails_connection_lost_when_the_link_drops(make_link: MakeLink) -> None:
    link = make_link()
    link.server.reply_delay = 5.0
    link.connect()
    link.join("a")
    ref = link.push("a", "slow", {})
    link.take()
    link.drop()
    events = link.take()
    assert events[0] == PushFailed("a", ref, PushFailure.CONNECTION_LOST, True)
    assert events[1] == ChannelErrored("a", "transport_error")
    link.advance(10.0)
    assert link.of_type(ReplyReceived) == []
    assert [e for e in link.of_type(PushFailed) if e.ref == ref] == []


# --------------------------------------------------------------------------------------------
# Presence


def test_presence_through_the_client(make_link: MakeLink) -> None:
    link = connected(make_link)
    link.join("room", presence=True)
    assert link.take() == [Joined("room", {}, "1")]
    presence = link.client.presence("room")
    assert isinstance(presence, Presence)
    alice = {"metas": [{"phx_ref": "a1"}]}
    bob = {"metas": [{"phx_ref": "b1"}]}
    # A diff before the state is held back.
    link.server.presence_diff("room", joins={"bob": bob})
    link.pump()
    (msg, held) = link.take()
    assert isinstance(msg, MessageReceived)
    assert held == PresenceChanged("room", (), (), presence, synced=False)
    assert presence.list() == []
    link.server.presence_state("room", {"alice": alice})
    link.pump()
    (msg, changed) = link.take()
    assert isinstance(changed, PresenceChanged)
    assert changed.joins == (("alice", None, alice), ("bob", None, bob))
    assert changed.synced
    assert sorted(presence.state) == ["alice", "bob"]
    link.server.presence_diff("room", leaves={"alice": alice})
    link.pump()
    (msg, changed) = link.take()
    assert isinstance(changed, PresenceChanged)
    assert [key for key, _, left in changed.leaves] == ["alice"]
    assert sorted(presence.state) == ["bob"]
    # Other events on the channel are only messages.
    link.server.push("room", "chat", {})
    link.pump()
    assert [type(e) for e in link.take()] == [MessageReceived]


def test_the_core_never_runs_presence_callbacks(make_link: MakeLink) -> None:
    # A user's callback must not run (or raise) inside receive_data: the core reports
    # PresenceChanged events and the driver calls the user.
    link = connected(make_link)
    presence = Presence()

    def explode(*_: object) -> None:
        raise RuntimeError("user callback")

    presence.on_join(explode)
    presence.on_sync(explode)
    link.join("room", presence=presence)
    link.server.presence_state("room", {"alice": {"metas": [{"phx_ref": "a1"}]}})
    link.server.push("room", "after", {})
    link.pump()
    kinds = [type(e) for e in link.take()]
    assert kinds == [Joined, MessageReceived, PresenceChanged, MessageReceived]
    assert list(presence.state) == ["alice"]


def test_presence_after_a_rejoin_waits_for_the_new_state(make_link: MakeLink) -> None:
    link = connected(make_link)
    mine = Presence()
    link.join("room", presence=mine)
    assert link.client.presence("room") is mine
    alice = {"metas": [{"phx_ref": "a1"}]}
    bob = {"metas": [{"phx_ref": "b1"}]}
    link.server.presence_state("room", {"alice": alice})
    link.pump()
    link.drop()
    link.advance_until(Joined)
    link.take()
    link.server.presence_diff("room", joins={"bob": bob})
    link.pump()
    assert next(e for e in link.take() if isinstance(e, PresenceChanged)).synced is False
    assert sorted(mine.state) == ["alice"]
    link.server.presence_state("room", {"alice": alice})
    link.pump()
    assert sorted(mine.state) == ["alice", "bob"]


def test_no_presence_tracking_by_default(make_link: MakeLink) -> None:
    link = connected(make_link, "room")
    assert link.client.presence("room") is None
    link.server.presence_state("room", {"x": {"metas": [{"phx_ref": "1"}]}})
    link.pump()
    assert [type(e) for e in link.take()] == [MessageReceived]


# --------------------------------------------------------------------------------------------
# Outgoing size, and the frames a leave brings


def test_a_frame_over_max_message_size_is_refused_and_one_just_under_goes_out(
    make_link: MakeLink,
) -> None:
    link = connected(make_link, "a", max_message_size=400)
    client = link.client
    with pytest.raises(UsageError, match=r"'big' to 'a' is \d+ bytes on the wire, over"):
        client.push(link.now, "a", "big", {"x": "é" * 300})
    # Over a quarter of the limit in code points, under it in bytes: sent.
    ref = client.push(link.now, "a", "fits", {"x": "y" * 300})
    link.pump()
    assert [e.ref for e in link.of_type(ReplyReceived)] == [ref]
    with pytest.raises(UsageError, match="over max_message_size"):
        client.join(link.now, "b", {"x": "z" * 500})


def test_the_topics_remembered_as_just_left_are_bounded(
    make_link: MakeLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stx_proto._channel as channel_module
    from stx_proto._channel import ChannelRecord

    monkeypatch.setattr(channel_module, "_MAX_LEFT", 2)
    channels = make_link().client._channels
    for n, topic in enumerate(("a", "b", "c")):
        record = ChannelRecord(topic, None, 1.0)
        record.join_ref = str(n)
        channels._remember_left(record)  # as if the server never sent their phx_close
    late = ChannelMessage("a", "phx_close", {}, "0", "0")
    assert not channels.expected_after_leave(late)  # "a" was forgotten: the oldest
    assert channels.expected_after_leave(ChannelMessage("c", "phx_close", {}, "2", "2"))
    assert not channels.expected_after_leave(ChannelMessage("b", "phx_reply", {}, "1", "1"))


# --------------------------------------------------------------------------------------------
# What a rejoin sends: the current join payload, and the after-join pushes


def test_an_updated_join_payload_is_what_the_next_rejoin_sends(make_link: MakeLink) -> None:
    link = connected(make_link, "orderbook")
    client = link.client
    client.update_join_payload("orderbook", {"market_ids": ["m2"]})
    assert [m.payload for m in link.server_frames(event="phx_join")] == [{}]  # nothing now
    link.drop()
    link.advance_until(Joined)
    assert [m.payload for m in link.server_frames(event="phx_join")][-1] == {"market_ids": ["m2"]}
    client.update_join_payload("orderbook", lambda: {"market_ids": ["m3"]})
    with pytest.raises(UsageError, match="cannot be encoded"):
        client.update_join_payload("orderbook", {"bad": object()})
    with pytest.raises(UsageError, match="update the join payload of 'nope': not joined"):
        client.update_join_payload("nope", {})


def test_after_join_pushes_go_out_after_each_join_reply_before_buffered_pushes(
    make_link: MakeLink,
) -> None:
    link = connected(make_link, "market_updates")
    client = link.client
    client.set_after_join("market_updates", [("watch", ["m1", "m2"])])
    link.drop()
    link.pump()
    ref = client.push(link.now, "market_updates", "order", {"n": 1})  # buffered
    link.advance_until(Joined)
    link.pump()
    conn = link.connection
    assert conn is not None
    events = [m.event for m in conn.received if m.event != "heartbeat"]
    assert events == ["phx_join", "watch", "order"]
    # The watch's reply is the client's own: no event, and nothing counted as a drop.
    assert [e.ref for e in link.of_type(ReplyReceived)] == [ref]
    assert client.stats.stale_dropped == 0
    for bad, match in (
        ([("phx_join", {})], "reserved"),
        ([("", {})], "event must be a non-empty str"),
        ([("watch", {"x": object()})], "cannot be encoded"),
    ):
        with pytest.raises(UsageError, match=match):
            client.set_after_join("market_updates", bad)
    with pytest.raises(UsageError, match="set the after-join pushes of 'nope': not joined"):
        client.set_after_join("nope", [])
