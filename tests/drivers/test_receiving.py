"""Receiving: on_message, handlers added with on(), async for, and what each sees.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelCloseReason,
    ChannelMessage,
    UsageError,
)

from .support import LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio


async def test_broadcast_and_push_reach_on_message_in_order(impl: Impl, srv: TestServer) -> None:
    got: list[ChannelMessage] = []
    done = anyio.Event()

    def on_message(msg: ChannelMessage) -> None:
        got.append(msg)
        if len(got) == 3:
            done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            await sock.join("room:1", on_message=on_message)
            srv.phoenix.broadcast("room:1", "a", {"n": 1})
            srv.phoenix.push("room:1", "b", {"n": 2})
            srv.phoenix.broadcast("room:1", "c", b"raw")
            await done.wait()
    assert [(m.event, m.payload) for m in got] == [("a", {"n": 1}), ("b", {"n": 2}), ("c", b"raw")]
    assert sock.stats.messages == 3


async def test_async_for_over_a_channel(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            other = await sock.join("room:2")
            for n in range(3):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            srv.phoenix.broadcast("room:2", "other", {})
            seen = []
            async for msg in ch:
                seen.append(msg.payload["n"])
                if len(seen) == 3:
                    break
            assert seen == [0, 1, 2]
            assert (await anext(aiter(other))).event == "other"


async def test_on_event_handlers_sync_and_async(impl: Impl, srv: TestServer) -> None:
    everything: list[str] = []
    prices: list[Any] = []
    trades: list[Any] = []
    done = anyio.Event()

    async def on_trade(msg: ChannelMessage) -> None:
        await anyio.lowlevel.checkpoint()
        trades.append(msg.payload)
        done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1", on_message=lambda msg: everything.append(msg.event))
            assert ch.on("price", lambda msg: prices.append(msg.payload)) is not None
            ch.on("trade", on_trade)
            ignored = ch.on("price", lambda msg: prices.append("second"))
            ch.off("price", ignored)
            with pytest.raises(UsageError):
                ch.off("price", ignored)
            only = ch.on("news", lambda msg: prices.append("news"))
            ch.off("news", only)  # the last handler of its event
            with pytest.raises(UsageError):
                ch.off("news", only)
            srv.phoenix.broadcast("room:1", "price", {"p": 1})
            srv.phoenix.broadcast("room:1", "news", {})
            srv.phoenix.broadcast("room:1", "trade", {"t": 1})
            await done.wait()
    assert everything == ["price", "news", "trade"]
    assert prices == [{"p": 1}]
    assert trades == [{"t": 1}]


async def test_first_handler_gets_what_arrived_since_the_join(impl: Impl, srv: TestServer) -> None:
    got: list[Any] = []
    done = anyio.Event()

    def on_tick(msg: ChannelMessage) -> None:
        got.append(msg.payload["n"])
        if len(got) == 3:
            done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            marker = await sock.join("room:2")
            srv.phoenix.broadcast("room:1", "tick", {"n": 1})
            srv.phoenix.broadcast("room:1", "tock", {})
            srv.phoenix.broadcast("room:1", "tick", {"n": 2})
            srv.phoenix.broadcast("room:2", "mark", {})
            await anext(aiter(marker))  # room:1's messages are in its buffer by now
            ch.on("tick", on_tick)
            srv.phoenix.broadcast("room:1", "tick", {"n": 3})
            await done.wait()
            assert ch._route.buffer is None  # no buffering for nobody
    assert got == [1, 2, 3]


async def test_handler_exceptions_are_logged_and_reported(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[tuple[Exception, ChannelMessage | None]] = []
    good: list[int] = []
    done = anyio.Event()

    async def handler(msg: ChannelMessage) -> None:
        n = msg.payload["n"]
        if n == 1:
            raise ValueError("boom")
        good.append(n)
        if n == 3:
            done.set()

    def bad_hook() -> None:
        raise RuntimeError("hook")

    def on_handler_error(exc: Exception, msg: ChannelMessage | None) -> None:
        reported.append((exc, msg))
        if msg is not None and msg.payload["n"] == 2:
            raise KeyError("the error handler itself fails")

    caplog.set_level(logging.WARNING, logger=impl.logger)
    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl, srv, on_handler_error=on_handler_error, on_open=bad_hook
        ) as sock:
            ch = await sock.join("room:1", on_message=handler)
            ch.on("tick", lambda msg: 1 / 0 if msg.payload["n"] == 2 else None)
            for n in (1, 2, 3):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            await done.wait()
    assert good == [2, 3]
    kinds = [(type(exc), msg.payload["n"] if msg else None) for exc, msg in reported]
    assert kinds == [(RuntimeError, None), (ValueError, 1), (ZeroDivisionError, 2)]
    records = [r for r in caplog.records if r.name == impl.logger and r.levelno == logging.WARNING]
    assert all(r.exc_info for r in records)
    assert [r.exc_info[0] for r in records if r.exc_info] == [
        RuntimeError,
        ValueError,
        ZeroDivisionError,
        KeyError,
    ]


async def test_async_for_beside_on_message(impl: Impl, srv: TestServer) -> None:
    handled: list[str] = []
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1", on_message=lambda msg: handled.append(msg.event))
            it = aiter(ch)  # buffering starts with the first iteration
            srv.phoenix.broadcast("room:1", "tick", {})
            assert (await anext(it)).event == "tick"
            other = await sock.join("room:2", on_message=lambda msg: None)
            await other.leave()
            assert [m async for m in other] == []  # a left channel's first iteration just ends
    assert handled == ["tick"]


async def test_a_handler_that_raises_without_on_handler_error_is_logged(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    done = anyio.Event()

    def handler(msg: ChannelMessage) -> None:
        if msg.event == "bad":
            raise ValueError("boom")
        done.set()

    caplog.set_level(logging.WARNING, logger=impl.logger)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            await sock.join("room:1", on_message=handler)
            srv.phoenix.broadcast("room:1", "bad", {})
            srv.phoenix.broadcast("room:1", "good", {})
            await done.wait()
    assert "raised on 'room:1' event 'bad'" in caplog.text


async def test_a_channel_while_it_leaves(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            conn = await srv.wait_for_join("room:1")
            conn.joined["room:1"] = "stale"  # the server now ignores this channel's phx_leave
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(ch.leave, timeout=0.2))
                await srv.wait_for_frame(lambda m: m.event == "phx_leave")
                assert "leaving" in repr(ch) and not ch.joined
                with pytest.raises(UsageError, match="leaving"):
                    await ch.push("echo", {})
                await ch.leave()  # waits for the same leave (it ends at its timeout)
            assert ch.closed and ch.close_reason is ChannelCloseReason.LEFT


async def test_an_unread_channel_says_how_to_read_it_when_it_overflows(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A channel joined only to push still receives broadcasts; held for a reader that never
    # comes, they overflow: the warning says why, and the loss is counted.
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, queue_size=2) as sock:
            ch = await sock.join("room:1")
            for n in range(4):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            while sock.stats.dropped < 2:
                await anyio.sleep(0.01)
            async for msg in ch:  # a late reader gets the newest two
                assert msg.payload == {"n": 2}
                break
    (warning,) = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert "nobody reads this channel yet: pass on_message=" in warning
