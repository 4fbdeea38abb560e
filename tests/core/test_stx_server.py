"""The STX test server on the virtual clock: 401s, channels, filters, watches, pings and
cancel-on-disconnect."""

from __future__ import annotations

import base64
import sys
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stx_proto import (
    ChannelErrored,
    Client,
    Connected,
    HandshakeRefused,
    Joined,
    JoinFailed,
    MessageReceived,
    ReplyReceived,
    RetryPolicy,
    UsageError,
)
from stx_proto._stx_auth import load_private_key, oauth_headers, sign_request
from stx_proto.testing import Cancellation, Link, PhoenixServer, StxServer

T0 = 1_700_000_000.0  # the Unix time at virtual time 0
USER = "u-1"
FAST = RetryPolicy(initial_backoff=0.5, max_backoff=0.5, jitter=False)


class Rig:
    """An StxServer and a Link whose client signs with ``headers`` at every connect."""

    def __init__(
        self,
        headers: Any = None,
        *,
        skew: float = 0.0,
        params: Any = None,
        retry: RetryPolicy | str | None = "fast",
        url: str = "ws://stx.test/socket",
    ) -> None:
        self.skew = skew  # seconds the client's wall clock is off
        self.sign: Any = None  # when set, headers are made by it at every connect
        self.headers = headers
        self.server = StxServer(clock=lambda: T0 + self.link.now)
        client = Client(
            url,
            headers=self._headers,
            params=params,
            heartbeat_interval=None,
            retry=FAST if retry == "fast" else retry,  # type: ignore[arg-type]
        )
        self.link = Link(client, self.server)

    def _headers(self) -> Any:
        if self.sign is not None:
            return self.sign()
        return self.headers() if callable(self.headers) else self.headers

    def wall_ms(self) -> int:
        return int((T0 + self.link.now + self.skew) * 1000)

    def signer(self, key_id: str, pem: str) -> Any:
        key = load_private_key(pem)
        return lambda: sign_request(key_id, key, self.wall_ms())

    @property
    def conn(self) -> Any:
        assert self.link.connection is not None
        return self.link.connection

    def replies(self) -> list[ReplyReceived]:
        return self.link.take(ReplyReceived)


def signed_rig(user: str = USER, **kwargs: Any) -> Rig:
    rig = Rig(**kwargs)
    key_id, pem = rig.server.new_api_key(user)
    rig.sign = rig.signer(key_id, pem)
    return rig


def connected(rig: Rig) -> Rig:
    rig.link.connect()
    assert rig.link.of_type(Connected), rig.link.events
    return rig


# ------------------------------------------------------------------------------------------
# Handshake


def test_an_api_key_signature_is_verified_and_names_the_user() -> None:
    rig = connected(signed_rig())
    assert rig.server.user_of(rig.conn) == USER
    headers = dict(rig.conn.request_headers)
    assert headers["x-stx-access-timestamp"] == str(int(T0 * 1000))
    rig.link.join(f"orders:{USER}")
    assert rig.link.of_type(Joined)[0].response == {}


def test_a_bad_signature_is_refused_with_401() -> None:
    rig = Rig(retry=None)
    key_id, _ = rig.server.new_api_key(USER)
    _, other_pem = rig.server.new_api_key("someone-else")
    rig.sign = rig.signer(key_id, other_pem)
    rig.link.connect()
    assert [e.status_code for e in rig.link.of_type(HandshakeRefused)] == [401]
    assert rig.link.connections[0].errors == ["401: bad signature"]
    assert rig.link.connections[0].rejected_status == 401


@pytest.mark.parametrize(
    ("skew", "accepted"), [(0.0, True), (29.9, True), (-29.9, True), (30.5, False), (-31, False)]
)
def test_the_timestamp_window_is_30_s(skew: float, accepted: bool) -> None:
    rig = signed_rig(skew=skew, retry=None)
    rig.link.connect()
    assert bool(rig.link.of_type(Connected)) is accepted
    if not accepted:
        assert rig.link.connections[0].errors == ["401: stale timestamp"]


