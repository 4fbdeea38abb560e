"""The socket: a thin anyio driver around the sans-IO :class:`stx_proto.Client`.

Theory of operation
-------------------
Three kinds of task run in the socket's task group (owned by its ``async with``):

* the **pump** owns the core. It pulls outputs with ``client.next_event()`` until
  :class:`~stx_proto.SleepUntil` and carries them out without ever awaiting: bytes go to the
  connection's outbox, events to the :class:`~._router.Router` (waiters) and the
  :class:`~._dispatch.Dispatcher` (user code). Then it waits for whichever comes first: an item
  in its inbox (from the connection), the core's deadline (``handle_timer``), or a wake-up
  from a user call. The inbox is fed to the core one item at a time, each after a full drain,
  so a connection the core has just abandoned (its CloseTransport drained) is never reported
  to it again.
* one **connection** task per ``OpenTransport`` resolves async credentials, opens the TCP (or
  TLS) stream, and then reads (into the pump's bounded inbox) and writes (from its outbox)
  until the pump closes it or the stream ends. The pump can therefore always run its timers,
  even while a write is stuck: a dead peer is found by the heartbeat.
* the **dispatcher** runs handlers and hooks (see :mod:`._dispatch`).

User calls (``join``, ``push``, ``leave``, ``close``) call the core synchronously with
``now = anyio.current_time()``, register a waiter with the router, wake the pump, and await
the waiter: no await separates the core call from the registration, so on a single-threaded
loop the pump cannot see the outcome first.
"""

from __future__ import annotations

import inspect
import logging
import ssl as _ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from random import Random
from types import TracebackType
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream

from stx_proto import (
    DEFAULT_REJOIN_POLICY,
    ChannelClosed,
    ChannelErrored,
    ChannelMessage,
    Client,
    ClientClosedError,
    Closed,
    CloseTransport,
    Connected,
    ConnectionClosedError,
    Disconnected,
    Event,
    FrameDropped,
    GaveUp,
    GaveUpError,
    HandshakeRefused,
    Joined,
    JoinFailed,
    JsonCodec,
    MessageReceived,
    OpenTransport,
    RetryPolicy,
    SendBytes,
    SleepUntil,
    StxWsError,
    UsageError,
)
from stx_proto._bounded import Overflow, check_queue_options
from stx_proto._router import Pending, Router, SocketStats

from ._channel import Channel, Handler
from ._dispatch import DISPATCH_MODES, Dispatch, Dispatcher, ErrorHandler, Signal

logger = logging.getLogger("stx_anyio")

T = TypeVar("T")

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

_CHUNK = 65536  # bytes per read
_INBOX_LIMIT = 16  # chunks read ahead of the pump before the reader waits
_DATA, _OPENED, _ENDED = 0, 1, 2  # inbox item kinds


class _Credential:
    """A user's params, token or headers: a value, or a (sync or async) callable.

    The connection task calls :meth:`refresh` before each connect; the core gets a sync
    callable reading the cached result, so it never sees a coroutine and never calls the
    user's function a second time.
    """

    __slots__ = ("_source", "_value")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._value: Any = None

    def for_core(self) -> Any:
        return self._read if callable(self._source) else self._source

    def _read(self) -> Any:
        return self._value

    async def refresh(self) -> None:
        source = self._source
        if callable(source):
            value = source()
            if inspect.isawaitable(value):
                value = await value
            self._value = value


