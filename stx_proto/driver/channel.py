"""One joined topic, as the user holds it: push, handlers, ``async for``, leave.

A :class:`Channel` is a handle on the kit's :class:`~.router.ChannelRoute` for one join; its
calls go to the socket's :class:`~.session.Session`. It awaits only the runtime's events, so
every driver exports this very class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from .._errors import UsageError
from .._events import ChannelCloseReason
from .._message import ChannelMessage
from .router import ChannelRoute, Handler
from .session import Session

H = TypeVar("H", bound=Handler)


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

    __slots__ = ("__weakref__", "_route", "_session")

    def __init__(self, session: Session, route: ChannelRoute) -> None:
        self._session = session
        self._route = route
        route.handle = self

    # ------------------------------------------------------------------------------------
    # State

    @property
    def topic(self) -> str:
        """The channel's topic."""
        return self._route.topic

    @property
    def join_response(self) -> Any:
        """The server's response to the latest successful join (or rejoin)."""
        return self._route.response

    @property
    def joined(self) -> bool:
        """True while the channel is joined (False while it rejoins after a reconnect)."""
        return self._session.joined(self._route)

    @property
    def closed(self) -> bool:
        """True once the channel is closed for good (left, closed by the server, socket closed)."""
        return self._route.closed

    @property
    def close_reason(self) -> ChannelCloseReason | None:
        """Why the channel closed, or None while it is open."""
        return self._route.close_reason

    def __repr__(self) -> str:
        route = self._route
        if route.close_reason is not None:
            state = f"closed ({route.close_reason.value})"
        elif route.leaving:
            state = "leaving"
        elif self.joined:
            state = "joined"
        else:
            state = "rejoining" if route.joined else "joining"
        return f"<Channel {route.topic!r} {state}>"

    # ------------------------------------------------------------------------------------
    # Handlers and iteration

    def on(self, event: str, handler: H, *, type: Any = None) -> H:
        """Call ``handler(msg)`` (sync or async) for every message with ``event``; return it.

        Handlers run in the socket's dispatch mode, after ``on_message``. A handler that
        raises is logged and passed to ``on_handler_error``; it stops nothing. With ``type``
        (a msgspec ``Struct``; ``pip install 'stx-ws[msgspec]'``), the event's payloads are
        decoded into it from then on, for every consumer of the channel, as ``types=`` of
        ``Socket.join`` does.

        Raises UsageError with ``dispatch="queue"`` (messages then go to
        ``sock.messages()``), or for a ``type`` that cannot be used (msgspec missing, the
        event already has another type, a closed channel).
        """
        self._session.add_handler(self._route, event, handler, type)
        return handler

    def off(self, event: str, handler: Handler) -> None:
        """Remove a handler added with :meth:`on`. Raises UsageError if it is not there."""
        handlers = self._route.handlers
        found = handlers.get(event)
        if not found or handler not in found:
            raise UsageError(f"no such handler for {event!r}")
        found.remove(handler)
        if not found:
            del handlers[event]

    def __aiter__(self) -> AsyncIterator[ChannelMessage]:
        return self._session.iterate(self._route)

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
        return await self._session.push(self._route, event, payload, timeout)

    async def leave(self, *, timeout: float | None = None) -> None:
        """Leave the channel; return once it is closed (the server's reply, or ``timeout``).

        A no-op on a closed channel. Pushes still waiting for the join fail with
        PushFailedError (``channel_closed``).
        """
        await self._session.leave(self._route, timeout)
