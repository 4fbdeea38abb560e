"""The WebSocket layer of the core: handshake, messages and close, behind a small interface.

The core talks to a :class:`WebSocketEngine`: it feeds the bytes read from the stream in and gets
:data:`WsEvent` values out, and asks for the bytes to write when it wants to send. A whole text
message comes out as a ``str`` and a whole binary message as ``bytes``, with no wrapper: that is
one object less for every message, the hot path. An engine never
raises on bad input from the peer: whatever the peer does wrong becomes a :class:`WsFailed`
event. :class:`WsprotoEngine` is the engine built on wsproto; another one (websockets' sans-IO
protocol, say) only has to implement the same protocol.

Theory of operation of :class:`WsprotoEngine`:

* Before the handshake completes, bytes go to ``WSConnection`` (h11 underneath). A 101 reply
  gives :class:`WsAccepted`; any other status gives :class:`WsRejected` once the whole
  rejection body has arrived (or the stream ended).
* h11 gets the bytes up to the end of each response head at a time: a rejection's body follows
  its head to h11, but the bytes after the head of a 101 are frames, and go where frames go.
* After the handshake, bytes go to a :class:`~stx_proto._fast_frames.FrameScanner`, which
  parses the plain frames (a whole text or binary message in one frame: nearly all of them)
  itself and hands every other frame whole, in order, to wsproto's ``Connection`` (one
  generator layer less than ``WSConnection``). Messages that arrive whole in one wsproto event
  are passed on with no copy; fragments are collected and joined, counting the size as they
  come.
* wsproto reports a frame it cannot parse as a ``CloseConnection`` event while its state stays
  OPEN (or LOCAL_CLOSING); a close frame really sent by the peer moves the state to
  REMOTE_CLOSING (or CLOSED, when it answers our own close). The state is how the two are told
  apart.
* :class:`WsRejected`, :class:`WsClosed` and :class:`WsFailed` are terminal: the engine returns no
  event after them, and sends nothing but what it already queued.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs
import h11
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError as _WsprotoProtocolError

from ._errors import UsageError
from ._fast_frames import FrameScanner, masked_frame

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "WebSocketEngine",
    "WsAccepted",
    "WsClosed",
    "WsEvent",
    "WsFailed",
    "WsRejected",
    "WsprotoEngine",
]

#: The largest WebSocket message accepted (and sent) by default: 16 MiB. STX's largest
#: snapshots are a user's open orders (about 3 MB for 10,000 orders), a full order book
#: (well under 1 MB), and a month of market statistics at one point a minute (about 4 MB):
#: this holds the largest with a margin of four, and bounds what one hostile message costs
#: (a 16 MiB message peaks near 45 MB of RSS; 64 MiB, the former default, near 174 MB).
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

#: How much of a rejection's body is kept; the rest is dropped.
MAX_REJECTION_BODY = 64 * 1024

# The end of an HTTP head, as h11 looks for it.
_HEAD_END = re.compile(b"\n\r?\n")

# The first byte of a whole text and of a whole binary message: FIN and the opcode.
_TEXT_FRAME = 0x81
_BINARY_FRAME = 0x82

_OPEN = ConnectionState.OPEN
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_CLOSED = ConnectionState.CLOSED

# --------------------------------------------------------------------------------------------
# Events


@attrs.frozen(slots=True)
class WsAccepted:
    """The server accepted the upgrade; ``subprotocol`` is the one it chose, if any.

    ``headers`` are the response's other headers (names lowercase).
    """

    subprotocol: str | None
    headers: tuple[tuple[str, str], ...]


@attrs.frozen(slots=True)
class WsRejected:
    """The server answered the upgrade with a status other than 101.

    Emitted once the whole response (body included) arrived, or when the stream ended or broke
    with part of it. ``body`` holds at most 64 KiB.
    """

    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@attrs.frozen(slots=True)
class WsClosed:
    """The connection ended.

    Either the peer sent a close frame (``code`` is its code, 1005 when the frame had none; any
    close reply is already queued in :meth:`WebSocketEngine.data_to_send`), or the stream ended
    without one (``code`` None, ``reason`` ``"eof"``).
    """

    code: int | None
    reason: str


@attrs.frozen(slots=True)
class WsFailed:
    """The connection broke: bad handshake, protocol violation, invalid UTF-8, oversized message.

    ``code`` is the WebSocket close code that matches the failure (1002, 1007, 1009...), None
    when the failure happened before the handshake completed. The engine queued a close frame
    with that code when the connection was still in a state to send one.
    """

    detail: str
    code: int | None


#: What an engine reports: a whole text message (``str``), a whole binary message (``bytes``),
#: or one of the event classes above.
WsEvent = str | bytes | WsAccepted | WsRejected | WsClosed | WsFailed

# --------------------------------------------------------------------------------------------
# Interface


class WebSocketEngine(Protocol):
    """A client-side sans-IO WebSocket: bytes in, :data:`WsEvent` values out."""

    def start(self) -> bytes:
        """Return the HTTP upgrade request to write first. Raises UsageError if called twice."""
        ...

    def receive(self, data: bytes) -> list[WsEvent]:
        """Feed bytes read from the stream; return the events they complete. Never raises."""
        ...

    def receive_eof(self) -> list[WsEvent]:
        """Tell the engine the stream ended; return the final events. Never raises."""
        ...

    def send_text(self, text: str) -> bytes:
        """Return the frame bytes for a text message, or b"" if the connection is not open."""
        ...

    def send_binary(self, data: bytes) -> bytes:
        """Return the frame bytes for a binary message, or b"" if the connection is not open."""
        ...

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start the close handshake: return the close frame, or b"" if not open."""
        ...

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes the engine queued by itself: pongs, close frames."""
        ...

    @property
    def open(self) -> bool:
        """True once the handshake completed and until a close started or the connection ended."""
        ...


# --------------------------------------------------------------------------------------------
# wsproto engine


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _str_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    # latin-1 maps every byte to one code point, so decoding never fails and loses nothing.
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers)


class WsprotoEngine:
    """A :class:`WebSocketEngine` on wsproto, client side.

    ``host`` is the Host header value (with ``:port`` when the port is not the scheme's
    default), ``target`` the request path with its query string. ``headers`` are extra request
    headers, ``subprotocols`` the offered subprotocols in order of preference. A message whose
    size (UTF-8 bytes for text) exceeds ``max_message_size`` fails the connection with close
    code 1009; None means no limit.

    Raises UsageError if the request cannot be built from these values (non-ASCII target,
    invalid header name, negative size limit...).
    """

    __slots__ = (
        "_bin_parts",
        "_conn",
        "_done",
        "_head_tail",
        "_max",
        "_open",
        "_out",
        "_parts_size",
        "_quick_text_max",
        "_reject_body",
        "_reject_head",
        "_request",
        "_scanner",
        "_text_parts",
        "_ws",
    )

    def __init__(
        self,
        *,
        host: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        subprotocols: Sequence[str] = (),
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        if max_message_size is not None and max_message_size < 0:
            raise UsageError(f"max_message_size must be >= 0 or None, got {max_message_size}")
        self._max = sys.maxsize if max_message_size is None else max_message_size
        # A str of n code points holds at most 4n UTF-8 bytes: below this length the exact byte
        # count is never needed.
        self._quick_text_max = self._max // 4
        self._conn = WSConnection(ConnectionType.CLIENT)
        try:
            # Built here, not in start(), so that bad values fail where they are given.
            self._request: bytes | None = self._conn.send(
                Request(
                    host=host,
                    target=target,
                    extra_headers=[
                        (name.encode("ascii"), value.encode("utf-8")) for name, value in headers
                    ],
                    subprotocols=list(subprotocols),
                )
            )
        except (ValueError, h11.LocalProtocolError) as exc:
            raise UsageError(f"cannot build the WebSocket upgrade request: {exc}") from exc
        self._ws: Connection | None = None
        self._scanner = FrameScanner(max_message_size)
        self._head_tail = b""  # the last bytes handed to h11, to find a head's end
        self._open = False
        self._done = False
        self._out = bytearray()
        self._text_parts: list[str] | None = None
        self._bin_parts: list[bytes] | None = None
        self._parts_size = 0
        self._reject_head: tuple[int, tuple[tuple[str, str], ...]] | None = None
        self._reject_body = bytearray()

    @property
    def open(self) -> bool:
        """True once the handshake completed and until a close started or the connection ended."""
        return self._open

    def start(self) -> bytes:
        """Return the HTTP upgrade request to write first.

        Raises UsageError if called a second time.
        """
        request = self._request
        if request is None:
            raise UsageError("start() was already called")
        self._request = None
        return request

    def receive(self, data: bytes) -> list[WsEvent]:
        """Feed bytes read from the stream; return the events they complete, in order.

        Never raises: a broken handshake or stream gives a :class:`WsFailed`. After a terminal
        event (:class:`WsRejected`, :class:`WsClosed`, :class:`WsFailed`) returns [].
        """
        if self._done:
            return []
        if self._ws is None:
            events, rest = self.receive_head(data)
            if rest:
                events += self.receive(rest)
            return events
        out: list[WsEvent] = []
        self._scanner.feed(data, out, self._from_library)
        return out

    def receive_head(self, data: bytes) -> tuple[list[WsEvent], bytes]:
        """Feed bytes of the handshake; return its events and the bytes after the head that
        accepted the upgrade (frames already), which the caller parses.

        Never raises. For :meth:`receive`, and for an engine that parses frames with another
        library after this handshake.
        """
        events: list[WsEvent] = []
        # Never b"" to h11, which takes it as the end of the stream (receive_eof() says that).
        while data and not self._done:
            # h11 gets the bytes up to the end of each response head only, so that a 101's
            # trailing bytes stay with the caller.
            buf = self._head_tail + data
            match = _HEAD_END.search(buf)
            if match is None:
                chunk, data = data, b""
                self._head_tail = buf[-2:]
            else:
                cut = match.end() - len(self._head_tail)
                chunk, data = data[:cut], data[cut:]
                self._head_tail = b""  # the next head, if any, starts after this one
            events += self._receive_handshake(chunk)
            if self._ws is not None:
                return events, data
        return events, b""

    def receive_eof(self) -> list[WsEvent]:
        """Tell the engine the stream ended; return the final events.

        Before the handshake completed: the :class:`WsRejected` for a rejection in progress,
        otherwise a :class:`WsFailed`. After: ``WsClosed(None, "eof")``. [] if already ended.
        """
        if self._done:
            return []
        if self._ws is None:
            if self._reject_head is not None:
                return [self._rejected()]
            return [self._fail("connection closed during handshake", None)]
        self._finish()
        return [WsClosed(None, "eof")]

    def send_text(self, text: str) -> bytes:
        """Return the frame bytes for a text message, or b"" if the connection is not open."""
        if not self._open:
            return b""
        # Framed here, not by wsproto (see masked_frame): nothing in wsproto's state follows
        # from a whole message sent.
        return masked_frame(_TEXT_FRAME, text.encode())

    def send_binary(self, data: bytes) -> bytes:
        """Return the frame bytes for a binary message, or b"" if the connection is not open."""
        if not self._open:
            return b""
        return masked_frame(_BINARY_FRAME, data)

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start the close handshake: return the close frame to write.

        Returns b"" if the connection is not open (handshake not done, already closing, ended).
        The reason is cut to fit a control frame (123 UTF-8 bytes). Raises UsageError if
        ``code`` is outside 1000-4999.
        """
        if not 1000 <= code <= 4999:
            raise UsageError(f"close code must be in 1000-4999, got {code}")
        if not self._open:
            return b""
        assert self._ws is not None
        self._open = False
        return self._ws.send(CloseConnection(code=code, reason=reason))

    def data_to_send(self) -> bytes:
        """Return the bytes the engine queued by itself (pongs, close frames); empty the queue."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    # ---- internals

    def _from_library(self, chunk: bytes, out: list[WsEvent]) -> bool:
        """The frames the scanner does not take: wsproto's (see ``_fast_frames``)."""
        ws = self._ws
        assert ws is not None
        # Connection.receive_data only raises in state CLOSED, and reaching CLOSED always makes
        # the engine done (see _on_close), so no try here.
        ws.receive_data(chunk)
        out += self._dispatch(ws.events())
        return self._done

    def _receive_handshake(self, data: bytes) -> list[WsEvent]:
        conn = self._conn
        error: Exception | None = None
        try:
            conn.receive_data(data)
        except (_WsprotoProtocolError, UnicodeError) as exc:
            # wsproto decodes some response headers as ASCII and lets UnicodeDecodeError out.
            error = exc
        # Events queued before an error still count (a rejection's status, say).
        events = self._dispatch(conn.events())
        if error is not None and not self._done:
            if self._reject_head is not None:
                events.append(self._rejected())
            else:
                detail = f"handshake failed: {error}"
                if error.__context__ is not None:
                    detail = f"{detail} ({error.__context__})"
                events.append(self._fail(detail, None))
        return events

    def _dispatch(self, events: Iterable[Event]) -> list[WsEvent]:
        out: list[WsEvent] = []
        append = out.append
        for ev in events:
            # type(ev) is X rather than isinstance: exact, faster, and mypy narrows on it.
            if type(ev) is TextMessage:
                text = ev.data
                if ev.message_finished and self._text_parts is None:
                    if len(text) > self._quick_text_max and _utf8_len(text) > self._max:
                        append(self._too_big())
                        break
                    append(text)
                elif self._add_text(text, _utf8_len(text), ev.message_finished, out):
                    break
            elif type(ev) is BytesMessage:
                # bytes(x) is x itself when x is exactly bytes, which wsproto gives.
                data = bytes(ev.data)
                if ev.message_finished and self._bin_parts is None:
                    if len(data) > self._max:
                        append(self._too_big())
                        break
                    append(data)
                elif self._add_binary(data, ev.message_finished, out):
                    break
            elif type(ev) is Ping:
                ws = self._ws
                assert ws is not None
                # Once our close is sent wsproto refuses to send anything else, pongs included.
                if ws.state is _OPEN:
                    self._out += ws.send(ev.response())
            elif type(ev) is Pong:
                pass
            elif type(ev) is CloseConnection:
                append(self._on_close(ev))
                break
            elif type(ev) is AcceptConnection:
                self._ws = self._conn.connection
                self._open = True
                append(WsAccepted(ev.subprotocol, _str_headers(ev.extra_headers)))
            elif type(ev) is RejectConnection:
                self._reject_head = (ev.status_code, _str_headers(ev.headers))
                if not ev.has_body:
                    append(self._rejected())
                    break
            # These are all the event types a client-side wsproto yields.
            elif type(ev) is RejectData:  # pragma: no branch
                room = MAX_REJECTION_BODY - len(self._reject_body)
                if room > 0:
                    self._reject_body += ev.data[:room]
                if ev.body_finished:
                    append(self._rejected())
                    break
        return out

    def _add_text(self, text: str, size: int, finished: bool, out: list[WsEvent]) -> bool:
        """Add a fragment of a text message; True if that failed the connection."""
        parts = self._text_parts
        if parts is None:
            parts = self._text_parts = []
            self._parts_size = 0
        self._parts_size += size
        if self._parts_size > self._max:
            out.append(self._too_big())
            return True
        parts.append(text)
        if finished:
            self._text_parts = None
            out.append("".join(parts))
        return False

    def _add_binary(self, data: bytes, finished: bool, out: list[WsEvent]) -> bool:
        """Add a fragment of a binary message; True if that failed the connection."""
        parts = self._bin_parts
        if parts is None:
            parts = self._bin_parts = []
            self._parts_size = 0
        self._parts_size += len(data)
        if self._parts_size > self._max:
            out.append(self._too_big())
            return True
        parts.append(data)
        if finished:
            self._bin_parts = None
            out.append(b"".join(parts))
        return False

    def _on_close(self, ev: CloseConnection) -> WsEvent:
        ws = self._ws
        assert ws is not None
        state = ws.state
        reason = ev.reason or ""
        if state is _REMOTE_CLOSING:
            self._out += ws.send(ev.response())
            self._finish()
            return WsClosed(int(ev.code), reason)
        if state is _CLOSED:
            # The peer's answer to our close.
            self._finish()
            return WsClosed(int(ev.code), reason)
        # State unchanged: this is wsproto reporting a frame it could not parse.
        return self._fail_open(reason, int(ev.code))

    def _too_big(self) -> WsFailed:
        return self._fail_open("message too big", 1009)

    def _fail_open(self, detail: str, code: int) -> WsFailed:
        ws = self._ws
        assert ws is not None
        if ws.state is _OPEN:
            self._out += ws.send(CloseConnection(code=code, reason=detail))
        return self._fail(detail, code)

    def _fail(self, detail: str, code: int | None) -> WsFailed:
        self._finish()
        return WsFailed(detail, code)

    def _rejected(self) -> WsRejected:
        assert self._reject_head is not None
        status, headers = self._reject_head
        self._finish()
        return WsRejected(status, headers, bytes(self._reject_body))

    def _finish(self) -> None:
        self._done = True
        self._open = False
        self._text_parts = None
        self._bin_parts = None