class _Connection:
    """One transport: connect, then read into the pump's inbox and write from the outbox."""

    __slots__ = ("_sock", "_writable", "closing", "outbox", "scope", "stream")

    def __init__(self, sock: Socket) -> None:
        self._sock = sock
        self.scope = anyio.CancelScope()
        self.stream: ByteStream | None = None
        self.outbox: deque[bytes] = deque()
        self._writable = Signal()
        self.closing = False

    def send(self, data: bytes) -> None:
        self.outbox.append(data)
        self._writable.set()

    def close(self, flush_timeout: float) -> None:
        """Flush the outbox (within ``flush_timeout``), then close. Idempotent, never raises."""
        if self.closing:
            return
        self.closing = True
        if self.stream is None:
            self.scope.cancel()  # still connecting: there is nothing to flush
        else:
            self.scope.deadline = anyio.current_time() + flush_timeout
            self._writable.set()

    async def run(self, command: OpenTransport) -> None:
        sock = self._sock
        with self.scope:
            try:
                await sock._refresh_credentials()
            except Exception as exc:
                sock._post(self, _ENDED, f"credentials failed: {exc!r}")
                return
            try:
                stream: ByteStream
                if command.tls:
                    stream = await anyio.connect_tcp(
                        command.host,
                        command.port,
                        ssl_context=sock._tls_context(),
                        tls_standard_compatible=False,
                        tls_hostname=command.host,
                    )
                else:
                    stream = await anyio.connect_tcp(command.host, command.port)
            except Exception as exc:
                sock._post(self, _ENDED, f"connect failed: {type(exc).__name__}: {exc}")
                return
            self.stream = stream
            try:
                sock._post(self, _OPENED, None)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._write, stream)
                    await self._read(stream)
                    tg.cancel_scope.cancel()
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(stream)

    async def _read(self, stream: ByteStream) -> None:
        sock = self._sock
        try:
            while not self.closing:
                data = await stream.receive(_CHUNK)
                sock._post(self, _DATA, data)
                await sock._inbox_room(self)
        except anyio.EndOfStream:
            sock._post(self, _ENDED, None)
        except Exception as exc:
            sock._post(self, _ENDED, f"receive failed: {type(exc).__name__}: {exc}")

    async def _write(self, stream: ByteStream) -> None:
        outbox = self.outbox
        while True:
            while outbox:
                data = outbox.popleft() if len(outbox) == 1 else _take_all(outbox)
                try:
                    await stream.send(data)
                except Exception as exc:
                    self._sock._post(self, _ENDED, f"send failed: {type(exc).__name__}: {exc}")
                    self.scope.cancel()
                    return
            if self.closing:
                self.scope.cancel()
                return
            await self._writable.wait()


def _take_all(outbox: deque[bytes]) -> bytes:
    data = b"".join(outbox)
    outbox.clear()
    return data


