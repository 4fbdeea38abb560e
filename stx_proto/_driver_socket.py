"""A driver's socket, less the parts that need its event loop: tasks, time limits, streams.

Theory of operation
-------------------
Three kinds of task run in the socket's task group (owned by its ``async with``):

* the **pump** owns the core. It pulls outputs with ``client.next_event()`` until
  :class:`~stx_proto.SleepUntil` and carries them out without ever awaiting: bytes go to the
  connection's outbox, events to the :class:`~stx_proto._router.Router` (waiters) and the
  dispatcher (user code). Then it waits for whichever comes first: an item in its inbox
  (from the connection), the core's deadline (``handle_timer``), or a wake-up from a user
  call. The inbox is fed to the core one item at a time, each after a full drain, so a
  connection the core has just abandoned (its CloseTransport drained) is never reported to
  it again.
* one **connection** task per ``OpenTransport`` resolves async credentials, opens the TCP (or
  TLS) stream, and then reads (into the pump's bounded inbox) and writes (from its outbox)
  until the pump closes it or the stream ends. The pump can therefore always run its timers,
  even while a write is stuck: a dead peer is found by the heartbeat.
* the **dispatcher** runs handlers and hooks (see :mod:`._driver_dispatch`).

User calls (``join``, ``push``, ``leave``, ``close``) call the core synchronously with
``now = runtime.now()``, register a waiter with the router, wake the pump, and await the
waiter: no await separates the core call from the registration, so on a single-threaded
loop the pump cannot see the outcome first.

What a driver adds
------------------
A driver's ``Socket`` subclasses :class:`SocketBase` with its :class:`~._driver_support.Runtime`
and dispatcher class, and the methods that start and cancel tasks (``_open_tasks``,
``_spawn``, ``_cancel_block``, ``_close_tasks``), wait with a time limit (``_sleep``,
``_wait_handlers``) and make a TLS context; its connection subclasses
:class:`ConnectionBase` with the stream calls (``_connect``, ``_serve``, ``_aclose``). Nothing
else differs between drivers, so nothing else is written twice.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from random import Random
from types import TracebackType
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar
from urllib.parse import urlsplit

from ._bounded import Overflow, check_queue_options
from ._client import Client
from ._codec import JsonCodec
from ._driver_channel import Channel, Handler
from ._driver_dispatch import Dispatch, DispatcherBase, ErrorHandler, check_dispatch_options
from ._driver_support import Credential, Runtime, Signal, describe_error
from ._errors import ClientClosedError, ConnectionClosedError, GaveUpError, StxWsError, UsageError
from ._events import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    Event,
    FrameDropped,
    GaveUp,
    HandshakeRefused,
    Joined,
    JoinFailed,
    MessageReceived,
    OpenTransport,
    SendBytes,
    SleepUntil,
)
from ._message import ChannelMessage
from ._retry import DEFAULT_REJOIN_POLICY, RetryPolicy
from ._router import Pending, Router, SocketStats

TlsT = TypeVar("TlsT")
StreamT = TypeVar("StreamT")
SocketT = TypeVar("SocketT", bound="SocketBase[Any]")

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

CHUNK = 65536  # bytes per read
INBOX_LIMIT = 16  # chunks read ahead of the pump before the reader waits
#: The longest the pump holds back reads while the handlers catch up (per read): long enough
#: for a starved dispatcher to drain, short enough that heartbeats and timers stay on time.
MAX_PAUSE = 0.05
DATA, OPENED, ENDED = 0, 1, 2  # inbox item kinds


#: Channel ends the user did not ask for: logged at WARNING (a refused rejoin, a server close).
_UNEXPECTED_CLOSES = frozenset({ChannelCloseReason.JOIN_FAILED, ChannelCloseReason.SERVER_CLOSED})


def _is_cancellation(exc: BaseException | None, cancelled: type[BaseException]) -> bool:
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
        and all(_is_cancellation(e, cancelled) for e in inner)
    )


class ScopeContext(Protocol):
    """A runtime's cancel scope, entered with ``with`` (``anyio`` and ``trio`` ones are)."""

    deadline: float

    def cancel(self) -> None:
        """Cancel what runs inside the scope."""

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool | None: ...


