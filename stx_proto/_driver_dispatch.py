"""Running user code: handlers and hooks, in the order and concurrency the user chose.

The pump never runs user code: it hands messages and hook calls to the dispatcher through a
bounded queue and goes back to the connection. So a handler that awaits ``ch.push()`` cannot
deadlock the pump (the pump keeps reading and resolving replies), and a slow handler costs
queue space, counted and logged on overflow, not heartbeats.

Modes: ``inline`` runs everything in one task, in order, awaiting async handlers; ``task``
starts each call in its own task, at most ``max_concurrency`` at a time; ``queue`` runs no
message handlers at all (messages go to ``sock.messages()``) and runs hooks inline.

Everything but starting those tasks is here; a driver's dispatcher adds
:meth:`DispatcherBase._run_tasks` with its task group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from ._bounded import BoundedQueue, Overflow
from ._driver_support import MessageQueue, Runtime, call_user
from ._errors import StxWsError, UsageError
from ._message import ChannelMessage

if TYPE_CHECKING:
    from ._driver_channel import Channel

Dispatch = Literal["inline", "task", "queue"]
DISPATCH_MODES: tuple[Dispatch, ...] = ("inline", "task", "queue")

#: ``on_handler_error(exc, msg)``: ``msg`` is None when a hook raised.
ErrorHandler = Callable[[Exception, "ChannelMessage | None"], object]

#: A work item: (channel, message) for a message, (None, (hook, args)) for a hook call.
WorkItem = tuple[Any, Any]


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


class DispatcherBase(ABC):
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
        fail_channel: Callable[[Channel, StxWsError], None],
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
        #: The queue behind ``sock.messages()`` (dispatch="queue" only).
        self.messages: MessageQueue | None = (
            self.new_queue("sock.messages()") if mode == "queue" else None
        )
        self.done = runtime.event()

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
            self._fail_channel(channel, channel._overflow_error(queue.queue))

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

    @abstractmethod
    async def _run_tasks(self) -> None:
        """``dispatch="task"``: run each item of ``self._work`` with :meth:`_run_item` in a
        task of its own, at most ``self._max_concurrency`` at once, until the queue ends."""
        raise NotImplementedError

    async def _run_item(self, item: WorkItem) -> None:
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
