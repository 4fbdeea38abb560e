"""The examples of the two guides our users come from, in our API, against the loopback
server, on every driver and event loop: STX's legacy SDK guide (quick start, manual connect
and close, multiple subscriptions, the market-maker skeleton, control frames) and the
maicoin.ws ``Stream`` guide (declare, then run; handlers; the three dispatch modes;
``reconnect=False``), with Phoenix topics in place of the exchange's channels."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from stx_anyio import Channels
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage
from stx_proto.driver import StxPreset

from .support import FAST, LIMIT, Impl

pytestmark = pytest.mark.anyio

USER = "u-1"


def stx(impl: Impl, srv: TestServer, **options: Any) -> StxPreset:
    """An STXWebSocket to the loopback server, as the guide builds one for staging."""
    srv.phoenix.route("market_info:*")
    srv.phoenix.route("market_info")
    srv.phoenix.route("active_orders:*")
    srv.phoenix.route("portfolio:*")
    options.setdefault("timeout", 2.0)
    options.setdefault("retry", FAST)
    return impl.STXWebSocket(url=srv.url, token="jwt", user_uid=USER, **options)


async def test_stx_quick_start(impl: Impl, srv: TestServer) -> None:
    printed: list[str] = []
    done = anyio.Event()

    async def on_market_update(msg: ChannelMessage) -> None:
        printed.append(f"{msg.event}: {msg.payload}")
        done.set()

    with anyio.fail_after(LIMIT):
        async with stx(impl, srv) as ws:
            await ws.join(Channels.MARKET_INFO, on_message=on_market_update)
            srv.phoenix.broadcast("market_info", "market_update", {"price": 51})
            await done.wait()  # the guide listens for a minute
    assert printed == ["market_update: {'price': 51}"]


async def test_stx_manual_connect_and_close(impl: Impl, srv: TestServer) -> None:
    got: list[str] = []
    done = anyio.Event()

    async def on_msg(msg: ChannelMessage) -> None:
        if msg.event == "market_update":
            got.append(msg.payload["market"])
            done.set()

    with anyio.fail_after(LIMIT):
        ws = stx(impl, srv)
        await ws.connect()
        await ws.join(Channels.MARKET_INFO, on_message=on_msg)
        srv.phoenix.broadcast("market_info", "market_update", {"market": "m-1"})
        await done.wait()
        await ws.close()
    assert got == ["m-1"]
    assert [m.topic for c in srv.phoenix.all_connections for m in c.received][-1] == "market_info"
    assert [c.close_code for c in srv.phoenix.all_connections] == [1000]


async def test_stx_multiple_subscriptions_and_control_frames(impl: Impl, srv: TestServer) -> None:
    seen: dict[str, list[str]] = {"market": [], "order": [], "portfolio": []}
    three = anyio.Event()

    def handler(kind: str) -> Any:
        async def handle(msg: ChannelMessage) -> None:
            # Control events come through too (control_frames=True): filter them out.
            if msg.is_reply or msg.is_error:
                seen[kind].append(f"control {msg.reply_status}")
                return
            seen[kind].append(msg.event)
            if all(any(e != "control ok" for e in v) for v in seen.values()):
                three.set()

        return handle

    with anyio.fail_after(LIMIT):
        async with stx(impl, srv, control_frames=True) as ws:
            await ws.join(Channels.MARKET_INFO, on_message=handler("market"))
            await ws.join(Channels.ACTIVE_ORDERS, on_message=handler("order"))
            await ws.join(Channels.PORTFOLIO, on_message=handler("portfolio"))
            srv.phoenix.broadcast("market_info", "market_update", {})
            srv.phoenix.broadcast(f"active_orders:{USER}", "order_update", {})
            srv.phoenix.broadcast(f"portfolio:{USER}", "portfolio_update", {})
            await three.wait()  # the guide runs forever
    assert seen == {
        "market": ["control ok", "market_update"],
        "order": ["control ok", "order_update"],
        "portfolio": ["control ok", "portfolio_update"],
    }


async def test_stx_market_maker_skeleton(impl: Impl, srv: TestServer) -> None:
    quotes: list[Any] = []
    fills: list[Any] = []

    with anyio.fail_after(LIMIT):
        ws = stx(impl, srv)

        async def on_market(msg: ChannelMessage) -> None:
            if msg.event != "market_update":
                return
            quotes.append(msg.payload["price"])  # your quoting logic here

        async def on_order(msg: ChannelMessage) -> None:
            if msg.event != "order_update":
                return
            fills.append(msg.payload["orderId"])  # track fills, adjust inventory
            if msg.payload["status"] == "filled":
                await ws.close()  # the guide runs until cancelled

        async def market_and_fill() -> None:
            await srv.wait_for_join(f"active_orders:{USER}")
            srv.phoenix.broadcast("market_info", "market_update", {"price": 50})
            srv.phoenix.broadcast(
                f"active_orders:{USER}", "order_update", {"orderId": "o-1", "status": "filled"}
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(market_and_fill)
            async with ws:
                await ws.join(Channels.MARKET_INFO, on_message=on_market)
                await ws.join(Channels.ACTIVE_ORDERS, on_message=on_order)
                await ws.wait_closed()
    assert (quotes, fills) == ([50], ["o-1"])


@pytest.mark.parametrize("dispatch", ["inline", "task", "queue"])
async def test_maicoin_declare_then_run(impl: Impl, srv: TestServer, dispatch: str) -> None:
    srv.phoenix.route("book:*")
    srv.phoenix.route("ticker:*")
    srv.phoenix.route("trade:*")
    printed: list[tuple[str, Any]] = []
    errors: list[str] = []
    stream = impl.Socket(
        srv.url,
        dispatch=dispatch,  # type: ignore[arg-type]
        on_handler_error=lambda exc, msg: errors.append(str(exc)),
        reconnect=False,
        heartbeat_interval=20,
        connect_timeout=5,
    )
    stream.subscribe(["book:btcusdt", "ticker:btcusdt"], {"depth": 5})
    stream.subscribe("trade:btcusdt")

    def show(msg: ChannelMessage) -> None:
        printed.append((msg.topic, msg.payload))
        if msg.topic == "trade:btcusdt":
            raise ValueError("a buggy handler stops nothing")

    async def publish() -> None:
        await srv.wait_for_join("trade:btcusdt")
        for topic in ("book:btcusdt", "ticker:btcusdt", "trade:btcusdt"):
            srv.phoenix.broadcast(topic, "update", {"t": topic})

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            if dispatch == "queue":
                # Responses go to a queue the consumer drains; handlers are not run.
                tg.start_soon(stream.arun)
                async for msg in stream.messages():
                    printed.append((msg.topic, msg.payload))
                    if len(printed) == 3:
                        await stream.close()
            else:
                stream.add_handler(show)

                async def stop_after_three(msg: ChannelMessage) -> None:
                    if len(printed) == 3:
                        await stream.close()

                stream.add_handler(stop_after_three)
                await stream.arun()
    assert sorted(topic for topic, _ in printed) == [
        "book:btcusdt",
        "ticker:btcusdt",
        "trade:btcusdt",
    ]
    assert errors == ([] if dispatch == "queue" else ["a buggy handler stops nothing"])
