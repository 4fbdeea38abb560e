"""The engine room of one socket: the core, the pump, the connections and the calls.

Theory of operation
-------------------
Three kinds of task run in the session's task group, which is entered by the task that
starts the socket and exited by that same task (trio and anyio require it): the task of the
socket's ``async with`` block (the session can then cancel the block to raise a fatal error),
the task that called ``connect()`` (its ``close()`` exits the group; a fatal error is raised
by the next call instead), or the task of ``arun()``:

* the **pump** owns the core. It pulls outputs with ``client.next_outputs()`` until there
  are none and carries them out without ever awaiting: bytes and
  messages go to the current connection's outbox, events to the :class:`~.router.Router`
  (waiting calls) and the :class:`~.dispatch.Dispatcher` (user code). Then it waits for
  whichever comes first: an item in its inbox (from the connection), the core's deadline
  (``handle_timer``), or a wake-up from a user call. The inbox is fed to the core one item at
  a time, each after a full drain, so a connection the core has just abandoned (its
  CloseTransport drained) is never reported to it again.
* one **connection** task per ``OpenTransport`` (see :mod:`.connection`).
* the **dispatcher** runs handlers and hooks (see :mod:`.dispatch`).

Channels declared before the socket starts (``Socket.subscribe``) are joined by the pump
when the WebSocket first opens, so a slow first connect does not time them out.

User calls (``join``, ``push``, ``leave``, ``close``) call the core synchronously with
``now = runtime.now()``, register a waiter with the router, wake the pump, and await the
waiter: no await separates the core call from the registration, so on a single-threaded loop
the pump cannot see the outcome first.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Literal

from .._channel import ChannelState
from .._client import Client
from .._errors import ClientClosedError, ConnectionClosedError, GaveUpError, StxWsError, UsageError
from .._events import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    Closed,
    CloseTransport,
    Connected,
    ControlReceived,
    Disconnected,
    DisconnectReason,
    Event,
    FrameDropped,
    GaveUp,
    HandshakeRefused,
    HandshakeRequest,
    Joined,
    JoinFailed,
    MessageReceived,
    OpenTransport,
    Output,
    PayloadInvalid,
    PresenceChanged,
    SendBytes,
    SendMessage,
    SleepUntil,
)
from .._keepalive import DEFAULT_PING, DefaultPing, PingSpec
from .._message import ChannelMessage
from .connection import DATA, ENDED, MESSAGE, OPENED, REFUSED, Connection
from .credentials import Credential
from .dispatch import Dispatch, Dispatcher, ErrorHandler
from .queues import Overflow
from .router import ChannelRoute, Handler, Pending, Router, failure_text
from .runtime import AsyncEvent, Runtime, Signal, TaskGroup, is_cancellation
from .transport import Transport

INBOX_LIMIT = 16  # reads ahead of the pump before the reader waits
#: A read is fed to the core in slices of at most this many bytes (or whole messages, from a
#: message transport), and what each slice completes is carried out before the next. Fed
#: whole, a 64 KiB read's 200 decoded messages are all alive at once: they outlive the
#: garbage collector's young generation, and the collections that follow cost more than the
#: slicing (in memory, wsproto and stdlib json: 13.8 us a message fed in 64 KiB, 12.4 in
#: 16 KiB; the websockets engine and orjson: 6.2 and 5.7).
FEED_BYTES = 16384
FEED_MESSAGES = 32
#: At most this many whole messages (from a message transport that hands them over one at a
#: time) are fed to the core in one pass of the pump, the handlers getting a turn after each
#: run.
MESSAGE_RUN = 64
#: A push's caller busy-polls for its reply this long by default (see Socket's busy_poll).
#: On this project's 2-core VM, against a loopback echo, the same client with and without it:
#: a median round trip of 102 and 165 us on trio; the reply comes within three or four turns
#: of the loop, and the wake-up from a sleep in epoll costs the rest.
DEFAULT_BUSY_POLL = 0.0001
#: More than this is a CPU burner, not a poll: it is refused.
MAX_BUSY_POLL = 0.01
#: The longest the pump holds back reads while the handlers catch up (per read): long enough
#: for a starved dispatcher to drain, short enough that heartbeats and timers stay on time.
MAX_PAUSE = 0.05

#: Channel ends the user did not ask for: logged at WARNING (a refused rejoin, a server close).
_UNEXPECTED_CLOSES = frozenset({ChannelCloseReason.JOIN_FAILED, ChannelCloseReason.SERVER_CLOSED})

_COMMANDS = (OpenTransport, SendBytes, SendMessage, CloseTransport, SleepUntil)

#: The session whose dispatcher runs the current task (a handler or hook), if any.
_HANDLER_OF: ContextVar[Session | None] = ContextVar("stx_ws_handler_of", default=None)

#: How the session was started: ``async with``, ``connect()``, or ``arun()``.
StartMode = Literal["block", "manual", "run"]

#: The kinds of socket hook (``Socket.add_hook``).
HookKind = Literal["open", "close", "rejoin", "gave_up"]

_UNREAD_HINT = (
    "; nobody reads this channel yet: pass on_message=, add ch.on(event, handler), "
    "or iterate it with async for"
)


class Hooks:
    """The socket's lifecycle hooks, each kind a list run in order: see ``Socket.__init__``
    and ``Socket.add_hook``."""

    __slots__ = ("close", "gave_up", "open", "rejoin")

    def __init__(
        self,
        on_open: Callable[[], object] | None = None,
        on_close: Callable[[Disconnected], object] | None = None,
        on_rejoin: Callable[[Any], object] | None = None,
        on_gave_up: Callable[[GaveUpError], object] | None = None,
    ) -> None:
        self.open: list[Callable[..., object]] = [on_open] if on_open else []
        self.close: list[Callable[..., object]] = [on_close] if on_close else []
        self.rejoin: list[Callable[..., object]] = [on_rejoin] if on_rejoin else []
        self.gave_up: list[Callable[..., object]] = [on_gave_up] if on_gave_up else []

    def of(self, kind: str) -> list[Callable[..., object]]:
        """The list of hooks of ``kind``; raises UsageError for an unknown kind."""
        if kind in self.__slots__:
            hooks: list[Callable[..., object]] = getattr(self, kind)
            return hooks
        kinds = ", ".join(repr(k) for k in sorted(self.__slots__))
        raise UsageError(f"unknown hook kind {kind!r}; the kinds are {kinds}")


class JoinOptions:
    """What a join asks for besides its topic and payload (see ``Socket.join``)."""

    __slots__ = ("control_frames", "ping", "presence", "timeout", "types")

    def __init__(
        self,
        timeout: float | None = None,
        presence: Any = False,
        control_frames: bool = False,
        *,
        ping: PingSpec | DefaultPing = DEFAULT_PING,
        types: Mapping[str, Any] | None = None,
    ) -> None:
        self.timeout = timeout
        self.presence = presence  # False, or the core Presence tracker to use
        self.control_frames = control_frames
        self.ping = ping  # the channel's keepalive (see stx_proto._keepalive)
        self.types = types  # typed payloads (msgspec), event -> type


class Session:
    """The loop-agnostic body of a socket: see the module docstring."""

    def __init__(
        self,
        client: Client,
        runtime: Runtime,
        transport: Transport,
        *,
        dispatch: Dispatch,
        max_concurrency: int,
        queue_size: int,
        overflow: Overflow,
        on_handler_error: ErrorHandler | None,
        credentials: list[Credential],
        hooks: Hooks,
        close_timeout: float,
        host: str,
        ssl: Any,
        busy_poll: float = 0.0,
    ) -> None:
        self.client = client
        self.runtime = runtime
        self.router = router = Router(client.stats, lambda: client.last_heartbeat_rtt)
        self.dispatcher = Dispatcher(
            dispatch,
            runtime,
            queue_size=queue_size,
            overflow=overflow,
            max_concurrency=max_concurrency,
            on_handler_error=on_handler_error,
            count_drop=router.stats.count_drop,
            fail_channel=self.fail_channel,
        )
        self.hooks = hooks
        self._transport = transport
        self._credentials = credentials
        self._close_timeout = close_timeout
        #: The socket's ``close_timeout``.
        self.close_timeout = close_timeout
        # Busy-polling for push replies: the socket's busy_poll (0: off), whether a caller
        # spins now, and how long the last push took to be answered (seconds).
        self._real_clock = runtime.real_clock if busy_poll > 0 else None  # None: off
        self._busy_poll = busy_poll
        self._spinning = False
        self._reply_time = 0.0
        self._logger: logging.Logger = runtime.logger
        self._host = host
        self._ssl = ssl
        self.stage = "new"  # new -> running -> exiting -> done
        self._tg: TaskGroup | None = None
        self._tg_manager: Any = None
        self._conn: Connection | None = None
        self._last_conn: Connection | None = None  # the newest, current or closing
        self._inbox: deque[tuple[Connection, int, Any]] = deque()
        self._wakeup = Signal(runtime.event)
        # While the pump sleeps: the deadline it sleeps until (inf: none); None otherwise.
        self._asleep_until: float | None = None
        self._room = Signal(runtime.event)
        self._pause_until: float | None = None  # reads held back (back-pressure) until then
        self._fatal: StxWsError | None = None
        self._ws_open = False  # the WebSocket is open (for the log wording)
        self._failed_connects = 0  # connects that failed in a row
        self._refused_with: int | None = None  # the status of a refusal not yet logged
        self._block_cancelled = False  # the pump cancelled the body to raise self._fatal
        self.mode: StartMode = "block"
        self._owner: object = None  # the task that entered the task group
        # Channels declared before the start, joined at the first open.
        self._declared: list[tuple[ChannelRoute, Any, JoinOptions]] = []

    # ------------------------------------------------------------------------------------
    # What a connection needs (ConnectionOwner)

    @property
    def ssl(self) -> Any:
        """The socket's ``ssl=`` option."""
        return self._ssl

    def post(self, conn: Connection, kind: int, data: Any) -> None:
        """A connection's news for the pump (ignored later if the connection is stale).

        Data the pump would feed to the core at once (nothing queued before it, no
        back-pressure, no deadline due) is fed right here, in the reader's task: a reply then
        reaches its caller without a hop through the pump. The core is only ever called
        between awaits, so whichever task calls it, it sees one input at a time.
        """
        if conn is not self._conn:
            return
        if kind in (DATA, MESSAGE) and not self._inbox and self._pause_until is None:
            now = self.runtime.now()
            deadline = self.client.next_deadline()
            if (deadline is None or deadline > now) and self.dispatcher.backlog() is None:
                try:
                    self._feed((conn, kind, data), now)
                    deadline = self._drain()
                except Exception as exc:  # as in the pump: a bug, failed loudly
                    self._internal_error(exc)
                    self._wakeup.set()
                    return
                self._wake_if_needed(deadline)
                return
        self._inbox.append((conn, kind, data))
        self._wakeup.set()

    def _drain_now(self) -> None:
        """Carry out what a user's call made the core do (its frames go to the writer now,
        not after a hop through the pump); the pump then re-sleeps if it must."""
        try:
            deadline = self._drain()
        except Exception as exc:  # as in the pump: a bug, failed loudly
            self._internal_error(exc)
            self._wakeup.set()
            return
        self._wake_if_needed(deadline)

    def _wake_if_needed(self, deadline: float | None) -> None:
        """Wake the pump only when it must act: the core wants a timer sooner than the pump's
        sleep ends, or the socket is done. A pump that is not asleep looks again before it
        sleeps, and one that wakes early finds nothing due and sleeps again. Not waking it
        for every message or push saves a loop hop per message on a message transport, and
        per round trip: a push's timeout wakes it once, and the pushes that follow before
        that deadline do not."""
        until = self._asleep_until
        if until is not None and (
            (deadline is not None and deadline < until) or self.router.closed
        ):
            self._wakeup.set()

    async def inbox_room(self, conn: Connection) -> None:
        """Back-pressure for the reader: wait while the pump is behind."""
        while len(self._inbox) >= INBOX_LIMIT and conn is self._conn:
            await self._room.wait()

    async def refresh_credentials(self) -> None:
        """Call the user's credential sources (awaiting async ones) before a connect."""
        for credential in self._credentials:
            await credential.refresh()

    def handshake_request(self) -> HandshakeRequest:
        """The core's upgrade request, with the credentials just refreshed."""
        return self.client.handshake_request()

    # ------------------------------------------------------------------------------------
    # Life cycle

    async def start(self, mode: StartMode = "block") -> None:
        """Open the task group (in the caller's task), connect, start the pump.

        ``mode`` says who will end the session (see the module docstring). Raises UsageError
        when the session was already started.
        """
        if self.stage != "new":
            raise UsageError("a Socket connects once: make a new one")
        runtime = self.runtime
        runtime.check_loop()
        manager = runtime.task_group()
        self._tg = await manager.__aenter__()
        self._tg_manager = manager
        self._owner = runtime.current_task()
        self.mode = mode
        self.stage = "running"
        self.client.connect(runtime.now())
        self._tg.start_soon(self._run_dispatcher)
        self._tg.start_soon(self._run_pump)

    async def _run_dispatcher(self) -> None:
        _HANDLER_OF.set(self)  # handlers and hooks run in this task or its children
        await self.dispatcher.run()

    @property
    def in_owner(self) -> bool:
        """True when the running task is the one that started the session."""
        return self.runtime.current_task() == self._owner

    @property
    def in_handler(self) -> bool:
        """True when the running task runs this session's handlers or hooks."""
        return _HANDLER_OF.get() is self

    async def stop(self, exc: BaseException | None) -> None:
        """End the session in the task that started it (``exc``: what the body raised).

        A normal exit closes cleanly (leaves, close 1000) and lets the handlers finish; a
        cancelled body aborts the connection. Raises the session's fatal error (a GaveUpError
        without an ``on_gave_up`` hook, an internal failure) if there is one.
        """
        runtime = self.runtime
        # The pump cancels the body to raise self._fatal: whatever shape that cancellation
        # takes (an exception group, from a nursery in the body), it is ours.
        cancelled = self._block_cancelled or is_cancellation(exc, runtime.cancelled())
        self.stage = "exiting"  # from now on the pump must not cancel the block
        try:
            if not cancelled:
                await self._finish()
        finally:
            self.stage = "done"
            self.client.close(runtime.now())  # a no-op unless aborted
            self.dispatcher.abandon()
            if not self.router.closed:  # aborted: no pump will route the core's last events
                self._abort(ConnectionClosedError("the socket was cancelled"))
            tg = self._tg
            assert tg is not None  # stop() follows start()
            tg.cancel_scope.cancel()
            # Not the body's exception: a task group would wrap it in an ExceptionGroup.
            await self._tg_manager.__aexit__(None, None, None)
        if self._fatal is not None and (exc is None or cancelled):
            raise self._fatal

    async def _finish(self) -> None:
        """Close cleanly and let the handlers and the last connection finish."""
        if self._fatal is None:
            await self.close_connection()
        # Let the handlers of what arrived before the close (and on_close) run, and the last
        # connection flush its close.
        if not await self._wait_for(self.dispatcher.done):
            self._logger.warning("handlers still running %.1f s after close", self._close_timeout)
        last = self._last_conn
        # Always set by now (the pump opened a connection before the close completed); the
        # check keeps a socket that never connected from failing here.
        if last is not None:  # pragma: no branch
            await self._wait_for(last.finished)

    async def close(self) -> None:
        """See ``Socket.close``."""
        stage = self.stage
        if stage == "new":
            return
        if self.mode == "manual" and stage == "running":
            if self.in_owner:
                await self.stop(None)
                return
            if not self.in_handler:
                raise UsageError(
                    "close() must be called in the task that called connect(): its task "
                    "group is exited there (trio and anyio require it). To stop the socket "
                    "from another task, run it with `async with` or arun() instead"
                )
        await self.close_connection()

    async def close_connection(self) -> None:
        """Leave every channel, close the WebSocket, and return once the core is closed.

        A no-op once closed. Only called once started.
        """
        router = self.router
        if router.closed or self.stage == "done":
            return
        self.client.close(self.runtime.now())
        done = self.runtime.event()
        router.add_close(Pending(done.set))
        self._wakeup.set()
        await done.wait()

    async def wait_closed(self) -> None:
        """See ``Socket.wait_closed``."""
        if self.stage == "new":
            raise UsageError(
                "the socket is not open: use `async with Socket(...)` or `await sock.connect()`"
            )
        router = self.router
        if not router.closed and self.stage != "done":
            done = self.runtime.event()
            router.add_close(Pending(done.set))
            await done.wait()
        if router.gave_up is not None:
            raise router.gave_up

    def check_running(self) -> None:
        """Raise what a call on this socket must raise now, if anything.

        UsageError before it started; the GaveUpError once it gave up; the fatal error of an
        internal failure; ClientClosedError once closed.
        """
        if self.stage == "new":
            raise UsageError(
                "the socket is not open: use `async with Socket(...)` or `await sock.connect()`"
            )
        gave_up = self.router.gave_up
        if gave_up is not None:
            raise gave_up
        if self._fatal is not None:
            raise self._fatal
        if self.stage == "done" or self.router.closed:
            raise ClientClosedError("the socket is closed")

    async def _wait_for(self, event: AsyncEvent) -> bool:
        """Wait up to ``close_timeout`` for ``event``; False if it did not come."""
        runtime = self.runtime
        with runtime.cancel_scope(deadline=runtime.now() + self._close_timeout) as scope:
            await event.wait()
        return not scope.cancelled_caught

    # ------------------------------------------------------------------------------------
    # Channels

    def new_route(self, topic: str, on_message: Handler | None) -> ChannelRoute:
        """A route for a join of ``topic``, buffering its messages until someone reads them.

        Raises UsageError for a handler with ``dispatch="queue"``.
        """
        dispatcher = self.dispatcher
        queue_mode = dispatcher.mode == "queue"
        if on_message is not None and queue_mode:
            raise UsageError("dispatch='queue' runs no handlers: read sock.messages()")
        route = ChannelRoute(topic, on_message)
        if on_message is None and not queue_mode:
            # Nothing is missed between join and the first consumer; until someone reads,
            # the overflow warning says how to (a channel joined only to push fills up).
            route.buffer = buffer = dispatcher.new_queue(f"channel {topic!r}")
            buffer.queue.hint = _UNREAD_HINT
        return route

    def _core_join(self, route: ChannelRoute, payload: Any, options: JoinOptions) -> None:
        """Join ``route``'s topic in the core and register the route (no await between)."""
        self.client.join(
            self.runtime.now(),
            route.topic,
            payload,
            timeout=options.timeout,
            presence=options.presence,
            control_frames=options.control_frames,
            ping=options.ping,
            types=options.types,
        )
        self.router.add_channel(route)

    def subscribe(self, route: ChannelRoute, payload: Any, options: JoinOptions) -> None:
        """Join ``route`` without waiting: now if started, else at the first open.

        Raises UsageError for a topic already joined or declared, or a payload that cannot
        be encoded (when started); what ``check_running`` raises once closed.
        """
        route.background = True
        if self.stage == "new":
            topic = route.topic
            if any(declared.topic == topic for declared, _, _ in self._declared):
                raise UsageError(f"{topic!r} is already subscribed")
            self._declared.append((route, payload, options))
            return
        self.check_running()
        self._core_join(route, payload, options)
        self._wakeup.set()

    def declared(self, route: ChannelRoute) -> bool:
        """True while ``route`` waits for the socket's first open to be joined."""
        return any(declared is route for declared, _, _ in self._declared)

    def _join_declared(self) -> None:
        """Join the channels declared before the start (the WebSocket just opened)."""
        declared, self._declared = self._declared, []
        for route, payload, options in declared:
            try:
                self._core_join(route, payload, options)
            except StxWsError as exc:  # a payload that cannot be encoded, a topic joined since
                self._logger.error("could not subscribe to %r: %s", route.topic, exc)
                self._retire(route, exc)

    def _retire_declared(self) -> None:
        """The socket closed before its first open: end the declared channels."""
        declared, self._declared = self._declared, []
        for route, _, _ in declared:
            self._retire(route, None)

    def _retire(self, route: ChannelRoute, error: StxWsError | None) -> None:
        route.closed = True
        route.close_reason = ChannelCloseReason.SOCKET_CLOSED
        route.failure = error
        route.end_iteration(self.router.gave_up)

    async def join_route(
        self, route: ChannelRoute, payload: Any, options: JoinOptions
    ) -> ChannelRoute:
        """Join ``route``'s topic; return the route once the server accepted the join."""
        self._core_join(route, payload, options)
        done = self.runtime.event()
        waiter = Pending(done.set)
        route.join = waiter  # set before any await: the core's answer comes after one
        self._wakeup.set()
        try:
            await done.wait()
        except BaseException:
            self.abandon(route)  # cancelled: nobody will ever hold this channel
            raise
        waiter.result()
        return route

    def channel_state(self, route: ChannelRoute) -> ChannelState:
        """The state of ``route``'s channel (JOINING while it waits for the first open)."""
        if route.closed:
            return ChannelState.CLOSED
        if not self.router.is_current(route):
            # Declared and not joined yet, or replaced by a newer join while leaving.
            return ChannelState.JOINING if self.declared(route) else ChannelState.LEAVING
        return self.client.channel_state(route.topic)

    def joined(self, route: ChannelRoute) -> bool:
        """True while ``route``'s channel is joined (False while it rejoins)."""
        if route.closed or route.leaving or not self.router.is_current(route):
            return False
        return self.client.channel_state(route.topic) is ChannelState.JOINED

    async def push(
        self, route: ChannelRoute, event: str, payload: Any, timeout: float | None
    ) -> Any:
        """See ``Channel.push``."""
        self._check_channel(route, "push to")
        runtime = self.runtime
        client = self.client
        ref = client.push(runtime.now(), route.topic, event, payload, timeout=timeout)
        done = runtime.event()
        waiter = Pending(done.set)
        router = self.router
        router.add_push(ref, event, waiter)
        self._drain_now()
        clock = self._real_clock
        sent_at = 0.0 if clock is None else clock()
        try:
            # Busy-poll for a nearby server's reply (see Socket's busy_poll); _spin yields
            # at least once, as done.wait() would.
            if clock is None or self._spinning or self._reply_time > 2 * self._busy_poll:
                await done.wait()
            else:
                await self._spin(waiter, clock)
                if not waiter.done:
                    await done.wait()
        except BaseException:
            # The caller gave up on this push: stop waiting for it, and if it has not gone
            # out yet, make sure it never does (a retried order must not go twice). Both are
            # no-ops for a push that has already ended.
            router.forget_push(ref)
            if client.cancel_push(runtime.now(), ref):
                self._wakeup.set()
            raise
        if clock is not None:
            self._reply_time = clock() - sent_at
        return waiter.result()

    async def _spin(self, waiter: Pending, clock: Callable[[], float]) -> None:
        """Let the loop run, without sleeping, until ``waiter`` is done or ``busy_poll``
        seconds of ``clock`` (real time) have passed. One caller spins at a time; the others
        sleep."""
        self._spinning = True
        try:
            checkpoint = self.runtime.checkpoint
            until = clock() + self._busy_poll
            while True:
                await checkpoint()
                if waiter.done or clock() >= until:
                    return
        finally:
            self._spinning = False

    async def leave(self, route: ChannelRoute, timeout: float | None) -> None:
        """See ``Channel.leave``."""
        if route.closed or self.router.closed:
            return
        if not route.leaving:
            self.check_running()
            self.client.leave(self.runtime.now(), route.topic, timeout=timeout)
            route.leaving = True  # only once the core took it: a bad timeout changes nothing
        done = self.runtime.event()
        self.router.add_leave(route, Pending(done.set))
        self._wakeup.set()
        await done.wait()

    def add_handler(
        self, route: ChannelRoute, event: str, handler: Handler, tp: Any = None
    ) -> None:
        """Run ``handler`` for every message of ``route`` with ``event`` (see ``Channel.on``);
        with ``tp``, that event's payloads are decoded into ``tp`` first."""
        dispatcher = self.dispatcher
        if dispatcher.mode == "queue":
            raise UsageError("dispatch='queue' runs no handlers: read sock.messages()")
        if tp is not None:
            if route.closed or not self.router.is_current(route):
                raise UsageError(f"type {event!r} of {route.topic!r}: the channel is closed")
            self.client.configure_channel(route.topic, payload_types={event: tp})
        route.handlers.setdefault(event, []).append(handler)
        buffer = route.buffer
        if buffer is not None and not buffer.iterated:
            # Handlers, not iteration, then: what came in since the join goes to them.
            route.buffer = None
            for msg in buffer.take_all():
                dispatcher.deliver(route, msg)

    def iterate(self, route: ChannelRoute) -> AsyncIterator[ChannelMessage]:
        """The iteration of ``route``'s messages (see ``Channel.__aiter__``)."""
        buffer = route.buffer
        if buffer is not None:
            buffer.queue.hint = ""
        else:
            route.buffer = buffer = self.dispatcher.new_queue(f"channel {route.topic!r}")
            if route.closed:
                buffer.close(route.end_error(self.router.gave_up))
        return buffer.iterate()

    def messages(self) -> AsyncIterator[ChannelMessage]:
        """See ``Socket.messages``."""
        queue = self.dispatcher.messages
        if queue is None:
            raise UsageError("sock.messages() needs dispatch='queue'")
        return queue.iterate()

    def abandon(self, route: ChannelRoute) -> None:
        """Leave ``route``'s channel in the background (nobody waits for it any more)."""
        if route.closed or route.leaving or self.router.closed or self.stage != "running":
            return
        try:
            self.client.leave(self.runtime.now(), route.topic)
        except StxWsError:  # the client closed meanwhile (close() from another task)
            return
        route.leaving = True
        self._wakeup.set()

    def fail_channel(self, route: ChannelRoute, error: StxWsError) -> None:
        """Fail ``route`` (a full queue under overflow="error"): leave it, end its iteration.

        Called once per route: the dispatcher delivers nothing more to a failed route.
        """
        route.failure = error  # the queue's overflow warning has said so already
        if route.buffer is not None:
            route.buffer.close(error)
        self.abandon(route)

    def _check_channel(self, route: ChannelRoute, what: str) -> None:
        if route.failure is not None:
            raise route.failure
        self.check_running()
        if route.closed:
            reason = route.close_reason.value if route.close_reason is not None else "closed"
            raise UsageError(f"{what} {route.topic!r}: the channel is closed ({reason})")
        if route.leaving:
            raise UsageError(f"{what} {route.topic!r}: the channel is leaving")

    def _abort(self, error: StxWsError) -> None:
        """Fail every waiter and end every iteration: the pump is gone."""
        self._retire_declared()
        self.router.abort(error)
        if self.dispatcher.messages is not None:
            self.dispatcher.messages.close(error)

    # ------------------------------------------------------------------------------------
    # The pump

    async def _run_pump(self) -> None:
        # A plain on_message may run in the pump or a reader (the dispatcher's fast path):
        # they count as handler tasks too, and the readers inherit this from the pump.
        _HANDLER_OF.set(self)
        try:
            await self._pump()
        except Exception as exc:  # a bug in the driver or the core: fail loudly, not silently
            self._internal_error(exc)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(self._close_timeout)
        dispatcher = self.dispatcher
        if dispatcher.messages is not None:
            dispatcher.messages.close(self.router.gave_up)
        dispatcher.close()
        if self._fatal is not None:
            # Let on_close and the handlers of what came before run, then stop the block.
            await self._wait_for(dispatcher.done)
            if self.stage == "running" and self.mode == "block":
                # Cancel the body: the block raises self._fatal. (After connect() or in
                # arun(), the next call, close() or arun() raises it instead.)
                self._block_cancelled = True
                tg = self._tg
                assert tg is not None  # the pump runs in it
                tg.cancel_scope.cancel()

    def _internal_error(self, exc: Exception) -> None:
        """A bug in the driver or the core: fail every call and iteration with it, loudly."""
        self._logger.error("the connection pump failed", exc_info=exc)
        error = ConnectionClosedError(f"internal error: {exc!r}")
        error.__cause__ = exc
        self._fatal = error
        self._abort(error)

    async def _sleep(self, deadline: float | None) -> None:
        until = self._asleep_until = math.inf if deadline is None else deadline
        try:
            with self.runtime.cancel_scope(deadline=until):
                await self._wakeup.wait()
        finally:
            self._asleep_until = None

    async def _pump(self) -> None:
        client = self.client
        inbox = self._inbox
        router = self.router
        runtime = self.runtime
        now_of = runtime.now
        while True:
            deadline = self._drain()
            if router.closed:
                return
            now = now_of()
            if deadline is not None and deadline <= now:
                client.handle_timer(now)
                continue
            if inbox:
                backlog = self.dispatcher.backlog()
                if backlog is not None:
                    # Back-pressure: let the consumers drain to half before the next read,
                    # for at most MAX_PAUSE; then read on (the overflow policy applies).
                    pause_until = self._pause_until
                    if pause_until is None:
                        pause_until = self._pause_until = now + MAX_PAUSE
                        backlog.notify_when_drained(self._wakeup.set)
                    if now < pause_until:
                        await self._sleep(
                            pause_until if deadline is None else min(deadline, pause_until)
                        )
                        continue
                self._pause_until = None
                item = inbox.popleft()
                self._feed(item, now)
                if item[1] == MESSAGE:
                    # A message transport that hands over one message at a time posts one
                    # per item, where a read of bytes brings hundreds: take a run of them in
                    # one pass, not a loop hop each (at most MESSAGE_RUN messages, so that
                    # back-pressure is checked as often as between reads).
                    more = MESSAGE_RUN - len(item[2])
                    while more > 0 and inbox and inbox[0][1] == MESSAGE:
                        run = inbox.popleft()
                        self._feed(run, now)
                        more -= len(run[2])
                self._room.set()  # the reader re-checks the inbox's length
                if self.dispatcher.pending:
                    # Let the handlers run between reads, so that a burst of many reads
                    # does not fill their queue before they get a turn.
                    await runtime.checkpoint()
                continue
            await self._sleep(deadline)

    def _feed(self, item: tuple[Connection, int, Any], now: float) -> None:
        conn, kind, data = item
        if conn is not self._conn:
            return  # the core has closed this connection since
        client = self.client
        if kind == DATA:
            self._feed_slices(conn, client.receive_data, data, FEED_BYTES, now)
        elif kind == MESSAGE:
            self._feed_slices(conn, client.receive_messages, data, FEED_MESSAGES, now)
        elif kind == OPENED:
            client.transport_opened(now)
        elif kind == ENDED:
            self._conn = None
            conn.close(self._close_timeout)
            if type(data) is tuple:
                client.transport_closed(now, code=data[0], reason=data[1])
            else:
                client.transport_closed(now, data)
        elif kind == REFUSED:  # the core answers with CloseTransport
            client.handshake_refused(now, data.status_code, data.headers, data.body)
        else:  # INVALID: the core gives up with the UsageError
            client.handshake_invalid(now, data)

    def _feed_slices(
        self,
        conn: Connection,
        feed: Callable[[float, Any], None],
        data: bytes | list[str | bytes],
        size: int,
        now: float,
    ) -> None:
        """``feed(now, data)`` in slices of ``size``, draining the core between them (the
        caller drains after the last); see FEED_BYTES."""
        for start in range(0, len(data), size):
            if start:
                self._drain()
                if conn is not self._conn:
                    return  # the core closed this connection meanwhile: the rest is stale
            feed(now, data[start : start + size])

    def _drain(self) -> float | None:
        """Carry out the core's outputs until it has none; return its next deadline."""
        client = self.client
        next_outputs = client.next_outputs  # a message comes bare, not in a MessageReceived
        # The per-message path, with its look-ups made once per drain (a read's worth).
        channel = self.router.channel
        deliver = self.dispatcher.deliver
        logger = self._logger
        debug = logger.isEnabledFor(logging.DEBUG)
        # The route of the last message's topic: messages of one topic come in runs, and
        # only an event (handled below) can change which route a topic has.
        topic: str | None = None
        route: ChannelRoute | None = None
        while outputs := next_outputs():
            for out in outputs:
                if type(out) is ChannelMessage:
                    msg = out
                elif type(out) is ControlReceived:
                    msg = out.message
                else:
                    topic = route = None
                    self._carry(out)
                    continue
                if msg.topic != topic:
                    topic = msg.topic
                    route = channel(topic)
                # The core only emits messages of live channels, and each has a route.
                if route is not None:  # pragma: no branch
                    if debug:
                        logger.debug("message %r on %r", msg.event, msg.topic)
                    deliver(route, msg)
        return client.next_deadline()

    def _carry(self, out: Output | ChannelMessage) -> None:
        """Carry out a command, or handle an event other than a message (see _drain)."""
        if type(out) is SendBytes or type(out) is SendMessage:
            conn = self._conn
            # The core sends only while its transport is open: this guards a core bug.
            if conn is not None:  # pragma: no branch
                conn.send(out.data)
        elif type(out) is OpenTransport:
            self._open(out)
        elif type(out) is CloseTransport:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close(self._close_timeout, out.code, out.reason)
        else:
            # Only events are left (type() is X does not narrow the other way). A message
            # comes bare from next_outputs(): one in a MessageReceived would reach nobody.
            assert not isinstance(out, (*_COMMANDS, ChannelMessage, MessageReceived))
            self._on_event(out)

    def _open(self, command: OpenTransport) -> None:
        old = self._conn
        # The core closes a transport before it opens the next: this guards a core bug.
        if old is not None:  # pragma: no cover
            old.close(self._close_timeout)
        conn = Connection(self, self._transport)
        tg = self._tg
        assert tg is not None  # the pump runs in it
        # The new task runs at the next checkpoint, so it posts nothing before it is current.
        tg.start_soon(conn.run, command)
        self._conn = self._last_conn = conn

    def _log_disconnect(self, event: Disconnected) -> None:
        """A connection that was open and dropped is INFO (the socket reconnects by itself); a
        connect that failed is WARNING the first time in a row, INFO after, until one works."""
        logger = self._logger
        was_open, self._ws_open = self._ws_open, False
        status, self._refused_with = self._refused_with, None
        if event.reason is DisconnectReason.CLIENT_CLOSED:
            logger.info("closed the connection to %s", self._host)
            return
        text = failure_text(event, status)
        if event.code is not None:
            text = f"{text} (close code {event.code})"
        then = (
            "; not reconnecting"
            if event.retry_at is None
            else f"; reconnecting in {max(0.0, event.retry_at - self.runtime.now()):.2f} s"
        )
        if was_open:
            logger.info("lost the connection to %s: %s%s", self._host, text, then)
            return
        self._failed_connects += 1
        level = logging.WARNING if self._failed_connects == 1 else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "could not connect to %s: %s%s",
                self._host,
                text,
                then,
                extra={"stx_ws_event": "connect_failed"},
            )

    def _payload_invalid(self, event: PayloadInvalid) -> None:
        """A typed payload did not fit: log it once per event of its channel, pass it to
        ``on_handler_error`` every time (the core has counted it)."""
        msg = event.message
        route = self.router.channel(msg.topic)
        if route is None:  # pragma: no cover - the core only checks messages of live channels
            return
        logged = route.invalid_events
        if logged is None:
            logged = route.invalid_events = set()
        if msg.event not in logged:
            logged.add(msg.event)
            self._logger.warning(
                "%r payload on %r is not a valid %s, not delivered: %s (logged once per event "
                "and channel; counted in stats.invalid_payloads)",
                msg.event,
                msg.topic,
                getattr(event.expected, "__name__", repr(event.expected)),
                event.error,
                extra={"stx_ws_event": "payload_invalid"},
            )
        self.dispatcher.report(event.error, msg)

    def _on_event(self, event: Event) -> None:
        route = self.router.handle(event)
        dispatcher = self.dispatcher
        hooks = self.hooks
        logger = self._logger
        if type(event) is Joined:
            if event.rejoin and route is not None:
                logger.info("rejoined %r", event.topic)
                for fn in hooks.rejoin:
                    dispatcher.hook(fn, route.handle)
        elif type(event) is PresenceChanged:
            route = self.router.channel(event.topic)
            # Only a channel joined with presence=True reports presence, and the socket gave
            # its route the view then.
            if route is not None and route.presence is not None:  # pragma: no branch
                for fn, args in route.presence.calls(event):
                    dispatcher.hook(fn, *args)
        elif type(event) is ChannelClosed:
            # Every channel of the core has a route (join adds it right after the core's join).
            if route is not None:  # pragma: no branch
                if (route.joined or route.background) and event.reason in _UNEXPECTED_CLOSES:
                    logger.warning(
                        "channel %r closed for good: %s", route.topic, event.reason.value
                    )
                dispatcher.hook(route.on_close, event)
        elif type(event) is Connected:
            logger.info("connected to %s", self._host)
            self._ws_open = True
            self._failed_connects = 0
            if self._declared:
                self._join_declared()
            for fn in hooks.open:
                dispatcher.hook(fn)
        elif type(event) is Disconnected:
            self._log_disconnect(event)
            for fn in hooks.close:
                dispatcher.hook(fn, event)
        elif type(event) is GaveUp:
            gave_up = self.router.gave_up
            assert gave_up is not None
            logger.warning(
                "gave up on %s: %s", self._host, gave_up, extra={"stx_ws_event": "gave_up"}
            )
            if hooks.gave_up:
                for fn in hooks.gave_up:
                    dispatcher.hook(fn, gave_up)
            else:
                self._fatal = gave_up
        elif type(event) is HandshakeRefused:
            self._refused_with = event.status_code  # said with the Disconnected that follows
        elif type(event) is FrameDropped:
            logger.warning("dropped a malformed frame: %s", event.detail)
        elif type(event) is PayloadInvalid:
            self._payload_invalid(event)
        elif type(event) is ChannelErrored:
            logger.info("channel %r errored (%s)", event.topic, event.reason)
            route = self.router.channel(event.topic)
            if route is not None:  # pragma: no branch - every core channel has a route
                dispatcher.hook(route.on_error, event)
        elif type(event) is JoinFailed:
            if event.retry_at is not None:
                logger.info("rejoin of %r failed; retrying", event.topic)
        elif type(event) is Closed:
            logger.debug("socket to %s closed", self._host)
            self._retire_declared()
