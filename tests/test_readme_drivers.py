"""The README's driver examples run against the loopback test server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from stx_anyio.testing import TestServer
from stx_proto.testing import PhoenixServer

from .test_docs import ROOT, python_blocks

pytestmark = pytest.mark.anyio

BLOCKS = python_blocks(ROOT / "README.md")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def example(marker: str) -> Callable[..., Any]:
    """The ``main`` of the README block that contains ``marker``."""
    (block,) = [b for b in BLOCKS if marker in b]
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(block, "README.md", "exec"), namespace)
    main: Callable[..., Any] = namespace["main"]
    return main


async def feed(server: PhoenixServer, topic: str) -> None:
    for seq in range(1000):
        server.broadcast(topic, "market_update", {"seq": seq})
        await anyio.sleep(0.01)


async def test_stx_example(monkeypatch: pytest.MonkeyPatch) -> None:
    main = example("STXWebSocket(")
    phoenix = PhoenixServer()
    phoenix.route("*")
    async with TestServer(phoenix) as server:
        monkeypatch.setenv("STX_WS_URL", server.url)
        monkeypatch.setenv("STX_TOKEN", "jwt-1")
        monkeypatch.setenv("STX_USER_UID", "u-42")
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed, phoenix, "market_info")
                await main()
                tg.cancel_scope.cancel()
        conn = phoenix.all_connections[0]
        assert conn.params["token"] == "jwt-1"
        joins = [m.topic for m in conn.received if m.event == "phx_join"]
        assert joins == ["market_info", "active_orders:u-42"]
        leaves = [m.topic for m in conn.received if m.event == "phx_leave"]
        assert sorted(leaves) == ["active_orders:u-42", "market_info"]
        assert conn.close_code == 1000


async def test_generic_socket_example(capsys: pytest.CaptureFixture[str]) -> None:
    main = example("Socket(url")
    phoenix = PhoenixServer()

    def after_join(topic: str, payload: Any, conn: Any) -> tuple[str, Any]:
        conn.push(topic, "welcome", {"since": payload["since"]})
        return "ok", {}

    phoenix.route("room:*", on_join=after_join)
    async with TestServer(phoenix) as server:
        with anyio.fail_after(10):
            await main(server.url)
    out = capsys.readouterr().out
    assert "reply: {'body': 'hi'}" in out
    assert "welcome {'since': 0}" in out
    conn = phoenix.all_connections[0]
    assert conn.params["user"] == "ada"
    assert [m.event for m in conn.received if m.topic == "room:lobby"] == [
        "phx_join",
        "new_msg",
        "phx_leave",
    ]
