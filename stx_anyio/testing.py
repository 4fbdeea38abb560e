"""A Phoenix Channels server on loopback, for testing bots and drivers on asyncio or trio.

:class:`TestServer` runs the scripted server of :mod:`stx_proto.testing` (a
:class:`~stx_proto.testing.PhoenixServer`) behind a real TCP (or TLS) listener, so a client
connects to it exactly as it would to Phoenix::

    from stx_anyio.testing import TestServer

    async def test_my_bot() -> None:
        async with TestServer() as server:
            server.phoenix.route("room:*", on_join=lambda topic, payload, conn: ("ok", {}))
            async with Socket(server.url) as sock:
                ch = await sock.join("room:lobby")
                await server.wait_for_join("room:lobby")
                server.phoenix.broadcast("room:lobby", "new_msg", {"body": "hi"})
                ...

Routes, broadcasts, pushes and fault switches (``heartbeat_replies``, ``refuse_handshake``,
``refuse_joins``, ``reply_delay``, ``close_replies``) are those of :attr:`TestServer.phoenix`;
anything a test does there is written to the clients at once. Two more switches play a server
that is no Phoenix server at all, below the WebSocket: :attr:`TestServer.stall_handshake`
(accept TCP, never answer) and :attr:`TestServer.raw_handshake` (answer the upgrade with any
bytes: a 101 without its accept header, garbage). The ``wait_for_*`` helpers wait for what
the client did, with a timeout, so tests never sleep for correctness.

The server works on both anyio backends (asyncio and trio). Start and stop it from the same
task, which ``async with`` does for you.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSListener

from stx_proto import ChannelMessage, UsageError
from stx_proto.testing import PhoenixServer, ServerConnection

__all__ = ["TestServer"]

_T = TypeVar("_T")

#: How often wait_until() checks its condition when the server sees no traffic (seconds).
POLL = 0.01

# What a broken or vanished client stream raises.
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class _Wakeup:
    """A resettable event: set() from anywhere in the loop, wait() in the connection task."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class _Signal:
    """Wakes every task waiting in wait() when notify() is called (created lazily, because an
    anyio Event can only be made inside a running event loop)."""

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class TestServer:
    """A Phoenix server on loopback for tests; use it as an async context manager.

    ``server`` is the :class:`~stx_proto.testing.PhoenixServer` to serve (a new one with no
    routes by default). ``port`` 0 picks a free port. With ``ssl_context`` (a server context,
    for example from ``trustme``) the server speaks TLS and :attr:`url` is ``wss://``.
    ``close_timeout`` is how long a connection the server closed waits for the client's
    close frame before the socket is closed anyway.

    Hostile switches, read when a connection is accepted: ``stall_handshake`` (False) True
    accepts TCP, reads the upgrade request and never answers; ``raw_handshake`` (None) bytes
    are written, verbatim, as the answer to the upgrade request. Either way the connection
    then reads and ignores what comes until the client goes, and never reaches
    :attr:`phoenix`; :attr:`raw_requests` lists what each such connection read before
    answering (so a test can count the client's attempts).

    Stopping the server cancels every connection task and closes their sockets abruptly.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        server: PhoenixServer | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        self.phoenix = server if server is not None else PhoenixServer()
        self.host = host
        self.ssl_context = ssl_context
        self.close_timeout = close_timeout
        self._requested_port = port
        self._port: int | None = None
        self._task_group: TaskGroup | None = None
        self._changed = _Signal()
        self.stall_handshake = False
        self.raw_handshake: bytes | None = None
        #: The upgrade requests read by hostile connections, one per connection, in order.
        self.raw_requests: list[bytes] = []

    # ----------------------------------------------------------------------------------------
    # Life cycle

    async def __aenter__(self) -> TestServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stop(exc_type, exc, tb)

    async def start(self) -> None:
        """Start listening. Raises UsageError if already started, OSError if the port is taken."""
        if self._task_group is not None:
            raise UsageError("the test server is already started")
        tcp = await anyio.create_tcp_listener(local_host=self.host, local_port=self._requested_port)
        self._port = tcp.extra(SocketAttribute.local_port)
        listener: Listener[ByteStream] = tcp
        if self.ssl_context is not None:
            # standard_compatible=False: clients commonly close without a TLS close_notify.
            listener = TLSListener(tcp, self.ssl_context, standard_compatible=False)
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._serve, listener)
        task_group.start_soon(self._run_server_timers)

    async def stop(self) -> None:
        """Stop listening and end every connection (abruptly). Does nothing if not started."""
        await self._stop(None, None, None)

    async def _stop(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return None
        self.phoenix.on_timers_changed = None
        task_group.cancel_scope.cancel()
        if isinstance(exc, Exception):
            # An error in the body (a failed assert, say) propagates as itself: handed to the
            # task group, trio would wrap it in an exception group. Cancellations still go in,
            # so that the cancel scopes can tell whose they are.
            await task_group.__aexit__(None, None, None)
            return None
        return await task_group.__aexit__(exc_type, exc, tb)

    # ----------------------------------------------------------------------------------------
    # Where and what

    @property
    def port(self) -> int:
        """The port listened on. Raises UsageError before :meth:`start`."""
        if self._port is None:
            raise UsageError("the test server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The endpoint URL to give a client: ``ws://127.0.0.1:<port>/socket`` (``wss://`` with
        TLS). Clients append ``/websocket``, as phoenix.js does. Raises UsageError before
        :meth:`start`."""
        scheme = "wss" if self.ssl_context is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/socket"

    @property
    def connections(self) -> list[ServerConnection]:
        """The live connections (the handshake may still be under way)."""
        return self.phoenix.connections

    def drop_all(self) -> None:
        """Drop every connection abruptly: the sockets close without a WebSocket close."""
        self.phoenix.drop_all()

    def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Close every connection with a WebSocket close frame of ``code``."""
        self.phoenix.close_all(code, reason)

    # ----------------------------------------------------------------------------------------
    # Waiting for the client

    async def wait_until(
        self, condition: Callable[[], _T | None], *, timeout: float = 5.0, what: str = ""
    ) -> _T:
        """Wait until ``condition()`` returns something other than None or False, and return it.

        The condition is checked now, again each time a connection reads data or changes
        state, and every ``POLL`` seconds in between (so a condition on the client's side,
        which the server does not see change, is noticed too). Raises TimeoutError after
        ``timeout`` seconds.
        """
        if self._task_group is None:
            raise UsageError("the test server is not started")
        try:
            with anyio.fail_after(timeout):
                while True:
                    # No await between the check and wait(), so no change can slip through.
                    result = condition()
                    if result is not None and result is not False:
                        return result
                    with anyio.move_on_after(POLL):
                        await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"test server: {what or 'condition'} not met within {timeout} s"
            ) from None

    async def wait_for_connections(self, n: int, *, timeout: float = 5.0) -> list[ServerConnection]:
        """Wait until at least ``n`` connections are open (handshake done); return them.

        Raises TimeoutError after ``timeout`` seconds.
        """

        def check() -> list[ServerConnection] | None:
            live = [c for c in self.phoenix.connections if c.open]
            return live if len(live) >= n else None

        return await self.wait_until(check, timeout=timeout, what=f"{n} open connection(s)")

    async def wait_for_join(
        self, topic: str, count: int = 1, *, timeout: float = 5.0
    ) -> ServerConnection:
        """Wait until ``topic`` has been joined ``count`` times in all (rejoins count, so
        ``count=2`` waits for a rejoin) and is joined on an open connection; return it.

        Raises TimeoutError after ``timeout`` seconds.
        """

        def check() -> ServerConnection | None:
            if self.phoenix.join_counts.get(topic, 0) < count:
                return None
            joined = self.phoenix.joined(topic)
            return joined[-1] if joined else None

        return await self.wait_until(check, timeout=timeout, what=f"join #{count} of {topic!r}")

    async def wait_for_frame(
        self, predicate: Callable[[ChannelMessage], bool], *, timeout: float = 5.0
    ) -> ChannelMessage:
        """Return the first frame any client sent (so far or from now on) that matches.

        Frames already received count, so there is no race with a client that is quick.
        Raises TimeoutError after ``timeout`` seconds.
        """

        def check() -> ChannelMessage | None:
            for conn in self.phoenix.all_connections:
                for msg in conn.received:
                    if predicate(msg):
                        return msg
            return None

        return await self.wait_until(check, timeout=timeout, what="a matching frame")

    # ----------------------------------------------------------------------------------------
    # Connections

    def _notify(self) -> None:
        self._changed.notify()

    async def _run_server_timers(self) -> None:
        """Fire the scripted server's own timers (those that outlive connections) on time."""
        wakeup = _Wakeup()
        self.phoenix.on_timers_changed = wakeup.set
        while True:
            wakeup.clear()
            now = anyio.current_time()
            deadline = self.phoenix.next_deadline()
            if deadline is not None and deadline <= now:
                self.phoenix.handle_timer(now)
                self._notify()
                continue
            if deadline is None:
                await wakeup.wait()
            else:
                with anyio.move_on_after(deadline - now):
                    await wakeup.wait()

    async def _serve(self, listener: Listener[ByteStream]) -> None:
        async with listener:
            await listener.serve(self._handle)

    async def _handle(self, stream: ByteStream) -> None:
        if self.stall_handshake or self.raw_handshake is not None:
            await self._handle_raw(stream, None if self.stall_handshake else self.raw_handshake)
            return
        conn = self.phoenix.connect()
        wakeup = _Wakeup()
        conn.on_output = wakeup.set
        self._notify()
        abrupt = True
        try:
            # Neither task raises for a broken stream: an exception here is a bug (in a route
            # handler, say) and is meant to fail the test.
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._read, stream, conn, wakeup)
                abrupt = await self._write(stream, conn, wakeup)
                task_group.cancel_scope.cancel()
        finally:
            conn.on_output = None
            if not conn.closed:
                conn.receive_eof(anyio.current_time())
            self._notify()
            with anyio.CancelScope(shield=True):
                if abrupt:
                    await anyio.aclose_forcefully(stream)
                else:
                    with contextlib.suppress(*_STREAM_ERRORS):
                        await stream.aclose()

    async def _handle_raw(self, stream: ByteStream, answer: bytes | None) -> None:
        """A hostile connection: read the upgrade request, write ``answer`` (None: nothing),
        then read and ignore everything until the client closes the stream."""
        index = len(self.raw_requests)
        self.raw_requests.append(b"")
        request = b""
        try:
            while b"\r\n\r\n" not in request:
                request += await stream.receive()
                self.raw_requests[index] = request
                self._notify()
            if answer is not None:
                await stream.send(answer)
            while True:  # whatever the client sends now is ignored
                await stream.receive()
        except (anyio.EndOfStream, *_STREAM_ERRORS):
            pass
        finally:
            self._notify()
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(stream)

    async def _read(self, stream: ByteStream, conn: ServerConnection, wakeup: _Wakeup) -> None:
        try:
            while not conn.closed:
                data = await stream.receive()
                conn.receive_data(data, anyio.current_time())
                self._notify()
                wakeup.set()
        except (anyio.EndOfStream, *_STREAM_ERRORS):
            conn.receive_eof(anyio.current_time())
            self._notify()
            wakeup.set()

    async def _write(self, stream: ByteStream, conn: ServerConnection, wakeup: _Wakeup) -> bool:
        """Write what the connection has to send until it is over; True if it ends abruptly."""
        closing_since: float | None = None
        while True:
            wakeup.clear()
            now = anyio.current_time()
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.handle_timer(now)
                deadline = conn.next_deadline()
            data = conn.data_to_send()
            if conn.should_drop:
                return True
            if data:
                try:
                    await stream.send(data)
                # A write fails only if the client resets the connection after the last read
                # and before this write: a race that a loopback test cannot set up reliably.
                except _STREAM_ERRORS:  # pragma: no cover
                    return True
            if conn.closed:
                return False
            if conn.closing:
                if closing_since is None:
                    closing_since = now
                give_up = closing_since + self.close_timeout
                if now >= give_up:
                    return True
                deadline = give_up if deadline is None else min(deadline, give_up)
            if deadline is None:
                await wakeup.wait()
            else:
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                    await wakeup.wait()
