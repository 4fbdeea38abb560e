"""Typed payloads (stx-ws[msgspec]) on every driver and backend: ``join(types=...)`` and
``ch.on(event, handler, type=...)``, valid and invalid payloads, the count, the once-per-event
warning and ``on_handler_error``."""

from __future__ import annotations

import logging

import anyio
import msgspec
import pytest

from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage, UsageError

from .support import LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio


class Level(msgspec.Struct):
    price: int
    quantity: int


class MarketUpdate(msgspec.Struct):
    market_id: str
    bids: list[Level]


GOOD = {"market_id": "m1", "bids": [{"price": 4500, "quantity": 3}]}
BAD = {"market_id": "m1", "bids": [{"price": "high", "quantity": 3}]}


async def test_typed_join_valid_and_invalid_payloads(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=impl.logger)
    got: list[ChannelMessage] = []
    errors: list[tuple[Exception, ChannelMessage | None]] = []
    done = anyio.Event()

    def on_message(msg: ChannelMessage) -> None:
        got.append(msg)
        if msg.event == "last":
            done.set()

    def on_handler_error(exc: Exception, msg: ChannelMessage | None) -> None:
        errors.append((exc, msg))

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, on_handler_error=on_handler_error) as sock:
            await sock.join("room:1", on_message=on_message, types={"market_update": MarketUpdate})
            for payload in (GOOD, BAD, BAD, GOOD):
                srv.phoenix.push("room:1", "market_update", payload)
            srv.phoenix.push("room:1", "last", {"n": 1})
            await done.wait()
            assert sock.stats.invalid_payloads == 2
            assert sock.stats.messages == 3
            assert "invalid_payloads=2" in repr(sock.stats)
    update = MarketUpdate("m1", [Level(4500, 3)])
    assert [m.payload for m in got] == [update, update, {"n": 1}]
    assert len(errors) == 2
    for exc, msg in errors:
        assert isinstance(exc, msgspec.ValidationError)
        assert msg is not None and msg.payload == BAD and msg.event == "market_update"
    warnings = [r.getMessage() for r in caplog.records if r.name == impl.logger]
    invalid = [w for w in warnings if "not a valid MarketUpdate" in w]
    assert len(invalid) == 1, warnings  # once per event type of the channel
    assert "'market_update' payload on 'room:1'" in invalid[0]
    assert "$.bids[0].price" in invalid[0]


async def test_on_with_a_type(impl: Impl, srv: TestServer) -> None:
    updates: list[MarketUpdate] = []
    done = anyio.Event()

    def on_update(msg: ChannelMessage) -> None:
        assert isinstance(msg.payload, MarketUpdate)
        updates.append(msg.payload)
        done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            assert ch.on("market_update", on_update, type=MarketUpdate) is on_update
            with pytest.raises(UsageError, match="already typed"):
                ch.on("market_update", on_update, type=Level)
            srv.phoenix.push("room:1", "market_update", BAD)  # no hook: logged and counted
            srv.phoenix.push("room:1", "market_update", GOOD)
            await done.wait()
            assert sock.stats.invalid_payloads == 1
            await ch.leave()
            with pytest.raises(UsageError, match="closed"):
                ch.on("other", on_update, type=MarketUpdate)
    assert updates == [MarketUpdate("m1", [Level(4500, 3)])]


async def test_async_for_sees_typed_payloads(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1", types={"market_update": MarketUpdate})
            srv.phoenix.push("room:1", "market_update", BAD)
            srv.phoenix.push("room:1", "market_update", GOOD)
            async for msg in ch:
                assert msg.payload == MarketUpdate("m1", [Level(4500, 3)])
                break


async def test_a_failing_error_hook_is_logged(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=impl.logger)
    called = anyio.Event()

    def on_handler_error(exc: Exception, msg: ChannelMessage | None) -> None:
        called.set()
        raise RuntimeError("hook bug")

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, on_handler_error=on_handler_error) as sock:
            await sock.join("room:1", types={"market_update": MarketUpdate})
            srv.phoenix.push("room:1", "market_update", BAD)
            await called.wait()
    assert any(r.getMessage() == "on_handler_error raised" for r in caplog.records)


async def test_bad_types_are_refused(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            with pytest.raises(UsageError, match="control event"):
                await sock.join("room:1", types={"phx_reply": MarketUpdate})
            with pytest.raises(UsageError, match="cannot decode a payload into"):
                await sock.join("room:1", types={"x": object()})
            ch = await sock.join("room:1")
            assert ch.topic == "room:1"


async def test_stx_preset_takes_types(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.route("market_info:*")
    done = anyio.Event()
    got: list[object] = []

    def on_message(msg: ChannelMessage) -> None:
        got.append(msg.payload)
        done.set()

    with anyio.fail_after(LIMIT):
        async with impl.STXWebSocket(url=srv.url, token="t", retry=None) as sock:
            await sock.join(
                "market_info:1", on_message=on_message, types={"market_update": MarketUpdate}
            )
            srv.phoenix.push("market_info:1", "market_update", GOOD)
            await done.wait()
    assert got == [MarketUpdate("m1", [Level(4500, 3)])]
