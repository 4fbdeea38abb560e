"""The runtime interface: what the driver kit needs of an event loop, and nothing more.

A driver describes its event loop with one :class:`Runtime` value: its clock, its event,
task-group, cancel-scope and semaphore types, its cancellation exception, a checkpoint, and
its logger. anyio and trio fit it as they are (their task groups, cancel scopes, events and
semaphores have the same shape), and so can any loop with structured concurrency. Everything
else in the kit is written against this interface, so it runs unchanged on every driver.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol

import attrs


class AsyncEvent(Protocol):
    """A one-shot event (``anyio.Event``, ``trio.Event``)."""

    def set(self) -> None:
        """Wake every waiter, now and later."""

    def is_set(self) -> bool:
        """True once set."""

    async def wait(self) -> None:
        """Return once set."""


class CancelScope(Protocol):
    """A cancel scope entered with ``with`` (``anyio.CancelScope``, ``trio.CancelScope``)."""

    deadline: float

    def cancel(self) -> None:
        """Cancel what runs inside the scope."""

    @property
    def cancelled_caught(self) -> bool:
        """True if the scope caught its own cancellation on exit."""

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool | None: ...


class TaskGroup(Protocol):
    """A task group, or nursery: tasks started in it end before its ``async with`` does."""

    @property
    def cancel_scope(self) -> CancelScope:
        """The scope that cancels every task of the group."""

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> object:
        """Start ``fn(*args)`` in the group."""


class Semaphore(Protocol):
    """A counting semaphore (``anyio.Semaphore``, ``trio.Semaphore``)."""

    async def acquire(self) -> None:
        """Take one unit, waiting for it."""

    def release(self) -> None:
        """Give one unit back."""


@attrs.frozen(slots=True)
class Runtime:
    """A driver's event loop, as the driver kit sees it.

    ``now()`` is the loop's monotonic clock (the core's ``now`` and every deadline are on it);
    ``event()`` makes an :class:`AsyncEvent`; ``task_group()`` an async context manager giving
    a :class:`TaskGroup`; ``cancel_scope(deadline=..., shield=...)`` a :class:`CancelScope`
    (``math.inf``: no deadline); ``semaphore(n)`` a :class:`Semaphore`; ``cancelled()``
    returns the loop's cancellation exception class; ``checkpoint()`` lets other tasks run;
    ``logger`` is the driver's logger (every record of the kit goes to it); ``check_loop()``
    says clearly when the driver is used on a loop it cannot run on; ``current_task()``
    returns a value that identifies the running task (equal for the same task), so that the
    kit can tell a caller that it must exit a task group in the task that entered it (the
    default, None for every task, turns that check off).
    """

    now: Callable[[], float]
    event: Callable[[], AsyncEvent]
    task_group: Callable[[], AbstractAsyncContextManager[TaskGroup]]
    cancel_scope: Callable[..., CancelScope]
    semaphore: Callable[[int], Semaphore]
    cancelled: Callable[[], type[BaseException]]
    checkpoint: Callable[[], Awaitable[None]]
    logger: logging.Logger
    #: Raises UsageError when called outside a loop this runtime can run on (a trio-only
    #: driver under asyncio, say); called when a socket starts.
    check_loop: Callable[[], None] = attrs.field(default=lambda: None)
    #: Unix time in seconds (``time.time``): what signed handshakes are stamped with. None
    #: when the driver has none to offer (signing then needs ``wall_clock=`` from the user).
    wall_clock: Callable[[], float] | None = None
    #: Identifies the running task (see above); called by ``connect()`` and ``close()``.
    current_task: Callable[[], object] = attrs.field(default=lambda: None)
    #: Monotonic real time in seconds (``time.perf_counter``), for busy-polling budgets (the
    #: loop's clock may be a virtual one, which stands still while a task spins). None:
    #: the socket's ``busy_poll`` is off.
    real_clock: Callable[[], float] | None = None


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


def is_cancellation(exc: BaseException | None, cancelled: type[BaseException]) -> bool:
    """True for the loop's cancellation, alone or as the only content of exception groups."""
    if exc is None:
        return False
    if isinstance(exc, cancelled):
        return True
    # An exception group (a nursery or task group in the body): duck-typed, because Python
    # 3.10 has no BaseExceptionGroup built in.
    inner = getattr(exc, "exceptions", None)
    return (
        isinstance(inner, tuple)
        and bool(inner)
        and all(is_cancellation(e, cancelled) for e in inner)
    )
