"""Inputs for the fuzz targets: Phoenix frames (valid, mutated, random), WebSocket frames from
a server, and the pieces a test needs to put a client engine past its handshake.

Everything here is deterministic given hypothesis's choices (or, for the atheris harness, a
seeded ``random.Random``), so a failure found by either replays.

Profiles: ``fuzz`` (the default, for ``make test``: few examples, no deadline) and
``fuzz-deep`` (for ``make fuzz``: many examples), chosen by the ``STX_FUZZ_PROFILE``
environment variable. Apply :data:`FUZZ` to a test to use the chosen one.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import random
import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from stx_proto import (
    ChannelClosed,
    ChannelErrored,
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    FrameDropped,
    GaveUp,
    HandshakeRefused,
    Joined,
    JoinFailed,
    MessageReceived,
    OpenTransport,
    PresenceChanged,
    PushFailed,
    ReplyReceived,
    SendBytes,
    SendMessage,
    SleepUntil,
)
from stx_proto._serializer import (
    encode_broadcast_binary,
    encode_reply_binary,
    encode_server_push_binary,
)
from stx_proto._websocket import WebSocketEngine, WsprotoEngine
from stx_proto.testing import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_payload,
    ws_frame,
)

settings.register_profile(
    "fuzz",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-deep",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: The hypothesis settings of every fuzz test: ``STX_FUZZ_PROFILE`` (default ``fuzz``).
FUZZ = settings.get_profile(os.environ.get("STX_FUZZ_PROFILE", "fuzz"))

#: Every type the core may hand out: the documented commands and events.
OUTPUT_TYPES = (
    OpenTransport,
    SendBytes,
    SendMessage,
    CloseTransport,
    SleepUntil,
    Connected,
    HandshakeRefused,
    Disconnected,
    GaveUp,
    Closed,
    Joined,
    JoinFailed,
    ChannelErrored,
    ChannelClosed,
    MessageReceived,
    ReplyReceived,
    PushFailed,
    PresenceChanged,
    FrameDropped,
)

# --------------------------------------------------------------------------------------------
# Engines: one line per engine the core has.

EngineFactory = Callable[..., WebSocketEngine]

#: Every WebSocket engine of the core, as pytest params. Add a new engine here in one line.
ENGINES = [pytest.param(WsprotoEngine, id="wsproto")]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_response(request: bytes, *, accept: bool = True, extra: bytes = b"") -> bytes:
    """The server's 101 answer to the upgrade ``request`` (with a correct Sec-WebSocket-Accept,
    unless ``accept`` is False). ``extra`` is added as raw header lines."""
    match = re.search(rb"(?im)^sec-websocket-key:\s*(\S+)\s*$", request)
    assert match is not None, "an upgrade request carries a key"
    token = base64.b64encode(hashlib.sha1(match[1] + _GUID).digest())
    lines = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade"]
    if accept:
        lines.append(b"Sec-WebSocket-Accept: " + token)
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def open_engine(factory: EngineFactory, max_message_size: int | None = 4096) -> WebSocketEngine:
    """An engine of ``factory`` whose handshake has just been accepted."""
    engine = factory(
        host="test", target="/socket/websocket?vsn=2.0.0", max_message_size=max_message_size
    )
    events = engine.receive(accept_response(engine.start()))
    assert [type(ev).__name__ for ev in events] == ["WsAccepted"], events
    return engine


# --------------------------------------------------------------------------------------------
# JSON and Phoenix frames

#: Numbers that stress a JSON parser: huge ints, big and tiny floats, infinities as text.
huge_numbers = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1e999", "-1e999", "1" * 5000, "0." + "0" * 400 + "1"]),
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

refs = st.none() | st.integers(0, 50).map(str) | st.text(max_size=4)
topics = st.sampled_from(["room:a", "room:b", "phoenix", "", "room:ä"]) | st.text(max_size=10)
events = st.sampled_from(
    ["phx_reply", "phx_error", "phx_close", "new_msg", "presence_state", "presence_diff"]
) | st.text(max_size=10)


@st.composite
def reply_payloads(draw: st.DrawFn) -> Any:
    """A phx_reply payload, usually well formed."""
    if draw(st.booleans()):
        return {"status": draw(st.sampled_from(["ok", "error"])), "response": draw(json_values)}
    return draw(json_values)


@st.composite
def v2_text_frames(draw: st.DrawFn) -> str:
    """A vsn 2.0.0 text frame: usually a 5-array with fields of the right types."""
    event = draw(events)
    payload = draw(reply_payloads()) if event == "phx_reply" else draw(json_values)
    fields = [draw(refs), draw(refs), draw(topics), event, payload]
    if draw(st.integers(0, 9)) == 0:  # a wrong shape now and then
        fields = draw(st.lists(json_values, max_size=7))
    return json.dumps(fields)


def deep_json(depth: int, kind: str = "list") -> str:
    """JSON nested ``depth`` levels deep (lists or objects)."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


