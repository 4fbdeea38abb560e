"""The dispatcher's per-message fast path (a plain ``on_message`` called at once), on each
runtime: it keeps the order of everything inline, reports failures in turn, and gives way
to the queue whenever anything is queued or running."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from stx_proto import ChannelMessage
from stx_proto.driver import ChannelRoute, Dispatch, Dispatcher, ErrorHandler

from .conftest import Loop

pytestmark = pytest.mark.anyio

LIMIT = 5.0


def message(n: int, topic: str = "room:1") -> ChannelMessage:
    return ChannelMessage(topic, "tick", {"n": n})


def make_dispatcher(
    loop: Loop, mode: Dispatch = "inline", on_handler_error: ErrorHandler | None = None
) -> Dispatcher:
    return Dispatcher(
        mode,
        loop.runtime,
        queue_size=100,
        overflow="drop_newest",
        max_concurrency=1,
        on_handler_error=on_handler_error,
        count_drop=lambda: None,
        fail_channel=lambda route, error: None,
    )


@asynccontextmanager
async def running(dispatcher: Dispatcher) -> AsyncIterator[None]:
    """Run ``dispatcher`` in a task; on exit, close it and wait until it has handled all."""
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dispatcher.run)
            await anyio.wait_all_tasks_blocked()
            yield
            dispatcher.close()


def recorder(trace: list[Any], name: str) -> Callable[[ChannelMessage], None]:
    def handler(msg: ChannelMessage) -> None:
        trace.append((name, msg.payload["n"]))

    return handler


async def test_a_plain_handler_is_called_at_once_when_the_dispatcher_is_idle(
    loop: Loop,
) -> None:
    trace: list[Any] = []
    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", recorder(trace, "h"))
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))
        assert trace == [("h", 1)]  # no task switch needed
        assert not dispatcher.pending


async def test_an_async_handler_always_takes_the_queue(loop: Loop) -> None:
    trace: list[Any] = []

    async def handler(msg: ChannelMessage) -> None:
        trace.append(msg.payload["n"])

    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", handler)
    assert route.plain_on_message is None
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))
        assert trace == [] and dispatcher.pending
    assert trace == [1]


@pytest.mark.parametrize("mode", ["task", "queue"])
async def test_only_inline_mode_calls_at_once(loop: Loop, mode: Dispatch) -> None:
    trace: list[Any] = []
    dispatcher = make_dispatcher(loop, mode)
    route = ChannelRoute("room:1", recorder(trace, "h"))
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))
        assert trace == []


async def test_messages_wait_behind_a_running_async_handler(loop: Loop) -> None:
    # Inline mode runs everything in turn, across channels: a plain handler's message that
    # arrives while an async handler is still running must wait for it.
    trace: list[Any] = []
    release = anyio.Event()

    async def slow(msg: ChannelMessage) -> None:
        trace.append(("slow start", msg.payload["n"]))
        await release.wait()
        trace.append(("slow end", msg.payload["n"]))

    dispatcher = make_dispatcher(loop)
    slow_route = ChannelRoute("room:0", slow)
    plain_route = ChannelRoute("room:1", recorder(trace, "plain"))
    async with running(dispatcher):
        dispatcher.deliver(slow_route, message(0, "room:0"))
        await anyio.wait_all_tasks_blocked()  # the dispatcher is inside slow()
        assert not dispatcher.pending
        dispatcher.deliver(plain_route, message(1))
        dispatcher.deliver(plain_route, message(2))
        assert trace == [("slow start", 0)]
        release.set()
        await anyio.wait_all_tasks_blocked()
        assert trace == [("slow start", 0), ("slow end", 0), ("plain", 1), ("plain", 2)]
        dispatcher.deliver(plain_route, message(3))  # idle again: at once
        assert trace[-1] == ("plain", 3)


async def test_messages_wait_behind_a_queued_hook(loop: Loop) -> None:
    trace: list[Any] = []
    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", recorder(trace, "h"))
    async with running(dispatcher):
        dispatcher.hook(lambda: trace.append("hook"))
        dispatcher.deliver(route, message(1))
        assert trace == []
        await anyio.wait_all_tasks_blocked()
        assert trace == ["hook", ("h", 1)]


async def test_a_message_delivered_from_inside_a_plain_handler_queues_behind_it(
    loop: Loop,
) -> None:
    # Re-entrance: whatever a handler makes arrive while it runs is handled after it returns.
    trace: list[Any] = []
    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", None)

    def handler(msg: ChannelMessage) -> None:
        n = msg.payload["n"]
        trace.append(("start", n))
        if n == 1:
            dispatcher.deliver(route, message(2))
        trace.append(("end", n))

    route = ChannelRoute("room:1", handler)
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))
        assert trace == [("start", 1), ("end", 1)] and dispatcher.pending
        await anyio.wait_all_tasks_blocked()
        assert trace == [("start", 1), ("end", 1), ("start", 2), ("end", 2)]


@pytest.mark.parametrize("async_hook", [False, True])
async def test_a_plain_handlers_exception_is_reported_before_the_next_message(
    loop: Loop, async_hook: bool, caplog: pytest.LogCaptureFixture
) -> None:
    trace: list[Any] = []

    def on_error(exc: Exception, msg: ChannelMessage | None) -> None:
        assert msg is not None
        trace.append(("error", str(exc), msg.payload["n"]))

    async def on_error_async(exc: Exception, msg: ChannelMessage | None) -> None:
        on_error(exc, msg)

    def handler(msg: ChannelMessage) -> None:
        n = msg.payload["n"]
        trace.append(("h", n))
        if n == 1:
            raise ValueError("boom")

    dispatcher = make_dispatcher(loop, on_handler_error=on_error_async if async_hook else on_error)
    route = ChannelRoute("room:1", handler)
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))
        dispatcher.deliver(route, message(2))  # queued behind the report
        await anyio.wait_all_tasks_blocked()
        dispatcher.deliver(route, message(3))
    assert trace == [("h", 1), ("error", "boom", 1), ("h", 2), ("h", 3)]
    assert any("handler" in r.getMessage() and "raised" in r.getMessage() for r in caplog.records)


async def test_a_plain_callable_that_returns_an_awaitable_is_awaited_in_turn(
    loop: Loop,
) -> None:
    # An object with an async __call__ looks like a plain function until it is called.
    trace: list[Any] = []
    errors: list[Any] = []

    class Handler:
        async def __call__(self, msg: ChannelMessage) -> None:
            n = msg.payload["n"]
            await anyio.lowlevel.checkpoint()
            trace.append(n)
            if n == 1:
                raise ValueError("late boom")

    dispatcher = make_dispatcher(
        loop, on_handler_error=lambda exc, msg: errors.append((str(exc), msg))
    )
    route = ChannelRoute("room:1", Handler())
    assert route.plain_on_message is not None
    async with running(dispatcher):
        for n in range(1, 4):
            dispatcher.deliver(route, message(n))
        found_out: object = route.plain_on_message
        assert found_out is None  # the next messages take the queue
        await anyio.wait_all_tasks_blocked()
    assert trace == [1, 2, 3]
    assert errors == [("late boom", message(1))]


async def test_nothing_is_called_after_close(loop: Loop) -> None:
    trace: list[Any] = []
    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", recorder(trace, "h"))
    async with running(dispatcher):
        pass
    dispatcher.deliver(route, message(1))
    dispatcher.abandon()
    dispatcher.deliver(route, message(2))
    assert trace == []


async def test_an_async_handlers_exception_is_reported_in_turn(loop: Loop) -> None:
    errors: list[Any] = []

    async def handler(msg: ChannelMessage) -> None:
        raise ValueError(f"boom {msg.payload['n']}")

    dispatcher = make_dispatcher(loop, on_handler_error=lambda exc, msg: errors.append(str(exc)))
    route = ChannelRoute("room:1", handler)
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))
        dispatcher.deliver(route, message(2))
    assert errors == ["boom 1", "boom 2"]


async def test_before_the_dispatcher_runs_everything_queues(loop: Loop) -> None:
    # The fast path waits for the dispatcher task to be idle: a hook queued before it starts
    # runs first, however long it takes.
    trace: list[Any] = []
    release = anyio.Event()

    async def hook() -> None:
        trace.append("hook start")
        await release.wait()
        trace.append("hook end")

    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", recorder(trace, "h"))
    dispatcher.hook(hook)
    dispatcher.deliver(route, message(1))  # not running yet: queued
    async with running(dispatcher):
        dispatcher.deliver(route, message(2))  # the hook is running: queued
        release.set()
    assert trace == ["hook start", "hook end", ("h", 1), ("h", 2)]


@pytest.mark.parametrize("closeable", [True, False])
async def test_an_abandoned_awaitable_is_closed_not_left_unawaited(
    loop: Loop, closeable: bool
) -> None:
    class Bare:
        """An awaitable with no close()."""

        def __await__(self) -> Any:
            return iter(())

    made: list[Any] = []

    async def run() -> None:
        await anyio.lowlevel.checkpoint()

    def handler(msg: ChannelMessage) -> Any:
        made.append(run() if closeable else Bare())
        return made[-1]

    dispatcher = make_dispatcher(loop)
    route = ChannelRoute("room:1", handler)
    async with running(dispatcher):
        dispatcher.deliver(route, message(1))  # called at once: its awaitable is queued
        dispatcher.deliver(route, message(2))  # behind it: queued as a message
        dispatcher.abandon()
    if closeable:
        assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED
    assert len(made) == 1  # nothing ran after abandon()
