"""The socket as the user holds it: options, ``async with``, join, close, stats.

:class:`SocketBase` is every driver's ``Socket``: a driver subclasses it with two class
attributes, its :class:`~.runtime.Runtime` and the factory of its default
:class:`~.transport.StreamTransport`. The work is the :class:`~.session.Session`'s; this
class checks the options, builds the core and the session, and hands the user
:class:`~.channel.Channel` handles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from random import Random
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, NoReturn, TypeAlias, TypeVar
from urllib.parse import urlsplit

from .. import _checks as checks
from .._client import Client
from .._codec import JsonCodec
from .._engines import EngineFactory
from .._errors import GaveUpError, UsageError
from .._events import Disconnected
from .._message import ChannelMessage
from .._retry import DEFAULT_REJOIN_POLICY, RetryPolicy
from .._websocket import DEFAULT_MAX_MESSAGE_SIZE
from .channel import Channel
from .credentials import Credential
from .dispatch import Dispatch, ErrorHandler, check_dispatch_options
from .queues import Overflow, check_queue_options
from .router import Handler, SocketStats
from .runtime import Runtime
from .session import Hooks, Session
from .transport import MessageTransport, StreamTransport, Transport, TransportFactory

SocketT = TypeVar("SocketT", bound="SocketBase")

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
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - frozen, so sharing is safe
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
        ssl: Any = None,
        json: str | JsonCodec | None = None,
        max_buffered_pushes: int = 1000,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        rng: Random | None = None,
        transport: Transport | str | None = None,
        engine: str | EngineFactory = "wsproto",
        channel_ping_interval: float | None = None,
        channel_ping_skip: Callable[[str], bool] | None = None,
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
                it, the block goes on (every call then raises GaveUpError).
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
                default) or ``"websockets"`` (websockets' sans-IO protocol, about twice as
                fast; ``pip install 'stx-ws[fast]'``). Not chosen automatically: name it.
            channel_ping_interval: seconds between keepalive pings (a ``ping`` push) on every
                joined channel, from each join reply; None (the default here; 30 s on STX
                sockets) sends none. A failed ping is counted in ``stats.ping_failures``,
                logged at WARNING and passed to ``on_ping_failed``; never fatal.
            channel_ping_skip: ``skip(topic)`` True for topics never to ping.

        Hooks and handlers may be sync or async; they run in the dispatcher, never in the
        pump, and an exception they raise is logged and passed to ``on_handler_error``.

        Raises:
            UsageError: an invalid URL, option or transport.
        """
        if unknown:
            raise UsageError(unknown_option_message(unknown))
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
        await self._session.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._session.stop(exc)

    async def close(self) -> None:
        """Leave every channel, close the WebSocket with 1000, and return once closed.

        Pending joins and pushes fail. A no-op when already closed. Raises UsageError before
        the ``async with`` block.
        """
        await self._session.close()

    async def wait_closed(self) -> None:
        """Return once the socket is closed (by :meth:`close`, maybe from a handler).

        Raises GaveUpError if it closed because reconnecting stopped; UsageError before the
        ``async with`` block.
        """
        await self._session.wait_closed()

    # ------------------------------------------------------------------------------------
    # Channels

    async def join(
        self,
        topic: str,
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
        types: Mapping[str, Any] | None = None,
    ) -> Channel:
        """Join ``topic`` and return the :class:`Channel` once the server accepted the join.

        ``payload`` may be a (sync) callable, called at each join and rejoin. ``on_message``
        (sync or async) gets every message of the channel. ``timeout`` (default the socket's)
        covers the whole join, waiting for the connection included. After a reconnect the
        channel rejoins by itself (``on_rejoin`` is called).

        ``types`` (``{event: type}``, ``pip install 'stx-ws[msgspec]'``) has those events'
        payloads decoded straight into msgspec ``Struct`` classes (or any type msgspec
        decodes): every consumer of the channel gets ``msg.payload`` as that type. A payload
        that does not fit is not delivered: it is counted in ``stats.invalid_payloads``,
        logged at WARNING once per event, and passed to ``on_handler_error``.

        Raises:
            JoinError: the server refused the join (``response`` is its answer), or it timed
                out (``reason == "timeout"``).
            GaveUpError: the socket gave up reconnecting.
            UsageError: ``topic`` is already joined, the payload cannot be encoded, a
                handler is given with ``dispatch="queue"``, or ``types`` cannot be used
                (msgspec missing, a control event, a type msgspec cannot decode into).
        """
        session = self._session
        return Channel(
            session, await session.join(topic, payload, on_message, timeout, types=types)
        )

    def messages(self) -> AsyncIterator[ChannelMessage]:
        """Every message of every channel, in order (``dispatch="queue"`` only).

        The iteration ends when the socket closes; it raises GaveUpError if it gave up.
        Raises UsageError in the other dispatch modes.
        """
        return self._session.messages()