def test_a_reconnect_signs_afresh() -> None:
    rig = connected(signed_rig())
    rig.link.advance(100)  # far beyond the window: a replayed signature would be stale
    rig.link.drop()
    rig.link.advance_until(Connected)
    stamps = [dict(c.request_headers)["x-stx-access-timestamp"] for c in rig.link.connections]
    assert len(stamps) == 2 and stamps[0] != stamps[1]
    assert rig.server.user_of(rig.link.connections[1]) == USER


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ((("X-STX-ACCESS-KEY", "key-1"),), "missing x-stx-access-timestamp header"),
        (
            (
                ("X-STX-ACCESS-KEY", "nope"),
                ("X-STX-ACCESS-TIMESTAMP", "1"),
                ("X-STX-ACCESS-SIGNATURE", "AA=="),
            ),
            "unknown key id",
        ),
        (
            (
                ("X-STX-ACCESS-KEY", "key-1"),
                ("X-STX-ACCESS-TIMESTAMP", "-5"),
                ("X-STX-ACCESS-SIGNATURE", "AA=="),
            ),
            "malformed timestamp",
        ),
        (
            (
                ("X-STX-ACCESS-KEY", "key-1"),
                ("X-STX-ACCESS-TIMESTAMP", str(int(T0 * 1000))),
                ("X-STX-ACCESS-SIGNATURE", "not base64!"),
            ),
            "malformed signature",
        ),
        (
            (("X-STX-ACCESS-KEY", "key-1"), ("x-stx-oauth-token", "t")),
            "more than one kind of credentials",
        ),
        ((("x-stx-oauth-token", "unknown"),), "unknown or revoked OAuth token"),
    ],
)
def test_malformed_credentials_are_refused_with_401(
    headers: tuple[tuple[str, str], ...], reason: str
) -> None:
    rig = Rig(headers, retry=None)
    rig.server.new_api_key(USER)
    rig.link.connect()
    assert [e.status_code for e in rig.link.of_type(HandshakeRefused)] == [401]
    assert rig.link.connections[0].errors == [f"401: {reason}"]


def test_oauth_tokens_and_revocation() -> None:
    rig = Rig(lambda: oauth_headers("tok"), retry=RetryPolicy(initial_backoff=1, jitter=False))
    rig.server.add_oauth_token("tok", USER)
    connected(rig)
    assert rig.server.user_of(rig.conn) == USER
    rig.server.revoke_oauth_token("tok")
    rig.server.revoke_oauth_token("tok")  # twice is fine
    rig.link.drop()
    rig.link.advance_until(HandshakeRefused)
    assert rig.link.connections[-1].rejected_status == 401


def test_legacy_tokens() -> None:
    rig = Rig(params={"token": "jwt"}, retry=None)
    rig.server.add_legacy_token("jwt", USER)
    connected(rig)
    assert rig.server.user_of(rig.conn) == USER
    bad = Rig(params={"token": "other"}, retry=None)
    bad.link.connect()
    assert bad.link.connections[0].errors == ["401: unknown legacy token"]


def test_removed_api_keys_are_refused() -> None:
    rig = signed_rig(retry=None)
    rig.server.remove_api_key("key-1")
    rig.server.remove_api_key("key-1")
    rig.link.connect()
    assert rig.link.connections[0].errors == ["401: unknown key id"]


def test_unsigned_sockets_join_public_channels_only() -> None:
    rig = connected(Rig())
    assert rig.server.user_of(rig.conn) is None
    rig.link.join("ticker")
    rig.link.join(f"orders:{USER}")
    assert [e.topic for e in rig.link.of_type(Joined)] == ["ticker"]
    failed = rig.link.of_type(JoinFailed)
    assert [(f.topic, f.response) for f in failed] == [
        (f"orders:{USER}", {"reason": "unauthorized"})
    ]


def test_a_user_cannot_join_another_users_topics() -> None:
    rig = connected(signed_rig())
    rig.link.join("fills:u-2")
    assert rig.link.of_type(JoinFailed)[0].response == {"reason": "unauthorized"}


def test_api_key_registration() -> None:
    server = StxServer(clock=lambda: T0)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server.add_api_key("a", pem, USER)
    server.add_api_key("b", pem.decode(), USER)
    assert server.new_api_key(USER, key_id="mine")[0] == "mine"
    with pytest.raises(UsageError, match="not a PEM public key"):
        server.add_api_key("c", "garbage", USER)
    with pytest.raises(UsageError, match="must be Ed25519"):
        server.add_api_key("d", ec.generate_private_key(ec.SECP256R1()).public_key(), USER)


