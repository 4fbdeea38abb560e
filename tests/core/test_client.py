"""The client (``_client.py``), its connection: construction, connect and handshake, the
heartbeat, reconnect and backoff, close codes, refused handshakes, giving up, clean close, the
external-WebSocket "message mode" and custom engines. Channel behaviour is in test_channel.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from random import Random
from typing import Any

import pytest

from stx_proto import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    ChannelMessage,
    Client,
    ClientClosedError,
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    DisconnectReason,
    FrameDropped,
    GaveUp,
    HandshakeRefused,
    Joined,
    MessageReceived,
    OpenTransport,
    PushFailed,
    PushFailure,
    ReplyReceived,
    RetryPolicy,
    SendBytes,
    SendMessage,
    SleepUntil,
    SocketState,
    UsageError,
)
from stx_proto._engines import EngineFactory
from stx_proto._events import Output
from stx_proto._serializer import V2Serializer, encode_broadcast_binary
from stx_proto._websocket import WsEvent, WsprotoEngine
from stx_proto.testing import Link, PhoenixServer, ServerConnection

URL = "ws://test/socket"
MakeLink = Callable[..., Link]  # the make_link fixture of conftest.py


def drain(client: Client) -> list[Output]:
    """Pull every output up to (and without) the final SleepUntil."""
    out: list[Output] = []
    while not isinstance(item := client.next_event(), SleepUntil):
        out.append(item)
    return out


def state(client: Client) -> SocketState:
    """The client's state (a call, so that mypy does not narrow it across calls)."""
    return client.state


def joined_to_a(make_link: MakeLink) -> tuple[Link, ServerConnection]:
    """A link with channel "a" joined and its events taken, and the server's connection."""
    link = make_link()
    link.connect()
    link.join("a")
    conn = link.connection
    assert conn is not None
    link.take()
    return link, conn


def rtt(client: Client) -> float | None:
    """The last heartbeat round trip (a call, for the same reason)."""
    return client.last_heartbeat_rtt


def delays(policy: RetryPolicy, seed: int, attempts: list[int]) -> list[float]:
    """The delays a client seeded with ``seed`` draws for these attempt numbers, in order."""
    rng = Random(seed)
    return [policy.delay(n, rng) for n in attempts]


# --------------------------------------------------------------------------------------------
# Construction


