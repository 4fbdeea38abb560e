"""The hot path of both WebSocket engines: a server's plain data frames, parsed here.

Nearly every frame a Phoenix server sends is a whole message in one frame: FIN set, no
reserved bit, text (or binary), unmasked, a few hundred bytes. The libraries parse each one
through layers built for every case (measured in memory on 300-byte frames: wsproto about
10 µs a frame, websockets' ``Protocol`` about 2.5 µs); :class:`FrameScanner` reads such a frame
in well under a microsecond. Every other frame goes whole, in order, to the engine's library,
which answers pings, takes closes, joins fragments and reports every protocol error, with its
own codes and details: the scanner only ever takes a frame the library would turn into exactly
one message and nothing else.

A frame is taken here when all of these hold, and handed to the library otherwise:

* its first byte is ``0x81`` (FIN, text) or ``0x82`` (FIN, binary): no reserved bit, no
  fragment;
* the mask bit is clear (a server must not mask) and the length is in its shortest form (RFC
  6455 5.2; 16-bit lengths only: a 64-bit one means a frame of 64 KiB or more, which the
  library parses as well as anything);
* no fragmented message is in progress (a whole message in the middle of one is an error the
  library reports);
* the payload is within the size limit, and a text payload is valid UTF-8;
* the frame is whole in the bytes at hand. Such a frame whose end has not arrived waits here
  (64 KiB at most, so the copies stay small); every frame the library gets streams to it as
  it comes.

The library only ever sees whole frames from their first byte (or, for a frame streamed to it,
the rest of that frame), so its parser is always at a frame boundary when the scanner reads.

So every error reaches the library when it would without the scanner. A frame whose header
is cut short waits for the rest of it (9 bytes at most), unless its first two bytes already
make it an error (a reserved bit or opcode, a mask, a fragmented or long control frame): then
the library gets it, and all that follows, at once. A plain text frame that waits for its
end is checked for invalid UTF-8 as its bytes come, as the libraries do, and goes to the
library at the first invalid byte.
"""

from __future__ import annotations

import sys
from codecs import utf_8_decode as _utf8_decode
from collections.abc import Callable
from secrets import token_bytes
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._websocket import WsEvent

__all__ = ["FrameScanner", "masked_frame"]

_TEXT = 0x81  # FIN + opcode 1
_BINARY = 0x82  # FIN + opcode 2
_PLAIN = frozenset((_TEXT, _BINARY))
_OPCODE = 0x0F
_FIN = 0x80
_CONTINUATION = 0x0
_CONTROL = 0x8  # opcodes 8 and up: close, ping, pong
_RESERVED = 0x70  # RSV1-3: no extension is negotiated, so a frame with one is an error
_MASK = 0x80  # in the second byte
_OPCODES = frozenset((0x0, 0x1, 0x2, 0x8, 0x9, 0xA))