def test_without_cryptography_the_server_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    with pytest.raises(UsageError, match=r"stx-ws\[stx\]"):
        StxServer(clock=lambda: T0).new_api_key(USER)


# ------------------------------------------------------------------------------------------
# Channels


def test_join_replies_carry_state() -> None:
    rig = connected(Rig())
    state = {"market_id": "m1", "ob": {"bids": [[50, 3]], "asks": []}}
    rig.server.markets["m1"] = state
    rig.server.market_stats_history["m1"] = [{"timestamp_us": 1}]
    rig.link.join("market:m1")
    rig.link.join("market:nope")
    rig.link.join("market_stats", {"market_ids": ["m1", "m2"], "range": "1d"})
    joined = {e.topic: e.response for e in rig.link.of_type(Joined)}
    assert joined["market:m1"] == state
    assert joined["market_stats"] == {"markets": {"m1": [{"timestamp_us": 1}], "m2": []}}
    assert rig.link.of_type(JoinFailed)[0].response == {"reason": "market not found"}


def test_orderbook_needs_market_ids_and_sends_a_book_per_market() -> None:
    rig = connected(Rig())
    rig.server.markets["m1"] = {"ob": {"bids": [[1, 1]]}}
    rig.link.join("orderbook", {})
    rig.link.join("market_stats", {"market_ids": []})
    rig.link.join("trades", ["not", "an", "object"])
    assert [f.response for f in rig.link.of_type(JoinFailed)] == [
        {"reason": "market_ids required"},
        {"reason": "market_ids required"},
        {"reason": "the join payload must be an object"},
    ]
    rig.link.join("orderbook", {"market_ids": ["m1", "m2"]})
    books = [e.message.payload for e in rig.link.of_type(MessageReceived)]
    assert books == [
        {"market_id": "m1", "ob": {"bids": [[1, 1]]}},
        {"market_id": "m2", "ob": {}},
    ]


def test_per_user_joins_push_their_snapshots() -> None:
    rig = connected(signed_rig())
    rig.server.snapshots["all_orders"] = {"orders": [{"id": 1}]}
    for name in ("orders", "fills", "positions", "settlements", "balances", "account"):
        rig.link.join(f"{name}:{USER}")
    got = [(e.message.topic, e.message.event) for e in rig.link.of_type(MessageReceived)]
    assert got == [
        (f"orders:{USER}", "all_orders"),
        (f"fills:{USER}", "all_trades"),
        (f"positions:{USER}", "all_positions"),
        (f"balances:{USER}", "balances"),
        (f"account:{USER}", "all_orders"),
        (f"account:{USER}", "all_trades"),
        (f"account:{USER}", "all_positions"),
        (f"account:{USER}", "balances"),
    ]
    assert rig.link.of_type(MessageReceived)[0].message.payload == {"orders": [{"id": 1}]}


def test_pings_are_answered_except_where_they_crash_the_channel() -> None:
    rig = connected(signed_rig())
    rig.server.markets["m1"] = {"ob": {}}
    for topic in ("ticker", f"orders:{USER}", "market:m1", f"rfq:{USER}"):
        rig.link.join(topic)
    for topic in ("ticker", f"orders:{USER}", "market:m1", f"rfq:{USER}"):
        rig.link.push(topic, "ping", {})
    errored = rig.link.of_type(ChannelErrored)
    assert [(r.topic, r.status) for r in rig.replies()] == [
        ("ticker", "ok"),
        (f"orders:{USER}", "ok"),
    ]
    assert [e.topic for e in errored] == ["market:m1", f"rfq:{USER}"]
    state = rig.server.channel_state(rig.link.connections[0], "ticker")
    assert state is not None and state.pings == 1
    assert rig.server.handler_errors == []


