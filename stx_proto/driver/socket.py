"""The socket as the user holds it: options, ``async with``, join, close, stats.

:class:`SocketBase` is every driver's ``Socket``: a driver subclasses it with two class
attributes, its :class:`~.runtime.Runtime` and the factory of its default
:class:`~.transport.StreamTransport`. The work is the :class:`~.session.Session`'s; this
class checks the options, builds the core and the session, and hands the user
:class:`~.channel.Channel` handles.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from random import Random
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Literal, NoReturn, TypeAlias, TypeVar, overload
from urllib.parse import urlsplit

from .. import _checks as checks
from .._client import Client
from .._codec import JsonCodec
from .._engines import EngineFactory
from .._errors import GaveUpError, StxWsError, UsageError
from .._events import ChannelClosed, ChannelErrored, Disconnected
from .._keepalive import DEFAULT_PING, DefaultPing, PingSpec
from .._message import ChannelMessage
from .._presence import Presence
from .._retry import DEFAULT_REJOIN_POLICY, RetryPolicy
from .._socket_state import SocketState
from .._websocket import DEFAULT_MAX_MESSAGE_SIZE
from .channel import Channel, ChannelPresence
from .credentials import Credential
from .dispatch import Dispatch, ErrorHandler, check_dispatch_options
from .queues import Overflow, check_queue_options
from .router import ChannelRoute, Handler, SocketStats
from .runtime import Runtime
from .session import DEFAULT_BUSY_POLL, MAX_BUSY_POLL, HookKind, Hooks, JoinOptions, Session
from .transport import MessageTransport, StreamTransport, Transport, TransportFactory

SocketT = TypeVar("SocketT", bound="SocketBase")
H = TypeVar("H", bound=Handler)
T = TypeVar("T")

#: The default reconnect policy (``retry=``), told apart from one the user passed.
DEFAULT_RETRY = RetryPolicy()

#: A channel's ``on_error(event)`` hook.
OnChannelError = Callable[[ChannelErrored], object]
#: A channel's ``on_close(event)`` hook.
OnChannelClose = Callable[[ChannelClosed], object]

#: Option names of other clients (phoenix.js, maicoin.ws, websockets, stx-python) -> ours.
OTHER_NAMES = {
    "reconnect_policy": "retry (a RetryPolicy)",
    "retry_policy": "retry (a RetryPolicy)",
    "ping_interval": "heartbeat_interval",
    "ping_timeout": "heartbeat_timeout",
    "heartbeat_interval_ms": "heartbeat_interval (in seconds)",
    "heartbeatIntervalMs": "heartbeat_interval (in seconds)",
    "reconnectAfterMs": "retry (a RetryPolicy)",
    "rejoinAfterMs": "rejoin (a RetryPolicy)",
    "authToken": "auth_token",
    "max_size": "max_message_size",
    "max_queue": "queue_size",
    "open_timeout": "connect_timeout",
    "ssl_context": "ssl",
    "on_error": "on_handler_error",
    "encoder": "json",
    "decoder": "json",
}


def plain_to_remote(url: str) -> bool:
    """True for a ``ws://`` (or ``http://``) URL whose host is not this machine."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("ws", "http"):
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may be anywhere


def unknown_option_message(unknown: Mapping[str, object]) -> str:
    """The UsageError text for options this socket does not have, naming ours where another
    client's name was used."""
    parts = []
    for name in unknown:
        ours = OTHER_NAMES.get(name)
        parts.append(f"{name!r} (stx-ws calls it {ours})" if ours else repr(name))
    return f"unknown option{'s' if len(parts) > 1 else ''}: {', '.join(parts)}"


#: Query parameters: a mapping, or a sync or async callable returning one (called per connect).
ParamsSource: TypeAlias = (
    "Mapping[str, Any] | Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]] | None"
)
#: The auth token: a string, or a sync or async callable returning one (called per connect).
TokenSource: TypeAlias = "str | Callable[[], Awaitable[str | None] | str | None] | None"
_HeaderValue: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]]"
#: Extra handshake headers, or a sync or async callable returning them (called per connect).
HeadersSource: TypeAlias = (
    "_HeaderValue | Callable[[], _HeaderValue | Awaitable[_HeaderValue]] | None"
)


