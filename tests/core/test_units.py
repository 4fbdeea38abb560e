"""Unit tests of the core's small pieces: timers, retry policy, endpoint URL, heartbeat, channel
and socket transition tables, values, errors and the virtual clock."""

from __future__ import annotations

import math
from random import Random
from typing import Any

import pytest

from stx_proto._channel import (
    TRANSITIONS,
    ChannelInput,
    ChannelRecord,
    ChannelState,
    IllegalTransition,
    Push,
)
from stx_proto._client import SOCKET_TRANSITIONS, Client, CoreStats, SocketInput, SocketState
from stx_proto._errors import (
    ClientClosedError,
    ConnectionClosedError,
    FrameError,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    ProtocolError,
    PushError,
    PushFailedError,
    PushTimeout,
    QueueOverflowError,
    StxWsError,
    UsageError,
)
from stx_proto._events import Disconnected, DisconnectReason, HandshakeRequest, ReplyReceived
from stx_proto._heartbeat import Heartbeat
from stx_proto._message import PHX_ERROR, PHX_REPLY, ChannelMessage
from stx_proto._retry import (
    DEFAULT_REJOIN_POLICY,
    POLICY_VIOLATION,
    SERVICE_RESTART,
    TRY_AGAIN_LATER,
    RetryPolicy,
)
from stx_proto._timers import TimerQueue
from stx_proto._url import (
    AUTH_TOKEN_PREFIX,
    Endpoint,
    auth_subprotocols,
    resolve_headers,
    resolve_params,
    resolve_token,
)
from stx_proto.testing import VirtualClock

# --------------------------------------------------------------------------------------------
# TimerQueue


def test_timer_queue_empty() -> None:
    q: TimerQueue[str] = TimerQueue()
    assert len(q) == 0
    assert q.next_deadline() is None
    assert q.pop_due(1e9) is None
    assert q.get("x") is None


def test_timer_queue_orders_by_deadline_then_arming_order() -> None:
    q: TimerQueue[str] = TimerQueue()
    q.set("c", 3.0)
    q.set("a", 1.0)
    q.set("b1", 2.0)
    q.set("b2", 2.0)
    assert len(q) == 4
    assert q.next_deadline() == 1.0
    assert q.pop_due(0.5) is None  # nothing due yet
    assert q.pop_due(10.0) == ("a", 1.0)
    assert q.pop_due(10.0) == ("b1", 2.0)
    assert q.pop_due(10.0) == ("b2", 2.0)
    assert q.pop_due(2.5) is None
    assert q.pop_due(3.0) == ("c", 3.0)  # due exactly at its deadline
    assert len(q) == 0


def test_timer_queue_rearm_replaces_and_cancel_forgets() -> None:
    q: TimerQueue[str] = TimerQueue()
    q.set("k", 5.0)
    q.set("k", 1.0)  # earlier
    assert q.get("k") == 1.0
    assert q.next_deadline() == 1.0
    q.set("k", 9.0)  # later: the stale 1.0 and 5.0 heap entries are skipped
    assert len(q) == 1
    assert q.next_deadline() == 9.0
    assert q.pop_due(8.0) is None
    assert q.pop_due(9.0) == ("k", 9.0)
    assert q.pop_due(100.0) is None  # the stale entries never come out

    q.set("a", 1.0)
    q.set("b", 2.0)
    q.cancel("a")
    q.cancel("never-set")  # a no-op
    assert q.get("a") is None
    assert q.next_deadline() == 2.0
    q.clear()
    assert len(q) == 0
    assert q.next_deadline() is None


def test_timer_queue_rearm_to_the_same_deadline_fires_once() -> None:
    q: TimerQueue[str] = TimerQueue()
    q.set("k", 1.0)
    q.set("k", 1.0)
    assert q.pop_due(1.0) == ("k", 1.0)
    assert q.pop_due(1.0) is None


# --------------------------------------------------------------------------------------------
# RetryPolicy


