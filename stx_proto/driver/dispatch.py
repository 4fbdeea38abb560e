"""Running user code: handlers and hooks, in the order and concurrency the user chose.

The pump hands messages and hook calls to the dispatcher through a bounded queue and goes back
to the connection. So a handler that awaits ``ch.push()`` cannot deadlock the pump (the pump
keeps reading and resolving replies), and a slow async handler costs queue space, counted and
logged on overflow, not heartbeats.

One exception, the per-message fast path: in ``inline`` mode, a message whose channel has only
a plain (not ``async def``) ``on_message`` is handled by calling it at once, in the task that
decoded it, when the dispatcher is idle (nothing queued, nothing running). A plain function
cannot await, so it cannot deadlock anything, and it would hold the event loop for as long in
any task; what is saved is a queue put, a poll and a task switch per message. Order is kept:
while anything is queued or running, messages queue behind it. A handler's exception is
reported in turn through the queue, as from the dispatcher task; a "plain" function that
returns an awaitable (an object with an ``async def __call__``) has it awaited in turn, and its
channel's later messages take the queue.

Modes: ``inline`` runs everything in one task, in order, awaiting async handlers; ``task``
starts each call in its own task, at most ``max_concurrency`` at a time; ``queue`` runs no
message handlers at all (messages go to ``sock.messages()``) and runs hooks inline.

Tasks, semaphores and events come from the socket's :class:`~.runtime.Runtime`, so one
dispatcher serves every driver.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from .._errors import QueueOverflowError, StxWsError, UsageError
from .._message import ChannelMessage
from .queues import BoundedQueue, MessageQueue, Overflow
from .router import ChannelRoute
from .runtime import Runtime

Dispatch = Literal["inline", "task", "queue"]
DISPATCH_MODES: tuple[Dispatch, ...] = ("inline", "task", "queue")

#: ``on_handler_error(exc, msg)``: ``msg`` is None when a hook raised.
ErrorHandler = Callable[[Exception, "ChannelMessage | None"], object]

#: A work item: (route, message) for a message, (None, (hook, args)) for a hook call.
WorkItem = tuple[Any, Any]


async def call_user(fn: Callable[..., object], *args: Any) -> None:
    """Call a sync or async ``fn``; exceptions propagate."""
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


def check_dispatch_options(dispatch: str, max_concurrency: int, overflow: str) -> Dispatch:
    """Validate the dispatch mode and ``max_concurrency``; return the mode. Raises UsageError."""
    for mode in DISPATCH_MODES:
        if dispatch == mode:
            break
    else:
        raise UsageError(f"dispatch must be one of {DISPATCH_MODES}, got {dispatch!r}")
    if not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise UsageError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
    if mode == "queue" and overflow == "error":
        # sock.messages() is shared by every channel: "error" would fail whichever channel's
        # message happened to find it full, and the reader would never know.
        raise UsageError('overflow="error" does not go with dispatch="queue"')
    return mode


class Dispatcher:
    """Runs handlers and hooks for one socket. See the module docstring."""

    def __init__(
        self,
        mode: Dispatch,
        runtime: Runtime,
        *,
        queue_size: int,
        overflow: Overflow,
        max_concurrency: int,
        on_handler_error: ErrorHandler | None,
        count_drop: Callable[[], None],
        fail_channel: Callable[[ChannelRoute, StxWsError], None],
    ) -> None:
        self.mode = mode
        self.queue_size = queue_size
        self.overflow = overflow
        self._runtime = runtime
        self._count_drop = count_drop
        self._fail_channel = fail_channel
        self._on_handler_error = on_handler_error
        self._max_concurrency = max_concurrency
        self._work = self.new_queue("handler")
        self._queued = self._work.queue.items  # what waits for the dispatcher task
        # The fast path's test (module docstring): inline mode, the dispatcher task waiting
        # for work (it sets this), no direct call in progress, not closed. Whether anything
        # is queued is checked per message.
        self._idle = False
        #: The queue behind ``sock.messages()`` (dispatch="queue" only).
        self.messages: MessageQueue | None = (
            self.new_queue("sock.messages()") if mode == "queue" else None
        )
        self.done = runtime.event()
        #: Handlers of every message of every channel (``Socket.add_handler``), run after
        #: each channel's own.
        self.all_handlers: list[Callable[[ChannelMessage], object]] = []

    def new_queue(self, name: str) -> MessageQueue:
        """A queue with the socket's size and policy (for a channel's ``async for``)."""
        runtime = self._runtime
        return MessageQueue(
            BoundedQueue(self.queue_size, self.overflow, name, self._count_drop, runtime.logger),
            runtime.event,
        )

    @property
    def pending(self) -> bool:
        """True while handler work is queued (the pump then lets the dispatcher run)."""
        return bool(self._work.queue)

    def backlog(self) -> MessageQueue | None:
        """The queue that is more than half full (handler work, or ``sock.messages()``)."""
        messages = self.messages
        if messages is not None:
            return messages if messages.backlogged else None
        return self._work if self._work.backlogged else None

    # ------------------------------------------------------------------------------------
    # Input (from the pump: synchronous, never blocks)

    def deliver(self, route: ChannelRoute, msg: ChannelMessage) -> None:
        """Hand ``msg`` of ``route``'s channel to its consumers."""
        if route.failure is not None:
            # The channel failed (a full queue under overflow="error") and is being left:
            # what still arrives for it reaches nobody, and is counted as lost.
            self._count_drop()
            return
        buffer = route.buffer
        if buffer is not None and not buffer.put(msg, msg.topic):
            self._overflowed(route, buffer)
        fn = route.plain_on_message
        # _idle is only ever True in inline mode (so no sock.messages() queue either).
        if (
            fn is not None
            and self._idle
            and not self._queued
            and not route.handlers
            and not self.all_handlers
        ):
            # The fast path (module docstring): fn(msg) here and now. While it runs, a
            # message it makes arrive (re-entrance) queues behind it.
            self._idle = False
            try:
                result = fn(msg)
            except Exception as exc:
                self._work.put_control((None, (self.handler_failed, (exc, msg, fn))))
            else:
                if result is not None and inspect.isawaitable(result):
                    route.plain_on_message = None
                    self._work.put_control((None, (self._await_result, (result, msg, fn))))
            finally:
                self._idle = not self._work.closed
            return
        messages = self.messages
        if messages is not None:
            if not messages.put(msg, msg.topic):
                self._overflowed(route, messages)
        elif (route.on_message is not None or route.handlers or self.all_handlers) and not (
            self._work.put((route, msg), msg.topic)
        ):
            self._overflowed(route, self._work)

    async def _await_result(
        self, result: Awaitable[object], msg: ChannelMessage, fn: Callable[..., object]
    ) -> None:
        try:
            await result
        except Exception as exc:
            await self.handler_failed(exc, msg, fn)

    def hook(self, fn: Callable[..., object] | None, *args: Any) -> None:
        """Call the hook ``fn(*args)`` (if given) in turn with the messages; never dropped."""
        if fn is not None:
            self._work.put_control((None, (fn, args)))

    def report(self, exc: Exception, msg: ChannelMessage) -> None:
        """Pass ``exc`` and ``msg`` to ``on_handler_error`` (if given), in turn with the
        messages; never dropped. For what failed before any handler ran (a typed payload that
        did not fit): the caller has logged it."""
        if self._on_handler_error is not None:
            self._work.put_control((None, (self._report, (exc, msg))))

    async def _report(self, exc: Exception, msg: ChannelMessage) -> None:
        on_error = self._on_handler_error
        assert on_error is not None  # report() queues this only with a hook
        try:
            await call_user(on_error, exc, msg)
        except Exception as exc2:
            self._runtime.logger.warning("on_handler_error raised", exc_info=exc2)

    def close(self) -> None:
        """No more input: :meth:`run` returns once everything queued has been handled."""
        self._idle = False
        self._work.close()

    def abandon(self) -> None:
        """Stop: forget what is queued."""
        self._idle = False
        for route, data in self._work.queue.items:
            if route is None and data[0] == self._await_result:
                # Never awaited now: close it, or Python warns that it was never awaited.
                awaitable = data[1][0]
                close = getattr(awaitable, "close", None)
                if close is not None:
                    close()
        self._work.abandon()

    def _overflowed(self, route: ChannelRoute, queue: MessageQueue) -> None:
        if self.overflow == "error":
            bounded = queue.queue
            self._fail_channel(
                route, QueueOverflowError(route.topic, bounded.name, bounded.maxsize)
            )

    # ------------------------------------------------------------------------------------
    # The dispatcher task

    async def run(self) -> None:
        """Handle work items until closed and drained; sets :attr:`done` at the end."""
        try:
            if self.mode == "task":
                await self._run_tasks()
            else:
                await self._run_inline()
        finally:
            self.done.set()

    async def _run_inline(self) -> None:
        """``inline`` (and ``queue``'s hooks): every item in turn. The per-message path:
        what is queued is taken without awaiting, and a channel with only a sync
        ``on_message`` is called directly, with no coroutine made per message."""
        work = self._work
        poll = work.poll
        while True:
            item = poll()
            if item is None:
                # Idle: a message may be handled by the fast path until the next item.
                self._idle = not work.closed and self.mode == "inline"
                try:
                    item = await work.get()
                except StopAsyncIteration:
                    return
                self._idle = False
            route, msg = item
            if route is not None and not route.handlers and not self.all_handlers:
                fn = route.on_message
                try:
                    result = fn(msg)
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    await self.handler_failed(exc, msg, fn)
                continue
            await self._run_item(item)

    async def _run_tasks(self) -> None:
        """``dispatch="task"``: each item in a task of its own, at most ``max_concurrency`` at
        once, until the queue ends."""
        limit = self._runtime.semaphore(self._max_concurrency)

        async def run_one(item: WorkItem) -> None:
            try:
                await self._run_item(item)
            finally:
                limit.release()

        async with self._runtime.task_group() as tg:
            async for item in self._work.iterate():
                await limit.acquire()
                tg.start_soon(run_one, item)

    async def _run_item(self, item: WorkItem) -> None:
        route, data = item
        if route is None:
            fn, args = data
            await self._guarded(None, fn, *args)
            return
        msg: ChannelMessage = data
        on_message = route.on_message
        if on_message is not None:
            await self._guarded(msg, on_message, msg)
        handlers = route.handlers.get(msg.event)
        if handlers:
            for handler in tuple(handlers):
                await self._guarded(msg, handler, msg)
        every = self.all_handlers
        if every:
            for handler in tuple(every):
                await self._guarded(msg, handler, msg)

    async def _guarded(
        self, msg: ChannelMessage | None, fn: Callable[..., object], *args: Any
    ) -> None:
        try:
            await call_user(fn, *args)
        except Exception as exc:
            await self.handler_failed(exc, msg, fn)

    async def handler_failed(
        self, exc: Exception, msg: ChannelMessage | None, fn: Callable[..., object]
    ) -> None:
        """Log a handler's exception at WARNING and pass it to ``on_handler_error``."""
        logger = self._runtime.logger
        name = getattr(fn, "__qualname__", None) or repr(fn)
        if msg is None:
            logger.warning("hook %s raised", name, exc_info=exc)
        else:
            logger.warning(
                "handler %s raised on %r event %r", name, msg.topic, msg.event, exc_info=exc
            )
        on_error = self._on_handler_error
        if on_error is not None:
            try:
                await call_user(on_error, exc, msg)
            except Exception as exc2:
                logger.warning("on_handler_error raised", exc_info=exc2)
