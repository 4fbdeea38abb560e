"""Running user code: handlers and hooks, in the order and concurrency the user chose.

The pump never runs user code: it hands messages and hook calls to the :class:`Dispatcher`
through a bounded queue and goes back to the connection. So a handler that awaits
``ch.push()`` cannot deadlock the pump (the pump keeps reading and resolving replies), and a
slow handler costs queue space, counted and logged on overflow, not heartbeats.

Modes: ``inline`` runs everything in one task, in order, awaiting async handlers; ``task``
starts each call in its own task, at most ``max_concurrency`` at a time; ``queue`` runs no
message handlers at all (messages go to ``sock.messages()``) and runs hooks inline.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio

from stx_proto import ChannelMessage, StxWsError
from stx_proto._bounded import BoundedQueue, Overflow

if TYPE_CHECKING:
    from ._channel import Channel

logger = logging.getLogger("stx_anyio")

Dispatch = Literal["inline", "task", "queue"]
DISPATCH_MODES: tuple[Dispatch, ...] = ("inline", "task", "queue")

#: ``on_handler_error(exc, msg)``: ``msg`` is None when a hook raised.
ErrorHandler = Callable[[Exception, "ChannelMessage | None"], object]

# A work item: (channel, message) for a message, (None, (hook, args)) for a hook call.
_Item = tuple[Any, Any]


class Signal:
    """A wake-up: ``set()`` any number of times; ``wait()`` returns once it was set since the
    last wait returned (several sets in between count as one)."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        """Wake the waiters (now, or at their next wait)."""
        self._event.set()

    async def wait(self) -> None:
        """Wait for :meth:`set`."""
        await self._event.wait()
        if self._event.is_set():  # the first waiter to wake re-arms it, for all of them
            self._event = anyio.Event()


class MessageQueue:
    """A :class:`BoundedQueue` that async consumers can wait on, and that can be ended.

    Any number of consumers may wait; :meth:`close` ends it after what is queued (raising
    ``error`` then, if given).
    """

    __slots__ = ("_end", "_event", "_queue", "closed", "iterated")

    def __init__(self, queue: BoundedQueue[Any]) -> None:
        self._queue = queue
        self._event = anyio.Event()
        self._end: BaseException | None = None
        self.closed = False
        self.iterated = False  # True once someone asked for an iterator

    def put(self, item: Any, topic: str) -> bool:
        """Queue ``item`` under the overflow policy; False if it was refused (see BoundedQueue)."""
        if self.closed:
            return True  # nobody will read it any more: not a loss to report
        accepted = self._queue.put(item, topic)
        self._event.set()
        return accepted

    def put_control(self, item: Any) -> None:
        """Queue ``item`` whatever the bound."""
        if not self.closed:
            self._queue.put_control(item)
            self._event.set()

    def close(self, error: BaseException | None = None) -> None:
        """No more items: consumers get what is queued, then the end (or ``error``)."""
        if not self.closed:
            self.closed = True
            self._end = error
            self._event.set()

    def abandon(self) -> None:
        """Forget what is queued and end now (the consumers are gone)."""
        self._queue.clear()
        self.close()

    async def get(self) -> Any:
        """The next item. Raises StopAsyncIteration at the end, or the error it was closed with."""
        queue = self._queue
        while True:
            if queue:
                return queue.popleft()
            if self.closed:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            if self._event.is_set():
                self._event = anyio.Event()
            await self._event.wait()

    def iterate(self) -> AsyncIterator[Any]:
        """An iterator over every item until the end (a plain object: nothing to finalize)."""
        self.iterated = True
        return _QueueIterator(self)

    def take_all(self) -> list[Any]:
        """Remove and return every queued item."""
        queue = self._queue
        items = []
        while queue:
            items.append(queue.popleft())
        return items


class _QueueIterator:
    __slots__ = ("_queue",)

    def __init__(self, queue: MessageQueue) -> None:
        self._queue = queue

    def __aiter__(self) -> _QueueIterator:
        return self

    async def __anext__(self) -> Any:
        return await self._queue.get()


async def call_user(fn: Callable[..., object], *args: Any) -> None:
    """Call a sync or async ``fn``; exceptions propagate."""
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


class Dispatcher:
    """Runs handlers and hooks for one socket. See the module docstring."""

    def __init__(
        self,
        mode: Dispatch,
        *,
        queue_size: int,
        overflow: Overflow,
        max_concurrency: int,
        on_handler_error: ErrorHandler | None,
        count_drop: Callable[[], None],
        fail_channel: Callable[[Channel, StxWsError], None],
    ) -> None:
        self.mode = mode
        self.queue_size = queue_size
        self.overflow = overflow
        self._count_drop = count_drop
        self._fail_channel = fail_channel
        self._on_handler_error = on_handler_error
        self._max_concurrency = max_concurrency
        self._work = MessageQueue(BoundedQueue(queue_size, overflow, "handler", count_drop))
        #: The queue behind ``sock.messages()`` (dispatch="queue" only).
        self.messages: MessageQueue | None = (
            MessageQueue(BoundedQueue(queue_size, overflow, "sock.messages()", count_drop))
            if mode == "queue"
            else None
        )
        self.done = anyio.Event()

    def new_queue(self, name: str) -> MessageQueue:
        """A queue with the socket's size and policy (for a channel's ``async for``)."""
        return MessageQueue(BoundedQueue(self.queue_size, self.overflow, name, self._count_drop))

    # ------------------------------------------------------------------------------------
    # Input (from the pump: synchronous, never blocks)

    def deliver(self, channel: Channel, msg: ChannelMessage) -> None:
        """Hand ``msg`` of ``channel`` to its consumers."""
        buffer = channel._buffer
        if buffer is not None and not buffer.put(msg, msg.topic):
            self._overflowed(channel, buffer)
        messages = self.messages
        if messages is not None:
            if not messages.put(msg, msg.topic):
                self._overflowed(channel, messages)
        elif (channel._on_message is not None or channel._handlers) and not self._work.put(
            (channel, msg), msg.topic
        ):
            self._overflowed(channel, self._work)

    def hook(self, fn: Callable[..., object] | None, *args: Any) -> None:
        """Call the hook ``fn(*args)`` (if given) in turn with the messages; never dropped."""
        if fn is not None:
            self._work.put_control((None, (fn, args)))

    def close(self) -> None:
        """No more input: :meth:`run` returns once everything queued has been handled."""
        self._work.close()

    def abandon(self) -> None:
        """Stop: forget what is queued."""
        self._work.abandon()

    def _overflowed(self, channel: Channel, queue: MessageQueue) -> None:
        if self.overflow == "error":
            self._fail_channel(channel, channel._overflow_error(queue._queue))

    # ------------------------------------------------------------------------------------
    # The dispatcher task

    async def run(self) -> None:
        """Handle work items until closed and drained; sets :attr:`done` at the end."""
        try:
            if self.mode == "task":
                await self._run_tasks()
            else:
                async for item in self._work.iterate():
                    await self._run_item(item)
        finally:
            self.done.set()

    async def _run_tasks(self) -> None:
        limit = anyio.Semaphore(self._max_concurrency)

        async def run_one(item: _Item) -> None:
            try:
                await self._run_item(item)
            finally:
                limit.release()

        async with anyio.create_task_group() as tg:
            async for item in self._work.iterate():
                await limit.acquire()
                tg.start_soon(run_one, item)

    async def _run_item(self, item: _Item) -> None:
        channel, data = item
        if channel is None:
            fn, args = data
            await self._guarded(None, fn, *args)
            return
        msg: ChannelMessage = data
        on_message = channel._on_message
        if on_message is not None:
            await self._guarded(msg, on_message, msg)
        handlers = channel._handlers.get(msg.event)
        if handlers:
            for handler in tuple(handlers):
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
