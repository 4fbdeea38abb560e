"""What the drivers share below the socket: their runtime, wake-ups, queues, user callables.

A driver (``stx_anyio``, ``stx_trio``) describes its event loop with a :class:`Runtime`: its
clock, its event type, its cancellation exception and its logger. Everything in the
``_driver_*`` modules works with any such runtime, because it never starts a task, sleeps,
sets a time limit or touches the network: it only awaits the runtime's events and the user's
own awaitables. What does those things is each driver's, and is all that a driver holds.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import attrs

from ._bounded import BoundedQueue


class AsyncEvent(Protocol):
    """The event type of a runtime (``anyio.Event``, ``trio.Event``)."""

    def set(self) -> None:
        """Wake every waiter, now and later."""

    def is_set(self) -> bool:
        """True once set."""

    async def wait(self) -> None:
        """Return once set."""


@attrs.frozen(slots=True)
class Runtime:
    """A driver's event loop, as the shared driver code sees it.

    ``now()`` is the loop's monotonic clock (the core's ``now`` and every deadline are on
    it); ``event()`` makes an :class:`AsyncEvent`; ``cancelled()`` returns the loop's
    cancellation exception class; ``checkpoint()`` lets other tasks run; ``logger`` is the
    driver's logger.
    """

    now: Callable[[], float]
    event: Callable[[], AsyncEvent]
    cancelled: Callable[[], type[BaseException]]
    checkpoint: Callable[[], Awaitable[None]]
    logger: logging.Logger


class Signal:
    """A wake-up: ``set()`` any number of times; ``wait()`` returns once it was set since the
    last wait returned (several sets in between count as one)."""

    __slots__ = ("_event", "_new_event")

    def __init__(self, new_event: Callable[[], AsyncEvent]) -> None:
        self._new_event = new_event
        self._event = new_event()

    def set(self) -> None:
        """Wake the waiters (now, or at their next wait)."""
        self._event.set()

    async def wait(self) -> None:
        """Wait for :meth:`set`."""
        await self._event.wait()
        if self._event.is_set():  # the first waiter to wake re-arms it, for all of them
            self._event = self._new_event()


class MessageQueue:
    """A :class:`BoundedQueue` that async consumers can wait on, and that can be ended.

    Any number of consumers may wait; :meth:`close` ends it after what is queued (raising
    ``error`` then, if given).
    """

    __slots__ = ("_end", "_event", "_new_event", "_on_low", "closed", "iterated", "queue")

    def __init__(self, queue: BoundedQueue[Any], new_event: Callable[[], AsyncEvent]) -> None:
        self.queue = queue
        self._new_event = new_event
        self._event = new_event()
        self._end: BaseException | None = None
        self._on_low: Callable[[], object] | None = None
        self.closed = False
        self.iterated = False  # True once someone asked for an iterator

    @property
    def backlogged(self) -> bool:
        """True while more than half full."""
        return len(self.queue) > self.queue.maxsize // 2

    def notify_when_drained(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once, when a consumer has taken it down to half full."""
        self._on_low = callback

    def put(self, item: Any, topic: str) -> bool:
        """Queue ``item`` under the overflow policy; False if it was refused (see BoundedQueue)."""
        if self.closed:
            return True  # nobody will read it any more: not a loss to report
        accepted = self.queue.put(item, topic)
        self._event.set()
        return accepted

    def put_control(self, item: Any) -> None:
        """Queue ``item`` whatever the bound."""
        if not self.closed:
            self.queue.put_control(item)
            self._event.set()

    def close(self, error: BaseException | None = None) -> None:
        """No more items: consumers get what is queued, then the end (or ``error``)."""
        if not self.closed:
            self.closed = True
            self._end = error
            self._event.set()

    def abandon(self) -> None:
        """Forget what is queued and end now (the consumers are gone)."""
        self.queue.clear()
        self.close()

    async def get(self) -> Any:
        """The next item. Raises StopAsyncIteration at the end, or the error it was closed with."""
        queue = self.queue
        while True:
            if queue:
                item = queue.popleft()
                on_low = self._on_low
                if on_low is not None and len(queue) <= queue.maxsize // 2:
                    self._on_low = None
                    on_low()
                return item
            if self.closed:
                if self._end is not None:
                    raise self._end
                raise StopAsyncIteration
            if self._event.is_set():
                self._event = self._new_event()
            await self._event.wait()

    def iterate(self) -> AsyncIterator[Any]:
        """An iterator over every item until the end (a plain object: nothing to finalize)."""
        self.iterated = True
        return _QueueIterator(self)

    def take_all(self) -> list[Any]:
        """Remove and return every queued item."""
        queue = self.queue
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


class Credential:
    """A user's params, token or headers: a value, or a (sync or async) callable.

    The connection task calls :meth:`refresh` before each connect; the core gets a sync
    callable reading the cached result, so it never sees a coroutine and never calls the
    user's function a second time.
    """

    __slots__ = ("_source", "_value")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._value: Any = None

    def for_core(self) -> Any:
        """What to give the core: the value itself, or a callable returning the cached one."""
        return self._read if callable(self._source) else self._source

    def _read(self) -> Any:
        return self._value

    async def refresh(self) -> None:
        """Call the user's callable (awaiting it if async) and cache the result."""
        source = self._source
        if callable(source):
            value = source()
            if inspect.isawaitable(value):
                value = await value
            self._value = value


def describe_error(exc: BaseException, _depth: int = 0) -> str:
    """``Type: message`` for ``exc``, followed by its causes in parentheses.

    Stream libraries wrap the error that says what happened (a TLS verification failure
    behind ``trio.BrokenResourceError``, a refused connection behind an exception group), so
    the causes, and a group's members, are where the reason is. Nesting stops at four levels
    (which also ends a cycle of causes).
    """
    deeper = _depth < 4
    members = getattr(exc, "exceptions", None)
    if deeper and isinstance(members, tuple) and members:
        return "; ".join(describe_error(member, _depth + 1) for member in members)
    text = str(exc)
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__
    if deeper and cause is not None:
        line = f"{line} ({describe_error(cause, _depth + 1)})"
    return line
