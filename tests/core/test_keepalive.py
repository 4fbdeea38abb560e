"""Channel pings on the virtual clock (stx_proto._keepalive): on schedule on every pinged
channel, never on the excluded topics, and with cancel-on-disconnect no gap between pings
longer than the granted time, across drops, reconnects and rejoins."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from stx_proto import (
    ChannelPingFailed,
    Client,
    Connected,
    Joined,
    RetryPolicy,
    UsageError,
    answers_channel_ping,
    load_private_key,
    sign_request,
)
from stx_proto._keepalive import Keepalive, PingPlan
from stx_proto.testing import Link, PhoenixServer, ServerConnection, StxServer

FAST = RetryPolicy(initial_backoff=0.5, max_backoff=0.5, jitter=False)
T0 = 1_700_000_000.0
USER = "u-1"
ORDERS = f"orders:{USER}"


def recording(server: PhoenixServer, link_now: Any) -> list[tuple[str, float]]:
    """Route every topic; record (topic, time) of each ping the server receives."""
    pings: list[tuple[str, float]] = []

    def on_push(msg: Any, conn: ServerConnection) -> tuple[str, Any]:
        if msg.event == "ping":
            pings.append((msg.topic, link_now()))
        return "ok", {}

    server.route("*", on_push=on_push)
    return pings


def test_pings_go_out_on_schedule_and_never_on_excluded_topics() -> None:
    server = PhoenixServer()
    client = Client(
        "ws://test/socket",
        heartbeat_interval=None,
        channel_ping_interval=30.0,
        channel_ping_skip=lambda topic: not answers_channel_ping(topic),
    )
    link = Link(client, server)
    pings = recording(server, lambda: link.now)
    link.connect()
    for topic in ("orderbook", "market:42", "rfq:u", "trades"):
        link.join(topic)
    link.join("quiet", ping=None)  # a channel's own choice beats the client's
    link.join("fast", ping=10.0)
    link.advance(95.0)
    by_topic: dict[str, list[float]] = {}
    for topic, at in pings:
        by_topic.setdefault(topic, []).append(at)
    assert by_topic == {
        "orderbook": [30.0, 60.0, 90.0],
        "trades": [30.0, 60.0, 90.0],
        "fast": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0],
    }
    assert client.stats.ping_failures == 0 and client.stats.stale_dropped == 0
    with pytest.raises(UsageError, match="ping must be > 0"):
        client.join(link.now, "bad", ping=0)


def test_a_failed_ping_is_counted_and_reported_not_fatal() -> None:
    server = PhoenixServer()
    server.route("*", on_push=lambda msg, conn: ("error", {"reason": "no"}))
    server.route("slow:*")
    client = Client("ws://test/socket", heartbeat_interval=None, channel_ping_interval=5.0)
    link = Link(client, server)
    link.connect()
    link.join("a")
    link.advance(5.0)
    (failed,) = link.take(ChannelPingFailed)
    assert failed == ChannelPingFailed("a", "error", {"reason": "no"}, None)
    server.reply_delay = 60.0  # the next pings are not answered in time
    link.advance(5.0 + 10.0)
    timed_out = link.take(ChannelPingFailed)
    assert timed_out and timed_out[0] == ChannelPingFailed("a", "timeout", None, 10.0)
    assert client.stats.ping_failures == 1 + len(timed_out)
    assert client.channel_state("a").value == "joined"  # never fatal


def test_pings_stop_when_the_channel_leaves_errors_or_the_connection_drops() -> None:
    server = PhoenixServer()
    client = Client("ws://test/socket", heartbeat_interval=None, channel_ping_interval=5.0)
    link = Link(client, server)
    pings = recording(server, lambda: link.now)
    link.connect()
    link.join("a")
    link.join("b")
    link.advance(5.0)
    client.leave(link.now, "a")
    link.pump()
    link.server.connections[0].send_error("b")  # b errors: its pings stop until it rejoins
    link.pump()
    count = len(pings)
    link.advance(0.9)  # b rejoins after its backoff (1 s at most): its cadence restarts
    link.advance(0.2)
    assert len(pings) == count
    assert Keepalive.plan_for(lambda reply: None, {}, 1.0) is None


def _cod_rig() -> tuple[StxServer, Link]:
    server = StxServer(clock=lambda: T0 + link.now)
    key_id, pem = server.new_api_key(USER)
    key = load_private_key(pem)

    def headers() -> Any:
        return sign_request(key_id, key, int((T0 + link.now) * 1000))

    def granted(reply: Any) -> PingPlan:
        seconds = reply["ping_timeout"] / 1000
        return PingPlan(0.6 * seconds, seconds)

    client = Client("ws://stx.test/socket", headers=headers, heartbeat_interval=None, retry=FAST)
    link = Link(client, server)
    link.connect()
    assert link.of_type(Connected)
    link.join(ORDERS, {"cancel_on_disconnect": True, "ping_timeout": 10_000}, ping=granted)
    return server, link


def test_cancel_on_disconnect_is_never_triggered_across_drops_and_rejoins() -> None:
    server, link = _cod_rig()
    assert link.of_type(Joined)[0].response["ping_timeout"] == 10_000
    granted = 10.0
    # Each round: 20 s joined, in 0.1 s steps, noting when the server sees a ping; then the
    # network cuts the connection, and the client reconnects and rejoins.
    marks: list[tuple[str, float]] = [("joined", link.now)]
    seen = 0
    for _ in range(4):
        for _ in range(200):
            link.advance(0.1)
            count = sum(m.event == "ping" for c in server.all_connections for m in c.received)
            if count > seen:
                marks.extend(("ping", link.now) for _ in range(count - seen))
                seen = count
        marks.append(("drop", link.now))
        link.drop()
        joined = link.advance_until(Joined)
        assert joined.rejoin
        marks.append(("joined", link.now))
    # From each (re)join reply to the next drop, no gap between pings exceeds the grant.
    gaps = [
        b[1] - a[1]
        for a, b in itertools.pairwise(marks)
        if a[0] in ("joined", "ping") and b[0] in ("ping", "drop")
    ]
    assert gaps and max(gaps) <= 0.6 * granted + 0.1 < granted
    assert server.cancellations == []  # nothing was cancelled, drops and rejoins included
    assert link.client.stats.ping_failures == 0


def test_a_ping_in_flight_is_forgotten_when_its_channel_stops() -> None:
    server = PhoenixServer()
    server.route("*")
    client = Client("ws://test/socket", heartbeat_interval=None, channel_ping_interval=5.0)
    link = Link(client, server)
    link.connect()
    link.join("a")
    server.reply_delay = 60.0  # the ping goes out and is not answered
    link.advance(5.0)
    client.leave(link.now, "a", timeout=1.0)
    link.advance(30.0)  # no ping timeout is reported for a channel that is gone
    assert not link.of_type(ChannelPingFailed)
    assert client.stats.ping_failures == 0
