"""STX's current API on every driver, against the STX test server on loopback: API-key and
OAuth handshakes (a bad signature, a stale timestamp, a revoked token, unsigned public
access, a reconnect that signs afresh), the current channels, filters and watches that
survive a reconnect, and cancel-on-disconnect with no cancellation across a drop."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import stx_proto.driver.stx as stx_driver
from stx_anyio.testing import TestServer
from stx_proto import (
    CredentialsRevokedError,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    RetryPolicy,
    StxAuthKind,
    StxChannels,
    UsageError,
)
from stx_proto.testing import StxServer

from .support import FAST, LIMIT, Impl

pytestmark = pytest.mark.anyio

USER = "u-7"
NO_ENV: dict[str, str] = {}  # never the machine's STX_* variables


def stx_socket(impl: Impl, server: TestServer, **options: Any) -> Any:
    options.setdefault("timeout", 2.0)
    options.setdefault("retry", FAST)
    options.setdefault("environ", NO_ENV)
    return impl.STXWebSocket(url=server.url, user_id=USER, **options)


def request_headers(stx: StxServer, index: int = -1) -> dict[str, str]:
    return dict(stx.all_connections[index].request_headers)


async def test_an_api_key_connects_and_every_reconnect_signs_afresh(impl: Impl) -> None:
    stx = StxServer(clock=time.time)
    key_id, pem = stx.new_api_key(USER)
    with anyio.fail_after(LIMIT):
        async with TestServer(stx) as server:
            ws = stx_socket(impl, server, key_id=key_id, private_key=pem)
            assert ws.settings.auth is StxAuthKind.API_KEY and pem not in repr(ws.settings)
            async with ws:
                orders = await ws.join(StxChannels.orders())
                assert orders.topic == f"orders:{USER}"
                first = request_headers(stx)
                await anyio.sleep(0.01)  # the next stamp is a later millisecond
                server.drop_all()
                await server.wait_for_join(f"orders:{USER}", 2)
                second = request_headers(stx)
    assert first["x-stx-access-key"] == key_id
    assert first["x-stx-access-timestamp"] != second["x-stx-access-timestamp"]
    assert first["x-stx-access-signature"] != second["x-stx-access-signature"]
    assert first["user-agent"].startswith("stx-ws/")


@pytest.mark.parametrize("fault", ["bad signature", "stale timestamp"])
async def test_a_refused_signature_is_an_authentication_failure(impl: Impl, fault: str) -> None:
    stx = StxServer(clock=time.time)
    key_id, pem = stx.new_api_key(USER)
    if fault == "bad signature":
        _, pem = StxServer(clock=time.time).new_api_key(USER)  # another key pair's private key
    clock = (lambda: time.time() - 60.0) if fault == "stale timestamp" else time.time
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_refusals=2)
    with anyio.fail_after(LIMIT):
        async with TestServer(stx) as server:
            ws = stx_socket(
                impl, server, key_id=key_id, private_key=pem, wall_clock=clock, retry=retry
            )
            with pytest.raises(GaveUpError) as info:
                async with ws:
                    await ws.join(StxChannels.orders())
    assert "HTTP 401 (bad or missing credentials?)" in str(info.value)
    assert isinstance(info.value.__cause__, HandshakeRefusedError)
    assert info.value.__cause__.status_code == 401
    assert pem not in str(info.value)


async def test_oauth_tokens_are_fetched_at_every_connect_and_a_revoked_grant_is_final(
    impl: Impl,
) -> None:
    stx = StxServer(clock=time.time)
    stx.add_oauth_token("tok-1", USER)
    stx.add_oauth_token("tok-2", USER)
    tokens = iter(["tok-1", "tok-2"])
    gave_up: list[GaveUpError] = []

    async def provider() -> str:
        await anyio.lowlevel.checkpoint()
        try:
            return next(tokens)
        except StopIteration:
            raise PermissionError("grant revoked") from None

    with anyio.fail_after(LIMIT):
        async with TestServer(stx) as server:
            ws = stx_socket(impl, server, access_token=provider, on_gave_up=gave_up.append)
            async with ws:
                await ws.join(StxChannels.fills())
                assert dict(stx.connections[0].request_headers)["x-stx-oauth-token"] == "tok-1"
                server.drop_all()
                await server.wait_for_join(f"fills:{USER}", 2)
                server.drop_all()  # the next connect asks the provider, which raises
                with pytest.raises(GaveUpError):
                    await ws.wait_closed()
    (error,) = gave_up
    assert isinstance(error.__cause__, CredentialsRevokedError)
    assert isinstance(error.__cause__.__cause__, PermissionError)
    assert len(stx.all_connections) == 2  # not retried: a revoked grant is final
    assert "tok-" not in str(error)


async def test_unsigned_sockets_reach_the_public_channels_only(impl: Impl) -> None:
    stx = StxServer(clock=time.time)
    with anyio.fail_after(LIMIT):
        async with TestServer(stx) as server, stx_socket(impl, server) as ws:
            assert ws.settings.auth is StxAuthKind.NONE
            book = await ws.join(StxChannels.orderbook(market_ids=["m1"]))
            assert book.topic == "orderbook"
            with pytest.raises(JoinError):
                await ws.join(StxChannels.orders())
    assert "x-stx-access-key" not in request_headers(stx)


async def test_each_current_channel_joins(impl: Impl) -> None:
    stx = StxServer(clock=time.time)
    key_id, pem = stx.new_api_key(USER)
    for market in ("m1", "m2"):
        stx.markets[market] = {"id": market, "status": "open", "ob": {"bids": [], "asks": []}}
    channels = [
        StxChannels.orderbook(market_ids=["m1"]),
        StxChannels.ticker(sports=["hockey"]),
        StxChannels.trades(market_ids=["m1"]),
        StxChannels.markets(message_types=["market_updated"]),
        StxChannels.market_stats(market_ids=["m1"]),
        StxChannels.market_updates(),
        StxChannels.market("m1"),
        StxChannels.orders(market_ids=["m1"]),
        StxChannels.fills(),
        StxChannels.positions(),
        StxChannels.settlements(),
        StxChannels.balances(),
        StxChannels.account(),
        StxChannels.user_info(),
        StxChannels.rfq(),
        StxChannels.combo_quote(),
    ]
    with anyio.fail_after(LIMIT * 2):
        async with TestServer(stx) as server:
            ws = stx_socket(impl, server, key_id=key_id, private_key=pem)
            async with ws:
                for channel in channels:
                    handle = await ws.join(channel)
                    assert handle.topic == channel.for_user(USER).topic
                market = await ws.join(StxChannels.market("m2"))
                assert "ob" in market.join_response  # the market's state, book included
    joined = {m.topic for c in stx.all_connections for m in c.received if m.event == "phx_join"}
    assert len(joined) == len(channels) + 1


async def test_filters_and_watches_are_back_after_a_reconnect(impl: Impl) -> None:
    stx = StxServer(clock=time.time)
    with anyio.fail_after(LIMIT):
        async with TestServer(stx) as server, stx_socket(impl, server) as ws:
            book = await ws.join(StxChannels.orderbook(market_ids=["m1"]))
            await book.select_filters(market_ids=["m2", "m3"])
            updates = await ws.join(StxChannels.market_updates())
            await updates.watch(["m1"])
            await updates.watch(["m2", "m1"])
            assert updates.watched == ("m1", "m2")
            server.drop_all()
            await server.wait_for_join("orderbook", 2)

            def watched_again() -> bool:
                state = stx.channel_state(stx.connections[-1], "market_updates")
                return state is not None and state.watches == {"m1", "m2"}

            await server.wait_until(watched_again, what="the watched set sent again")
    rejoin = [
        m.payload
        for m in stx.all_connections[-1].received
        if m.event == "phx_join" and m.topic == "orderbook"
    ]
    assert rejoin == [{"market_ids": ["m2", "m3"]}]


async def test_cancel_on_disconnect_survives_a_drop_and_a_rejoin(
    impl: Impl, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pings at 10% of the 5 s grant (STX's least), not 60%: the same plan, six times sooner,
    # so that the test takes one second, not six (the 60% is held in tests/kit).
    monkeypatch.setattr(stx_driver, "COD_PING_SHARE", 0.1)
    stx = StxServer(clock=time.time)
    key_id, pem = stx.new_api_key(USER)
    pinged: list[str] = []
    with anyio.fail_after(LIMIT * 2):
        async with TestServer(stx) as server:
            ws = stx_socket(
                impl, server, key_id=key_id, private_key=pem, channel_ping_interval=None
            )
            async with ws:
                orders = await ws.join(
                    StxChannels.orders(), cancel_on_disconnect=True, ping_timeout=5_000
                )
                assert orders.granted_ping_timeout == 5_000
                # Pings at 10% of the grant: a ping within half a second of the join reply.
                await server.wait_until(
                    lambda: any(m.event == "ping" for m in stx.connections[-1].received) or None,
                    timeout=4.0,
                    what="a cancel-on-disconnect ping",
                )
                server.drop_all()
                await server.wait_for_join(f"orders:{USER}", 2)
                await server.wait_until(
                    lambda: any(m.event == "ping" for m in stx.connections[-1].received) or None,
                    timeout=4.0,
                    what="a ping after the rejoin",
                )
                pinged.append("ok")
    assert stx.cancellations == [] and pinged == ["ok"]


def test_two_kinds_of_credentials_are_refused(impl: Impl) -> None:
    with pytest.raises(UsageError):
        impl.STXWebSocket(token="jwt", access_token="tok", environ=NO_ENV)
    with pytest.raises(UsageError, match="not both"):
        impl.STXWebSocket(reconnect=False, retry=None, environ=NO_ENV)
    assert impl.STXWebSocket(reconnect=False, environ=NO_ENV) is not None


async def test_stx_options_on_the_edges(
    impl: Impl, server_ssl: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stx = StxServer(clock=time.time)
    stx.add_oauth_token("tok", USER)
    with anyio.fail_after(LIMIT):
        # verify_tls=False: a test host with a certificate nobody signed, over TLS.
        async with TestServer(stx, ssl_context=server_ssl) as server:
            ws = impl.STXWebSocket(
                url=server.url,
                user_id=USER,
                environ=NO_ENV,
                access_token="tok",
                verify_tls=False,
                reconnect=True,
                timeout=2.0,
            )
            assert ws.user_uid == USER
            async with ws:
                rules = await ws.join(StxChannels.markets())
                await rules.select_rule_filters([{"sport": "hockey"}])
                await rules.select_message_types(["market_updated"])
                orders = await ws.join(StxChannels.orders(), cancel_on_disconnect=True)
                assert orders.granted_ping_timeout == 20_000
                plain = await ws.join(f"fills:{USER}", {"since": 0})  # a raw topic and payload
                assert plain.granted_ping_timeout is None and plain.watched == ()
    monkeypatch.setenv("STX_WS_URL", "ws://127.0.0.1:9/socket")
    monkeypatch.setenv("STX_TOKEN", "jwt-env")
    assert impl.STXWebSocket.from_env().settings.auth is StxAuthKind.TOKEN


def test_signing_needs_a_wall_clock_and_an_access_token_must_be_a_string(impl: Impl) -> None:
    from stx_proto import StxSettings
    from stx_proto.driver.stx import stx_headers

    key = StxServer(clock=time.time).new_api_key(USER)[1]
    settings = StxSettings("ws://x/socket", StxAuthKind.API_KEY, key_id="k", private_key=key)
    with pytest.raises(UsageError, match="needs a wall clock"):
        stx_headers(settings, None)


async def test_an_access_token_of_the_wrong_type_ends_the_socket(impl: Impl) -> None:
    stx = StxServer(clock=time.time)
    with anyio.fail_after(LIMIT):
        async with TestServer(stx) as server:
            ws = stx_socket(impl, server, access_token=lambda: 42)
            with pytest.raises(GaveUpError) as info:
                async with ws:
                    await ws.join(StxChannels.fills())
    assert isinstance(info.value.__cause__, UsageError)
    assert "access token must be a non-empty str, got int" in str(info.value.__cause__)


def test_the_stx_socket_options_are_the_sockets() -> None:
    import inspect

    from stx_proto.driver import SocketBase
    from stx_proto.driver.stx import StxSocketOptions

    params = inspect.signature(SocketBase.__init__).parameters
    socket = {
        name: str(p.annotation)
        for name, p in params.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    for own in ("params", "headers", "channel_ping_interval", "channel_ping_skip"):
        del socket[own]  # made by the preset from the credentials, or its own options
    ours = {
        name: getattr(tp, "__forward_arg__", str(tp))
        for name, tp in StxSocketOptions.__annotations__.items()
    }
    assert ours == socket
