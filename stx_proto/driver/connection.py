"""One connection of a socket: open it with the transport, then read and write until closed.

Each ``OpenTransport`` of the core starts one :class:`Connection` task in the socket's task
group. It refreshes the credentials, opens the transport, and then reads into the pump's
bounded inbox (and waits when the pump is behind) while a writer task sends the outbox. The
pump can therefore always run its timers, even while a write is stuck: a dead peer is found
by the heartbeat. The connection reports to its :class:`ConnectionOwner` (the session) with
:meth:`ConnectionOwner.post`; it never touches the core.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from .._errors import CredentialsRevokedError, UsageError
from .._events import HandshakeRequest, OpenTransport
from .runtime import CancelScope, Runtime, Signal
from .transport import (
    ByteStream,
    HandshakeRejected,
    MessageStream,
    MessageTransport,
    StreamTransport,
    Transport,
)

_Stream = TypeVar("_Stream", ByteStream, MessageStream)

# What a connection posts to the pump's inbox.
DATA = 0  # bytes read from a byte stream
MESSAGE = 1  # whole messages from a message stream (a list: a burst of them)
OPENED = 2  # the transport is open (for a message transport: the WebSocket is)
REFUSED = 3  # a message transport's handshake was refused (data: HandshakeRejected)
ENDED = 4  # the connection ended (data: an error text or None; (code, reason) for a close)
INVALID = 5  # the handshake cannot be built, or the credentials are revoked (data: the error)


class ConnectionOwner(Protocol):
    """What a connection needs of its socket."""

    @property
    def runtime(self) -> Runtime:
        """The event loop."""

    @property
    def ssl(self) -> Any:
        """The socket's ``ssl=`` option (None: the transport's default)."""

    def post(self, conn: Connection, kind: int, data: Any) -> None:
        """News for the pump (ignored if ``conn`` is no longer current)."""

    async def inbox_room(self, conn: Connection) -> None:
        """Return when the pump can take more of ``conn``'s reads."""

    async def refresh_credentials(self) -> None:
        """Evaluate the user's (async) credential sources for the next handshake."""

    def handshake_request(self) -> HandshakeRequest:
        """The upgrade to perform (message transports): the core's, with fresh credentials."""


def describe_error(exc: BaseException, _depth: int = 0) -> str:
    """``Type: message`` for ``exc``, followed by its causes in parentheses.

    Stream libraries wrap the error that says what happened (a TLS verification failure
    behind ``trio.BrokenResourceError``, a refused connection behind an exception group), so
    the causes, and a group's members, are where the reason is. Nesting stops at four levels
    (which also ends a cycle of causes).
    """
    deeper = _depth < 4
    members = getattr(exc, "exceptions", None)
    if deeper and isinstance(members, tuple) and members:
        return "; ".join(describe_error(member, _depth + 1) for member in members)
    text = str(exc)
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    cause = exc.__cause__
    if deeper and cause is not None:
        line = f"{line} ({describe_error(cause, _depth + 1)})"
    return line


