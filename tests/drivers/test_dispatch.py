"""The dispatch modes (inline, task, queue), back-pressure and every overflow policy.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelMessage,
    QueueOverflowError,
    UsageError,
)
from stx_proto.driver import (
    Channel,
)

from .support import LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio


async def test_inline_dispatch_keeps_strict_order_with_async_handlers(
    impl: Impl, srv: TestServer
) -> None:
    trace: list[tuple[str, int]] = []
    done = anyio.Event()

    async def handler(msg: ChannelMessage) -> None:
        n = msg.payload["n"]
        trace.append(("start", n))
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        trace.append(("end", n))
        if n == 2:
            done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            assert sock.dispatch == "inline"
            await sock.join("room:1", on_message=handler)
            for n in range(3):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            await done.wait()
    assert trace == [(step, n) for n in range(3) for step in ("start", "end")]


async def test_inline_handler_awaiting_a_push_does_not_deadlock(
    impl: Impl, srv: TestServer
) -> None:
    replies: list[Any] = []
    done = anyio.Event()
    channel: list[Channel] = []

    async def handler(msg: ChannelMessage) -> None:
        replies.append(await channel[0].push("echo", {"for": msg.payload["n"]}))
        if len(replies) == 2:
            done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            channel.append(await sock.join("room:1", on_message=handler))
            srv.phoenix.broadcast("room:1", "tick", {"n": 1})
            srv.phoenix.broadcast("room:1", "tick", {"n": 2})
            await done.wait()
    assert replies == [{"for": 1}, {"for": 2}]


async def test_task_dispatch_runs_handlers_concurrently(impl: Impl, srv: TestServer) -> None:
    second_arrived = anyio.Event()
    finished: list[int] = []
    done = anyio.Event()

    async def handler(msg: ChannelMessage) -> None:
        n = msg.payload["n"]
        if n == 1:
            await second_arrived.wait()  # would deadlock with inline dispatch
        else:
            second_arrived.set()
        finished.append(n)
        if len(finished) == 2:
            done.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, dispatch="task", max_concurrency=4) as sock:
            await sock.join("room:1", on_message=handler)
            srv.phoenix.broadcast("room:1", "tick", {"n": 1})
            srv.phoenix.broadcast("room:1", "tick", {"n": 2})
            await done.wait()
    assert finished == [2, 1]


async def test_queue_dispatch_hands_messages_to_sock_messages(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, dispatch="queue") as sock:
            with pytest.raises(UsageError):
                await sock.join("room:1", on_message=print)
            a = await sock.join("room:1")
            await sock.join("room:2")
            with pytest.raises(UsageError):
                a.on("tick", print)
            srv.phoenix.broadcast("room:1", "tick", {"n": 1})
            srv.phoenix.broadcast("room:2", "tick", {"n": 2})
            srv.phoenix.broadcast("room:1", "tick", {"n": 3})
            got = []
            async for msg in sock.messages():
                got.append((msg.topic, msg.payload["n"]))
                if len(got) == 3:
                    break
            assert got == [("room:1", 1), ("room:2", 2), ("room:1", 3)]
        # The iteration ends once the socket is closed.
        assert [m async for m in sock.messages()] == []


async def test_queue_dispatch_overflow_drop_newest(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl, srv, dispatch="queue", queue_size=2, overflow="drop_newest"
        ) as sock:
            ch = await sock.join("room:1")
            for n in range(5):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            await ch.push("echo", {})  # its reply comes after the broadcasts
            assert sock.stats.dropped == 3
            it = aiter(sock.messages())
            assert [(await anext(it)).payload["n"] for _ in range(2)] == [0, 1]


async def test_sock_messages_needs_queue_dispatch(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            with pytest.raises(UsageError):
                sock.messages()


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "error"])
async def test_handler_queue_overflow(
    impl: Impl, srv: TestServer, overflow: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = anyio.Event()
    release = anyio.Event()
    handled: list[int] = []
    last = 9 if overflow == "drop_oldest" else 3
    done = anyio.Event()

    async def slow(msg: ChannelMessage) -> None:
        n = msg.payload["n"]
        handled.append(n)
        if n == 0:
            started.set()
            await release.wait()
        if n == last:
            done.set()

    caplog.set_level(logging.WARNING, logger=impl.logger)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, queue_size=3, overflow=overflow) as sock:
            ch = await sock.join("room:1", on_message=slow)
            marker = await sock.join("room:2")
            srv.phoenix.broadcast("room:1", "tick", {"n": 0})
            await started.wait()  # the dispatcher is busy with message 0
            for n in range(1, 10):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            srv.phoenix.broadcast("room:2", "mark", {})
            await anext(aiter(marker))  # every room:1 message came in before it
            # With "error", what comes after the failure in the same read is dropped (in
            # one read of a stream), or stale (in later reads: one message each, picows).
            assert sock.stats.dropped + sock.stats.stale_dropped == 6
            release.set()
            await done.wait()
            if overflow == "error":
                with pytest.raises(QueueOverflowError):
                    await ch.push("echo", {})
                await srv.wait_for_frame(lambda m: m.event == "phx_leave" and m.topic == "room:1")
    expected = {"drop_oldest": [0, 7, 8, 9], "drop_newest": [0, 1, 2, 3], "error": [0, 1, 2, 3]}
    assert handled == expected[overflow]
    warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1  # once per burst, not once per message


async def test_channel_iteration_queue_overflow(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, queue_size=2) as sock:
            ch = await sock.join("room:1")
            marker = await sock.join("room:2")
            for n in range(5):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            srv.phoenix.broadcast("room:2", "mark", {})
            await anext(aiter(marker))
            assert sock.stats.dropped == 3
            it = aiter(ch)
            assert [(await anext(it)).payload["n"] for _ in range(2)] == [3, 4]


async def test_channel_iteration_overflow_error_fails_the_channel(
    impl: Impl, srv: TestServer
) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, queue_size=2, overflow="error") as sock:
            ch = await sock.join("room:1")
            for n in range(3):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            seen = []
            with pytest.raises(QueueOverflowError) as info:
                async for msg in ch:
                    seen.append(msg.payload["n"])
            assert seen == [0, 1]
            assert info.value.topic == "room:1"
            await srv.wait_for_frame(lambda m: m.event == "phx_leave")


async def test_overflow_error_does_not_go_with_queue_dispatch(impl: Impl, srv: TestServer) -> None:
    with pytest.raises(UsageError, match="does not go with"):
        make_socket(impl, srv, dispatch="queue", overflow="error")


async def test_overflow_warnings_use_the_drivers_logger(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, dispatch="queue", queue_size=1) as sock:
            await sock.join("room:1")
            for n in range(3):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            while sock.stats.dropped < 1:
                await anyio.sleep(0.01)
    overflow = [r for r in caplog.records if "queue full" in r.getMessage()]
    assert overflow and {r.name for r in overflow} == {impl.logger}


@pytest.mark.parametrize("dispatch", ["inline", "task", "queue"])
async def test_a_burst_far_larger_than_the_queue_loses_nothing_with_fast_consumers(
    impl: Impl, srv: TestServer, dispatch: str
) -> None:
    # Regression: the pump fed a whole read (hundreds of messages) per loop pass while the task
    # dispatcher started about one handler per pass, so a burst overflowed a queue that fast
    # handlers could easily keep up with. Reads now wait (briefly) for the queue to drain.
    # (A read is handled whole, so the queue must hold several reads: ~240 such messages
    # each; the slack also covers consumers slowed down by coverage tracing.)
    count = 5000
    got: list[int] = []
    with anyio.fail_after(LIMIT * 2):
        async with make_socket(impl, srv, dispatch=dispatch, queue_size=4000) as sock:
            if dispatch == "queue":
                await sock.join("room:1")
            else:
                await sock.join("room:1", on_message=lambda m: got.append(m.payload["n"]))
            conn = srv.phoenix.joined("room:1")[0]
            for n in range(count):
                conn.broadcast("room:1", "tick", {"n": n, "pad": "x" * 200})
            if dispatch == "queue":
                async for msg in sock.messages():
                    got.append(msg.payload["n"])
                    if len(got) == count:
                        break
            else:
                while len(got) < count:
                    await anyio.sleep(0.01)
            assert sock.stats.dropped == 0
    assert got == list(range(count))