def test_filters_are_kept_per_channel() -> None:
    rig = connected(Rig())
    rig.link.join("trades", {"market_ids": ["a"], "event_ids": ["e"]})
    rig.link.join("markets", {"message_types": ["market_created"]})
    conn = rig.conn
    trades = rig.server.channel_state(conn, "trades")
    assert trades is not None and trades.filters == {"market_ids": ["a"], "event_ids": ["e"]}
    rig.link.push("trades", "select_filters", {"market_ids": ["b"]})
    rig.link.push("markets", "select_rule_filters", {"rule_filters": {"sport": "x"}})
    rig.link.push("markets", "select_message_types", {"message_types": ["market_updated"]})
    rig.link.push("trades", "select_filters", ["b"])
    rig.link.push("trades", "nonsense", {})
    assert [(r.status, r.response) for r in rig.replies()] == [
        ("ok", {"filters": {"market_ids": ["b"]}}),
        ("ok", {"filters": {"message_types": ["market_created"], "rule_filters": {"sport": "x"}}}),
        ("ok", {"filters": {"message_types": ["market_updated"], "rule_filters": {"sport": "x"}}}),
        ("error", {"reason": "filters must be an object"}),
        ("error", {"reason": "unknown event 'nonsense'"}),
    ]
    assert trades.filters == {"market_ids": ["b"]}
    assert trades.join_payload == {"market_ids": ["a"], "event_ids": ["e"]}


def test_watch_adds_to_the_connections_watched_set() -> None:
    rig = connected(Rig())
    rig.link.join("market_updates")
    rig.link.push("market_updates", "watch", ["m2", "m1"])
    rig.link.push("market_updates", "watch", ["m3", "m1"])
    rig.link.push("market_updates", "watch", {"market_ids": ["m4"]})
    rig.link.join("ticker")
    rig.link.push("ticker", "watch", ["m1"])
    assert [(r.status, r.response) for r in rig.replies()] == [
        ("ok", {"subscriptions": {"watches": ["m1", "m2"]}}),
        ("ok", {"subscriptions": {"watches": ["m1", "m2", "m3"]}}),
        ("error", {"reason": "watch takes a list of market ids"}),
        ("error", {"reason": "unknown event 'watch'"}),
    ]
    first = rig.conn
    # A new connection (and its rejoin) starts with an empty set.
    rig.link.drop()
    rig.link.advance_until(Joined)
    state = rig.server.channel_state(rig.conn, "market_updates")
    assert state is not None and state.watches == set()
    old = rig.server.channel_state(first, "market_updates")
    assert old is not None and old.watches == {"m1", "m2", "m3"}


def test_a_push_on_a_channel_joined_by_hand_still_works() -> None:
    rig = connected(Rig())
    rig.link.join("ticker")
    rig.server._channels.clear()  # as if joined through conn.reply()
    rig.link.push("ticker", "ping", {})
    assert [r.status for r in rig.replies()] == ["ok"]


# ------------------------------------------------------------------------------------------
# Cancel-on-disconnect

ORDERS = f"orders:{USER}"


def cod(ms: int | None = 10_000) -> dict[str, Any]:
    payload: dict[str, Any] = {"cancel_on_disconnect": True}
    if ms is not None:
        payload["ping_timeout"] = ms
    return payload


@pytest.mark.parametrize(
    ("requested", "granted"),
    [(10_000, 10_000), (1_000, 5_000), (99_999, 20_000), (None, 20_000), (1.5, 20_000)],
)
def test_the_ping_timeout_is_clamped_and_granted_in_the_reply(requested: Any, granted: int) -> None:
    rig = connected(signed_rig())
    payload = cod(None)
    if requested is not None:
        payload["ping_timeout"] = requested
    rig.link.join(ORDERS, payload)
    assert rig.link.of_type(Joined)[0].response == {
        "cancel_on_disconnect": True,
        "ping_timeout": granted,
    }
    assert rig.server.armed(ORDERS) == granted
    state = rig.server.channel_state(rig.conn, ORDERS)
    assert state is not None and state.granted_ping_timeout == granted


def test_pinging_in_time_cancels_nothing() -> None:
    rig = connected(signed_rig())
    rig.link.join(ORDERS, cod(10_000))
    for _ in range(20):
        rig.link.advance(6)
        rig.link.push(ORDERS, "ping", {})
    assert rig.server.cancellations == []
    assert rig.server.armed(ORDERS) == 10_000


def test_a_client_that_stops_pinging_is_cancelled_at_the_granted_deadline() -> None:
    rig = connected(signed_rig())
    rig.link.advance(3)
    rig.link.join(ORDERS, cod(8_000))
    rig.link.advance(5)
    rig.link.push(ORDERS, "ping", {})  # at 8: the deadline moves to 16
    rig.link.advance(7.9)
    assert rig.server.cancellations == []
    rig.link.advance(100)
    assert rig.server.cancellations == [Cancellation(16.0, ORDERS, USER, rig.conn, 8_000)]
    assert rig.server.armed(ORDERS) is None


