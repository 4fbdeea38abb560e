"""A bounded FIFO with an overflow policy: pure bookkeeping shared by the drivers, no I/O.

Every queue between the connection and user code (the dispatcher's, ``sock.messages()``, a
channel's ``async for``) is one of these. A full queue applies its policy, counts the loss in
``SocketStats.dropped``, and logs one WARNING per burst (a burst ends when the queue has
drained to half its size), so a slow consumer is visible without flooding the log.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

from ._errors import UsageError

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

    __slots__ = ("_burst", "_items", "_logger", "_on_drop", "hint", "maxsize", "name", "policy")

    def __init__(
        self,
        maxsize: int,
        policy: Overflow,
        name: str,
        on_drop: Callable[[], None],
        logger: logging.Logger = _logger,
    ) -> None:
        self._items: deque[T] = deque()
        self._logger = logger
        self.hint = ""  # appended to the overflow warning (what the user can do about it)
        self.maxsize = maxsize
        self.policy = policy
        self.name = name
        self._on_drop = on_drop
        self._burst = False

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def put(self, item: T, topic: str) -> bool:
        """Append ``item``; return False if the policy refused it (``drop_newest``, ``error``).

        Under ``drop_oldest`` the oldest item makes room and True is returned. Under
        ``error`` the caller fails the channel ``topic``. Every loss is counted and the first
        one of a burst logged.
        """
        items = self._items
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
        self._items.append(item)

    def popleft(self) -> T:
        """Remove and return the oldest item. Raises IndexError when empty."""
        item = self._items.popleft()
        if self._burst and len(self._items) <= self.maxsize // 2:
            self._burst = False
        return item

    def clear(self) -> None:
        """Forget every item (nothing is counted: the caller is shutting down)."""
        self._items.clear()
