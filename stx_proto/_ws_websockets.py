"""A :class:`~stx_proto._websocket.WebSocketEngine` on websockets' sans-IO protocol.

websockets is an optional dependency (the ``stx-ws[fast]`` extra): this module imports it at the
top, so only :func:`stx_proto._engines.resolve_engine` imports this module, lazily.

Theory of operation of :class:`WebsocketsEngine`:

* The HTTP upgrade is the one of :class:`~stx_proto._websocket.WsprotoEngine` (wsproto on h11),
  to which this engine hands the bytes until the handshake is over: the request bytes, the
  :class:`WsAccepted` values, the rejection semantics (body kept up to 64 KiB, reported once it
  arrived whole or the stream ended) and the handshake failures are the same, from the same
  code. The handshake stops at the end of the head that accepted the upgrade
  (:meth:`~stx_proto._websocket.WsprotoEngine.receive_head`): no frame byte reaches wsproto.
* After the handshake, bytes go to a :class:`~stx_proto._fast_frames.FrameScanner`, as in the
  wsproto engine: it parses the plain frames (a whole text or binary message in one frame)
  itself and hands every other frame whole, in order, to websockets' ``Protocol`` (client
  side, built in state OPEN: ``ClientProtocol`` is that class plus a handshake this engine does
  not use). websockets parses those frames and checks each message's size (``max_size``,
  counted over the fragments, in payload bytes: UTF-8 bytes for text); it yields frames, not
  messages, and does not decode text. This engine decodes text (an incremental decoder across
  fragments) and joins fragments.
* websockets queues bytes by itself (pongs, the echo of a close, the close frame of a failure);
  this engine drops them all and writes its own, by the rules of the wsproto engine: a pong
  for every ping until our close is sent, the echo of the peer's close unless ours was sent,
  and a close frame naming a failure while ours was not sent. So websockets' state never needs
  to follow ours: it never sends anything here.
* websockets checks every frame's size against its ``max_size`` (reduced, inside a fragmented
  message, by what the message already holds), control frames included. wsproto checks data
  only. Under 125 bytes (the largest control frame) websockets gets 125 and this engine checks
  the data frames websockets parses itself (``_limit``; the scanner checks the ones it takes).
* Differences that remain, by design (both engines fail the connection, only when or with which
  code differs):

  - websockets checks a frame's size when its header arrives and its UTF-8 when it is whole,
    wsproto as the payload streams in. So a message over ``max_message_size`` fails as soon as
    the header of the frame that takes it over the limit is read (earlier than with wsproto),
    and invalid UTF-8 once the frame is whole (later than with wsproto when the frame spans
    reads); for a frame both too big and invalid the code is not always the same.
  - With ``max_message_size`` of 125 or more: a control frame between the fragments of a
    message, when the message is within that frame's size of the limit, fails with 1009 (see
    above; wsproto lets it through), and a control frame over 125 bytes (a protocol error) that
    is also over the limit fails with 1009, not 1002.
  - A peer's close code 1014 (Bad Gateway) is a close here and a protocol error (1002) to
    wsproto, which does not know that code.
* :class:`WsRejected`, :class:`WsClosed` and :class:`WsFailed` are terminal: the engine returns no
  event after them, and sends nothing but what it already queued.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Sequence
from typing import cast

from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State

from ._errors import UsageError
from ._fast_frames import FrameScanner
from ._websocket import (
    DEFAULT_MAX_MESSAGE_SIZE,
    WsAccepted,
    WsClosed,
    WsEvent,
    WsFailed,
    WsprotoEngine,
)

__all__ = ["WebsocketsEngine"]

_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_PING = Opcode.PING
_PONG = Opcode.PONG
_CLOSE = Opcode.CLOSE

# Codes a close frame may not carry; wsproto sends 1000 in their place.
_LOCAL_ONLY_CODES = (1005, 1006, 1015)
# A control frame's payload is at most 125 bytes; a close frame's: the code and 123 of reason.
_MAX_CONTROL_PAYLOAD = 125
_MAX_CLOSE_REASON = 123
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _close_frame(code: int | None, reason: str) -> bytes:
    """Return a masked close frame with ``code`` (none when None) and ``reason`` cut to fit."""
    if code is None:
        return Frame(_CLOSE, b"").serialize(mask=True)
    raw = reason.encode()
    if len(raw) > _MAX_CLOSE_REASON:
        raw = raw[:_MAX_CLOSE_REASON].decode("utf-8", "ignore").encode()
    return Frame(_CLOSE, struct.pack("!H", code) + raw).serialize(mask=True)


class WebsocketsEngine:
    """A :class:`~stx_proto._websocket.WebSocketEngine` on websockets, client side.

    Takes the arguments of :class:`~stx_proto._websocket.WsprotoEngine` and behaves the same,
    but for the edge cases the module docstring lists (an oversized message fails as soon as
    its frame header is read, among others).

    Raises UsageError if the request cannot be built from these values (non-ASCII target,
    invalid header name, negative size limit...).
    """

    __slots__ = (
        "_bin_parts",
        "_decoder",
        "_done",
        "_frames",
        "_handshake",
        "_limit",
        "_max",
        "_open",
        "_out",
        "_parts_size",
        "_proto",
        "_receive_data",
        "_scanner",
        "_text_parts",
        "_writes",
    )

    _receive_data: Callable[[bytes], None]  # the protocol's, bound once the handshake is done

    def __init__(
        self,
        *,
        host: str,
        target: str,
        headers: Sequence[tuple[str, str]] = (),
        subprotocols: Sequence[str] = (),
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        # Checks every value and builds the request (UsageError when that fails).
        self._handshake: WsprotoEngine | None = WsprotoEngine(
            host=host,
            target=target,
            headers=headers,
            subprotocols=subprotocols,
            max_message_size=max_message_size,
        )
        # websockets checks every frame against its max_size, control frames too, which
        # wsproto does not: below 125 bytes (a control frame's largest payload) websockets gets
        # 125 and this engine checks the data frames itself (``_limit``).
        small = max_message_size is not None and max_message_size < _MAX_CONTROL_PAYLOAD
        self._max = max_message_size if not small else _MAX_CONTROL_PAYLOAD
        self._limit = max_message_size if small else None
        self._scanner = FrameScanner(max_message_size)
        self._parts_size = 0
        self._proto: Protocol | None = None
        self._frames: list[Frame] = []
        self._writes: list[bytes] = []
        self._open = False
        self._done = False
        self._out = bytearray()
        self._text_parts: list[str] | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._bin_parts: bytearray | None = None

    @property
    def open(self) -> bool:
        """True once the handshake completed and until a close started or the connection ended."""
        return self._open

    def start(self) -> bytes:
        """Return the HTTP upgrade request to write first.

        Raises UsageError if called a second time.
        """
        handshake = self._handshake
        if handshake is None:
            raise UsageError("start() was already called")
        return handshake.start()

    def receive(self, data: bytes) -> list[WsEvent]:
        """Feed bytes read from the stream; return the events they complete, in order.

        Never raises: a broken handshake or stream gives a :class:`WsFailed`. After a terminal
        event (:class:`WsRejected`, :class:`WsClosed`, :class:`WsFailed`) returns [].
        """
        if self._done:
            return []
        if self._proto is None:
            return self._receive_handshake(data)
        out: list[WsEvent] = []
        self._scanner.feed(data, out, self._from_library)
        return out

    def receive_eof(self) -> list[WsEvent]:
        """Tell the engine the stream ended; return the final events.

        Before the handshake completed: the :class:`WsRejected` for a rejection in progress,
        otherwise a :class:`WsFailed`. After: ``WsClosed(None, "eof")``. [] if already ended.
        """
        if self._done:
            return []
        handshake = self._handshake
        if handshake is not None:
            self._done = True
            return handshake.receive_eof()
        self._finish()
        return [WsClosed(None, "eof")]

    def send_text(self, text: str) -> bytes:
        """Return the frame bytes for a text message, or b"" if the connection is not open."""
        if not self._open:
            return b""
        return Frame(_TEXT, text.encode()).serialize(mask=True)

    def send_binary(self, data: bytes) -> bytes:
        """Return the frame bytes for a binary message, or b"" if the connection is not open."""
        if not self._open:
            return b""
        return Frame(_BINARY, data).serialize(mask=True)

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
        self._open = False
        return _close_frame(1000 if code in _LOCAL_ONLY_CODES else code, reason)

    def data_to_send(self) -> bytes:
        """Return the bytes the engine queued by itself (pongs, close frames); empty the queue."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    # ---- internals

    def _receive_handshake(self, data: bytes) -> list[WsEvent]:
        handshake = self._handshake
        assert handshake is not None
        events, rest = handshake.receive_head(data)
        if events and type(events[-1]) is WsAccepted:
            self._accepted()
            if rest:
                events += self.receive(rest)
        elif events:  # a terminal event: WsRejected or WsFailed
            self._done = True
        return events

    def _from_library(self, chunk: bytes, out: list[WsEvent]) -> bool:
        """The frames the scanner does not take: websockets' (see ``_fast_frames``)."""
        try:
            self._receive_data(chunk)
        except Exception as exc:  # a bug of websockets: its parser catches all the rest
            self._frames.clear()
            self._writes.clear()
            out.append(self._fail_open(f"websockets failed: {exc!r}", 1011))
            return True
        frames = self._frames
        for frame in frames:
            if self._other_frame(frame, out):
                break
        frames.clear()
        if self._writes:
            # Pongs, close echoes, failure frames: this engine writes its own (module docstring).
            self._writes.clear()
        if not self._done:
            proto = self._proto
            assert proto is not None
            if proto.parser_exc is not None:
                out.append(self._parser_failed(proto))
        return self._done

    def _accepted(self) -> None:
        self._handshake = None
        proto = Protocol(Side.CLIENT, state=State.OPEN, max_size=self._max)
        self._proto = proto
        # Bound once; receive() walks and clears these lists in place (websockets only appends
        # to them as long as events_received() and data_to_send() are not called).
        self._receive_data = proto.receive_data
        self._frames = cast("list[Frame]", proto.events)  # only frames once OPEN
        self._writes = proto.writes
        self._open = True

    def _other_frame(self, frame: Frame, out: list[WsEvent]) -> bool:
        """Handle a frame websockets parsed; True if it ended the connection."""
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
            return self._data_frame(frame, out)
        if opcode is _PING:
            # No pong once our close is sent, as with wsproto.
            if self._open:
                self._out += Frame(_PONG, frame.data).serialize(mask=True)
            return False
        if opcode is _PONG:
            return False
        # _CLOSE, the last opcode websockets yields; it parsed the payload already.
        proto = self._proto
        assert proto is not None and proto.close_rcvd is not None
        out.append(self._peer_closed(int(proto.close_rcvd.code), proto.close_rcvd.reason))
        return True

    def _data_frame(self, frame: Frame, out: list[WsEvent]) -> bool:
        """Handle a data frame (fragments, messages under a small limit); True if that failed
        the connection.

        As with wsproto, a text frame is decoded before its size is checked.
        """
        opcode = frame.opcode
        data = frame.data
        fin = frame.fin
        text: str | None = None
        try:
            if opcode is _TEXT:
                self._decoder = _utf8_decoder()
                text = self._decoder.decode(data, fin)
            elif opcode is _CONT and self._text_parts is not None:
                assert self._decoder is not None
                text = self._decoder.decode(data, fin)
        except UnicodeDecodeError as exc:
            out.append(self._fail_open(str(exc), 1007))
            return True
        # websockets fails a continuation with no message in progress, and a new message inside
        # one, before yielding them.
        size = len(data) if opcode is not _CONT else self._parts_size + len(data)
        if self._limit is not None and size > self._limit:
            out.append(self._fail_open("message too big", 1009))
            return True
        self._parts_size = size
        if text is not None:
            parts = [text] if opcode is _TEXT else self._text_parts
            assert parts is not None
            if fin:
                out.append(text if opcode is _TEXT else "".join([*parts, text]))
                self._text_parts = self._decoder = None
            else:
                if opcode is _CONT:
                    parts.append(text)
                self._text_parts = parts
        elif opcode is _BINARY:
            if fin:
                out.append(bytes(data))
            else:
                self._bin_parts = bytearray(data)
        else:
            bin_parts = self._bin_parts
            assert bin_parts is not None
            bin_parts += data
            if fin:
                out.append(bytes(bin_parts))
                self._bin_parts = None
        return False

    def _peer_closed(self, code: int, reason: str) -> WsClosed:
        if self._open:
            # Our reply: the peer's code and reason, or an empty close frame when it had none.
            self._out += _close_frame(None if code == 1005 else code, reason)
        self._finish()
        return WsClosed(code, reason)

    def _parser_failed(self, proto: Protocol) -> WsEvent:
        exc = proto.parser_exc
        if isinstance(exc, PayloadTooBig):
            return self._fail_open("message too big", 1009)
        if isinstance(exc, UnicodeDecodeError):  # a close frame's reason
            return self._fail_open(str(exc), 1007)
        if isinstance(exc, ProtocolError):
            close = proto.close_rcvd
            if close is not None:
                # A close frame in the middle of a fragmented message: websockets calls that a
                # protocol error, wsproto (and RFC 6455, control frames may come between
                # fragments) a close.
                return self._peer_closed(int(close.code), close.reason)
            return self._fail_open(str(exc), 1002)
        # websockets' parser turns any other exception (a bug of its own) into code 1011.
        return self._fail_open(f"websockets failed: {exc!r}", 1011)

    def _fail_open(self, detail: str, code: int) -> WsFailed:
        if self._open:
            self._out += _close_frame(code, detail)
        self._finish()
        return WsFailed(detail, code)

    def _finish(self) -> None:
        self._done = True
        self._open = False
        self._text_parts = None
        self._decoder = None
        self._bin_parts = None