class FrameScanner:
    """Splits the bytes of an open WebSocket into plain messages and the rest (module
    docstring). ``max_size``: the largest message taken here (payload bytes); None for no
    limit."""

    __slots__ = ("_in_message", "_max", "_pending", "_to_library")

    def __init__(self, max_size: int | None) -> None:
        self._max = sys.maxsize if max_size is None else max_size
        self._pending = b""  # the start of a frame whose end has not arrived
        self._to_library = 0  # bytes still due to the library for the frame it is reading
        self._in_message = False  # the library holds the start of a fragmented message

    def feed(
        self,
        data: bytes,
        out: list[WsEvent],
        library: Callable[[bytes, list[WsEvent]], bool],
    ) -> None:
        """Parse ``data``: append each plain message to ``out`` (text as ``str``, binary as
        ``bytes``) and hand every other frame to ``library``, in stream order.

        ``library(chunk, out)`` parses ``chunk`` (whole frames, or the next bytes of the frame
        it is reading), appends its events to ``out``, and returns True when the connection
        ended.

        Stops at the first frame after which ``library`` says the connection ended; the bytes
        after it are dropped.
        """
        due = self._to_library
        if due:
            if len(data) <= due:
                self._to_library = due - len(data)
                library(data, out)
                return
            self._to_library = 0
            if library(data[:due], out):
                return
            data = data[due:]
        if self._pending:
            data = self._pending + data
            self._pending = b""
        n = len(data)
        pos = 0
        limit = self._max
        append = out.append
        in_message = self._in_message
        while pos < n:
            first = data[pos]
            if first in _PLAIN and not in_message and pos + 1 < n:
                size = data[pos + 1]
                start = pos + 2
                if size == 126 and pos + 3 < n:
                    size = data[pos + 2] << 8 | data[pos + 3]
                    start = pos + 4
                    if size < 126:
                        start = 0  # not the shortest form: the library's to judge
                elif size >= 126:
                    start = 0  # masked, 64-bit length, or a length not all here yet
                end = start + size
                if start and size <= limit:
                    if end <= n:
                        if first == _TEXT:
                            try:
                                append(data[start:end].decode())
                            except UnicodeDecodeError:
                                pass  # the library reports it, with its code and detail
                            else:
                                pos = end
                                continue
                        else:
                            append(data[start:end])
                            pos = end
                            continue
                    elif first == _BINARY or _utf8_so_far(data[start:]):
                        self._pending = data[pos:]  # at most 64 KiB: a 16-bit length
                        break
                    # Invalid UTF-8 already: the library fails it as it streams in.
            # Any other frame: to the library, whole or as far as it has come.
            if _broken(data, pos, n):
                # The library fails the frame at its first bytes: it gets all that follows.
                self._to_library = sys.maxsize
                library(data[pos:] if pos else data, out)
                break
            frame_end = _frame_end(data, pos, n)
            if frame_end is None:
                self._pending = data[pos:]  # a header cut short: at most 9 bytes
                break
            end = frame_end
            opcode = first & _OPCODE
            if opcode < _CONTROL:
                if opcode != _CONTINUATION:
                    in_message = not first & _FIN
                elif first & _FIN:
                    in_message = False
            if end > n:
                self._to_library = end - n
                library(data[pos:] if pos else data, out)
                break
            if library(data[pos:end], out):
                break
            pos = end
        self._in_message = in_message


def _utf8_so_far(payload: bytes) -> bool:
    """True if ``payload`` (the start of a text message) holds no invalid UTF-8 yet: a
    sequence cut short at the end is not an error (as when the libraries decode as the bytes
    stream in)."""
    try:
        _utf8_decode(payload, "strict", False)
    except UnicodeDecodeError:
        return False
    return True


def _broken(data: bytes, pos: int, n: int) -> bool:
    """True if the frame that starts at ``pos`` is an error by its first two bytes (as far
    as they are here): a reserved bit (no extension is negotiated), a reserved opcode, a
    mask (a server must not mask), or a control frame that is fragmented or too long."""
    first = data[pos]
    if first & _RESERVED or (first & _OPCODE) not in _OPCODES:
        return True
    if pos + 1 == n:
        return False
    second = data[pos + 1]
    return bool(second & _MASK or (first & _CONTROL and (not first & _FIN or second & 0x7F > 125)))


def _frame_end(data: bytes, pos: int, n: int) -> int | None:
    """Where the unmasked frame that starts at ``pos`` ends (it may be past ``n``); None
    while its header is not all here. (A masked frame is an error: see :func:`_broken`.)"""
    if pos + 2 > n:
        return None
    size = data[pos + 1]
    head = 2
    if size == 126:
        head = 4
    elif size == 127:
        head = 10
    if pos + head > n:
        return None
    if size == 126:
        size = int.from_bytes(data[pos + 2 : pos + 4], "big")
    elif size == 127:
        size = int.from_bytes(data[pos + 2 : pos + 10], "big")
    return pos + head + size


def masked_frame(first: int, payload: bytes) -> bytes:
    """A client's frame: ``first`` (FIN, RSV and opcode bits) and ``payload``, masked with a
    fresh key from the OS's random source (RFC 6455 5.3: the key must be unpredictable).

    The libraries' own serializers cost more than the frame (wsproto's about 8 µs for 300
    bytes); here the mask is one XOR of two integers, done in C.
    """
    size = len(payload)
    if size < 126:
        head = bytes((first, 0x80 | size))
    elif size < 65536:
        head = bytes((first, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 0xFF)) + size.to_bytes(8, "big")
    key = token_bytes(4)
    if not size:
        return head + key
    mask = int.from_bytes((key * (size // 4 + 1))[:size], "big")
    return head + key + (int.from_bytes(payload, "big") ^ mask).to_bytes(size, "big")
