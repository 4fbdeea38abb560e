"""One joined topic, as the user holds it: push, handlers, ``async for``, leave.

The whole of a driver's ``Channel``: it awaits only events of its socket's runtime, so both
drivers export this very class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._bounded import BoundedQueue
from ._channel import ChannelState
from ._driver_support import MessageQueue
from ._errors import (
    ConnectionClosedError,
    JoinError,
    QueueOverflowError,
    StxWsError,
    UsageError,
)
from ._events import ChannelCloseReason
from ._message import ChannelMessage
from ._router import ChannelRecord, Pending

if TYPE_CHECKING:
    from ._driver_socket import SocketBase

#: A message handler: ``handler(msg)``, sync or async.
Handler = Callable[[ChannelMessage], object]
H = TypeVar("H", bound=Handler)


_UNREAD_HINT = (
    "; nobody reads this channel yet: pass on_message=, add ch.on(event, handler), "
    "or iterate it with async for"
)


class Channel:
    """A channel joined with ``Socket.join``.

    Messages reach the user through ``on_message`` (given to ``join``), through handlers
    added with :meth:`on`, or by iterating the channel (``async for msg in ch``). A channel
    joined without ``on_message`` (and with ``dispatch`` other than ``"queue"``) buffers its
    messages from the join on, so nothing is missed between ``join`` and the first consumer:
    ``async for`` reads them, or, if :meth:`on` comes first, its handlers get them (and the
    channel stops buffering until it is iterated). Otherwise buffering starts with the first
    iteration. The buffer is bounded like every queue of the socket.

    Iteration ends when the channel is left or the socket closed; it raises
    :class:`~stx_proto.GaveUpError` if the socket gave up, :class:`QueueOverflowError` if the
    channel failed on a full queue (``overflow="error"``), and
    :class:`~stx_proto.ConnectionClosedError` if the server closed the channel.
    """

    __slots__ = ("__weakref__", "_buffer", "_handlers", "_on_message", "_rec", "_socket")

    def __init__(
        self, socket: SocketBase[Any], topic: str, on_message: Handler | None, buffer: bool
    ) -> None:
        self._socket = socket
        self._on_message = on_message
        self._handlers: dict[str, list[Handler]] = {}
        self._buffer: MessageQueue | None = None
        if buffer:
            self._buffer = socket._dispatcher.new_queue(f"channel {topic!r}")
            # Until someone reads it, its overflow warning says how to: a channel joined only
            # to push would otherwise fill up unexplained.
            self._buffer.queue.hint = _UNREAD_HINT
        self._rec: ChannelRecord[Any] = ChannelRecord(topic, self, None)

    # ------------------------------------------------------------------------------------
    # State

    @property
    def topic(self) -> str:
        """The channel's topic."""
        return self._rec.topic

    @property
    def join_response(self) -> Any:
        """The server's response to the latest successful join (or rejoin)."""
        return self._rec.response

    @property
    def joined(self) -> bool:
        """True while the channel is joined (False while it rejoins after a reconnect)."""
        rec = self._rec
        if rec.closed or rec.leaving or not self._socket._router.is_current(rec):
            return False
        return self._socket._client.channel_state(rec.topic) is ChannelState.JOINED

    @property
    def closed(self) -> bool:
        """True once the channel is closed for good (left, closed by the server, socket closed)."""
        return self._rec.closed

    @property
    def close_reason(self) -> ChannelCloseReason | None:
        """Why the channel closed, or None while it is open."""
        return self._rec.close_reason

    def __repr__(self) -> str:
        rec = self._rec
        state = (
            f"closed ({rec.close_reason.value})"
            if rec.close_reason is not None
            else "leaving"
            if rec.leaving
            else "joined"
            if rec.joined
            else "joining"
        )
        return f"<Channel {rec.topic!r} {state}>"

    # ------------------------------------------------------------------------------------
    # Handlers and iteration

    def on(self, event: str, handler: H) -> H:
        """Call ``handler(msg)`` (sync or async) for every message with ``event``; return it.

        Handlers run in the socket's dispatch mode, after ``on_message``. A handler that
        raises is logged and passed to ``on_handler_error``; it stops nothing. Raises
        UsageError with ``dispatch="queue"`` (messages then go to ``sock.messages()``).
        """
        dispatcher = self._socket._dispatcher
        if dispatcher.mode == "queue":
            raise UsageError("dispatch='queue' runs no handlers: read sock.messages()")
        self._handlers.setdefault(event, []).append(handler)
        buffer = self._buffer
        if buffer is not None and not buffer.iterated:
            # Handlers, not iteration, then: what came in since the join goes to them.
            self._buffer = None
            for msg in buffer.take_all():
                dispatcher.deliver(self, msg)
        return handler

    def off(self, event: str, handler: Handler) -> None:
        """Remove a handler added with :meth:`on`. Raises UsageError if it is not there."""
        handlers = self._handlers.get(event)
        if not handlers or handler not in handlers:
            raise UsageError(f"no such handler for {event!r}")
        handlers.remove(handler)
        if not handlers:
            del self._handlers[event]

    def __aiter__(self) -> AsyncIterator[ChannelMessage]:
        buffer = self._buffer
        if buffer is not None:
            buffer.queue.hint = ""
        else:
            buffer = self._buffer = self._socket._dispatcher.new_queue(f"channel {self.topic!r}")
            if self._rec.closed:
                buffer.close(self._end_error())
        return buffer.iterate()

    def _overflow_error(self, queue: BoundedQueue[Any]) -> QueueOverflowError:
        return QueueOverflowError(self.topic, queue.name, queue.maxsize)

    def _end_error(self) -> StxWsError | None:
        """What ends this channel's iteration: None for a normal end."""
        rec = self._rec
        if rec.failure is not None:
            return rec.failure
        if rec.close_reason is ChannelCloseReason.SERVER_CLOSED:
            return ConnectionClosedError(f"channel {rec.topic!r} closed by the server")
        if rec.close_reason is ChannelCloseReason.JOIN_FAILED:
            return JoinError(rec.topic, rec.close_payload, "rejoin refused")
        if rec.close_reason is ChannelCloseReason.SOCKET_CLOSED:
            return self._socket._router.gave_up
        return None

    def _closed(self) -> None:
        """The router retired this channel: end its iteration."""
        if self._buffer is not None:
            self._buffer.close(self._end_error())

    # ------------------------------------------------------------------------------------
    # Calls

    async def push(self, event: str, payload: Any = None, *, timeout: float | None = None) -> Any:
        """Push ``event`` with ``payload`` and return the reply's ``response``.

        A ``bytes`` payload is sent as a binary frame. The push waits (within ``timeout``,
        default the socket's) for the join if the channel is rejoining.

        Raises:
            PushError: the server answered with a status other than ``"ok"``.
            PushTimeout: no reply within ``timeout``.
            PushFailedError: the push ended without a reply (``reason`` says why: the
                channel closed or errored, the connection dropped, the buffer was full).
            GaveUpError: the socket gave up reconnecting.
            UsageError: the channel is closed or leaving, ``event`` is reserved, or the
                payload cannot be encoded.
        """
        sock = self._socket
        self._check_open("push to")
        ref = sock._client.push(
            sock._runtime.now(), self._rec.topic, event, payload, timeout=timeout
        )
        done = sock._runtime.event()
        waiter = Pending(done.set)
        router = sock._router
        router.add_push(ref, event, waiter)
        sock._wake()
        try:
            await done.wait()
        except BaseException:
            # The caller gave up on this push: stop waiting for it, and if it has not gone
            # out yet, make sure it never does (a retried order must not go twice). Both are
            # no-ops for a push that has already ended.
            router.forget_push(ref)
            if sock._client.cancel_push(sock._runtime.now(), ref):
                sock._wake()
            raise
        return waiter.result()

    async def leave(self, *, timeout: float | None = None) -> None:
        """Leave the channel; return once it is closed (the server's reply, or ``timeout``).

        A no-op on a closed channel. Pushes still waiting for the join fail with
        PushFailedError (``channel_closed``).
        """
        sock = self._socket
        rec = self._rec
        if rec.closed or sock._router.closed:
            return
        if not rec.leaving:
            sock._check_running()
            sock._client.leave(sock._runtime.now(), rec.topic, timeout=timeout)
            rec.leaving = True  # only once the core took it: a bad timeout changes nothing
        done = sock._runtime.event()
        sock._router.add_leave(rec, Pending(done.set))
        sock._wake()
        await done.wait()

    def _check_open(self, what: str) -> None:
        rec = self._rec
        if rec.failure is not None:
            raise rec.failure
        self._socket._check_running()
        if rec.closed:
            reason = rec.close_reason.value if rec.close_reason is not None else "closed"
            raise UsageError(f"{what} {rec.topic!r}: the channel is closed ({reason})")
        if rec.leaving:
            raise UsageError(f"{what} {rec.topic!r}: the channel is leaving")
