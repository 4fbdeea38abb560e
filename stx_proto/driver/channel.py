"""One joined topic, as the user holds it: push, handlers, ``async for``, leave.

A :class:`Channel` is a handle on the kit's :class:`~.router.ChannelRoute` for one join; its
calls go to the socket's :class:`~.session.Session`. It awaits only the runtime's events, so
every driver exports this very class.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, overload

from .._channel import ChannelState
from .._errors import UsageError
from .._events import ChannelCloseReason, PresenceChanged
from .._message import ChannelMessage
from .._presence import OnJoin, OnLeave, OnSync, Presence, PresenceState
from .router import ChannelRoute, Handler
from .session import Session

H = TypeVar("H", bound=Handler)
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])


class ChannelPresence:
    """Who is present on a channel joined with ``presence=True`` (phoenix.js ``Presence``).

    The state follows the server's ``presence_state`` and ``presence_diff`` messages (kept by
    the core, which queues diffs that come before the state of the current join). The
    callbacks (sync or async) run in the socket's dispatcher, in order with the messages,
    for changes handled after they are set: set them before connecting
    (``Socket.subscribe``), or read :meth:`list` after ``join`` returns.
    """

    __slots__ = ("_on_join", "_on_leave", "_on_sync", "_tracker")

    def __init__(self, tracker: Presence) -> None:
        self._tracker = tracker
        self._on_join: OnJoin | None = None
        self._on_leave: OnLeave | None = None
        self._on_sync: OnSync | None = None

    @property
    def tracker(self) -> Presence:
        """The core's tracker (``stx_proto.Presence``) this view reads."""
        return self._tracker

    @property
    def state(self) -> PresenceState:
        """``key -> {"metas": [...]}``: a snapshot, never changed afterwards. Read-only."""
        return self._tracker.state

    @overload
    def list(self, chooser: None = None) -> builtins.list[dict[str, Any]]: ...
    @overload
    def list(self, chooser: Callable[[str, dict[str, Any]], T]) -> builtins.list[T]: ...
    def list(self, chooser: Callable[[str, dict[str, Any]], Any] | None = None) -> Any:
        """The presences, or ``chooser(key, presence)`` for each (phoenix.js ``list``)."""
        return self._tracker.list(chooser)

    def on_join(self, callback: F | None) -> F | None:
        """Call ``callback(key, current or None, joined)`` for each join; return it.

        Replaces the previous one (None removes it), as phoenix.js does.
        """
        self._on_join = callback
        return callback

    def on_leave(self, callback: F | None) -> F | None:
        """Call ``callback(key, current after removal, left)`` for each leave; return it.

        Replaces the previous one (None removes it).
        """
        self._on_leave = callback
        return callback

    def on_sync(self, callback: F | None) -> F | None:
        """Call ``callback()`` after each state or diff applied; return it.

        Replaces the previous one (None removes it).
        """
        self._on_sync = callback
        return callback

    def calls(self, event: PresenceChanged) -> builtins.list[tuple[Callable[..., object], Any]]:
        """The callback calls ``event`` makes, in phoenix.js order (joins, leaves, sync)."""
        calls: builtins.list[tuple[Callable[..., object], Any]] = []
        on_join, on_leave, on_sync = self._on_join, self._on_leave, self._on_sync
        if on_join is not None:
            calls.extend((on_join, join) for join in event.joins)
        if on_leave is not None:
            calls.extend((on_leave, leave) for leave in event.leaves)
        if on_sync is not None and event.synced:
            calls.append((on_sync, ()))
        return calls


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
    def state(self) -> ChannelState:
        """The channel's state: JOINING (waiting for the connection or the server), JOINED,
        ERRORED (it will rejoin), LEAVING, CLOSED."""
        return self._session.channel_state(self._route)

    @property
    def presence(self) -> ChannelPresence:
        """Who is present (a channel joined with ``presence=True``).

        Raises UsageError for a channel joined without it.
        """
        presence: ChannelPresence | None = self._route.presence
        if presence is None:
            raise UsageError(f"{self.topic!r} was joined without presence=True")
        return presence

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
        if self._session.declared(route):
            return f"<Channel {route.topic!r} subscribed>"
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