def test_client_defaults_and_introspection() -> None:
    client = Client(URL)
    assert state(client) is SocketState.IDLE
    assert not client.is_connected
    assert client.vsn == "2.0.0"
    assert client.topics == ()
    assert client.last_heartbeat_rtt is None
    assert client.channel_state("nope").value == "closed"
    assert client.join_ref("nope") is None
    assert client.presence("nope") is None
    assert client.next_deadline() is None
    assert client.next_event() == SleepUntil(None)
    assert client.stats.connections == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timeout": 0}, "timeout must be > 0"),
        ({"connect_timeout": -1.0}, "connect_timeout must be > 0"),
        ({"close_timeout": 0}, "close_timeout must be > 0"),
        ({"heartbeat_interval": 0}, "heartbeat_interval must be > 0"),
        ({"heartbeat_timeout": -5.0}, "heartbeat_timeout must be > 0"),
        ({"max_buffered_pushes": -1}, "max_buffered_pushes must be >= 0"),
        ({"vsn": "3.0.0"}, "vsn"),
    ],
)
def test_client_refuses_bad_options(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Client(URL, **kwargs)


def test_client_refuses_a_bad_url() -> None:
    with pytest.raises(UsageError):
        Client("tcp://host/socket")


@pytest.mark.parametrize("option", ["connect_timeout", "heartbeat_timeout", "timeout"])
def test_a_zero_timeout_is_refused_not_replaced_by_a_default(option: str) -> None:
    options: dict[str, Any] = {option: 0}
    with pytest.raises(UsageError, match=f"{option} must be > 0"):
        Client(URL, **options)


# --------------------------------------------------------------------------------------------
# Connect and handshake


def test_connect_and_handshake(make_link: MakeLink) -> None:
    link = make_link()
    client = link.client
    client.connect(0.0)
    assert state(client) is SocketState.CONNECTING
    assert client.next_deadline() == 10.0  # connect timeout defaults to timeout
    link.pump()  # Link opens the transport and both sides finish the handshake
    assert link.opens == 1
    assert state(client) is SocketState.OPEN
    assert client.is_connected
    assert link.take() == [Connected(None)]
    conn = link.connections[0]
    assert conn.path == "/socket/websocket"
    assert conn.params == {"vsn": "2.0.0"}
    assert conn.host == "test"
    assert conn.auth_token is None
    assert client.stats.connections == 1
    assert client.next_deadline() == 30.0  # only the heartbeat is armed now

    link.connect()  # a no-op while connected
    assert link.opens == 1
    assert link.take() == []


def test_open_transport_command() -> None:
    client = Client(URL)
    client.connect(0.0)
    assert client.next_event() == OpenTransport("test", 80, False)
    assert client.next_event() == SleepUntil(10.0)
    client = Client("https://example.com:8443/socket")
    client.connect(0.0)
    assert client.next_event() == OpenTransport("example.com", 8443, True)


def test_params_token_and_headers_reach_the_server(make_link: MakeLink) -> None:
    link = make_link(
        params={"n": 1, "nested": {"k": "v w"}}, auth_token="1234", headers={"X-Api-Key": "k1"}
    )
    link.connect()
    assert link.take() == [Connected("phoenix")]
    conn = link.connections[0]
    assert conn.params == {"n": "1", "nested[k]": "v w", "vsn": "2.0.0"}
    assert conn.auth_token == "1234"
    assert conn.subprotocol == "phoenix"
    assert ("x-api-key", "k1") in conn.request_headers

    req = link.client.handshake_request()
    assert req.target == "/socket/websocket?n=1&nested%5Bk%5D=v%20w&vsn=2.0.0"
    assert req.url == "ws://test/socket/websocket?n=1&nested%5Bk%5D=v%20w&vsn=2.0.0"
    assert req.host == "test"
    assert req.subprotocols == ("phoenix", "base64url.bearer.phx.MTIzNA")
    assert req.headers == (("X-Api-Key", "k1"),)


def test_credentials_callables_are_evaluated_at_every_connect(make_link: MakeLink) -> None:
    calls = {"params": 0, "token": 0, "headers": 0}

    def params() -> dict[str, Any]:
        calls["params"] += 1
        return {"n": calls["params"]}

    def token() -> str:
        calls["token"] += 1
        return f"token-{calls['token']}"

    def headers() -> list[tuple[str, str]]:
        calls["headers"] += 1
        return [("X-Try", str(calls["headers"]))]

    link = make_link(params=params, auth_token=token, headers=headers)
    link.connect()
    first = link.connections[0]
    assert (first.params["n"], first.auth_token) == ("1", "token-1")
    assert ("x-try", "1") in first.request_headers

    link.drop()
    link.advance_until(Connected)
    second = link.connections[1]
    assert second is not first
    assert (second.params["n"], second.auth_token) == ("2", "token-2")
    assert ("x-try", "2") in second.request_headers
    assert calls == {"params": 2, "token": 2, "headers": 2}


def test_failing_credentials_callable_is_a_failed_attempt(make_link: MakeLink) -> None:
    fail = [True]

    def token() -> str:
        if fail[0]:
            raise RuntimeError("token service down")
        return "fresh"

    policy = RetryPolicy(initial_backoff=1.0, max_backoff=4.0)
    link = make_link(auth_token=token, retry=policy, seed=3)
    link.connect()
    (dis,) = link.take()
    assert isinstance(dis, Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_ERROR
    assert "token service down" in dis.detail
    assert dis.retry_at == delays(policy, 3, [1])[0]
    assert link.connection is None  # the transport was closed
    fail[0] = False
    assert isinstance(link.advance_until(Connected), Connected)
    assert link.connections[-1].auth_token == "fresh"


def test_a_header_value_that_cannot_be_sent_is_refused_at_once(make_link: MakeLink) -> None:
    # A static value is checked where it is given, without echoing it (it may be a secret).
    with pytest.raises(UsageError, match="header 'X-Bad': its value holds a control") as info:
        make_link(headers={"X-Bad": "a-secret\r\nb"})
    assert "a-secret" not in str(info.value)


def test_a_credential_callable_returning_a_bad_value_gives_up_at_once(make_link: MakeLink) -> None:
    # Retrying would send the same value forever: the client gives up, with the UsageError.
    link = make_link(headers=lambda: {"X-Bad": "a-secret\n"})
    link.connect()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.INVALID_CREDENTIALS
    assert dis.retry_at is None and "a-secret" not in dis.detail
    (gave_up,) = link.of_type(GaveUp)
    assert isinstance(gave_up.error, UsageError) and gave_up.attempts == 1
    assert link.client.state is SocketState.CLOSED


def test_a_credential_callable_that_raises_is_a_failed_attempt(make_link: MakeLink) -> None:
    def token() -> str:
        raise ConnectionError("the token service is down")

    link = make_link(auth_token=token)
    link.connect()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_ERROR
    assert dis.detail == "handshake: ConnectionError: the token service is down"
    assert dis.retry_at is not None


def test_transport_opened_out_of_turn_is_a_usage_error() -> None:
    client = Client(URL)
    with pytest.raises(UsageError, match="transport_opened\\(\\) while idle"):
        client.transport_opened(0.0)


def test_inputs_without_a_stream_are_ignored() -> None:
    client = Client(URL)
    client.receive_data(0.0, b"whatever")  # no stream: ignored
    client.transport_closed(0.0, "nothing to close")  # idle: ignored
    client.handshake_refused(0.0, 403)  # not connecting: ignored
    assert drain(client) == []
    assert state(client) is SocketState.IDLE


def test_stream_closed_before_open_is_transport_closed() -> None:
    client = Client(URL, rng=Random(1))
    client.connect(0.0)
    drain(client)
    client.transport_closed(1.0)  # the stream ended before it was ever reported open
    (dis,) = drain(client)
    assert isinstance(dis, Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_CLOSED
    assert state(client) is SocketState.WAITING


def test_eof_during_the_handshake_is_a_network_failure() -> None:
    client = Client(URL, rng=Random(0))
    client.connect(0.0)
    client.transport_opened(0.0)
    drain(client)
    client.transport_closed(0.5)  # the peer hung up before answering the upgrade
    (dis,) = [o for o in drain(client) if isinstance(o, Disconnected)]
    assert dis.reason is DisconnectReason.TRANSPORT_CLOSED
    assert dis.detail == "closed during the handshake"


def test_connect_while_waiting_reconnects_at_once(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.drop()
    (dis,) = link.of_type(Disconnected)
    assert dis.retry_at is not None and dis.retry_at > link.now
    assert state(link.client) is SocketState.WAITING
    link.connect()
    assert state(link.client) is SocketState.OPEN
    assert link.opens == 2
    # The reconnect timer is gone: nothing is due but the heartbeat.
    assert link.client.next_deadline() == link.now + 30.0


# --------------------------------------------------------------------------------------------
# Connect timeout


def test_connect_timeout_before_the_transport_opens() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=2.0)
    client = Client(URL, connect_timeout=3.0, retry=policy, rng=Random(5))
    client.connect(0.0)
    assert drain(client) == [OpenTransport("test", 80, False)]
    assert client.next_deadline() == 3.0
    client.handle_timer(2.9)
    assert drain(client) == []
    client.handle_timer(3.0)
    out = drain(client)
    assert out == [
        CloseTransport(1000, "connect timed out"),
        Disconnected(
            DisconnectReason.CONNECT_TIMEOUT,
            None,
            "connect timed out",
            3.0 + delays(policy, 5, [1])[0],
        ),
    ]


def test_connect_timeout_during_the_handshake() -> None:
    client = Client(URL, timeout=20.0, connect_timeout=4.0, rng=Random(5))
    client.connect(0.0)
    drain(client)
    client.transport_opened(0.5)
    assert state(client) is SocketState.HANDSHAKING
    (req,) = drain(client)
    assert isinstance(req, SendBytes)
    assert req.data.startswith(b"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n")
    client.handle_timer(4.0)
    out = drain(client)
    assert out[0] == CloseTransport(1000, "connect timed out")  # no close frame: not open yet
    assert isinstance(out[1], Disconnected)
    assert out[1].reason is DisconnectReason.CONNECT_TIMEOUT
    assert state(client) is SocketState.WAITING


# --------------------------------------------------------------------------------------------
# Heartbeat


def test_heartbeat_every_interval_and_rtt(make_link: MakeLink) -> None:
    link = make_link()
    link.server.heartbeat_replies = False  # answered by hand, to measure a round trip
    link.connect()
    link.advance(29.9)
    assert link.server_frames(event="heartbeat") == []
    link.advance(0.1)
    (hb,) = link.server_frames(event="heartbeat")
    assert (hb.join_ref, hb.topic, hb.payload) == (None, "phoenix", {})
    client = link.client
    assert client.last_heartbeat_rtt is None
    link.advance(0.25)
    assert link.connection is not None
    link.connection.reply(hb, "ok", {})
    link.pump()
    assert rtt(client) == pytest.approx(0.25)
    link.server.heartbeat_replies = True
    link.advance(60.0)
    assert len(link.server_frames(event="heartbeat")) == 3
    assert rtt(client) == 0.0  # answered at once
    assert link.of_type(Disconnected) == []


def test_heartbeat_cadence_is_not_reset_by_traffic(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("room")
    for _ in range(12):  # a push every 10 s, both ways
        link.advance(10.0)
        link.push("room", "ping", {})
        link.server.push("room", "tick", {})
        link.pump()
    assert len(link.of_type(MessageReceived)) == 12
    heartbeats = link.server_frames(event="heartbeat")
    assert len(heartbeats) == 4  # at 30, 60, 90 and 120 exactly
    assert link.client.next_deadline() == 150.0
    # Each heartbeat has its own ref, never reused.
    refs = [m.ref for m in link.server_frames()]
    assert len(refs) == len(set(refs))


def test_late_timer_call_sends_one_heartbeat_not_a_burst(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    assert link.client.next_deadline() == 30.0
    # The driver wakes up very late.
    link.clock.now = 95.0
    link.client.handle_timer(95.0)
    link.pump()
    assert len(link.server_frames(event="heartbeat")) == 1
    assert link.client.next_deadline() == 125.0  # now + interval, not 60
    # A little late: the cadence keeps its phase.
    link.clock.now = 130.0
    link.client.handle_timer(130.0)
    link.pump()
    assert len(link.server_frames(event="heartbeat")) == 2
    assert link.client.next_deadline() == 155.0


def test_heartbeat_timeout_closes_errors_channels_and_reconnects(make_link: MakeLink) -> None:
    policy = RetryPolicy(initial_backoff=2.0, max_backoff=8.0)
    link = make_link(retry=policy, seed=11)
    link.connect()
    link.join("a")
    link.join("b")
    link.server.heartbeat_replies = False
    link.take()
    conn = link.connection
    assert conn is not None
    link.advance(59.9)
    assert link.client.is_connected
    link.advance(0.1)  # the reply deadline of the heartbeat sent at 30
    events = link.take()
    assert events == [
        ChannelErrored("a", "heartbeat_timeout"),
        ChannelErrored("b", "heartbeat_timeout"),
        Disconnected(
            DisconnectReason.HEARTBEAT_TIMEOUT,
            None,
            "heartbeat timeout",
            60.0 + delays(policy, 11, [1])[0],
        ),
    ]
    # The client sent a WebSocket close before closing the stream.
    assert conn.close_code == 1000
    assert conn.close_reason == "heartbeat timeout"
    link.server.heartbeat_replies = True
    link.advance_until(Connected)
    link.advance(0.0)
    joined = link.of_type(Joined)
    assert [(j.topic, j.rejoin) for j in joined] == [("a", True), ("b", True)]


def test_heartbeat_timeout_is_separate_from_the_interval(make_link: MakeLink) -> None:
    link = make_link(heartbeat_interval=30.0, heartbeat_timeout=5.0)
    link.server.heartbeat_replies = False
    link.connect()
    link.advance(34.9)
    assert link.client.is_connected
    link.advance(0.1)
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.HEARTBEAT_TIMEOUT
    assert link.now == 35.0


def test_heartbeat_timeout_longer_than_the_interval_skips_heartbeats(make_link: MakeLink) -> None:
    link = make_link(heartbeat_interval=10.0, heartbeat_timeout=25.0)
    link.server.heartbeat_replies = False
    link.connect()
    link.advance(34.9)
    # One heartbeat at 10; at 20 and 30 the first is still unanswered, so none is added.
    assert len(link.server_frames(event="heartbeat")) == 1
    assert link.client.is_connected
    link.advance(0.1)
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.HEARTBEAT_TIMEOUT


def test_heartbeat_off(make_link: MakeLink) -> None:
    link = make_link(heartbeat_interval=None)
    link.connect()
    assert link.client.next_deadline() is None
    link.advance(3600.0)
    assert link.server_frames(event="heartbeat") == []
    assert link.client.last_heartbeat_rtt is None
    assert link.client.is_connected
    link.drop()
    link.advance_until(Connected)
    assert link.client.next_deadline() is None


# --------------------------------------------------------------------------------------------
# Reconnect and backoff


def test_backoff_doubles_with_jitter_and_caps(make_link: MakeLink) -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    link = make_link(retry=policy, seed=1234)
    link.connect()
    link.network_up = False
    link.advance(5.0)
    link.drop()  # at t=5; every reconnect attempt then fails at once
    link.advance(200.0)
    dis = link.of_type(Disconnected)
    assert len(dis) > 10
    # Each attempt fails at the previous retry_at; the gaps are the drawn delays, exactly.
    starts = [5.0] + [d.retry_at for d in dis[:-1]]
    gaps = [
        d.retry_at - s
        for d, s in zip(dis, starts, strict=True)
        if d.retry_at is not None and s is not None
    ]
    expected = delays(policy, 1234, list(range(1, len(dis) + 1)))
    assert gaps == pytest.approx(expected)
    assert dis[0].retry_at == 5.0 + expected[0]
    for attempt, gap in enumerate(gaps, start=1):
        base = min(8.0, 2.0 ** (attempt - 1))  # 1, 2, 4, 8, 8, ...
        assert 0.5 * base <= gap < base
    assert dis[0].detail == "connection reset by peer"
    assert {d.detail for d in dis[1:]} == {"connection refused"}
    assert {d.reason for d in dis} == {DisconnectReason.TRANSPORT_ERROR}
    assert link.of_type(GaveUp) == []


def test_attempts_reset_after_a_successful_open(make_link: MakeLink) -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=16.0, jitter=False)
    link = make_link(retry=policy)
    link.connect()
    link.network_up = False
    link.drop()
    link.advance(1.0 + 2.0 + 4.0 - 0.001)  # attempts 1, 2 failed; 3 is pending
    gaps = [d.retry_at for d in link.of_type(Disconnected)]
    assert gaps == [1.0, 3.0, 7.0]
    link.network_up = True
    link.advance(0.001)
    assert link.client.is_connected
    link.advance(policy.stable_after)  # the connection proves itself
    link.take()
    link.drop()  # the count starts again: 1 s, not 8 s
    (dis,) = link.of_type(Disconnected)
    assert dis.retry_at == link.now + 1.0


def test_a_server_that_drops_every_connection_at_once_meets_the_backoff(
    make_link: MakeLink,
) -> None:
    # Accept-then-drop is a failure loop, not a recovery: the backoff keeps growing and the
    # attempt limit applies (a reset on every successful open would reconnect forever, fast).
    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, max_backoff=16.0, jitter=False)
    link = make_link(retry=policy)
    link.connect()
    delays = []
    for _ in range(3):
        link.drop()
        (dis,) = link.take(Disconnected)
        assert dis.retry_at is not None
        delays.append(dis.retry_at - link.now)
        link.advance_to(dis.retry_at)
        assert link.client.is_connected
    assert delays == [1.0, 2.0, 4.0]
    link.drop()
    assert [type(e) for e in link.take() if isinstance(e, (Disconnected, GaveUp, Closed))] == [
        Disconnected,
        GaveUp,
        Closed,
    ]


def test_max_attempts_gives_up_and_fails_everything(make_link: MakeLink) -> None:
    policy = RetryPolicy(max_attempts=2, initial_backoff=1.0, max_backoff=1.0, jitter=False)
    link = make_link(retry=policy)
    link.connect()
    link.join("a")
    link.join("b")
    answered = link.push("a", "answered", {})
    link.server.reply_delay = 100.0  # the next reply is held back
    in_flight = link.push("a", "held", {})
    assert link.take(ReplyReceived) == [ReplyReceived("a", answered, "ok", {})]
    link.network_up = False
    link.drop()
    buffered = link.push("b", "later", {})
    assert link.take()[0] == PushFailed("a", in_flight, PushFailure.CONNECTION_LOST, True)
    link.advance(10.0)
    events = link.take()
    assert [type(e).__name__ for e in events] == [
        "Disconnected",  # attempt 2 fails: retry
        "Disconnected",  # attempt 3 would exceed max_attempts
        "GaveUp",
        "ChannelClosed",
        "PushFailed",
        "ChannelClosed",
        "Closed",
    ]
    assert events[1] == Disconnected(DisconnectReason.TRANSPORT_ERROR, None, "connection refused")
    assert events[2] == GaveUp(DisconnectReason.TRANSPORT_ERROR, 3, None, "connection refused")
    assert events[3] == ChannelClosed("a", ChannelCloseReason.SOCKET_CLOSED)
    assert events[4] == PushFailed("b", buffered, PushFailure.SOCKET_CLOSED, False)
    assert events[5] == ChannelClosed("b", ChannelCloseReason.SOCKET_CLOSED)
    assert link.opens == 3
    client = link.client
    assert state(client) is SocketState.CLOSED
    assert client.topics == ()
    assert client.next_deadline() is None
    with pytest.raises(ClientClosedError):
        client.connect(link.now)
    with pytest.raises(ClientClosedError):
        client.join(link.now, "c")
    with pytest.raises(ClientClosedError):
        client.push(link.now, "a", "x")
    with pytest.raises(ClientClosedError):
        client.leave(link.now, "a")
    client.close(link.now)  # a no-op
    assert drain(client) == []


def test_retry_none_never_reconnects(make_link: MakeLink) -> None:
    link = make_link(retry=None)
    link.connect()
    link.join("a")
    link.take()
    link.drop()
    assert link.take() == [
        ChannelErrored("a", "transport_error"),
        Disconnected(DisconnectReason.TRANSPORT_ERROR, None, "connection reset by peer"),
        GaveUp(DisconnectReason.TRANSPORT_ERROR, 1, None, "connection reset by peer"),
        ChannelClosed("a", ChannelCloseReason.SOCKET_CLOSED),
        Closed(),
    ]
    link.advance(1000.0)
    assert link.opens == 1


def test_retry_none_gives_up_on_a_refused_handshake(make_link: MakeLink) -> None:
    link = make_link(retry=None)
    link.server.refuse_handshake = 403
    link.connect()
    assert [type(e) for e in link.take()] == [HandshakeRefused, Disconnected, GaveUp, Closed]


# --------------------------------------------------------------------------------------------
# Close codes from the server


def test_server_close_1001_reconnects(make_link: MakeLink) -> None:
    policy = RetryPolicy()
    link = make_link(retry=policy, seed=8)
    link.connect()
    link.advance(1.0)
    conn = link.connection
    assert conn is not None
    conn.close(1001, "going away")
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis == Disconnected(
        DisconnectReason.SERVER_CLOSED, 1001, "going away", 1.0 + delays(policy, 8, [1])[0]
    )
    assert conn.closed  # the client answered the close
    link.advance_until(Connected)
    assert link.client.is_connected


def test_server_close_1008_is_final(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("a")
    link.take()
    assert link.connection is not None
    link.connection.close(1008, "policy")
    link.pump()
    assert link.take() == [
        ChannelErrored("a", "server_closed"),
        Disconnected(DisconnectReason.SERVER_CLOSED, 1008, "policy"),
        GaveUp(DisconnectReason.SERVER_CLOSED, 1, 1008, "policy"),
        ChannelClosed("a", ChannelCloseReason.SOCKET_CLOSED),
        Closed(),
    ]
    assert state(link.client) is SocketState.CLOSED


def test_final_close_codes_are_configurable(make_link: MakeLink) -> None:
    link = make_link(retry=RetryPolicy(final_close_codes=frozenset({4001})))
    link.connect()
    assert link.connection is not None
    link.connection.close(1008)
    link.pump()
    assert link.of_type(GaveUp) == []
    link.advance_until(Connected)
    assert link.connection is not None
    link.connection.close(4001)
    link.pump()
    assert len(link.of_type(GaveUp)) == 1


def test_server_close_1012_retries_quickly(make_link: MakeLink) -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=30.0)
    link = make_link(retry=policy, seed=21)
    link.connect()
    assert link.connection is not None
    link.connection.close(1012, "restart")
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.retry_at == delays(policy, 21, [1])[0]


def test_close_1012_uses_the_first_delay_even_after_failed_attempts() -> None:
    # Only a transport with its own WebSocket can see a close code before the open completes.
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=30.0, jitter=False)
    client = Client(URL, engine=None, retry=policy)
    client.connect(0.0)
    drain(client)
    for _ in range(3):
        client.transport_closed(client.next_deadline() or 0.0, "refused")
        drain(client)
        now = client.next_deadline()
        assert now is not None
        client.handle_timer(now)
        drain(client)
    client.transport_closed(100.0, code=1012, reason="restart")
    (dis,) = drain(client)
    assert dis == Disconnected(DisconnectReason.SERVER_CLOSED, 1012, "restart", 101.0)
    # Compare: a plain failure at this point waits 16 s (attempt 5).
    client.handle_timer(101.0)
    drain(client)
    client.transport_closed(102.0, "refused")
    assert drain(client) == [
        Disconnected(DisconnectReason.TRANSPORT_ERROR, None, "refused", 102.0 + 16.0)
    ]


def test_server_close_1013_waits_max_backoff(make_link: MakeLink) -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=45.0, jitter=False)
    link = make_link(retry=policy)
    link.connect()
    link.advance(2.0)
    assert link.connection is not None
    link.connection.close(1013, "try again later")
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.retry_at == 47.0
    link.advance(44.9)
    assert link.opens == 1
    link.advance(0.1)
    assert link.opens == 2


def test_server_close_1013_is_jittered(make_link: MakeLink) -> None:
    # An overloaded server that sheds its clients must not get them all back at one instant.
    waits = set()
    for seed in range(4):
        link = make_link(seed=seed, retry=RetryPolicy(initial_backoff=1.0, max_backoff=40.0))
        link.connect()
        assert link.connection is not None
        link.connection.close(1013, "try again later")
        link.pump()
        (dis,) = link.of_type(Disconnected)
        assert dis.retry_at is not None
        assert 20.0 <= dis.retry_at - link.now < 40.0
        waits.add(dis.retry_at - link.now)
    assert len(waits) == 4


def test_close_frame_without_code(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    assert link.connection is not None
    link.connection = None
    link.client.receive_data(link.now, b"\x88\x00")  # a close frame with no code
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.SERVER_CLOSED
    assert dis.code == 1005


def test_stream_eof_after_open_is_transport_closed(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    conn = link.connection
    assert conn is not None
    link.connection = None
    link.client.transport_closed(link.now)  # a clean EOF, no error, no close frame
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_CLOSED
    assert dis.detail == "eof"
    assert dis.retry_at is not None


# --------------------------------------------------------------------------------------------
# Refused handshakes


def test_handshake_refused_is_reported_counted_and_given_up(make_link: MakeLink) -> None:
    policy = RetryPolicy(max_refusals=3, initial_backoff=1.0, max_backoff=1.0, jitter=False)
    link = make_link(retry=policy)
    link.server.refuse_handshake = 403
    link.connect()
    first = link.take()
    assert [type(e) for e in first] == [HandshakeRefused, Disconnected]
    refused = first[0]
    assert isinstance(refused, HandshakeRefused)
    assert refused.status_code == 403
    assert refused.body == b"Forbidden"
    assert ("content-type", "text/plain") in refused.headers
    assert first[1] == Disconnected(DisconnectReason.HANDSHAKE_REFUSED, None, "HTTP 403", 1.0)
    link.advance(10.0)
    events = link.take()
    assert [type(e) for e in events] == [
        HandshakeRefused,
        Disconnected,
        HandshakeRefused,
        Disconnected,
        GaveUp,
        Closed,
    ]
    assert events[4] == GaveUp(DisconnectReason.HANDSHAKE_REFUSED, 3, None, "HTTP 403")
    assert link.opens == 3


def test_eof_in_the_middle_of_a_refusal_still_reports_the_refusal() -> None:
    client = Client(URL, rng=Random(0))
    client.connect(0.0)
    client.transport_opened(0.0)
    drain(client)
    client.receive_data(0.1, b"HTTP/1.1 403 Forbidden\r\ncontent-length: 100\r\n\r\nbad tok")
    client.transport_closed(0.2)
    out = drain(client)
    (refused,) = [o for o in out if isinstance(o, HandshakeRefused)]
    assert (refused.status_code, refused.body) == (403, b"bad tok")
    (dis,) = [o for o in out if isinstance(o, Disconnected)]
    assert dis.reason is DisconnectReason.HANDSHAKE_REFUSED


def test_refusals_reset_after_a_successful_open(make_link: MakeLink) -> None:
    policy = RetryPolicy(max_refusals=3, initial_backoff=1.0, max_backoff=1.0, jitter=False)
    link = make_link(retry=policy)
    link.server.refuse_handshake = 401
    link.connect()
    link.advance(1.0)
    assert len(link.of_type(HandshakeRefused)) == 2
    link.server.refuse_handshake = None
    link.advance(1.0)
    assert link.client.is_connected
    link.server.refuse_handshake = 401
    link.drop()
    link.advance(2.0)  # two more refusals: 2 in a row, not 4
    assert len(link.of_type(HandshakeRefused)) == 4
    assert link.of_type(GaveUp) == []
    link.advance(1.0)
    assert len(link.of_type(HandshakeRefused)) == 5
    assert len(link.of_type(GaveUp)) == 1


def test_max_refusals_none_retries_like_any_failure(make_link: MakeLink) -> None:
    policy = RetryPolicy(max_refusals=None, max_attempts=6, initial_backoff=0.5, max_backoff=0.5)
    link = make_link(retry=policy)
    link.server.refuse_handshake = 403
    link.connect()
    link.advance(60.0)
    assert len(link.of_type(HandshakeRefused)) == 7
    (gave_up,) = link.of_type(GaveUp)
    assert gave_up.attempts == 7


def test_a_5xx_handshake_answer_is_retried_like_a_network_failure(make_link: MakeLink) -> None:
    # A load balancer answering 503 during a deploy must not exhaust max_refusals, which is
    # for answers a retry cannot change (a bad token: 401, 403).
    policy = RetryPolicy(max_refusals=2, initial_backoff=1.0, max_backoff=2.0, jitter=False)
    link = make_link(retry=policy)
    link.server.refuse_handshake = 503
    link.connect()
    link.advance(30.0)
    assert not link.of_type(GaveUp)
    assert len(link.of_type(HandshakeRefused)) > 5
    link.server.refuse_handshake = 403
    link.advance(10.0)
    (gave_up,) = link.of_type(GaveUp)
    assert gave_up.reason is DisconnectReason.HANDSHAKE_REFUSED
    assert [e.status_code for e in link.of_type(HandshakeRefused)][-2:] == [403, 403]


def test_bad_token_is_refused_by_the_server(make_link: MakeLink) -> None:
    link = make_link(auth_token="bad", retry=RetryPolicy(max_refusals=1))
    link.server.auth = lambda params, token: token == "good"
    link.connect()
    assert [type(e) for e in link.take()] == [HandshakeRefused, Disconnected, GaveUp, Closed]


# --------------------------------------------------------------------------------------------
# Broken streams and frames


def test_broken_websocket_stream_is_a_protocol_error_and_reconnects(make_link: MakeLink) -> None:
    link, conn = joined_to_a(make_link)
    # An unknown opcode with reserved bits set: no valid WebSocket frame.
    link.client.receive_data(link.now, b"\xff\x05garbage")
    link.pump()
    events = link.take()
    assert events[0] == ChannelErrored("a", "protocol_error")
    dis = events[1]
    assert isinstance(dis, Disconnected)
    assert dis.reason is DisconnectReason.PROTOCOL_ERROR
    assert dis.code == 1002
    assert dis.retry_at is not None
    assert conn.close_code == 1002  # the client named the failure in its close frame
    link.advance_until(Joined)
    assert link.client.is_connected


def test_oversized_message_is_a_protocol_error(make_link: MakeLink) -> None:
    link = make_link(max_message_size=200)
    link.connect()
    link.join("a")
    link.server.push("a", "big", {"x": "y" * 500})
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.PROTOCOL_ERROR
    assert dis.code == 1009
    assert link.of_type(MessageReceived) == []


def test_malformed_frames_are_dropped_and_counted(make_link: MakeLink) -> None:
    link, conn = joined_to_a(make_link)
    conn.send_raw("not json")
    conn.send_raw('["1", null, "a"]')
    conn.send_raw(b"\x09garbage")
    conn.send_raw("x" * 1000)
    link.pump()
    dropped = link.take()
    assert [type(e) for e in dropped] == [FrameDropped] * 4
    assert isinstance(dropped[0], FrameDropped)
    assert dropped[0].data == "not json"
    assert isinstance(dropped[2], FrameDropped)
    assert dropped[2].data == b"\x09garbage"
    assert isinstance(dropped[3], FrameDropped)
    assert len(dropped[3].data) == 256  # only the start is kept
    assert link.client.stats.malformed_frames == 4
    # The core keeps working.
    ref = link.push("a", "still", {"ok": True})
    assert link.take() == [ReplyReceived("a", ref, "ok", {"ok": True})]
    assert link.client.is_connected


@pytest.mark.parametrize(
    "frame",
    [
        '["1", 2, "a", "ev", {}]',  # a ref that is not a string
        '[1, null, "a", "ev", {}]',  # a join ref that is not a string
        '[null, null, 7, "ev", {}]',  # a topic that is not a string
        '[null, null, "a", null, {}]',  # an event that is not a string
        '["1", "9", "a", "phx_reply", {"status": 1}]',  # a reply without a string status
        '["1", "9", "a", "phx_reply", []]',  # a reply whose payload is not an object
        '{"topic": "a"}',  # valid JSON, not an array
        "[1, 2",  # not JSON at all
    ],
)
def test_a_frame_with_a_bad_field_is_dropped_with_the_reason(
    make_link: MakeLink, frame: str
) -> None:
    link, conn = joined_to_a(make_link)
    conn.send_raw(frame)
    link.pump()
    (dropped,) = link.take()
    assert isinstance(dropped, FrameDropped)
    assert dropped.data == frame
    assert dropped.detail  # says what is wrong
    assert link.client.stats.malformed_frames == 1
    assert link.client.is_connected


def test_a_well_formed_frame_is_decoded_in_place(
    make_link: MakeLink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The per-message path decodes a plain vsn 2.0.0 frame itself: the serializer's
    # decode_text (a call a message) is only for the frames it cannot take as they are.
    link, conn = joined_to_a(make_link)

    def not_called(self: V2Serializer, data: str) -> ChannelMessage:
        raise AssertionError(f"decode_text({data!r})")

    monkeypatch.setattr(V2Serializer, "decode_text", not_called)
    conn.send_raw('[null, null, "a", "ev", {"x": 1}]')
    conn.send_raw('["1", "7", "a", "phx_reply", {"status": "ok", "response": {}}]')
    link.pump()
    assert link.take() == [MessageReceived(ChannelMessage("a", "ev", {"x": 1}, None, None))]
    assert link.client.stats.malformed_frames == 0


def test_a_frame_with_more_than_five_elements_is_read_from_its_first_five(
    make_link: MakeLink,
) -> None:
    link, conn = joined_to_a(make_link)
    conn.send_raw('[null, null, "a", "ev", {"x": 1}, "extra"]')
    link.pump()
    (received,) = link.take()
    assert isinstance(received, MessageReceived)
    assert received.message == ChannelMessage("a", "ev", {"x": 1}, None, None)


def test_frames_for_unknown_topics_are_counted(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    assert link.connection is not None
    link.connection.broadcast("nobody:here", "ev", {})
    link.pump()
    assert link.of_type(MessageReceived) == []
    assert link.client.stats.unknown_topic_dropped == 1


# --------------------------------------------------------------------------------------------
# Clean close


def test_clean_close_leaves_every_channel_then_closes_1000(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("a")
    link.join("b")
    link.server.reply_delay = 1.0
    in_flight = link.push("a", "slow", {})
    link.server.refuse_joins["c"] = {"reason": "nope"}
    link.take()
    conn = link.connection
    assert conn is not None
    link.close()
    leaves = link.server_frames(event="phx_leave")
    assert [(m.topic, m.join_ref) for m in leaves] == [("a", "1"), ("b", "2")]
    assert conn.close_code == 1000
    assert conn.closed
    assert link.take() == [
        PushFailed("a", in_flight, PushFailure.SOCKET_CLOSED, True),
        ChannelClosed("a", ChannelCloseReason.SOCKET_CLOSED),
        ChannelClosed("b", ChannelCloseReason.SOCKET_CLOSED),
        Disconnected(DisconnectReason.CLIENT_CLOSED, 1000),
        Closed(),
    ]
    assert state(link.client) is SocketState.CLOSED
    assert link.client.next_deadline() is None
    assert link.connection is None
    link.close()  # again: a no-op
    assert link.take() == []


def test_close_leaves_only_channels_with_a_join_out(make_link: MakeLink) -> None:
    srv = PhoenixServer()
    srv.route("slow", on_join=lambda t, p, c: None)
    srv.route("*")
    link = make_link(server=srv)
    link.connect()
    link.join("joined")
    link.join("leaving")
    link.join("errored")
    link.join("slow")  # join sent, no reply: it gets a phx_leave too (it has a join_ref)
    assert link.connection is not None
    link.connection.send_error("errored")  # errored: no join of it is out
    link.pump()
    link.client.leave(link.now, "leaving")  # phx_leave out, its reply not yet read
    link.close()
    leaves = [(m.topic, m.join_ref) for m in link.server_frames(event="phx_leave")]
    assert leaves == [("leaving", "2"), ("joined", "1"), ("slow", "4")]
    assert {e.topic for e in link.of_type(ChannelClosed)} == {
        "joined",
        "leaving",
        "errored",
        "slow",
    }


def test_close_times_out_when_the_server_never_answers() -> None:
    client = Client(URL, close_timeout=2.0)
    srv = PhoenixServer()
    link = Link(client, srv)
    link.connect()
    conn = link.connection
    assert conn is not None
    client.close(5.0)
    out = drain(client)
    assert len(out) == 1 and isinstance(out[0], SendBytes)  # the close frame only
    assert state(client) is SocketState.CLOSING
    assert client.next_deadline() == 7.0
    with pytest.raises(ClientClosedError):
        client.join(5.0, "t")
    client.close(6.0)  # a no-op while closing
    assert drain(client) == []
    client.handle_timer(7.0)
    assert drain(client) == [
        CloseTransport(),
        Disconnected(DisconnectReason.CLIENT_CLOSED, 1000),
        Closed(),
    ]
    assert state(client) is SocketState.CLOSED


def test_close_while_closing_then_eof(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    client = link.client
    client.close(1.0)
    drain(client)  # the close frame is never delivered
    client.transport_closed(1.5)  # the stream just ends
    assert drain(client) == [
        CloseTransport(),
        Disconnected(DisconnectReason.CLIENT_CLOSED, 1000),
        Closed(),
    ]


def test_close_while_closing_then_transport_error(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    client = link.client
    client.close(1.0)
    drain(client)
    client.transport_closed(1.5, "reset")
    assert drain(client) == [Disconnected(DisconnectReason.CLIENT_CLOSED, 1000), Closed()]


def test_broken_stream_while_closing_finishes_the_close(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    client = link.client
    client.close(1.0)
    drain(client)
    client.receive_data(1.2, b"\xff\x05garbage")
    out = drain(client)
    assert out[-3:] == [
        CloseTransport(),
        Disconnected(DisconnectReason.CLIENT_CLOSED, 1000),
        Closed(),
    ]
    assert state(client) is SocketState.CLOSED


def test_messages_while_closing_are_dropped(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.join("a")
    conn = link.connection
    assert conn is not None
    client = link.client
    conn.push("a", "late", {})
    data = conn.data_to_send()
    client.close(1.0)
    drain(client)
    link.take()
    client.receive_data(1.1, data)
    assert [o for o in drain(client) if not isinstance(o, SendBytes)] == []
    assert client.stats.stale_dropped == 1  # no message is delivered after close()


def test_replies_that_arrive_during_the_close_handshake_count(make_link: MakeLink) -> None:
    # "Cancel everything, then shut down": Phoenix answers in order, so the reply to a push
    # sent before close() arrives before the server's close frame and must be reported.
    link = make_link()
    link.connect()
    link.join("orders")
    link.join("quiet")
    link.take()
    conn = link.connection
    assert conn is not None
    ref = link.client.push(link.now, "orders", "cancel_all", {})
    link.client.close(link.now)  # before the reply has been read
    link.pump()  # the server answers the push, then sees the leaves and the close
    assert link.take() == [
        ReplyReceived("orders", ref, "ok", {}),
        ChannelClosed("orders", ChannelCloseReason.SOCKET_CLOSED),
        ChannelClosed("quiet", ChannelCloseReason.SOCKET_CLOSED),
        Disconnected(DisconnectReason.CLIENT_CLOSED, 1000),
        Closed(),
    ]
    assert [m.event for m in conn.received[-2:]] == ["phx_leave", "phx_leave"]
    assert conn.close_code == 1000


def test_pushes_still_unanswered_at_the_close_frame_fail(make_link: MakeLink) -> None:
    link = make_link(close_timeout=2.0)
    link.connect()
    link.join("orders")
    link.server.reply_delay = 60.0  # never in time
    ref = link.push("orders", "slow", {})
    unsent = link.client.push(link.now, "orders", "x", {})  # sent at once: joined
    link.take()
    link.client.close(link.now)
    link.advance(3.0)
    events = link.take()
    assert PushFailed("orders", ref, PushFailure.SOCKET_CLOSED, True) in events
    assert PushFailed("orders", unsent, PushFailure.SOCKET_CLOSED, True) in events
    assert events[-1] == Closed()


def test_close_fails_pushes_still_waiting_for_their_join_at_once(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.client.join(link.now, "a")  # the join is out, its reply not yet read
    ref = link.client.push(link.now, "a", "queued", {})
    link.client.close(link.now)
    (failed,) = [o for o in drain(link.client) if isinstance(o, PushFailed)]
    assert failed == PushFailed("a", ref, PushFailure.SOCKET_CLOSED, False)


@pytest.mark.parametrize("when", ["idle", "waiting", "connecting", "handshaking"])
def test_close_before_open(make_link: MakeLink, when: str) -> None:
    link = make_link()
    client = link.client
    if when == "waiting":
        link.connect()
        link.drop()
    elif when in ("connecting", "handshaking"):
        client.connect(0.0)
        drain(client)
        if when == "handshaking":
            client.transport_opened(0.0)
            drain(client)
    client.join(link.now, "a")
    ref = client.push(link.now, "a", "queued")
    link.take()
    client.close(link.now, 1000, "bye")
    out = drain(client)
    expected: list[Output] = [
        PushFailed("a", ref, PushFailure.SOCKET_CLOSED),
        ChannelClosed("a", ChannelCloseReason.SOCKET_CLOSED),
    ]
    if when in ("connecting", "handshaking"):
        expected.append(CloseTransport(1000, "bye"))
    expected += [Disconnected(DisconnectReason.CLIENT_CLOSED, 1000), Closed()]
    assert out == expected
    assert state(client) is SocketState.CLOSED
    assert client.next_deadline() is None


@pytest.mark.parametrize("code", [999, 5000, 0, 1004, 1005, 1006, 1015, 2000, 2999])
@pytest.mark.parametrize("engine", ["wsproto", "message mode"])
def test_close_with_a_bad_code_changes_nothing(make_link: MakeLink, code: int, engine: str) -> None:
    # Regression: the engine refused the code only after the channels were closed, which left
    # the client in CLOSING for ever, with no close frame and no deadline.
    if engine == "wsproto":
        link = make_link()
        link.connect()
        link.join("a")
        client = link.client
    else:
        client = Client(URL, engine=None)
        client.connect(0.0)
        client.transport_opened(0.0)
        client.join(0.0, "a")
    drain(client)
    deadline = client.next_deadline()
    with pytest.raises(UsageError, match=f"close code {code} cannot be sent"):
        client.close(1.0, code)
    assert state(client) is SocketState.OPEN
    assert client.topics == ("a",)
    assert client.next_deadline() == deadline
    assert drain(client) == []
    client.close(1.0, 4999)
    assert isinstance(drain(client)[-1], (SendBytes, Closed))


# --------------------------------------------------------------------------------------------
# External WebSocket: message mode


def _reply(topic: str, ref: str, join_ref: str | None, status: str, response: Any) -> str:
    return json.dumps([join_ref, ref, topic, "phx_reply", {"status": status, "response": response}])


def test_message_mode_end_to_end() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=1.0, jitter=False)
    client = Client(URL, engine=None, retry=policy, params={"a": 1}, auth_token="1234")
    client.connect(0.0)
    assert drain(client) == [OpenTransport("test", 80, False)]
    req = client.handshake_request()
    assert req.url == "ws://test/socket/websocket?a=1&vsn=2.0.0"
    assert req.subprotocols == ("phoenix", "base64url.bearer.phx.MTIzNA")
    client.transport_opened(0.1)  # the transport did the upgrade
    assert drain(client) == [Connected(None)]
    assert client.is_connected

    client.join(0.2, "room", {"since": 0})
    assert drain(client) == [SendMessage('["1","1","room","phx_join",{"since":0}]')]
    client.receive_message(0.3, _reply("room", "1", "1", "ok", {"hello": 1}))
    assert drain(client) == [Joined("room", {"hello": 1}, "1")]

    ref = client.push(0.4, "room", "bin", b"\x01\x02")
    (frame,) = drain(client)
    assert isinstance(frame, SendMessage) and isinstance(frame.data, bytes)
    assert ref == "2"
    # A binary reply (kind 1): join_ref "1", ref "2", topic "room", status "ok".
    binary_reply = bytes([1, 1, 1, 4, 2]) + b"1" + b"2" + b"room" + b"ok" + b"\xff"
    client.receive_message(0.5, binary_reply)
    assert drain(client) == [ReplyReceived("room", "2", "ok", b"\xff")]
    client.receive_data(0.5, b"ignored in message mode")
    assert drain(client) == []

    client.handle_timer(30.1)
    (hb,) = drain(client)
    assert hb == SendMessage('[null,"3","phoenix","heartbeat",{}]')
    client.receive_message(30.2, _reply("phoenix", "3", None, "ok", {}))
    assert drain(client) == []
    assert client.last_heartbeat_rtt == pytest.approx(0.1)

    # The transport saw a close frame.
    client.transport_closed(31.0, code=1001, reason="bye")
    assert drain(client) == [
        ChannelErrored("room", "server_closed"),
        Disconnected(DisconnectReason.SERVER_CLOSED, 1001, "bye", 32.0),
    ]
    client.receive_message(31.5, _reply("room", "9", "1", "ok", {}))  # not open: ignored
    assert drain(client) == []
    client.handle_timer(32.0)
    assert drain(client) == [OpenTransport("test", 80, False)]
    client.handshake_refused(32.1, 403, (("x", "y"),), b"no")
    assert drain(client) == [
        HandshakeRefused(403, (("x", "y"),), b"no"),
        CloseTransport(),
        Disconnected(DisconnectReason.HANDSHAKE_REFUSED, None, "HTTP 403", 33.1),
    ]
    client.handle_timer(33.1)
    drain(client)
    client.transport_opened(33.2)
    out = drain(client)
    assert out == [Connected(None), SendMessage('["4","4","room","phx_join",{"since":0}]')]
    client.receive_message(33.3, _reply("room", "4", "4", "ok", {}))
    assert drain(client) == [Joined("room", {}, "4", rejoin=True)]

    client.close(34.0, 1000, "done")
    assert drain(client) == [
        SendMessage('["4","5","room","phx_leave",{}]'),
        ChannelClosed("room", ChannelCloseReason.SOCKET_CLOSED),
        CloseTransport(1000, "done"),
        Disconnected(DisconnectReason.CLIENT_CLOSED, 1000),
        Closed(),
    ]


def test_message_mode_heartbeat_timeout_asks_the_transport_to_close() -> None:
    client = Client(URL, engine=None, heartbeat_interval=5.0, rng=Random(0))
    client.connect(0.0)
    client.transport_opened(0.0)
    drain(client)
    client.handle_timer(5.0)
    drain(client)
    client.handle_timer(10.0)
    out = drain(client)
    assert out[0] == CloseTransport(1000, "heartbeat timeout")
    assert isinstance(out[1], Disconnected)
    assert out[1].reason is DisconnectReason.HEARTBEAT_TIMEOUT


def test_message_mode_plain_stream_end() -> None:
    client = Client(URL, engine=None, rng=Random(0))
    client.connect(0.0)
    client.transport_opened(0.0)
    drain(client)
    client.transport_closed(1.0)
    (dis,) = drain(client)
    assert isinstance(dis, Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_CLOSED


def test_receive_message_needs_message_mode() -> None:
    client = Client(URL)
    with pytest.raises(UsageError, match="engine=None"):
        client.receive_message(0.0, "[]")


# --------------------------------------------------------------------------------------------
# A custom engine


class QuietEofEngine(WsprotoEngine):
    """An engine that reports nothing at the end of the stream (allowed by the interface)."""

    __slots__ = ()

    def receive_eof(self) -> list[WsEvent]:
        return []


def _quiet_link(make_link: MakeLink) -> Link:
    factory: EngineFactory = QuietEofEngine
    return make_link(engine=factory)


def test_engine_with_a_silent_eof_still_ends_the_connection(make_link: MakeLink) -> None:
    link = _quiet_link(make_link)
    link.connect()
    assert link.client.is_connected
    link.connection = None
    link.client.transport_closed(link.now)
    link.pump()
    (dis,) = link.of_type(Disconnected)
    assert dis.reason is DisconnectReason.TRANSPORT_CLOSED
    assert dis.detail == ""


def test_engine_with_a_silent_eof_while_closing(make_link: MakeLink) -> None:
    link = _quiet_link(make_link)
    link.connect()
    client = link.client
    client.close(1.0)
    drain(client)
    client.transport_closed(1.5)
    assert drain(client) == [Disconnected(DisconnectReason.CLIENT_CLOSED, 1000), Closed()]


def test_handshake_invalid_is_a_no_op_unless_connecting(make_link: MakeLink) -> None:
    link = make_link()
    link.connect()
    link.client.handshake_invalid(link.now, UsageError("late"))  # open: nothing happens
    assert link.client.is_connected and not link.of_type(GaveUp)


def test_a_message_after_frames_written_in_the_same_read_comes_after_them(
    make_link: MakeLink,
) -> None:
    # One read brings the join's reply (which flushes the push buffered while joining) and a
    # broadcast: the push's bytes must come out before the message, as they happened.
    link = make_link()
    link.connect()
    client, conn = link.client, link.connection
    assert conn is not None
    client.join(link.now, "room")
    ref = client.push(link.now, "room", "early", {"n": 1})  # buffered: not joined yet
    while type(out := client.next_event()) is not SleepUntil:
        assert type(out) is SendBytes
        conn.receive_data(out.data, link.now)  # the join (the push waits for its reply)
    conn.broadcast("room", "tick", {"n": 2})
    client.receive_data(link.now, conn.data_to_send())  # the reply and the broadcast at once
    outputs = drain(client)
    assert [type(out).__name__ for out in outputs] == ["Joined", "SendBytes", "MessageReceived"]
    sent = outputs[1]
    assert type(sent) is SendBytes
    conn.receive_data(sent.data, link.now)
    assert [m.ref for m in conn.received if m.event == "early"] == [ref]


def test_an_engine_of_ones_own_may_give_str_subclasses_and_bytearrays(
    make_link: MakeLink,
) -> None:
    class Text(str):
        pass

    link = make_link()
    link.connect()
    link.join("room")
    link.take()
    client = link.client
    text = json.dumps([client.join_ref("room"), None, "room", "tick", {"n": 1}])
    binary = bytearray(encode_broadcast_binary("room", "blob", b"\x00\x01"))
    events: list[Any] = [Text(text), binary]  # bytearray: outside WsEvent, taken anyway
    client._on_ws_events(link.now, events)
    received = [out for out in drain(client) if type(out) is MessageReceived]
    assert [(m.message.event, m.message.payload) for m in received] == [
        ("tick", {"n": 1}),
        ("blob", b"\x00\x01"),
    ]
