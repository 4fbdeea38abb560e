"""The STX presets (STXWebSocket) on every driver.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import itertools

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    Channels,
    StxAuthKind,
    UsageError,
)

from .support import FAST, LIMIT, Impl

pytestmark = pytest.mark.anyio


async def test_stx_websocket_joins_user_scoped_channels_with_a_refreshed_token(
    impl: Impl, srv: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STX_WS_URL", raising=False)
    monkeypatch.delenv("STX_TOKEN", raising=False)
    srv.phoenix.route("*")
    tokens = itertools.count(1)

    async def token() -> str:
        await anyio.lowlevel.checkpoint()
        return f"jwt-{next(tokens)}"

    with anyio.fail_after(LIMIT):
        ws = impl.STXWebSocket(url=srv.url, token=token, user_uid="u-42", timeout=2.0, retry=FAST)
        assert isinstance(ws, impl.Socket)
        async with ws:
            orders = await ws.join(Channels.ACTIVE_ORDERS)
            market = await ws.join(Channels.MARKET_INFO)
            raw = await ws.join("room:1")
            assert (orders.topic, market.topic, raw.topic) == (
                "active_orders:u-42",
                "market_info",
                "room:1",
            )
            srv.phoenix.broadcast("active_orders:u-42", "order", {"id": 7})
            assert (await anext(aiter(orders))).payload == {"id": 7}
            srv.drop_all()
            await srv.wait_for_join("active_orders:u-42", 2)
    first, second = srv.phoenix.all_connections
    assert "jwt" not in repr(ws)
    assert (first.params["token"], second.params["token"]) == ("jwt-1", "jwt-2")
    assert first.params["vsn"] == "2.0.0" and first.path == "/socket/websocket"
    assert second.close_code == 1000


async def test_stx_websocket_from_the_environment(
    impl: Impl, srv: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STX_WS_URL", srv.url)
    monkeypatch.setenv("STX_TOKEN", "jwt-env")
    srv.phoenix.route("user_info:*")
    with anyio.fail_after(LIMIT):
        async with impl.STXWebSocket(user_uid="u-1", timeout=2.0) as ws:
            assert (await ws.join(Channels.USER_INFO)).topic == "user_info:u-1"
    with pytest.raises(UsageError, match="user_uid"):
        await impl.STXWebSocket().join(Channels.PORTFOLIO)  # user-scoped, and no user_uid
    assert srv.phoenix.all_connections[0].params["token"] == "jwt-env"
    monkeypatch.delenv("STX_TOKEN")
    # No credentials at all: an unsigned socket, for the public channels (the current API).
    assert impl.STXWebSocket().settings.auth is StxAuthKind.NONE