class Connection:
    """One transport connection: see the module docstring.

    :meth:`close` flushes the outbox (within a time limit) and then ends the connection; while
    still connecting it cancels at once. ``scope`` is the cancel scope :meth:`run` runs in.
    """

    __slots__ = (
        "_close_code",
        "_close_reason",
        "_owner",
        "_send_now",
        "_sending",
        "_transport",
        "_writable",
        "closing",
        "finished",
        "opened",
        "outbox",
        "scope",
    )

    def __init__(self, owner: ConnectionOwner, transport: Transport) -> None:
        runtime = owner.runtime
        self._owner = owner
        self._transport = transport
        self.scope: CancelScope = runtime.cancel_scope()
        self.opened = False
        self.outbox: deque[Any] = deque()  # bytes for a stream, str or bytes messages
        self._writable = Signal(runtime.event)
        self.closing = False
        self._close_code = 1000
        self._close_reason = ""
        # While the stream is open, what sends without waiting and returns what it did not
        # send (None: everything takes the writer), and whether the writer is inside a send.
        self._send_now: Callable[[Any], Any] | None = None
        self._sending = False
        #: Set once :meth:`run` has returned (the stream is closed).
        self.finished = runtime.event()

    def send(self, data: str | bytes) -> None:
        """Queue ``data`` (bytes for a byte stream, one message for a message stream).

        A stream that can write without waiting (``send_nowait``) takes it here and now when
        nothing is queued or being written before it: a push then leaves without a hop
        through the writer task. What it does not take (a full socket buffer, a failure)
        goes to the writer, which reports a failure as it does its own.
        """
        send_now = self._send_now
        if send_now is not None and not self.outbox and not self._sending and not self.closing:
            try:
                rest = send_now(data)
            except Exception:  # the writer's send fails the same way, and says so
                rest = data
            if not rest:
                return
            data = rest
        self.outbox.append(data)
        self._writable.set()

    def close(self, flush_timeout: float, code: int = 1000, reason: str = "") -> None:
        """Flush the outbox (within ``flush_timeout``), then close. Idempotent, never raises.

        ``code`` and ``reason`` are the close frame a message stream sends (a byte stream's
        close frame is in its outbox already, written by the core).
        """
        if self.closing:
            return
        self.closing = True
        self._close_code = code
        self._close_reason = reason
        if not self.opened:
            self.scope.cancel()  # still connecting: there is nothing to flush
        else:
            self.scope.deadline = self._owner.runtime.now() + flush_timeout
            self._writable.set()

    async def run(self, command: OpenTransport) -> None:
        """The connection task: credentials, connect, then serve until closed or ended."""
        owner = self._owner
        try:
            with self.scope:
                try:
                    await owner.refresh_credentials()
                except (UsageError, CredentialsRevokedError) as exc:  # retrying cannot help
                    owner.post(self, INVALID, exc)
                    return
                except Exception as exc:
                    owner.post(self, ENDED, f"credentials failed: {exc!r}")
                    return
                transport = self._transport
                if isinstance(transport, StreamTransport):
                    await self._run_stream(transport, command)
                else:
                    await self._run_messages(transport, command)
        finally:
            self.finished.set()

    async def _run_stream(self, transport: StreamTransport, command: OpenTransport) -> None:
        owner = self._owner
        try:
            stream = await transport.connect(command.host, command.port, command.tls, owner.ssl)
        except Exception as exc:
            owner.post(self, ENDED, f"connect failed: {describe_error(exc)}")
            return
        await self._carry(stream, self._write_bytes, self._read_bytes)

    async def _run_messages(self, transport: MessageTransport, command: OpenTransport) -> None:
        owner = self._owner
        try:
            request = owner.handshake_request()
        except UsageError as exc:  # a params/token/headers callable gave a bad value
            owner.post(self, INVALID, exc)
            return
        except Exception as exc:  # a user's params/token/headers callable failed
            owner.post(self, ENDED, f"handshake: {type(exc).__name__}: {exc}")
            return
        try:
            stream = await transport.connect(
                command.host, command.port, command.tls, owner.ssl, request
            )
        except HandshakeRejected as exc:
            owner.post(self, REFUSED, exc)
            return
        except Exception as exc:
            owner.post(self, ENDED, f"connect failed: {describe_error(exc)}")
            return
        await self._carry(stream, self._write_messages, self._read_messages)

    async def _carry(
        self,
        stream: _Stream,
        write: Callable[[_Stream], Coroutine[Any, Any, None]],
        read: Callable[[_Stream], Coroutine[Any, Any, None]],
    ) -> None:
        """The open connection: the writer in a task, the reader here, until the stream ends
        or the core closes it; the stream is closed at the end either way."""
        owner = self._owner
        self.opened = True
        try:
            owner.post(self, OPENED, None)
            async with owner.runtime.task_group() as tg:
                tg.start_soon(write, stream)
                await read(stream)
                if not self.closing:
                    tg.cancel_scope.cancel()
        finally:
            self._send_now = None
            await self._aclose(stream)

    async def _aclose(self, stream: ByteStream | MessageStream) -> None:
        with self._owner.runtime.cancel_scope(deadline=math.inf, shield=True):
            await stream.aclose()

    async def _read_bytes(self, stream: ByteStream) -> None:
        owner = self._owner
        try:
            while not self.closing:
                data = await stream.receive()
                if not data:
                    owner.post(self, ENDED, None)
                    return
                owner.post(self, DATA, data)
                await owner.inbox_room(self)
        except Exception as exc:
            owner.post(self, ENDED, f"receive failed: {describe_error(exc)}")

    async def _read_messages(self, stream: MessageStream) -> None:
        owner = self._owner
        try:
            while not self.closing:
                messages = await stream.receive_batch()
                if messages is None:
                    code = stream.close_code
                    owner.post(self, ENDED, None if code is None else (code, stream.close_reason))
                    return
                owner.post(self, MESSAGE, messages)
                await owner.inbox_room(self)
        except Exception as exc:
            owner.post(self, ENDED, f"receive failed: {describe_error(exc)}")

    async def _write_bytes(self, stream: ByteStream) -> None:
        outbox = self.outbox
        send_nowait = stream.send_nowait

        def send_now(data: bytes) -> bytes:
            sent = send_nowait(data)
            return data[sent:] if sent else data

        self._send_now = send_now
        while True:
            while outbox:
                # One write for everything queued (join of a single bytes object is free).
                data = b"".join(outbox)
                outbox.clear()
                self._sending = True  # send() must not overtake these bytes
                sent = await self._sent(stream.send, data)
                self._sending = False
                if not sent:
                    return
            if self.closing:
                self.scope.cancel()
                return
            await self._writable.wait()

    async def _write_messages(self, stream: MessageStream) -> None:
        outbox = self.outbox
        send_nowait = stream.send_nowait

        def send_now(data: str | bytes) -> str | bytes | None:
            return None if send_nowait(data) else data

        self._send_now = send_now
        while True:
            while outbox:
                self._sending = True  # send() must not overtake this message
                sent = await self._sent(stream.send, outbox.popleft())
                self._sending = False
                if not sent:
                    return
            if self.closing:
                await self._sent(stream.close, self._close_code, self._close_reason)
                self.scope.cancel()
                return
            await self._writable.wait()

    async def _sent(self, send: Any, *args: Any) -> bool:
        """``await send(*args)``; on failure report the end, stop the connection, False."""
        try:
            await send(*args)
        except Exception as exc:
            self._send_now = None  # the stream is broken: nothing more is sent at once
            self._owner.post(self, ENDED, f"send failed: {describe_error(exc)}")
            self.scope.cancel()
            return False
        return True