class ConnectionBase(ABC, Generic[StreamT]):
    """One transport: connect, then read into the pump's inbox and write from the outbox.

    ``scope`` is the runtime's cancel scope that :meth:`run` runs in: :meth:`close` cancels
    it at once while connecting, and after a flush (or at its deadline) once open.
    """

    __slots__ = ("_sock", "_writable", "closing", "opened", "outbox", "scope")

    def __init__(self, sock: SocketBase[Any], scope: ScopeContext) -> None:
        self._sock = sock
        self.scope = scope
        self.opened = False
        self.outbox: deque[bytes] = deque()
        self._writable = Signal(sock._runtime.event)
        self.closing = False

    def send(self, data: bytes) -> None:
        """Queue ``data`` for the writer."""
        self.outbox.append(data)
        self._writable.set()

    def close(self, flush_timeout: float) -> None:
        """Flush the outbox (within ``flush_timeout``), then close. Idempotent, never raises."""
        if self.closing:
            return
        self.closing = True
        if not self.opened:
            self.scope.cancel()  # still connecting: there is nothing to flush
        else:
            self.scope.deadline = self._sock._runtime.now() + flush_timeout
            self._writable.set()

    async def run(self, command: OpenTransport) -> None:
        """The connection task: credentials, connect, then serve until closed or ended."""
        sock = self._sock
        with self.scope:
            try:
                await sock._refresh_credentials()
            except Exception as exc:
                sock._post(self, ENDED, f"credentials failed: {exc!r}")
                return
            try:
                stream = await self._connect(command)
            except Exception as exc:
                sock._post(self, ENDED, f"connect failed: {describe_error(exc)}")
                return
            self.opened = True
            try:
                sock._post(self, OPENED, None)
                await self._serve(stream)
            finally:
                await self._aclose(stream)

    @abstractmethod
    async def _connect(self, command: OpenTransport) -> StreamT:
        """Open the TCP (TLS if ``command.tls``) stream. Any exception means it failed."""
        raise NotImplementedError

    @abstractmethod
    async def _serve(self, stream: StreamT) -> None:
        """Run :meth:`_write` beside :meth:`_read` until the read ends; then stop the writer,
        unless the read ended because :attr:`closing` (the writer is flushing)."""
        raise NotImplementedError

    @abstractmethod
    async def _aclose(self, stream: StreamT) -> None:
        """Close ``stream`` at once, even in a cancelled scope; never raises."""
        raise NotImplementedError

    async def _read(self, receive: Callable[[], Awaitable[bytes]]) -> None:
        """Read with ``receive()`` (b"" at the end of the stream) into the pump's inbox."""
        sock = self._sock
        try:
            while not self.closing:
                data = await receive()
                if not data:
                    sock._post(self, ENDED, None)
                    return
                sock._post(self, DATA, data)
                await sock._inbox_room(self)
        except Exception as exc:
            sock._post(self, ENDED, f"receive failed: {describe_error(exc)}")

    async def _write(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        """Write the outbox with ``send(data)``; once closing and flushed, cancel the scope."""
        outbox = self.outbox
        while True:
            while outbox:
                # One write for everything queued (join of a single bytes object is free).
                data = b"".join(outbox)
                outbox.clear()
                try:
                    await send(data)
                except Exception as exc:
                    self._sock._post(self, ENDED, f"send failed: {describe_error(exc)}")
                    self.scope.cancel()
                    return
            if self.closing:
                self.scope.cancel()
                return
            await self._writable.wait()


class SocketBase(ABC, Generic[TlsT]):
    """A Phoenix Channels socket; a driver's ``Socket`` is this with its event loop.

    See the module docstring for how it works and what a driver adds; the options are those
    of :meth:`__init__`.
    """

    #: The driver's event loop.
    _runtime: ClassVar[Runtime]
    #: The driver's dispatcher (it adds ``dispatch="task"``'s task group).
    _dispatcher_class: ClassVar[type[DispatcherBase]]

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
        ssl: TlsT | None = None,
        json: str | JsonCodec | None = None,
        max_buffered_pushes: int = 1000,
        max_message_size: int | None = 64 * 1024 * 1024,
        rng: Random | None = None,
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
            timeout: default join, push and leave timeout; also the connect timeout by default.
            connect_timeout: seconds for TCP/TLS open plus the WebSocket handshake.
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
            max_message_size: the largest WebSocket message accepted.
            rng: the source of reconnect jitter (a seeded ``random.Random`` for repeatable
                runs).

        Hooks and handlers may be sync or async; they run in the dispatcher, never in the
        pump, and an exception they raise is logged and passed to ``on_handler_error``.

        Raises:
            UsageError: an invalid URL or option.
        """
        policy = check_queue_options(queue_size, overflow)
        mode = check_dispatch_options(dispatch, max_concurrency, policy)
        if not close_timeout > 0:
            raise UsageError(f"close_timeout must be > 0, got {close_timeout!r}")
        self._credentials = [Credential(params), Credential(auth_token), Credential(headers)]
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
        runtime = self._runtime
        self._logger: logging.Logger = runtime.logger
        self._host = urlsplit(url).hostname or "?"
        self._close_timeout = close_timeout
        self._ssl = ssl
        self._router: Router[Channel] = Router(
            self._client.stats, lambda: self._client.last_heartbeat_rtt
        )
        self._dispatcher = self._dispatcher_class(
            mode,
            runtime,
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
        self._conn: ConnectionBase[Any] | None = None
        self._inbox: deque[tuple[ConnectionBase[Any], int, Any]] = deque()
        self._wakeup = Signal(runtime.event)
        self._room = Signal(runtime.event)
        self._pause_until: float | None = None  # reads held back (back-pressure) until then
        self._fatal: StxWsError | None = None
        self._block_cancelled = False  # the pump cancelled the body to raise self._fatal

    # ------------------------------------------------------------------------------------
    # What the driver adds

    @abstractmethod
    async def _open_tasks(self) -> None:
        """Open the socket's task group (inside the ``async with`` block's task)."""
        raise NotImplementedError

    @abstractmethod
    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        """Start ``fn(*args)`` in the socket's task group."""
        raise NotImplementedError

    @abstractmethod
    def _cancel_block(self) -> None:
        """Cancel the socket's task group, and with it the body of the ``async with`` block."""
        raise NotImplementedError

    @abstractmethod
    async def _close_tasks(self) -> None:
        """Cancel the socket's task group and wait for its tasks (for ``__aexit__``)."""
        raise NotImplementedError

    @abstractmethod
    async def _sleep(self, deadline: float | None) -> None:
        """Wait for :attr:`_wakeup`, or until ``deadline`` (None: no limit) on the runtime's
        clock, whichever comes first."""
        raise NotImplementedError

    @abstractmethod
    async def _wait_handlers(self) -> bool:
        """Wait up to ``close_timeout`` for the dispatcher to be done; False if it was not."""
        raise NotImplementedError

    @abstractmethod
    def _start_connection(self, command: OpenTransport) -> ConnectionBase[Any]:
        """Make the driver's connection and spawn its :meth:`ConnectionBase.run`."""
        raise NotImplementedError

    @abstractmethod
    def _default_tls_context(self) -> TlsT:
        """``ssl.create_default_context()``, for ``wss://`` when no ``ssl`` was given."""
        raise NotImplementedError

    def _tls_context(self) -> TlsT:
        if self._ssl is None:
            self._ssl = self._default_tls_context()
        return self._ssl

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

    async def __aenter__(self: SocketT) -> SocketT:
        if self._stage != "new":
            raise UsageError("a Socket can be used in `async with` only once")
        await self._open_tasks()
        self._stage = "running"
        self._client.connect(self._runtime.now())
        self._spawn(self._dispatcher.run)
        self._spawn(self._run_pump)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        # The pump cancels the body to raise self._fatal: whatever shape that cancellation
        # takes (an exception group, from a nursery in the body), it is ours.
        cancelled = self._block_cancelled or _is_cancellation(exc, self._runtime.cancelled())
        self._stage = "exiting"  # from now on the pump must not cancel the block
        try:
            if not cancelled:
                if self._fatal is None:
                    await self.close()
                # Let the handlers of what arrived before the close (and on_close) run.
                if not await self._wait_handlers():
                    self._logger.warning(
                        "handlers still running %.1f s after close", self._close_timeout
                    )
        finally:
            self._stage = "done"
            self._client.close(self._runtime.now())  # a no-op unless aborted
            self._dispatcher.abandon()
            if not self._router.closed:  # aborted: no pump will route the core's last events
                self._abort(ConnectionClosedError("the socket was cancelled"))
            await self._close_tasks()
        if self._fatal is not None and (exc is None or cancelled):
            raise self._fatal
        return False

    async def close(self) -> None:
        """Leave every channel, close the WebSocket with 1000, and return once closed.

        Pending joins and pushes fail. A no-op when already closed.
        """
        if self._stage == "new":
            raise UsageError("the socket is not open: use `async with Socket(...)`")
        router = self._router
        if router.closed or self._stage == "done":
            return
        self._client.close(self._runtime.now())
        done = self._runtime.event()
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
            done = self._runtime.event()
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
        self._client.join(self._runtime.now(), topic, payload, timeout=timeout)
        done = self._runtime.event()
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
        try:
            self._client.leave(self._runtime.now(), rec.topic)
        except StxWsError:  # the client closed meanwhile (close() from another task)
            return
        rec.leaving = True
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

    def _post(self, conn: ConnectionBase[Any], kind: int, data: Any) -> None:
        """A connection's news for the pump (ignored later if the connection is stale)."""
        if conn is self._conn:
            self._inbox.append((conn, kind, data))
            self._wakeup.set()

    async def _inbox_room(self, conn: ConnectionBase[Any]) -> None:
        """Back-pressure for the reader: wait while the pump is behind."""
        while len(self._inbox) >= INBOX_LIMIT and conn is self._conn:
            await self._room.wait()

    async def _refresh_credentials(self) -> None:
        for credential in self._credentials:
            await credential.refresh()

    async def _run_pump(self) -> None:
        try:
            await self._pump()
        except Exception as exc:  # a bug in the driver or the core: fail loudly, not silently
            self._logger.error("the connection pump failed", exc_info=True)
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
            await self._wait_handlers()
            if self._stage == "running":  # cancel the body: the block raises self._fatal
                self._block_cancelled = True
                self._cancel_block()

    async def _pump(self) -> None:
        client = self._client
        inbox = self._inbox
        router = self._router
        now_of = self._runtime.now
        while True:
            deadline = self._drain()
            if router.closed:
                return
            now = now_of()
            if deadline is not None and deadline <= now:
                client.handle_timer(now)
                continue
            if inbox:
                backlog = self._dispatcher.backlog()
                if backlog is not None:
                    # Back-pressure: let the consumers drain to half before the next read,
                    # for at most MAX_PAUSE; then read on (the overflow policy applies).
                    pause_until = self._pause_until
                    if pause_until is None:
                        pause_until = self._pause_until = now + MAX_PAUSE
                        backlog.notify_when_drained(self._wake)
                    if now < pause_until:
                        await self._sleep(
                            pause_until if deadline is None else min(deadline, pause_until)
                        )
                        continue
                self._pause_until = None
                self._feed(inbox.popleft(), now)
                self._room.set()  # the reader re-checks the inbox's length
                if self._dispatcher.pending:
                    # Let the handlers run between reads, so that a burst of many reads
                    # does not fill their queue before they get a turn.
                    await self._runtime.checkpoint()
                continue
            await self._sleep(deadline)

    def _feed(self, item: tuple[ConnectionBase[Any], int, Any], now: float) -> None:
        conn, kind, data = item
        if conn is not self._conn:
            return  # the core has closed this connection since
        client = self._client
        if kind == DATA:
            client.receive_data(now, data)
        elif kind == OPENED:
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
                # The core sends only while its transport is open: the check guards a core bug.
                if conn is not None:  # pragma: no branch
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
        # The core closes a transport before it opens the next: this guards a core bug.
        if old is not None:  # pragma: no cover
            old.close(self._close_timeout)
        # The new task runs at the next checkpoint, so it posts nothing before it is current.
        self._conn = self._start_connection(command)

    def _deliver(self, msg: ChannelMessage) -> None:
        rec = self._router.channel(msg.topic)
        if rec is None:  # pragma: no cover - the core only emits messages of live channels
            return
        logger = self._logger
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("message %r on %r", msg.event, msg.topic)
        self._dispatcher.deliver(rec.owner, msg)

    def _on_event(self, event: Event) -> None:
        rec = self._router.handle(event)
        kind = type(event)
        dispatcher = self._dispatcher
        logger = self._logger
        if kind is Joined:
            if event.rejoin and rec is not None:  # type: ignore[union-attr]
                logger.info("rejoined %r", event.topic)  # type: ignore[union-attr]
                dispatcher.hook(self._on_rejoin, rec.owner)
        elif kind is ChannelClosed:
            # Every channel of the core has a record (join adds it right after the core's join).
            closed: ChannelClosed = event  # type: ignore[assignment]
            if rec is not None:  # pragma: no branch
                if rec.joined and closed.reason in _UNEXPECTED_CLOSES:
                    logger.warning("channel %r closed for good: %s", rec.topic, closed.reason.value)
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
                    max(0.0, ev.retry_at - self._runtime.now()),
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