class Socket:
    """A Phoenix Channels socket on asyncio or trio (through anyio); use ``async with``.

    ::

        async with Socket("wss://example.com/socket", params={"token": "..."}) as sock:
            ch = await sock.join("room:lobby", {"since": 0}, on_message=handler)
            reply = await ch.push("new_msg", {"body": "hi"})
            async for msg in ch: ...

    Leaving the block sends ``phx_leave`` for each channel and closes with 1000 (as does
    :meth:`close`); messages already received are handled first (for up to
    ``close_timeout``). A block cancelled from outside aborts the connection instead.

    Args:
        url: ``ws(s)://host[:port]/socket`` (``/websocket`` is appended unless present).
        params: query parameters, or a sync or async callable returning them, called at every
            connect (so a refreshed token reaches the next reconnect).
        auth_token: a token for phoenix.js's ``authToken`` subprotocol, or a sync or async
            callable returning one, called at every connect. Never logged.
        headers: extra handshake headers, or a sync or async callable returning them.
        vsn: ``"2.0.0"`` (default) or ``"1.0.0"``.
        heartbeat_interval: seconds between heartbeats (None: none).
        heartbeat_timeout: seconds to wait for a heartbeat reply (default: the interval).
        timeout: default join, push and leave timeout; also the connect timeout by default.
        connect_timeout: seconds for TCP/TLS open plus the WebSocket handshake.
        close_timeout: seconds to wait for the server's close frame, and for handlers to
            finish, when closing.
        retry: the reconnect policy; None never reconnects.
        rejoin: the policy for rejoining a channel after a join error or ``phx_error``.
        dispatch: ``"inline"`` (handlers in order, one at a time), ``"task"`` (each handler
            call in its own task, at most ``max_concurrency`` at once), or ``"queue"`` (no
            handlers: read :meth:`messages`).
        max_concurrency: the bound of ``dispatch="task"``.
        queue_size: the bound of every message queue (handlers, :meth:`messages`, a channel's
            ``async for``).
        overflow: what a full queue does: ``"drop_oldest"``, ``"drop_newest"``, or
            ``"error"`` (the message's channel is left and its iteration raises
            :class:`QueueOverflowError`). Losses are counted in ``stats.dropped`` and logged
            once per burst.
        on_handler_error: ``(exc, msg)`` for an exception raised by a handler (``msg`` is None
            for a hook). Handler errors are logged at WARNING either way.
        on_open: ``()`` each time the WebSocket opens.
        on_close: ``(event)`` each time a connection (or attempt) ends; ``event`` is the
            :class:`~stx_proto.Disconnected` (``reason``, ``code``, ``detail``, ``retry_at``).
        on_rejoin: ``(channel)`` when a channel is joined again after a reconnect or an error:
            messages may have been missed, so reconcile (over HTTP).
        on_gave_up: ``(exc)`` when reconnecting stops for good. Without it, the ``async with``
            block is cancelled and raises the :class:`~stx_proto.GaveUpError`; with it, the
            block goes on (every call then raises GaveUpError).
        ssl: the SSLContext for ``wss://`` (default: ``ssl.create_default_context()``, which
            verifies certificates).
        json: ``"stdlib"``, ``"orjson"``, or a codec object.
        max_buffered_pushes: per channel, pushes that may wait for a join.
        max_message_size: the largest WebSocket message accepted.
        rng: the source of reconnect jitter (a seeded ``random.Random`` for repeatable runs).

    Hooks and handlers may be sync or async; they run in the dispatcher, never in the pump,
    and an exception they raise is logged and passed to ``on_handler_error``.

    Raises:
        UsageError: an invalid URL or option.
    """

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
        connect_timeout: float | None = None,
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
        ssl: _ssl.SSLContext | None = None,
        json: str | JsonCodec | None = None,
        max_buffered_pushes: int = 1000,
        max_message_size: int | None = 64 * 1024 * 1024,
        rng: Random | None = None,
    ) -> None:
        if dispatch not in DISPATCH_MODES:
            raise UsageError(f"dispatch must be one of {DISPATCH_MODES}, got {dispatch!r}")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise UsageError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        policy = check_queue_options(queue_size, overflow)
        if not close_timeout > 0:
            raise UsageError(f"close_timeout must be > 0, got {close_timeout!r}")
        self._credentials = [_Credential(params), _Credential(auth_token), _Credential(headers)]
        self._client = Client(
            url,
            params=self._credentials[0].for_core(),
            auth_token=self._credentials[1].for_core(),
            headers=self._credentials[2].for_core(),
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
        )
        self._host = urlsplit(url).hostname or "?"
        self._close_timeout = close_timeout
        self._ssl = ssl
        self._router: Router[Channel] = Router(
            self._client.stats, lambda: self._client.last_heartbeat_rtt
        )
        self._dispatcher = Dispatcher(
            dispatch,
            queue_size=queue_size,
            overflow=policy,
            max_concurrency=max_concurrency,
            on_handler_error=on_handler_error,
            count_drop=self._router.stats.count_drop,
            fail_channel=self._fail_channel,
        )
        self._on_open = on_open
        self._on_close = on_close
        self._on_rejoin = on_rejoin
        self._on_gave_up = on_gave_up
        self._stage = "new"  # new -> running -> exiting -> done
        self._tg: Any = None
        self._conn: _Connection | None = None
        self._inbox: deque[tuple[_Connection, int, Any]] = deque()
        self._wakeup = Signal()
        self._room = Signal()
        self._fatal: StxWsError | None = None

    # ------------------------------------------------------------------------------------
    # Introspection

    @property
    def stats(self) -> SocketStats:
        """Counters: messages, dropped, reconnects, last heartbeat RTT, and the core's."""
        return self._router.stats

    @property
    def connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._client.is_connected

    @property
    def dispatch(self) -> Dispatch:
        """The dispatch mode."""
        return self._dispatcher.mode

    def __repr__(self) -> str:
        # The URL's query may hold a token: show the host only.
        return f"<Socket host={self._host!r} state={self._client.state.value}>"

    # ------------------------------------------------------------------------------------
    # Life cycle

    async def __aenter__(self) -> Socket:
        if self._stage != "new":
            raise UsageError("a Socket can be used in `async with` only once")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._stage = "running"
        self._client.connect(anyio.current_time())
        tg.start_soon(self._dispatcher.run)
        tg.start_soon(self._run_pump)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg = self._tg
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        self._stage = "exiting"  # from now on the pump must not cancel the block
        try:
            if not cancelled:
                if self._fatal is None:
                    await self.close()
                # Let the handlers of what arrived before the close (and on_close) run.
                with anyio.move_on_after(self._close_timeout) as scope:
                    await self._dispatcher.done.wait()
                if scope.cancelled_caught:
                    logger.warning("handlers still running %.1f s after close", self._close_timeout)
        finally:
            self._stage = "done"
            self._client.close(anyio.current_time())  # a no-op unless aborted
            self._dispatcher.abandon()
            if not self._router.closed:  # aborted: no pump will route the core's last events
                self._abort(ConnectionClosedError("the socket was cancelled"))
            tg.cancel_scope.cancel()
            # Not the body's exception: a task group would wrap it in an ExceptionGroup.
            await tg.__aexit__(None, None, None)
        if self._fatal is not None and (exc is None or cancelled):
            raise self._fatal
        return False

    @classmethod
    def run(
        cls,
        main: Callable[..., Awaitable[T]],
        *args: Any,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
    ) -> T:
        """Run ``main(*args)`` in a new event loop and return its result (see :func:`run`)."""
        return run(main, *args, backend=backend, backend_options=backend_options)

    async def close(self) -> None:
        """Leave every channel, close the WebSocket with 1000, and return once closed.

        Pending joins and pushes fail. A no-op when already closed.
        """
        if self._stage == "new":
            raise UsageError("the socket is not open: use `async with Socket(...)`")
        router = self._router
        if router.closed or self._stage == "done":
            return
        self._client.close(anyio.current_time())
        done = anyio.Event()
        router.add_close(Pending(done.set))
        self._wake()
        await done.wait()

    async def wait_closed(self) -> None:
        """Return once the socket is closed (by :meth:`close`, maybe from a handler).

        Raises GaveUpError if it closed because reconnecting stopped.
        """
        if self._stage == "new":
            raise UsageError("the socket is not open: use `async with Socket(...)`")
        router = self._router
        if not router.closed and self._stage != "done":
            done = anyio.Event()
            router.add_close(Pending(done.set))
            await done.wait()
        if router.gave_up is not None:
            raise router.gave_up

    # ------------------------------------------------------------------------------------
    # Channels

    async def join(
        self,
        topic: str,
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
    ) -> Channel:
        """Join ``topic`` and return the :class:`Channel` once the server accepted the join.

        ``payload`` may be a (sync) callable, called at each join and rejoin. ``on_message``
        (sync or async) gets every message of the channel. ``timeout`` (default the socket's)
        covers the whole join, waiting for the connection included. After a reconnect the
        channel rejoins by itself (``on_rejoin`` is called).

        Raises:
            JoinError: the server refused the join (``response`` is its answer), or it timed
                out (``reason == "timeout"``).
            GaveUpError: the socket gave up reconnecting.
            UsageError: ``topic`` is already joined, the payload cannot be encoded, or a
                handler is given with ``dispatch="queue"``.
        """
        self._check_running()
        queue_mode = self._dispatcher.mode == "queue"
        if on_message is not None and queue_mode:
            raise UsageError("dispatch='queue' runs no handlers: read sock.messages()")
        channel = Channel(self, topic, on_message, buffer=on_message is None and not queue_mode)
        self._client.join(anyio.current_time(), topic, payload, timeout=timeout)
        done = anyio.Event()
        waiter = Pending(done.set)
        channel._rec.join = waiter
        self._router.add_channel(channel._rec)
        self._wake()
        try:
            await done.wait()
        except BaseException:
            self._abandon(channel)  # cancelled: nobody will ever hold this channel
            raise
        waiter.result()
        return channel

    def messages(self) -> AsyncIterator[ChannelMessage]:
        """Every message of every channel, in order (``dispatch="queue"`` only).

        The iteration ends when the socket closes; it raises GaveUpError if it gave up.
        Raises UsageError in the other dispatch modes.
        """
        queue = self._dispatcher.messages
        if queue is None:
            raise UsageError("sock.messages() needs dispatch='queue'")
        return queue.iterate()

    def _abandon(self, channel: Channel) -> None:
        rec = channel._rec
        if rec.closed or rec.leaving or self._router.closed or self._stage != "running":
            return
        rec.leaving = True
        try:
            self._client.leave(anyio.current_time(), rec.topic)
        except StxWsError:  # pragma: no cover - the checks above make this unreachable
            return
        self._wake()

    def _abort(self, error: StxWsError) -> None:
        """Fail every waiter and end every iteration: the pump is gone."""
        for rec in self._router.abort(error):
            rec.owner._closed()
        if self._dispatcher.messages is not None:
            self._dispatcher.messages.close(error)

    def _fail_channel(self, channel: Channel, error: StxWsError) -> None:
        """Fail ``channel`` (a full queue under overflow="error"): leave it, end its iteration."""
        rec = channel._rec
        if rec.failure is not None:
            return
        rec.failure = error  # the queue's overflow warning has said so already
        if channel._buffer is not None:
            channel._buffer.close(error)
        self._abandon(channel)

    def _check_running(self) -> None:
        if self._stage == "new":
            raise UsageError("the socket is not open: use `async with Socket(...)`")
        gave_up = self._router.gave_up
        if gave_up is not None:
            raise gave_up
        if self._fatal is not None:
            raise self._fatal
        if self._stage == "done" or self._router.closed:
            raise ClientClosedError("the socket is closed")

    # ------------------------------------------------------------------------------------
    # The pump

    def _wake(self) -> None:
        self._wakeup.set()

    def _post(self, conn: _Connection, kind: int, data: Any) -> None:
        """A connection's news for the pump (ignored later if the connection is stale)."""
        if conn is self._conn:
            self._inbox.append((conn, kind, data))
            self._wakeup.set()

    async def _inbox_room(self, conn: _Connection) -> None:
        """Back-pressure for the reader: wait while the pump is behind."""
        while len(self._inbox) >= _INBOX_LIMIT and conn is self._conn:
            await self._room.wait()

    async def _refresh_credentials(self) -> None:
        for credential in self._credentials:
            await credential.refresh()

    def _tls_context(self) -> _ssl.SSLContext:
        if self._ssl is None:
            self._ssl = _ssl.create_default_context()
        return self._ssl

    async def _run_pump(self) -> None:
        try:
            await self._pump()
        except Exception as exc:  # a bug in the driver or the core: fail loudly, not silently
            logger.error("the connection pump failed", exc_info=True)
            error = ConnectionClosedError(f"internal error: {exc!r}")
            error.__cause__ = exc
            self._fatal = error
            self._abort(error)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(self._close_timeout)
        dispatcher = self._dispatcher
        if dispatcher.messages is not None:
            dispatcher.messages.close(self._router.gave_up)
        dispatcher.close()
        if self._fatal is not None:
            # Let on_close and the handlers of what came before run, then stop the block.
            with anyio.move_on_after(self._close_timeout):
                await dispatcher.done.wait()
            if self._stage == "running":  # cancel the body: the block raises self._fatal
                self._tg.cancel_scope.cancel()

    async def _pump(self) -> None:
        client = self._client
        inbox = self._inbox
        router = self._router
        while True:
            deadline = self._drain()
            if router.closed:
                return
            now = anyio.current_time()
            if deadline is not None and deadline <= now:
                client.handle_timer(now)
                continue
            if inbox:
                self._feed(inbox.popleft(), now)
                if len(inbox) < _INBOX_LIMIT:
                    self._room.set()
                continue
            if deadline is None:
                await self._wakeup.wait()
            else:
                with anyio.CancelScope(deadline=deadline):
                    await self._wakeup.wait()

    def _feed(self, item: tuple[_Connection, int, Any], now: float) -> None:
        conn, kind, data = item
        if conn is not self._conn:
            return  # the core has closed this connection since
        client = self._client
        if kind == _DATA:
            client.receive_data(now, data)
        elif kind == _OPENED:
            client.transport_opened(now)
        else:
            self._conn = None
            conn.close(self._close_timeout)
            client.transport_closed(now, data)

    def _drain(self) -> float | None:
        """Carry out the core's outputs until SleepUntil; return its deadline."""
        client = self._client
        while True:
            out = client.next_event()
            kind = type(out)
            if kind is MessageReceived:
                self._deliver(out.message)  # type: ignore[union-attr]
            elif kind is SendBytes:
                conn = self._conn
                if conn is not None:
                    conn.send(out.data)  # type: ignore[union-attr,arg-type]
            elif kind is SleepUntil:
                return out.deadline  # type: ignore[union-attr]
            elif kind is OpenTransport:
                self._open(out)  # type: ignore[arg-type]
            elif kind is CloseTransport:
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close(self._close_timeout)
            else:
                self._on_event(out)  # type: ignore[arg-type]

    def _open(self, command: OpenTransport) -> None:
        old = self._conn
        if old is not None:  # the core forgot it without a CloseTransport: close it anyway
            old.close(self._close_timeout)
        conn = self._conn = _Connection(self)
        self._tg.start_soon(conn.run, command)

    def _deliver(self, msg: ChannelMessage) -> None:
        rec = self._router.channel(msg.topic)
        if rec is None:  # pragma: no cover - the core only emits messages of live channels
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("message %r on %r", msg.event, msg.topic)
        self._dispatcher.deliver(rec.owner, msg)

    def _on_event(self, event: Event) -> None:
        rec = self._router.handle(event)
        kind = type(event)
        dispatcher = self._dispatcher
        if kind is Joined:
            if event.rejoin and rec is not None:  # type: ignore[union-attr]
                logger.info("rejoined %r", event.topic)  # type: ignore[union-attr]
                dispatcher.hook(self._on_rejoin, rec.owner)
        elif kind is ChannelClosed:
            if rec is not None:
                rec.owner._closed()
        elif kind is Connected:
            logger.info("connected to %s", self._host)
            dispatcher.hook(self._on_open)
        elif kind is Disconnected:
            ev: Disconnected = event  # type: ignore[assignment]
            if ev.retry_at is not None:
                logger.info(
                    "disconnected from %s (%s%s); reconnecting in %.2f s",
                    self._host,
                    ev.reason.value,
                    f": {ev.detail}" if ev.detail else "",
                    max(0.0, ev.retry_at - anyio.current_time()),
                )
            else:
                logger.info("disconnected from %s (%s)", self._host, ev.reason.value)
            dispatcher.hook(self._on_close, ev)
        elif kind is GaveUp:
            gave_up = self._router.gave_up
            assert gave_up is not None
            logger.warning("gave up on %s: %s", self._host, gave_up)
            if self._on_gave_up is not None:
                dispatcher.hook(self._on_gave_up, gave_up)
            else:
                self._fatal = gave_up
        elif kind is HandshakeRefused:
            logger.warning(
                "%s refused the WebSocket handshake with HTTP %d",
                self._host,
                event.status_code,  # type: ignore[union-attr]
            )
        elif kind is FrameDropped:
            logger.warning("dropped a malformed frame: %s", event.detail)  # type: ignore[union-attr]
        elif kind is ChannelErrored:
            logger.info("channel %r errored (%s)", event.topic, event.reason)  # type: ignore[union-attr]
        elif kind is JoinFailed and event.retry_at is not None:  # type: ignore[union-attr]
            logger.info("rejoin of %r failed; retrying", event.topic)  # type: ignore[union-attr]
        elif kind is Closed:
            logger.debug("socket to %s closed", self._host)


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
) -> T:
    """Run ``main(*args)`` in a new event loop (``anyio.run``) and return its result.

    For programs that are not already inside an event loop. ``backend`` is ``"asyncio"``
    (``backend_options={"use_uvloop": True}`` for uvloop) or ``"trio"``.
    """
    return anyio.run(main, *args, backend=backend, backend_options=backend_options)
