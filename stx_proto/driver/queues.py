"""Bounded queues: every queue between the connection and user code, and how it overflows.

Every queue between the connection and user code (the dispatcher's, ``sock.messages()``, a
channel's ``async for``) is a :class:`MessageQueue` around a :class:`BoundedQueue`. A full
queue applies its policy, counts the loss in ``SocketStats.dropped``, and logs one WARNING per
burst (a burst ends when the queue has drained to half its size), so a slow consumer is
visible without flooding the log. Consumers wait on the runtime's events; producers (the pump)
never wait.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, Literal, TypeVar

from .._errors import UsageError
from .runtime import AsyncEvent

_logger = logging.getLogger("stx_ws")  # drivers pass their own

T = TypeVar("T")

Overflow = Literal["drop_oldest", "drop_newest", "error"]
OVERFLOW_POLICIES: tuple[Overflow, ...] = ("drop_oldest", "drop_newest", "error")


def check_queue_options(queue_size: int, overflow: str) -> Overflow:
    """Validate ``queue_size`` and ``overflow``; return the policy. Raises UsageError."""
    if not isinstance(queue_size, int) or queue_size < 1:
        raise UsageError(f"queue_size must be an int >= 1, got {queue_size!r}")
    for policy in OVERFLOW_POLICIES:
        if overflow == policy:
            return policy
    raise UsageError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")


class BoundedQueue(Generic[T]):
    """A FIFO of at most ``maxsize`` items with an overflow ``policy``.

    ``on_drop`` is called once for every item lost (to count it). ``name`` appears in the
    burst warning. Control items (:meth:`put_control`) bypass the bound: they are rare and must
    never be lost (lifecycle hooks).
    """

    __slots__ = ("_burst", "_logger", "_on_drop", "hint", "items", "maxsize", "name", "policy")

    def __init__(
        self,
        maxsize: int,
        policy: Overflow,
        name: str,
        on_drop: Callable[[], None],
        logger: logging.Logger = _logger,
    ) -> None:
        #: The items, oldest first. Read it freely (its truth is a C-level test, cheaper than
        #: this object's); change it only through the methods.
        self.items: deque[T] = deque()
        self._logger = logger
        self.hint = ""  # appended to the overflow warning (what the user can do about it)
        self.maxsize = maxsize
        self.policy = policy
        self.name = name
        self._on_drop = on_drop
        self._burst = False

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def put(self, item: T, topic: str) -> bool:
        """Append ``item``; return False if the policy refused it (``drop_newest``, ``error``).

        Under ``drop_oldest`` the oldest item makes room and True is returned. Under
        ``error`` the caller fails the channel ``topic``. Every loss is counted and the first
        one of a burst logged.
        """
        items = self.items
        if len(items) < self.maxsize:
            items.append(item)
            return True
        self._on_drop()
        if not self._burst:
            self._burst = True
            self._logger.warning(
                "%s queue full (%d messages, first overflow on %r): %s; further losses in "
                "this burst are only counted in stats.dropped%s",
                self.name,
                self.maxsize,
                topic,
                "failing the channel" if self.policy == "error" else self.policy.replace("_", " "),
                self.hint,
            )
        if self.policy == "drop_oldest":
            items.popleft()
            items.append(item)
            return True
        return False

    def put_control(self, item: T) -> None:
        """Append ``item`` whatever the bound."""
        self.items.append(item)

    def popleft(self) -> T:
        """Remove and return the oldest item. Raises IndexError when empty."""
        item = self.items.popleft()
        if self._burst and len(self.items) <= self.maxsize // 2:
            self._burst = False
        return item

    def clear(self) -> None:
        """Forget every item (nothing is counted: the caller is shutting down)."""
        self.items.clear()


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

    def poll(self) -> Any:
        """The next item if one is queued, else None (items are never None)."""
        queue = self.queue
        if not queue:
            return None
        item = queue.popleft()
        on_low = self._on_low
        if on_low is not None and len(queue) <= queue.maxsize // 2:
            self._on_low = None
            on_low()
        return item

    async def get(self) -> Any:
        """The next item. Raises StopAsyncIteration at the end, or the error it was closed with."""
        queue = self.queue
        while True:
            if queue:
                return self.poll()
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