def test_retry_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts is None
    assert (p.initial_backoff, p.max_backoff, p.multiplier, p.jitter) == (0.5, 30.0, 2.0, True)
    assert p.final_close_codes == frozenset({POLICY_VIOLATION})
    assert p.max_refusals == 5
    assert (POLICY_VIOLATION, SERVICE_RESTART, TRY_AGAIN_LATER) == (1008, 1012, 1013)
    assert not p.exhausted(10**6)


def test_retry_delay_doubles_up_to_the_cap_without_jitter() -> None:
    p = RetryPolicy(initial_backoff=1.0, max_backoff=10.0, jitter=False)
    rng = Random(0)
    assert [p.delay(n, rng) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    # A huge attempt number does not overflow.
    assert p.delay(10**9, rng) == 10.0


def test_retry_delay_jitter_stays_within_half_to_full() -> None:
    p = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    rng = Random(42)
    for attempt in range(1, 10):
        base = min(8.0, 2.0 ** (attempt - 1))
        for _ in range(50):
            d = p.delay(attempt, rng)
            assert 0.5 * base <= d < base
    # Seeded: exactly repeatable, and equal to base * uniform(0.5, 1.0).
    expected = 4.0 * Random(7).uniform(0.5, 1.0)
    assert p.delay(3, Random(7)) == expected


def test_retry_multiplier_one_is_constant() -> None:
    p = RetryPolicy(initial_backoff=3.0, max_backoff=3.0, multiplier=1.0, jitter=False)
    assert {p.delay(n, Random()) for n in range(1, 20)} == {3.0}


def test_retry_exhausted() -> None:
    p = RetryPolicy(max_attempts=2)
    assert not p.exhausted(1)
    assert not p.exhausted(2)
    assert p.exhausted(3)
    assert RetryPolicy(max_attempts=0).exhausted(1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial_backoff": 0}, "initial_backoff must be > 0"),
        ({"max_backoff": -1.0}, "max_backoff must be > 0"),
        ({"initial_backoff": math.nan}, "initial_backoff must be > 0"),
        ({"initial_backoff": 5.0, "max_backoff": 1.0}, "max_backoff must be >= initial_backoff"),
        ({"multiplier": 0.5}, "multiplier must be >= 1"),
        ({"max_attempts": -1}, "max_attempts must be >= 0"),
        ({"max_refusals": 0}, "max_refusals must be >= 1"),
    ],
)
def test_retry_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        RetryPolicy(**kwargs)


def test_retry_accepts_none_limits() -> None:
    p = RetryPolicy(max_attempts=None, max_refusals=None)
    assert p.max_refusals is None


def test_default_rejoin_policy() -> None:
    p = DEFAULT_REJOIN_POLICY
    assert (p.initial_backoff, p.max_backoff, p.max_attempts, p.max_refusals) == (
        1.0,
        10.0,
        None,
        None,
    )


# --------------------------------------------------------------------------------------------
# Endpoint and handshake values