deep_frames = st.builds(deep_json, st.integers(100, 200_000), st.sampled_from(["list", "object"]))
number_frames = huge_numbers.map(lambda n: f'[null,null,"room:a","n",{{"v":{n}}}]')


def mutate(data: bytes, rng: random.Random, count: int) -> bytes:
    """``data`` with ``count`` random byte flips, insertions, deletions or truncations."""
    buf = bytearray(data)
    for _ in range(count):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and pos < len(buf):
            buf[pos] = rng.randrange(256)
        elif op == 1:
            buf.insert(pos, rng.randrange(256))
        elif op == 2 and pos < len(buf):
            del buf[pos]
        else:
            del buf[pos:]
    return bytes(buf)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A value of ``base`` with a few random mutations."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    return mutate(draw(base), rng, draw(st.integers(1, 6)))


text_frames = st.one_of(
    v2_text_frames(),
    deep_frames,
    number_frames,
    mutated(v2_text_frames().map(str.encode)).map(lambda b: b.decode("utf-8", "replace")),
    st.text(max_size=60),
)

field = st.text(max_size=6).filter(lambda s: len(s.encode()) < 256)


@st.composite
def valid_binary_frames(draw: st.DrawFn) -> bytes:
    """A server binary frame of kind 0, 1 or 2, well formed."""
    kind = draw(st.integers(0, 2))
    payload = draw(st.binary(max_size=40))
    if kind == 0:
        return encode_server_push_binary(draw(st.none() | field), draw(field), draw(field), payload)
    if kind == 1:
        return encode_reply_binary(
            draw(st.none() | field), draw(field), draw(field), draw(field), payload
        )
    return encode_broadcast_binary(draw(field), draw(field), payload)


binary_frames = st.one_of(
    valid_binary_frames(),
    mutated(valid_binary_frames()),
    st.binary(max_size=80),
    # Lengths that overrun: header lengths well past the end of the frame.
    st.tuples(st.integers(0, 3), st.binary(min_size=3, max_size=5), st.binary(max_size=8)).map(
        lambda t: bytes([t[0]]) + bytes(b | 0x80 for b in t[1]) + t[2]
    ),
)

# --------------------------------------------------------------------------------------------
# WebSocket frames from a server


@st.composite
def ws_messages(draw: st.DrawFn, limit: int = 4096) -> list[bytes]:
    """A list of server frames: messages (whole or fragmented), control frames, and now and
    then a frame that breaks a rule (masked, reserved bits, bad UTF-8, oversize, a long or
    fragmented control frame, an unknown opcode, a stray continuation)."""
    out: list[bytes] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.integers(0, 9))
        if kind <= 2:
            text = draw(text_frames).encode("utf-8", "surrogatepass")
            out.append(ws_frame(OP_TEXT, text))
        elif kind == 3:
            out.append(ws_frame(OP_BINARY, draw(binary_frames)))
        elif kind == 4:  # a fragmented message
            data = draw(st.binary(max_size=60))
            cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=3)))
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
            for i, piece in enumerate(pieces):
                out.append(
                    ws_frame(opcode if i == 0 else OP_CONTINUATION, piece, fin=i == len(pieces) - 1)
                )
        elif kind == 5:
            out.append(
                ws_frame(draw(st.sampled_from([OP_PING, OP_PONG])), draw(st.binary(max_size=20)))
            )
        elif kind == 6:
            out.append(ws_frame(OP_CLOSE, close_payload(draw(st.integers(0, 5000)), b"bye")))
        elif kind == 7:
            out.append(ws_frame(OP_TEXT, b"x" * (limit + draw(st.integers(1, 100)))))
        elif kind == 8:
            out.append(
                ws_frame(
                    draw(st.integers(0, 15)),
                    draw(st.binary(max_size=130)),
                    fin=draw(st.booleans()),
                    rsv=draw(st.integers(0, 7)),
                    mask=draw(st.none() | st.binary(min_size=4, max_size=4)),
                )
            )
        else:
            out.append(ws_frame(OP_TEXT, b'["\xff\xfe",' + draw(st.binary(max_size=10)) + b"]"))
    return out


_POSITION = re.compile(r"position \d+(-\d+)?")


def same_events(events: list[Any]) -> list[Any]:
    """``events`` with the read-relative byte positions in failure details blanked.

    A UTF-8 error names its position in the chunk being decoded, which depends on where the
    read was split; everything else about the events must not.
    """
    out = []
    for ev in events:
        detail = getattr(ev, "detail", None)
        if isinstance(detail, str) and _POSITION.search(detail):
            out.append(attrs.evolve(ev, detail=_POSITION.sub("position N", detail)))
        else:
            out.append(ev)
    return out


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the positions ``cuts`` (any order, out-of-range ones clamped)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
