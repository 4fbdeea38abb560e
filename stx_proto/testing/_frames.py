"""Hand-built WebSocket frames, for tests that play a server breaking the rules.

wsproto only writes valid frames; a hostile or buggy server does not. :func:`ws_frame` builds
one frame byte by byte (RFC 6455 section 5.2) with every field under the caller's control: a
length that lies, a mask a server must not set, reserved bits, a text payload that is not
UTF-8, a control frame that is too long or fragmented. Feed the result to a client with
:meth:`ServerConnection.send_wire <stx_proto.testing.ServerConnection.send_wire>` (or straight
to :meth:`stx_proto.Client.receive_data`).
"""

from __future__ import annotations

import struct

from .._errors import UsageError

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "close_payload",
    "ws_frame",
]

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def ws_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """Return one WebSocket frame: header, then ``payload`` (masked with ``mask`` if given).

    ``opcode`` (0-15) and ``rsv`` (the three reserved bits, 0-7) are written as given, valid or
    not. ``length`` is the payload length written in the header (default: the real one), so a
    frame can claim more or fewer bytes than it carries. Nothing is checked against the
    protocol: that is the point.

    Raises UsageError if a field does not fit its bits (opcode, rsv, a 4-byte mask, a length
    below 0 or above 2**63 - 1).
    """
    if not 0 <= opcode <= 0xF:
        raise UsageError(f"opcode must be in 0-15, got {opcode}")
    if not 0 <= rsv <= 7:
        raise UsageError(f"rsv must be in 0-7, got {rsv}")
    if mask is not None and len(mask) != 4:
        raise UsageError("a mask is 4 bytes")
    size = len(payload) if length is None else length
    if not 0 <= size < 1 << 63:
        raise UsageError(f"length must be in 0 - 2**63-1, got {size}")
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if mask is None:
        return head + payload
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def close_payload(code: int | None = 1000, reason: bytes = b"") -> bytes:
    """The payload of a close frame: ``code`` (2 bytes, any value 0-65535) then ``reason``.

    ``code`` None gives ``reason`` alone (by default an empty payload, a close with no code; a
    one-byte reason makes a close payload no peer may send). Raises UsageError for a code that
    does not fit in two bytes.
    """
    if code is None:
        return reason
    if not 0 <= code <= 0xFFFF:
        raise UsageError(f"a close code is 2 bytes, got {code}")
    return struct.pack("!H", code) + reason
