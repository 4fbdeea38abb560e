"""Story tests: whole sessions of a client against the scripted server, on a virtual clock."""

from __future__ import annotations

from random import Random
from typing import Any

from stx_proto import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    Client,
    Closed,
    Connected,
    Disconnected,
    DisconnectReason,
    GaveUp,
    HandshakeRefused,
    Joined,
    MessageReceived,
    PushFailed,
    PushFailure,
    ReplyReceived,
    RetryPolicy,
)
from stx_proto.testing import Link, PhoenixServer, ServerConnection


def test_three_channels_heartbeat_drop_backoff_rejoin_then_buffered_pushes() -> None:
    """The issue's "Done when" scenario."""
    seed = 2024
    # Cursors the application advances as messages arrive; each (re)join sends the current one.
    cursors = {"a": 0, "b": 0, "c": 0}

    def cursor_of(topic: str) -> Any:
        return lambda: {"since": cursors[topic]}

    hold_join_of_b = [False]
    held_joins: list[Any] = []

    def on_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any] | None:
        if topic == "b" and hold_join_of_b[0]:
            held_joins.append(payload)
            return None  # answered by hand below
        return "ok", {"topic": topic}

    server = PhoenixServer()
    server.route("*", on_join=on_join)
    client = Client("ws://test/socket", rng=Random(seed))
    link = Link(client, server)

    # Connect and join three topics.
    link.connect()
    for topic in ("a", "b", "c"):
        link.join(topic, cursor_of(topic))
    first_refs = {t: client.join_ref(t) for t in ("a", "b", "c")}
    assert link.take() == [
        Connected(None),
        Joined("a", {"topic": "a"}, "1"),
        Joined("b", {"topic": "b"}, "2"),
        Joined("c", {"topic": "c"}, "3"),
    ]

    # Thirty seconds on: exactly one heartbeat, answered.
    link.advance(29.999)
    assert link.server_frames(event="heartbeat") == []
    link.advance(0.001)
    (heartbeat,) = link.server_frames(event="heartbeat")
    assert (heartbeat.topic, heartbeat.join_ref, heartbeat.ref) == ("phoenix", None, "4")
    assert client.last_heartbeat_rtt is not None

    # Messages move the cursors; a push while connected is answered.
    server.push("a", "update", {"seq": 10})
    server.push("b", "update", {"seq": 20})
    link.pump()
    for ev in link.take(MessageReceived):
        cursors[ev.message.topic] = ev.message.payload["seq"]
    ref = link.push("a", "order", {"qty": 1})
    assert link.take() == [ReplyReceived("a", ref, "ok", {"qty": 1})]

    # The network drops at t=31; pushes made meanwhile wait in b's buffer.
    link.advance(1.0)
    first_conn = link.connection
    link.drop()
    assert first_conn is not None and first_conn.closed
    events = link.take()
    expected_retry_at = 31.0 + RetryPolicy().delay(1, Random(seed))
    assert events == [
        ChannelErrored("a", "transport_error"),
        ChannelErrored("b", "transport_error"),
        ChannelErrored("c", "transport_error"),
        Disconnected(
            DisconnectReason.TRANSPORT_ERROR, None, "connection reset by peer", expected_retry_at
        ),
    ]
    cursors["c"] = 30  # learned elsewhere (say, over HTTP) while offline
    buffered = [link.push("b", "order", {"n": n}) for n in (1, 2)]
    assert link.take() == []

    # Just before the backoff time nothing happens; at it, the client reconnects.
    hold_join_of_b[0] = True
    link.advance_to(expected_retry_at - 0.001)
    assert len(server.all_connections) == 1
    link.advance_to(expected_retry_at)
    assert len(server.all_connections) == 2
    frames = link.server_frames()
    # Three rejoins first, with new join_refs and the current payloads.
    assert [(m.event, m.topic, m.payload) for m in frames[:3]] == [
        ("phx_join", "a", {"since": 10}),
        ("phx_join", "b", {"since": 20}),
        ("phx_join", "c", {"since": 30}),
    ]
    new_refs = {m.topic: m.join_ref for m in frames[:3]}
    assert all(m.ref == m.join_ref for m in frames[:3])
    assert not set(new_refs.values()) & set(first_refs.values())
    assert new_refs == {t: client.join_ref(t) for t in ("a", "b", "c")}
    # b's join is not answered yet: its buffered pushes have not been sent.
    assert [m for m in frames if m.event == "order"] == []
    assert held_joins == [{"since": 20}]
    events = link.take()
    assert events == [
        Connected(None),
        Joined("a", {"topic": "a"}, new_refs["a"] or "", rejoin=True),
        Joined("c", {"topic": "c"}, new_refs["c"] or "", rejoin=True),
    ]

    # The join reply lets the buffered pushes out, in order, with the new join_ref.
    conn = link.connection
    assert conn is not None
    conn.reply(frames[1], "ok", {"topic": "b"})
    link.pump()
    frames = link.server_frames()
    pushes = [m for m in frames if m.event == "order"]
    assert [(m.payload, m.ref, m.join_ref) for m in pushes] == [
        ({"n": 1}, buffered[0], new_refs["b"]),
        ({"n": 2}, buffered[1], new_refs["b"]),
    ]
    assert frames.index(pushes[0]) > 2
    assert link.take() == [
        Joined("b", {"topic": "b"}, new_refs["b"] or "", rejoin=True),
        ReplyReceived("b", buffered[0], "ok", {"n": 1}),
        ReplyReceived("b", buffered[1], "ok", {"n": 2}),
    ]

    # A frame from the first join of a is stale now; one for the new join is delivered.
    conn.push("a", "late", {}, join_ref=first_refs["a"])
    conn.push("a", "fresh", {})
    link.pump()
    assert [e.message.event for e in link.take(MessageReceived)] == ["fresh"]
    assert client.stats.stale_dropped == 1
    assert client.stats.connections == 2