def test_endpoint_phoenix_js_vectors() -> None:
    # phoenix-protocol.md 1.1 (1) and (2).
    ep = Endpoint.parse("wss://example.org/chat")
    assert ep.url(ep.target({}, "2.0.0")) == "wss://example.org/chat/websocket?vsn=2.0.0"
    ep = Endpoint.parse("ws://example.com/socket")
    target = ep.target({"n": 1, "nested": {"k": "v w"}}, "2.0.0")
    assert target == "/socket/websocket?n=1&nested%5Bk%5D=v%20w&vsn=2.0.0"
    assert ep.url(target) == "ws://example.com/socket/websocket?n=1&nested%5Bk%5D=v%20w&vsn=2.0.0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/socket", ("ws", "h", 80, "/socket/websocket", "h")),
        ("http://h/socket", ("ws", "h", 80, "/socket/websocket", "h")),
        ("wss://h/socket", ("wss", "h", 443, "/socket/websocket", "h")),
        ("HTTPS://h/socket", ("wss", "h", 443, "/socket/websocket", "h")),
        ("ws://h:4000/socket/", ("ws", "h", 4000, "/socket/websocket", "h:4000")),
        ("wss://h:443/socket/websocket", ("wss", "h", 443, "/socket/websocket", "h")),
        ("wss://h:80/s", ("wss", "h", 80, "/s/websocket", "h:80")),
        ("ws://h", ("ws", "h", 80, "/websocket", "h")),
        ("ws://[::1]:4000/socket", ("ws", "::1", 4000, "/socket/websocket", "[::1]:4000")),
        ("ws://[::1]/socket", ("ws", "::1", 80, "/socket/websocket", "[::1]")),
    ],
)
def test_endpoint_parse(url: str, expected: tuple[str, str, int, str, str]) -> None:
    ep = Endpoint.parse(url)
    assert (ep.scheme, ep.host, ep.port, ep.path, ep.host_header) == expected
    assert ep.tls is (expected[0] == "wss")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://h/socket", "scheme must be ws, wss, http or https"),
        ("/socket", "scheme must be"),
        ("ws:///socket", "no host"),
        ("ws://h:99999/socket", "invalid URL"),
        ("ws://[::1/socket", "invalid URL"),
    ],
)
def test_endpoint_parse_refuses(url: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Endpoint.parse(url)


def test_endpoint_target_keeps_the_urls_query_and_encodes_values() -> None:
    ep = Endpoint.parse("ws://h/socket?a=1")
    assert ep.query == "a=1"
    target = ep.target({"t": True, "f": False, "x": "a/b&c=d", "é": "~*'()"}, "1.0.0")
    assert target == ("/socket/websocket?a=1&t=true&f=false&x=a%2Fb%26c%3Dd&%C3%A9=~*'()&vsn=1.0.0")
    # Deeper nesting, and a non-str key.
    params: dict[Any, Any] = {"a": {"b": {"c": 1}}, 2: "x"}
    assert Endpoint.parse("ws://h/s").target(params, "2.0.0") == (
        "/s/websocket?a%5Bb%5D%5Bc%5D=1&2=x&vsn=2.0.0"
    )


def test_auth_subprotocols_phoenix_js_vectors() -> None:
    assert auth_subprotocols("1234") == ("phoenix", "base64url.bearer.phx.MTIzNA")
    assert auth_subprotocols("5678") == ("phoenix", "base64url.bearer.phx.NTY3OA")
    assert auth_subprotocols(None) == ()
    # Standard alphabet (+ and /), padding removed.
    assert auth_subprotocols("\xfb\xff")[1] == AUTH_TOKEN_PREFIX + "w7vDvw"
    assert auth_subprotocols("??>")[1] == AUTH_TOKEN_PREFIX + "Pz8+"
    assert auth_subprotocols("???")[1] == AUTH_TOKEN_PREFIX + "Pz8/"


def test_resolve_params() -> None:
    assert resolve_params(None) == {}
    assert resolve_params({"a": 1}) == {"a": 1}
    assert resolve_params(lambda: {"b": 2}) == {"b": 2}
    assert resolve_params(lambda: None) == {}  # type: ignore[arg-type, return-value]
    with pytest.raises(UsageError, match="params must be a mapping, got list"):
        resolve_params([("a", 1)])  # type: ignore[arg-type]


def test_resolve_token() -> None:
    assert resolve_token(None) is None
    assert resolve_token("t") == "t"
    assert resolve_token(lambda: "u") == "u"
    assert resolve_token(lambda: None) is None
    with pytest.raises(UsageError, match="auth token must be a str, got int"):
        resolve_token(lambda: 5)  # type: ignore[arg-type, return-value]


def test_resolve_headers() -> None:
    assert resolve_headers(None) == ()
    assert resolve_headers({"X-A": "1"}) == (("X-A", "1"),)
    assert resolve_headers([("X-B", "2"), ("X-B", "3")]) == (("X-B", "2"), ("X-B", "3"))
    assert resolve_headers(lambda: {"X-C": "4"}) == (("X-C", "4"),)
    for name in ("Host", "upgrade", "Connection", "Sec-WebSocket-Key"):
        with pytest.raises(UsageError, match="set by the WebSocket handshake"):
            resolve_headers({name: "x"})


def test_handshake_request_repr_hides_query_and_subprotocols() -> None:
    req = HandshakeRequest(
        url="ws://h/s/websocket?token=SECRET&vsn=2.0.0",
        host="h",
        target="/s/websocket?token=SECRET&vsn=2.0.0",
        subprotocols=("phoenix", AUTH_TOKEN_PREFIX + "U0VDUkVU"),
    )
    text = repr(req)
    assert text == "HandshakeRequest(host='h', path='/s/websocket')"
    assert "SECRET" not in text
    assert "U0VDUkVU" not in text


# --------------------------------------------------------------------------------------------
# Heartbeat


def test_heartbeat_bookkeeping() -> None:
    hb = Heartbeat(30.0, 10.0)
    assert (hb.interval, hb.timeout, hb.pending_ref, hb.last_rtt) == (30.0, 10.0, None, None)
    assert hb.sent("7", 100.0) == 110.0
    assert (hb.pending_ref, hb.sent_at) == ("7", 100.0)
    assert hb.acknowledge(100.25) == 0.25
    assert (hb.pending_ref, hb.last_rtt) == (None, 0.25)
    hb.sent("8", 130.0)
    hb.reset()
    # The last measurement is kept across connections.
    assert (hb.pending_ref, hb.last_rtt) == (None, 0.25)


# --------------------------------------------------------------------------------------------
# Channel transition table


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
# Socket transition table


@pytest.mark.parametrize("state", list(SocketState))
@pytest.mark.parametrize("event", list(SocketInput))
def test_socket_transition_every_pair(state: SocketState, event: SocketInput) -> None:
    client = Client("ws://h/socket")
    client._state = state
    expected = SOCKET_TRANSITIONS.get((state, event))
    if expected is None:
        with pytest.raises(UsageError, match=f"socket: {event.value} in state {state.value}"):
            client._socket(event)
        assert client.state is state
    else:
        client._socket(event)
        assert client.state is expected
    # Nothing ever leaves CLOSED.
    assert not any(s is SocketState.CLOSED for s, _ in SOCKET_TRANSITIONS)


# --------------------------------------------------------------------------------------------
# Values


def test_channel_message_properties() -> None:
    push = ChannelMessage("market_info:42", "update", {"p": 1}, None, "3")
    assert push.channel == "market_info"
    assert not push.is_reply
    assert push.reply_status is None
    assert push.response is None
    assert not push.is_error
    assert ChannelMessage("plain", "e", {}).channel == "plain"

    ok = ChannelMessage("t", PHX_REPLY, {"status": "ok", "response": {"r": 1}}, "5", "3")
    assert ok.is_reply
    assert ok.reply_status == "ok"
    assert ok.response == {"r": 1}
    assert not ok.is_error

    err = ChannelMessage("t", PHX_REPLY, {"status": "error", "response": {"reason": "x"}}, "6")
    assert err.is_error
    assert err.reply_status == "error"

    crash = ChannelMessage("t", PHX_ERROR, {}, "3", "3")
    assert crash.is_error
    assert crash.reply_status is None

    # Replies with odd payloads (binary response, non-str status) do not raise.
    assert ChannelMessage("t", PHX_REPLY, b"raw").reply_status is None
    assert ChannelMessage("t", PHX_REPLY, b"raw").response is None
    assert ChannelMessage("t", PHX_REPLY, {"status": 1}).reply_status is None
    assert ChannelMessage("t", PHX_REPLY, {"status": "ok"}).response is None


def test_reply_received_ok() -> None:
    assert ReplyReceived("t", "1", "ok", {}).ok
    assert not ReplyReceived("t", "1", "error", {}).ok


def test_disconnected_describe() -> None:
    closed = DisconnectReason.SERVER_CLOSED
    assert Disconnected(DisconnectReason.CLIENT_CLOSED).describe() == "client closed"
    assert Disconnected(closed, 1001, "bye").describe(5.0) == "server closed (close code 1001): bye"
    later = Disconnected(DisconnectReason.TRANSPORT_ERROR, None, "reset", 12.34)
    assert later.describe() == "transport error: reset; reconnecting"
    assert later.describe(10.0) == "transport error: reset; reconnecting in 2.3 s"
    assert later.describe(20.0) == "transport error: reset; reconnecting in 0.0 s"


def test_core_stats_repr() -> None:
    stats = CoreStats()
    stats.messages = 3
    assert repr(stats) == (
        "CoreStats(connections=0, malformed_frames=0, messages=3, stale_dropped=0, "
        "unknown_topic_dropped=0)"
    )


# --------------------------------------------------------------------------------------------
# Errors


def test_error_hierarchy_and_messages() -> None:
    assert issubclass(ClientClosedError, UsageError)
    assert issubclass(UsageError, StxWsError)
    assert issubclass(FrameError, ProtocolError)
    assert issubclass(ProtocolError, StxWsError)
    assert issubclass(HandshakeRefusedError, ConnectionClosedError)
    assert issubclass(GaveUpError, ConnectionClosedError)
    assert issubclass(PushTimeout, PushFailedError)
    for cls in (ConnectionClosedError, JoinError, PushError, PushFailedError):
        assert issubclass(cls, StxWsError)

    e = ConnectionClosedError("server closed")
    assert (str(e), e.reason, e.code) == ("server closed", "server closed", None)
    e = ConnectionClosedError("server closed", 1001)
    assert (str(e), e.code) == ("server closed (close code 1001)", 1001)

    h = HandshakeRefusedError(403, b"Forbidden")
    assert (str(h), h.status_code, h.body, h.code) == (
        "handshake refused with HTTP 403",
        403,
        b"Forbidden",
        None,
    )
    assert HandshakeRefusedError(500).body == b""

    j = JoinError("room:1", {"reason": "unauthorized"})
    assert str(j) == "join of 'room:1' failed (refused): {'reason': 'unauthorized'}"
    assert (j.topic, j.response, j.reason) == ("room:1", {"reason": "unauthorized"}, "refused")
    assert JoinError("t", None, "timeout").reason == "timeout"

    p = PushError("t", "ev", "error", {"x": 1})
    assert str(p) == "push 'ev' to 't' answered 'error': {'x': 1}"
    assert (p.topic, p.event, p.status, p.response) == ("t", "ev", "error", {"x": 1})

    f = PushFailedError("t", "ev", "buffer_full")
    assert str(f) == "push 'ev' to 't' failed: buffer_full"
    assert (f.topic, f.event, f.reason) == ("t", "ev", "buffer_full")

    q = QueueOverflowError("room", "message", 100)
    assert str(q) == "message queue full (100 messages) for 'room': channel left"
    assert (q.topic, q.queue, q.size) == ("room", "message", 100)
    assert isinstance(q, StxWsError)

    t = PushTimeout("t", "ev")
    assert str(t) == "push 'ev' to 't' failed: timeout"
    assert t.reason == "timeout"


# --------------------------------------------------------------------------------------------
# VirtualClock


def test_virtual_clock() -> None:
    clock = VirtualClock()
    assert clock() == 0.0
    assert clock.advance(1.5) == 1.5
    assert clock.advance(0) == 1.5
    assert clock.now == 1.5
    assert repr(clock) == "VirtualClock(now=1.5)"
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-0.1)
    assert clock() == 1.5
    assert VirtualClock(100.0)() == 100.0


def test_retry_policy_rejects_a_negative_stable_after() -> None:
    with pytest.raises(UsageError, match="stable_after"):
        RetryPolicy(stable_after=-1.0)


def test_refusals_are_client_errors_only() -> None:
    policy = RetryPolicy()
    assert [
        c for c in (400, 401, 403, 404, 408, 429, 500, 502, 503) if policy.counts_as_refusal(c)
    ] == [
        400,
        401,
        403,
        404,
    ]


def test_timer_queue_compacts_cancelled_entries() -> None:
    timers: TimerQueue[str] = TimerQueue()
    timers.set("heartbeat", 1.0)
    for i in range(1000):
        timers.set(f"push{i}", 600.0 + i)
        timers.cancel(f"push{i}")
    assert len(timers) == 1
    assert len(timers._heap) < 100  # not 1001: cancelled entries do not pile up
    assert timers.next_deadline() == 1.0
    assert timers.pop_due(1.0) == ("heartbeat", 1.0)
    assert timers.next_deadline() is None
