"""The transport interface: what carries one connection of a socket.

A socket gets its transport with ``Socket(url, transport=...)``; each driver's built-in
TCP/TLS transport is one like any other. There are two kinds:

* a :class:`StreamTransport` opens a byte stream to a host and port, with or without TLS. The
  core does the WebSocket (handshake, frames, pings, close) over it, so a stream transport
  knows nothing of WebSocket or Phoenix: a TCP socket, a proxy tunnel, an in-memory pipe.
* a :class:`MessageTransport` does its own WebSocket framing (picows, a browser-like API): it
  performs the upgrade the core describes in a :class:`~stx_proto.HandshakeRequest`, answers
  pings itself, and carries whole messages. The core then runs in message mode
  (``engine=None``) and stays the only place with Phoenix logic.

A transport raises whatever its library raises when it cannot connect, read or write: the
driver kit turns any exception into a failed connection (with its message, never its
secrets), and the core decides whether and when to reconnect. Every method is called from
the socket's own task group, never concurrently for one stream, except that ``send`` may run
while ``receive`` waits.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, TypeAlias

from .._events import HandshakeRequest


class ByteStream(ABC):
    """One open byte stream, as a :class:`StreamTransport` hands it over."""

    @abstractmethod
    async def receive(self) -> bytes:
        """The next bytes read (any amount up to about 64 KiB); ``b""`` at the end."""

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Write all of ``data``."""

    def send_nowait(self, data: bytes) -> int:
        """Write what the kernel takes of ``data`` now, without waiting; return how many
        bytes that was (0 when it would have to wait).

        The kit calls it when nothing is queued or being written before ``data``; the rest,
        and all of it after an exception, goes through :meth:`send` in the writer task (which
        reports a broken stream). The default writes nothing. A plain TCP stream overrides
        it: a push then leaves from the caller's task, without a hop through the writer
        (two scheduler passes a round trip on trio).
        """
        return 0

    @abstractmethod
    async def aclose(self) -> None:
        """Close at once, without waiting for the peer. Never raises; called once, last."""


class StreamTransport(ABC):
    """Opens byte streams: the core does the WebSocket over them."""

    @abstractmethod
    async def connect(self, host: str, port: int, tls: bool, ssl_context: Any) -> ByteStream:
        """Open a stream to ``host:port``; TLS (verifying ``host``) when ``tls``.

        ``ssl_context`` is the socket's ``ssl=`` option, or None for the transport's default
        (which must verify certificates). Raises on failure.
        """


class HandshakeRejected(Exception):
    """A :class:`MessageTransport`'s server answered the upgrade with ``status_code``."""

    def __init__(
        self, status_code: int, headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
    ) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers
        self.body = body


class MessageStream(ABC):
    """One open WebSocket of a :class:`MessageTransport`: whole messages in and out."""

    #: After :meth:`receive` returned None: the peer's close code (None if the connection
    #: ended without a close frame) and reason.
    close_code: int | None = None
    close_reason: str = ""

    @abstractmethod
    async def receive(self) -> str | bytes | None:
        """The next whole message (text as ``str``, binary as ``bytes``); None at the end."""

    async def receive_batch(self) -> list[str | bytes] | None:
        """Every whole message ready now, oldest first: at least one (waiting for the first);
        None at the end, as :meth:`receive`.

        The kit reads with this. The default is one :meth:`receive`. A transport whose library
        hands over many messages at once (picows delivers every frame of a read in a row)
        overrides it: the kit then feeds a burst to the core in one pass, as it does a
        stream's read of bytes, not one loop hop per message.
        """
        message = await self.receive()
        return None if message is None else [message]

    @abstractmethod
    async def send(self, data: str | bytes) -> None:
        """Send one message: text for ``str``, binary for ``bytes``."""

    def send_nowait(self, data: str | bytes) -> bool:
        """Send one message now if that needs no wait; True if it was sent.

        The kit calls it when nothing is queued before ``data``; on False (or an exception)
        the message goes through :meth:`send` in the writer task. The default returns False.
        A library whose send only buffers (picows) overrides it: a push then leaves from the
        caller's task, one loop hop sooner.
        """
        return False

    @abstractmethod
    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` (the kit bounds the wait)."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close at once, without waiting for the peer. Never raises; called once, last."""


class MessageTransport(ABC):
    """Opens WebSockets itself and carries whole messages."""

    @abstractmethod
    async def connect(
        self, host: str, port: int, tls: bool, ssl_context: Any, request: HandshakeRequest
    ) -> MessageStream:
        """Open a WebSocket to ``host:port`` (TLS when ``tls``) with the upgrade ``request``
        describes (its target, headers and subprotocols, all of them).

        Raises :class:`HandshakeRejected` when the server answers with another status than
        101, and anything else for other failures.
        """


#: What ``Socket(transport=...)`` accepts (besides a name; see :data:`TransportFactory`).
Transport = StreamTransport | MessageTransport

#: Makes the transport of one socket for ``Socket(transport="name")`` (a driver's
#: ``transports`` maps names to these). It gets the socket's ``max_message_size``: a message
#: transport enforces it itself (the core never sees its frames). It may raise
#: :class:`~stx_proto.UsageError` (a missing extra, the wrong event loop).
TransportFactory: TypeAlias = Callable[[int | None], Transport]