def test_token_refresh_after_expiry() -> None:
    """The server starts refusing an expired token; the refreshed one gets back in."""
    tokens = {"current": "t1"}
    valid = {"t1"}
    server = PhoenixServer(auth=lambda params, token: token in valid)
    server.route("*")
    client = Client(
        "ws://test/socket",
        auth_token=lambda: tokens["current"],
        retry=RetryPolicy(initial_backoff=1.0, max_backoff=1.0, jitter=False),
    )
    link = Link(client, server)
    link.connect()
    link.join("room")
    valid.clear()  # t1 expires
    link.drop()
    link.advance(1.0)
    assert [type(e) for e in link.take()][-2:] == [HandshakeRefused, Disconnected]
    tokens["current"] = "t2"
    valid.add("t2")
    link.advance(1.0)
    assert link.connections[-1].auth_token == "t2"
    assert link.take() == [Connected("phoenix"), Joined("room", {}, "2", rejoin=True)]


def test_server_restart_1012_rejoins_everything_quickly() -> None:
    server = PhoenixServer()
    server.route("*")
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=30.0)
    link = Link(Client("ws://test/socket", retry=policy, rng=Random(3)), server)
    link.connect()
    for topic in ("x", "y"):
        link.join(topic)
    link.take()
    server.close_all(1012, "restart")
    link.pump()
    (dis,) = link.take(Disconnected)
    assert dis.code == 1012
    assert dis.retry_at is not None and dis.retry_at <= 0.5
    link.advance_until(Connected)
    link.advance(0.0)
    assert [(e.topic, e.rejoin) for e in link.take(Joined)] == [("x", True), ("y", True)]


def test_server_drops_every_connection() -> None:
    server = PhoenixServer()
    server.route("*")
    link = Link(Client("ws://test/socket", rng=Random(0)), server)
    link.connect()
    link.join("x")
    server.drop_all()  # abrupt: the transport notices on its next turn
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_ERROR
    assert dis.detail == "connection reset by peer"
    link.advance_until(Joined)


def test_long_outage_gives_up_and_fails_everything() -> None:
    server = PhoenixServer()
    server.route("*")
    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=4.0)
    link = Link(Client("ws://test/socket", retry=policy, rng=Random(1)), server)
    link.connect()
    link.join("x")
    link.network_up = False
    link.drop()
    pushes = [link.push("x", "order", {"i": i}, timeout=3600.0) for i in range(3)]
    link.advance(600.0)
    gave_up = link.of_type(GaveUp)
    assert gave_up == [GaveUp(DisconnectReason.TRANSPORT_ERROR, 6, None, "connection refused")]
    assert link.of_type(PushFailed) == [
        PushFailed("x", ref, PushFailure.SOCKET_CLOSED) for ref in pushes
    ]
    assert link.of_type(ChannelClosed) == [ChannelClosed("x", ChannelCloseReason.SOCKET_CLOSED)]
    assert link.events[-1] == Closed()
    assert link.opens == 6
    assert link.next_deadline() is None


def test_vsn_1_end_to_end() -> None:
    server = PhoenixServer()
    server.route("*")
    link = Link(Client("ws://test/socket", vsn="1.0.0", rng=Random(0)), server)
    link.connect()
    assert link.connection is not None and link.connection.vsn == "1.0.0"
    link.join("room", {"hi": 1})
    ref = link.push("room", "say", {"text": "hello"})
    server.broadcast("room", "shout", {"text": "HELLO"})
    link.advance(30.0)
    assert len(link.server_frames(event="heartbeat")) == 1
    assert link.client.last_heartbeat_rtt is not None
    link.drop()
    link.advance_until(Joined)
    link.close()
    assert [type(e) for e in link.take()] == [
        Connected,
        Joined,
        ReplyReceived,
        MessageReceived,
        ChannelErrored,
        Disconnected,
        Connected,
        Joined,
        ChannelClosed,
        Disconnected,
        Closed,
    ]
    assert link.connections[-1].close_code == 1000
    assert [m.event for m in link.server_frames(everything=True) if m.topic == "room"] == [
        "phx_join",
        "say",
        "phx_join",
        "phx_leave",
    ]
    assert ref == "2"


def test_the_link_docstring_story() -> None:
    server = PhoenixServer()
    server.route("*")
    link = Link(Client("ws://test/socket", rng=Random(7)), server)
    link.connect()
    for topic in ("a", "b", "c"):
        link.join(topic)
    link.advance(30)
    link.drop()
    link.advance_until(Connected)
    assert [m.topic for m in link.server_frames(event="phx_join")[-3:]] == ["a", "b", "c"]