class SocketBase:
    """A Phoenix Channels socket; a driver's ``Socket`` is this with its event loop.

    Use it with ``async with``; the options are those of :meth:`__init__`.
    """

    #: The driver's event loop.
    runtime: ClassVar[Runtime]
    #: The driver's default transport class (its TCP/TLS streams); one is made per socket.
    default_transport: ClassVar[type[StreamTransport]]
    #: The transports a user may name in ``Socket(transport="name")``, each a factory called
    #: once per socket (see :data:`~.transport.TransportFactory`).
    transports: ClassVar[Mapping[str, TransportFactory]] = MappingProxyType({})

    def __init__(
        self,
        url: str,
        *,
        params: ParamsSource = None,
        auth_token: TokenSource = None,
        headers: HeadersSource = None,
        vsn: str = "2.0.0",
        heartbeat_interval: float | None = 30.0,
        heartbeat_timeout: float | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        retry: RetryPolicy | None = DEFAULT_RETRY,
        reconnect: bool | None = None,
        rejoin: RetryPolicy = DEFAULT_REJOIN_POLICY,
        dispatch: Dispatch = "inline",
        max_concurrency: int = 100,
        queue_size: int = 10_000,
        overflow: Overflow = "drop_oldest",
        on_handler_error: ErrorHandler | None = None,
        on_open: Callable[[], object] | None = None,
        on_close: Callable[[Disconnected], object] | None = None,
        on_rejoin: Callable[[Channel], object] | None = None,
        on_gave_up: Callable[[GaveUpError], object] | None = None,
        control_frames: bool = False,
        ssl: Any = None,
        json: str | JsonCodec | None = None,
        max_buffered_pushes: int = 1000,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        rng: Random | None = None,
        transport: Transport | str | None = None,
        engine: str | EngineFactory = "wsproto",
        channel_ping_interval: float | None = None,
        channel_ping_skip: Callable[[str], bool] | None = None,
        busy_poll: float = DEFAULT_BUSY_POLL,
        **unknown: NoReturn,
    ) -> None:
        """Set up the socket; it connects when its ``async with`` block starts.

        Args:
            url: ``ws(s)://host[:port]/socket`` (``/websocket`` is appended unless present).
            params: query parameters, or a sync or async callable returning them, called at
                every connect (so a refreshed token reaches the next reconnect).
            auth_token: a token for phoenix.js's ``authToken`` subprotocol, or a sync or async
                callable returning one, called at every connect. Never logged.
            headers: extra handshake headers, or a sync or async callable returning them.
            vsn: ``"2.0.0"`` (default) or ``"1.0.0"``.
            heartbeat_interval: seconds between heartbeats (None: none).
            heartbeat_timeout: seconds to wait for a heartbeat reply (default: the interval).
            timeout: default join, push and leave timeout.
            connect_timeout: seconds for one connection attempt: credentials, TCP/TLS open
                and the WebSocket handshake (10 s).
            close_timeout: seconds to wait for the server's close frame, and for handlers to
                finish, when closing.
            retry: the reconnect policy; None never reconnects.
            reconnect: ``False`` never reconnects (the same as ``retry=None``); ``True`` is
                the default policy. Give ``retry`` or ``reconnect``, not both.
            rejoin: the policy for rejoining a channel after a join error or ``phx_error``.
            dispatch: ``"inline"`` (handlers in order, one at a time), ``"task"`` (each
                handler call in its own task, at most ``max_concurrency`` at once), or
                ``"queue"`` (no handlers: read :meth:`messages`).
            max_concurrency: the bound of ``dispatch="task"``.
            queue_size: the bound of every message queue (handlers, :meth:`messages`, a
                channel's ``async for``). While the handler queue (or :meth:`messages`) is
                over half full, reads wait up to 50 ms for it to drain; a read is handled
                whole, so keep it well above what a few 64 KiB reads hold (about 200
                messages of 300 bytes each).
            overflow: what a full queue does: ``"drop_oldest"``, ``"drop_newest"``, or
                ``"error"`` (the message's channel is left and its iteration raises
                :class:`QueueOverflowError`). Losses are counted in ``stats.dropped`` and
                logged once per burst.
            on_handler_error: ``(exc, msg)`` for an exception raised by a handler (``msg`` is
                None for a hook). Handler errors are logged at WARNING either way.
            on_open: ``()`` each time the WebSocket opens.
            on_close: ``(event)`` each time a connection (or attempt) ends; ``event`` is the
                :class:`~stx_proto.Disconnected` (``reason``, ``code``, ``detail``,
                ``retry_at``).
            on_rejoin: ``(channel)`` when a channel is joined again after a reconnect or an
                error: messages may have been missed, so reconcile (over HTTP).
            on_gave_up: ``(exc)`` when reconnecting stops for good. Without it, the ``async
                with`` block is cancelled and raises the :class:`~stx_proto.GaveUpError`; with
                it, the block goes on (every call then raises GaveUpError). After
                ``connect()`` or in ``arun()``, the next call raises it instead (``close()``
                and ``arun()`` included). More hooks of each kind can be added later with
                :meth:`add_hook`.
            control_frames: hand every channel's control frames (``phx_reply`` of its join
                and pushes, ``phx_error``, ``phx_close``) to its handlers and iteration as
                messages, as the STX SDK does (a join's ``control_frames=`` overrides it).
            ssl: the ``ssl.SSLContext`` for ``wss://`` (default:
                ``ssl.create_default_context()``, which verifies certificates).
            json: ``"stdlib"``, ``"orjson"``, or a codec object.
            max_buffered_pushes: per channel, pushes that may wait for a join.
            max_message_size: the largest WebSocket message accepted, and sent (16 MiB; None:
                no limit). A larger incoming one ends the connection (close 1009), which
                reconnects; a larger push is refused with UsageError.
            rng: the source of reconnect jitter (a seeded ``random.Random`` for repeatable
                runs).
            transport: what carries the connection (see :mod:`stx_proto.driver.transport`):
                a :class:`~stx_proto.driver.StreamTransport` (the core does the WebSocket), a
                :class:`~stx_proto.driver.MessageTransport` (it does its own), or the name of
                one the driver offers (``"tcp"``; ``stx_anyio`` also has ``"picows"``, on
                asyncio with ``pip install 'stx-ws[picows]'``). Default: the driver's TCP/TLS
                streams.
            engine: the WebSocket engine over a stream transport: ``"wsproto"`` (the
                default) or ``"websockets"`` (websockets' sans-IO protocol; ``pip install
                'stx-ws[fast]'``). The core parses plain frames itself on either; the engine
                does the handshake, control frames, fragments and errors (websockets' is
                faster on frames of 64 KiB and more). Not chosen automatically: name it.
            channel_ping_interval: seconds between keepalive pings (a ``ping`` push) on every
                joined channel, from each join reply; None (the default here; 30 s on STX
                sockets) sends none. A failed ping is counted in ``stats.ping_failures``
                and logged at WARNING; never fatal.
            channel_ping_skip: ``skip(topic)`` True for topics never to ping.
            busy_poll: seconds (0.0001) a push's caller keeps the event loop turning, without
                sleeping, while its reply is due, when the server answered the last push
                within twice that: a nearby server's reply is then read without the process
                going to sleep and being woken, which on a loopback or a VM costs more than
                the server takes to answer. Other tasks run all the while; one caller spins
                at a time; a server farther away (a slower last reply) costs no spin at all.
                0 turns it off.

        Hooks and handlers may be sync or async; they run in the dispatcher, never in the
        pump, and an exception they raise is logged and passed to ``on_handler_error``.

        Raises:
            UsageError: an invalid URL, option or transport.
        """
        if unknown:
            raise UsageError(unknown_option_message(unknown))
        if reconnect is not None:
            if retry is not DEFAULT_RETRY:
                raise UsageError("give retry= or reconnect=, not both")
            if not isinstance(reconnect, bool):
                raise UsageError(f"reconnect must be True or False, got {reconnect!r}")
            retry = DEFAULT_RETRY if reconnect else None
        for name, hook in (
            ("on_handler_error", on_handler_error),
            ("on_open", on_open),
            ("on_close", on_close),
            ("on_rejoin", on_rejoin),
            ("on_gave_up", on_gave_up),
        ):
            checks.callable_or_none(name, hook)
        policy = check_queue_options(queue_size, overflow)
        mode = check_dispatch_options(dispatch, max_concurrency, policy)
        if not close_timeout > 0:
            raise UsageError(f"close_timeout must be > 0, got {close_timeout!r}")
        if checks.real("busy_poll", busy_poll, positive=False) > MAX_BUSY_POLL:
            raise UsageError(f"busy_poll must be at most {MAX_BUSY_POLL} s, got {busy_poll!r}")
        if isinstance(transport, str):
            transport = self._named_transport(transport, max_message_size)
        if transport is None:
            transport = self.default_transport()
        elif not isinstance(transport, (StreamTransport, MessageTransport)):
            raise UsageError(
                "transport must be a StreamTransport or a MessageTransport "
                f"(stx_proto.driver), not {type(transport).__name__}"
            )
        if isinstance(transport, StreamTransport):
            core_engine: str | EngineFactory | None = engine
        elif engine != "wsproto":
            raise UsageError("a MessageTransport does its own WebSocket: engine= does not apply")
        else:
            core_engine = None  # the core runs in message mode
        credentials = [Credential(params), Credential(auth_token), Credential(headers)]
        client = Client(
            url,
            params=credentials[0].for_core(),
            auth_token=credentials[1].for_core(),
            headers=credentials[2].for_core(),
            vsn=vsn,
            json=json,
            heartbeat_interval=heartbeat_interval,
            heartbeat_timeout=heartbeat_timeout,
            timeout=timeout,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            retry=retry,
            rejoin=rejoin,
            max_buffered_pushes=max_buffered_pushes,
            max_message_size=max_message_size,
            rng=rng,
            engine=core_engine,
            channel_ping_interval=channel_ping_interval,
            channel_ping_skip=channel_ping_skip,
        )
        self._host = urlsplit(url).hostname or "?"
        if plain_to_remote(url) and (params, auth_token, headers) != (None, None, None):
            # Said once per socket, at construction: nothing has been sent yet.
            self.runtime.logger.warning(
                "credentials will go unencrypted to %s (ws://, not wss://): use wss:// for "
                "anything but a local test server",
                self._host,
                extra={"stx_ws_event": "plain_credentials"},
            )
        self._control_frames = bool(control_frames)
        self._session = Session(
            client,
            self.runtime,
            transport,
            dispatch=mode,
            max_concurrency=max_concurrency,
            queue_size=queue_size,
            overflow=policy,
            on_handler_error=on_handler_error,
            credentials=credentials,
            hooks=Hooks(on_open, on_close, on_rejoin, on_gave_up),
            close_timeout=close_timeout,
            host=self._host,
            ssl=ssl,
            busy_poll=busy_poll,
        )

    @classmethod
    def _named_transport(cls, name: str, max_message_size: int | None) -> Transport:
        """A new transport of the kind ``name`` names (one of :attr:`transports`).

        Raises UsageError for an unknown name, or what the factory raises (a missing extra).
        """
        factory = cls.transports.get(name)
        if factory is None:
            known = ", ".join(repr(n) for n in sorted(cls.transports)) or "none"
            raise UsageError(f"unknown transport {name!r}; this driver has: {known}")
        return factory(max_message_size)

    # ------------------------------------------------------------------------------------
    # Introspection

    @property
    def stats(self) -> SocketStats:
        """Counters: messages, dropped, reconnects, last heartbeat RTT, and the core's."""
        return self._session.router.stats

    @property
    def state(self) -> SocketState:
        """The connection's state (the core's :class:`~stx_proto.SocketState`): idle,
        connecting, handshaking, open, waiting (to reconnect), closing, closed."""
        return self._session.client.state

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._session.client.is_connected

    @property
    def dispatch(self) -> Dispatch:
        """The dispatch mode."""
        return self._session.dispatcher.mode

    def __repr__(self) -> str:
        # The URL's query may hold a token: show the host only.
        return f"<Socket host={self._host!r} state={self._session.client.state.value}>"

    # ------------------------------------------------------------------------------------
    # Life cycle

    async def __aenter__(self: SocketT) -> SocketT:
        await self._session.start("block")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.stop(exc)

    async def connect(self) -> None:
        """Start the socket without ``async with``: it connects (and reconnects) in the
        background; return at once. A no-op once started.

        The socket's tasks run in a task group that this call opens in the calling task, so
        call :meth:`close` in that same task (trio and anyio require a task group to be
        exited by the task that entered it; a ``close()`` from another task raises
        UsageError, except from the socket's own handlers and hooks, which may close the
        connection). A fatal error (a GaveUpError without an ``on_gave_up`` hook) is raised
        by the next call, ``close()`` included.

        Raises:
            UsageError: the socket was closed (a socket connects once), or the event loop is
                not one this driver runs on.
        """
        session = self._session
        if session.stage == "running":
            return
        await session.start("manual")

    async def close(self) -> None:
        """Leave every channel, close the WebSocket with 1000, and return once closed.

        Pending joins and pushes fail. A no-op before connecting and once closed. After
        :meth:`connect`, the call in the task that connected also ends the socket's tasks
        (letting the handlers of what arrived finish) and raises the socket's fatal error,
        if any.

        Raises:
            UsageError: after ``connect()``, called from a task other than the one that
                connected (and not from a handler or hook of this socket).
            GaveUpError: see above.
        """
        await self._session.close()

    async def wait_closed(self) -> None:
        """Return once the socket is closed (by :meth:`close`, maybe from a handler).

        Raises GaveUpError if it closed because reconnecting stopped; UsageError before it
        started.
        """
        await self._session.wait_closed()

    async def arun(self) -> None:
        """Connect, run until the socket is closed (by a handler or another task), and return.

        Channels declared with :meth:`subscribe` are joined when the socket opens. Cancelled
        (a timeout, Ctrl-C under :meth:`run`), it closes cleanly first (leaves, close 1000,
        the handlers of what arrived), within a few ``close_timeout``, then lets the
        cancellation through. On a socket already started, it waits for the close.

        Raises:
            GaveUpError: reconnecting stopped (without an ``on_gave_up`` hook).
            UsageError: the socket was closed already.
        """
        session = self._session
        if session.stage == "running":
            await session.wait_closed()
            return
        if session.stage != "new":
            raise UsageError("a Socket connects once: make a new one")
        runtime = session.runtime
        ended = runtime.event()

        async def watch() -> None:
            # Outside the shield below: a cancellation of arun() lands here, and closes the
            # socket cleanly (shielded, bounded) instead of cancelling its tasks.
            try:
                await ended.wait()
            finally:
                if not ended.is_set():
                    deadline = runtime.now() + 3 * session.close_timeout
                    with runtime.cancel_scope(deadline=deadline, shield=True):
                        await session.close_connection()

        failure: StxWsError | None = None
        async with runtime.task_group() as tg:
            tg.start_soon(watch)
            # The socket's tasks run under this shield, so a cancellation reaches them only
            # through watch(), as a clean close.
            with runtime.cancel_scope(shield=True):
                await session.start("run")
                try:
                    await session.wait_closed()
                except StxWsError as exc:  # raised below, not wrapped by the task group
                    failure = exc
                finally:
                    ended.set()
                    try:
                        await session.stop(None)
                    except StxWsError as exc:
                        failure = failure or exc
        if failure is not None:
            raise failure

    def run(
        self, *, backend: str | None = None, backend_options: dict[str, Any] | None = None
    ) -> None:
        """Run :meth:`arun` in a new event loop: block until the socket is closed.

        For programs that are not already inside an event loop (``stx_anyio`` runs on
        asyncio unless ``backend="trio"``; ``backend_options`` as the module's ``run``).
        Ctrl-C closes the socket cleanly (leaves, close 1000) and returns.

        Raises:
            GaveUpError: reconnecting stopped (without an ``on_gave_up`` hook).
            UsageError: the driver has no event loop of its own to start, or the socket was
                closed already.
        """
        type(self).start_loop(self.arun, backend=backend, backend_options=backend_options)

    @classmethod
    def start_loop(
        cls,
        main: Callable[[], Awaitable[T]],
        *,
        backend: str | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> T | None:
        """Run ``main()`` in a new event loop and return its result (for :meth:`run`).

        A driver overrides it with its loop's entry point; in the main thread, Ctrl-C
        (SIGINT) should cancel ``main()`` (which then returns None). Raises UsageError here.
        """
        raise UsageError(f"{cls.__name__} has no event loop of its own: use arun()")

    # ------------------------------------------------------------------------------------
    # Hooks and socket-wide handlers

    @overload
    def add_hook(self, kind: Literal["open"], fn: Callable[[], object]) -> None: ...
    @overload
    def add_hook(self, kind: Literal["close"], fn: Callable[[Disconnected], object]) -> None: ...
    @overload
    def add_hook(self, kind: Literal["rejoin"], fn: Callable[[Channel], object]) -> None: ...
    @overload
    def add_hook(self, kind: Literal["gave_up"], fn: Callable[[GaveUpError], object]) -> None: ...
    def add_hook(self, kind: HookKind, fn: Callable[..., object]) -> None:
        """Add a hook of ``kind`` (``"open"``, ``"close"``, ``"rejoin"``, ``"gave_up"``),
        called as the constructor's ``on_<kind>`` is, after those added before it.

        Raises UsageError for an unknown kind or a ``fn`` that is not callable.
        """
        hooks = self._session.hooks.of(kind)
        checks.callable_or_none(f"the {kind} hook", fn)
        if fn is None:
            raise UsageError(f"the {kind} hook must be callable, not None")
        hooks.append(fn)

    def remove_hook(self, kind: HookKind, fn: Callable[..., object]) -> None:
        """Remove a hook of ``kind`` (given to the constructor or to :meth:`add_hook`).

        Raises UsageError if it is not there.
        """
        hooks = self._session.hooks.of(kind)
        if fn not in hooks:
            raise UsageError(f"no such {kind} hook")
        hooks.remove(fn)

    def add_handler(self, handler: H) -> H:
        """Call ``handler(msg)`` (sync or async) for every message of every channel, after
        the channel's own handlers (phoenix.js ``onMessage``); return it.

        Raises UsageError with ``dispatch="queue"`` (read :meth:`messages` there).
        """
        dispatcher = self._session.dispatcher
        if dispatcher.mode == "queue":
            raise UsageError("dispatch='queue' runs no handlers: read sock.messages()")
        checks.callable_or_none("handler", handler)
        dispatcher.all_handlers.append(handler)
        return handler

    def remove_handler(self, handler: Handler) -> None:
        """Remove a handler added with :meth:`add_handler`. Raises UsageError if it is not
        there."""
        handlers = self._session.dispatcher.all_handlers
        if handler not in handlers:
            raise UsageError("no such handler")
        handlers.remove(handler)

    # ------------------------------------------------------------------------------------
    # Channels

    def resolve_topic(self, topic: str) -> str:
        """The topic that :meth:`join` and :meth:`subscribe` join for ``topic`` (itself here;
        ``STXWebSocket`` scopes the user channels)."""
        return topic

    def _route(
        self,
        topic: str,
        *,
        on_message: Handler | None,
        presence: bool,
        control_frames: bool | None,
        on_error: OnChannelError | None,
        on_close: OnChannelClose | None,
        timeout: float | None,
        types: Mapping[str, Any] | None = None,
        ping: PingSpec | DefaultPing = DEFAULT_PING,
    ) -> tuple[ChannelRoute, JoinOptions]:
        """A route for a join of ``topic`` with these options, and its join options."""
        checks.callable_or_none("on_error", on_error)
        checks.callable_or_none("on_close", on_close)
        route = self._session.new_route(self.resolve_topic(topic), on_message)
        route.on_error = on_error
        route.on_close = on_close
        tracker: Presence | bool = False
        if presence:
            tracker = Presence()
            route.presence = ChannelPresence(tracker)
        control = self._control_frames if control_frames is None else bool(control_frames)
        return route, JoinOptions(timeout, tracker, control, ping=ping, types=types)

    async def join(
        self,
        topic: str,
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
        presence: bool = False,
        control_frames: bool | None = None,
        on_error: OnChannelError | None = None,
        on_close: OnChannelClose | None = None,
        types: Mapping[str, Any] | None = None,
    ) -> Channel:
        """Join ``topic`` and return the :class:`Channel` once the server accepted the join.

        ``payload`` may be a (sync) callable, called at each join and rejoin. ``on_message``
        (sync or async) gets every message of the channel. ``timeout`` (default the socket's)
        covers the whole join, waiting for the connection included. After a reconnect the
        channel rejoins by itself (``on_rejoin`` is called). ``presence=True`` tracks who is
        present (``ch.presence``). ``control_frames`` (default: the socket's) also hands the
        channel's ``phx_reply``, ``phx_error`` and ``phx_close`` frames to its handlers.
        ``on_error(event)`` is called when the channel errors (a
        :class:`~stx_proto.ChannelErrored`: the server's ``phx_error``, or the connection
        dropped; it rejoins by itself), ``on_close(event)`` when it closes for good (a
        :class:`~stx_proto.ChannelClosed`, with the reason).

        ``types`` (``{event: type}``, ``pip install 'stx-ws[msgspec]'``) has those events'
        payloads decoded straight into msgspec ``Struct`` classes (or any type msgspec
        decodes): every consumer of the channel gets ``msg.payload`` as that type. A payload
        that does not fit is not delivered: it is counted in ``stats.invalid_payloads``,
        logged at WARNING once per event, and passed to ``on_handler_error``.

        Raises:
            JoinError: the server refused the join (``response`` is its answer), or it timed
                out (``reason == "timeout"``).
            GaveUpError: the socket gave up reconnecting.
            UsageError: ``topic`` is already joined, the payload cannot be encoded, or a
                handler is given with ``dispatch="queue"``.
        """
        session = self._session
        route, options = self._route(
            topic,
            on_message=on_message,
            presence=presence,
            control_frames=control_frames,
            on_error=on_error,
            on_close=on_close,
            timeout=timeout,
            types=types,
        )
        session.check_running()
        return Channel(session, await session.join_route(route, payload, options))

    @overload
    def subscribe(
        self,
        topics: str,
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
        presence: bool = False,
        control_frames: bool | None = None,
        on_error: OnChannelError | None = None,
        on_close: OnChannelClose | None = None,
    ) -> Channel: ...
    @overload
    def subscribe(
        self,
        topics: list[str] | tuple[str, ...],
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
        presence: bool = False,
        control_frames: bool | None = None,
        on_error: OnChannelError | None = None,
        on_close: OnChannelClose | None = None,
    ) -> list[Channel]: ...
    def subscribe(
        self,
        topics: str | list[str] | tuple[str, ...],
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
        presence: bool = False,
        control_frames: bool | None = None,
        on_error: OnChannelError | None = None,
        on_close: OnChannelClose | None = None,
    ) -> Channel | list[Channel]:
        """Declare channels to join, before or after connecting, without waiting for them.

        Before the socket starts, each topic is joined when it first opens; after, at once.
        Either way the call returns the :class:`Channel` (a list of them for a list of
        topics) at once: add handlers with ``ch.on``, or iterate it; ``ch.state`` says
        where its join is. The options are :meth:`join`'s (``payload`` goes to every topic).
        A subscription rejoins like any channel; one whose join is refused or times out is
        logged at WARNING and closes (``on_close`` is called; its iteration raises).

        Raises:
            UsageError: a topic is already joined or subscribed, the payload cannot be
                encoded (once started), or a handler is given with ``dispatch="queue"``.
            GaveUpError, ClientClosedError: the socket gave up or is closed.
        """
        session = self._session
        single = isinstance(topics, str)
        names = [topics] if isinstance(topics, str) else list(topics)
        channels = []
        for name in names:
            route, options = self._route(
                name,
                on_message=on_message,
                presence=presence,
                control_frames=control_frames,
                on_error=on_error,
                on_close=on_close,
                timeout=timeout,
            )
            session.subscribe(route, payload, options)
            channels.append(Channel(session, route))
        return channels[0] if single else channels

    def messages(self) -> AsyncIterator[ChannelMessage]:
        """Every message of every channel, in order (``dispatch="queue"`` only).

        The iteration ends when the socket closes; it raises GaveUpError if it gave up.
        Raises UsageError in the other dispatch modes.
        """
        return self._session.messages()