def test_a_ping_on_the_wrong_channel_does_not_count() -> None:
    rig = connected(signed_rig())
    rig.link.join(ORDERS, cod(5_000))
    rig.link.join(f"fills:{USER}")
    rig.link.advance(4)
    rig.link.push(f"fills:{USER}", "ping", {})
    rig.link.advance(2)
    assert [c.at for c in rig.server.cancellations] == [5.0]


def test_a_dropped_connection_is_cancelled_at_its_deadline() -> None:
    rig = connected(signed_rig(retry=None))
    rig.link.join(ORDERS, cod(5_000))
    rig.link.advance(2)
    rig.link.push(ORDERS, "ping", {})
    rig.link.drop()
    rig.link.advance(60)
    [cancelled] = rig.server.cancellations
    assert cancelled.at == 7.0 and not cancelled.connection.open


def test_a_rejoin_after_a_drop_restarts_the_deadline() -> None:
    rig = connected(signed_rig())
    rig.link.join(ORDERS, cod(5_000))
    rig.link.advance(4)
    rig.link.drop()  # the client reconnects after 0.5 s and rejoins with the same payload
    rig.link.advance(4)
    assert rig.server.cancellations == []
    assert len(rig.link.connections) == 2
    assert rig.server.armed(ORDERS) == 5_000
    rig.link.push(ORDERS, "ping", {})
    rig.link.advance(4.9)
    assert rig.server.cancellations == []
    rig.link.advance(1)
    assert [(c.at, c.connection) for c in rig.server.cancellations] == [
        (13.0, rig.link.connections[1])
    ]


def test_a_leave_or_a_join_without_it_disarms() -> None:
    rig = connected(signed_rig())
    rig.link.join(ORDERS, cod(5_000))
    rig.link.leave(ORDERS)
    assert rig.server.armed(ORDERS) is None
    rig.link.join(ORDERS, cod(5_000))
    rig.link.leave(ORDERS)
    rig.link.join(ORDERS, {})  # a join without cancel-on-disconnect
    assert rig.server.armed(ORDERS) is None
    rig.link.join("ticker")
    rig.link.leave("ticker")
    rig.link.advance(60)
    assert rig.server.cancellations == []


def test_a_leave_on_another_connection_leaves_the_arm_alone() -> None:
    server = StxServer(clock=lambda: T0)
    server.add_legacy_token("jwt", USER)
    links = [
        Link(Client("ws://x/socket", params={"token": "jwt"}, heartbeat_interval=None), server)
        for _ in range(2)
    ]
    for link in links:
        link.connect()
    links[0].join(ORDERS, cod(5_000))
    links[1].join(ORDERS, cod(6_000))  # the latest join decides
    links[0].leave(ORDERS)
    assert server.armed(ORDERS) == 6_000
    links[0].join(ORDERS, {})  # a join without cancel-on-disconnect disarms
    assert server.armed(ORDERS) is None


def test_the_base_server_has_no_timers_and_on_leave_errors_are_kept() -> None:
    server = PhoenixServer()
    assert server.next_deadline() is None
    server.handle_timer(1.0)
    calls: list[str] = []
    server.on_timers_changed = lambda: calls.append("changed")
    server.timers_changed()
    assert calls == ["changed"]

    def broken_leave(topic: str, conn: Any) -> None:
        raise RuntimeError("boom")

    server.route("room:*", on_leave=broken_leave)
    link = Link(Client("ws://x/socket", heartbeat_interval=None), server)
    link.connect()
    link.join("room:1")
    link.leave("room:1")
    assert [str(e) for e in server.handler_errors] == ["boom"]
    assert link.connection is not None and "room:1" not in link.connection.joined


def test_the_signature_covers_the_requests_own_path() -> None:
    # The client signs "/socket/websocket"; a server mounted elsewhere refuses it.
    rig = signed_rig(retry=None, url="ws://stx.test/other")
    rig.link.connect()
    assert rig.link.connections[0].errors == ["401: bad signature"]
    assert base64.b64decode(dict(rig.link.connections[0].request_headers)["x-stx-access-signature"])
