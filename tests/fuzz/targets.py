"""The fuzz targets as plain functions of one byte string, for the atheris harness
(``fuzz/``) and for replaying the crashes it finds (``test_regressions.py``).

Each target decodes its input into a scenario, runs it, and checks the same invariants as the
hypothesis properties. A target returns normally for every input the code under test handles
correctly; anything else (an escaped exception, a failed invariant) raises.
"""

from __future__ import annotations

from collections.abc import Callable

from stx_proto import FrameError, OrjsonCodec, StdlibJsonCodec
from stx_proto._serializer import make_serializer
from stx_proto._websocket import WsprotoEngine

from .harness import TOPICS, CoreHarness
from .strategies import open_engine, same_events, splits

_SERIALIZERS = [
    make_serializer(vsn, codec)
    for vsn in ("2.0.0", "1.0.0")
    for codec in (StdlibJsonCodec(), OrjsonCodec())
]


class ByteReader:
    """Reads small numbers and byte strings off the front of a fuzzer's input."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def left(self) -> int:
        """Bytes not read yet."""
        return len(self._data) - self._pos

    def byte(self) -> int:
        """The next byte (0 once the input is used up)."""
        if self._pos >= len(self._data):
            return 0
        self._pos += 1
        return self._data[self._pos - 1]

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end)."""
        chunk = self._data[self._pos : self._pos + n]
        self._pos += len(chunk)
        return chunk

    def rest(self) -> bytes:
        """Everything not read yet."""
        return self.take(self.left)


def serializer_text(data: bytes) -> None:
    """Decode ``data`` as a text frame (as bytes and as str) with every serializer."""
    text = data.decode("utf-8", "replace")
    for serializer in _SERIALIZERS:
        for frame in (data, text):
            try:
                msg = serializer.decode_text(frame)
            except FrameError:
                continue
            assert type(msg.topic) is str and type(msg.event) is str


def serializer_binary(data: bytes) -> None:
    """Decode ``data`` as a binary frame with every serializer."""
    for serializer in _SERIALIZERS:
        try:
            msg = serializer.decode_binary(data)
        except FrameError:
            continue
        assert type(msg.topic) is str and type(msg.event) is str


#: The engines the engine target runs, one line each.
ENGINE_FACTORIES: list[Callable[..., object]] = [WsprotoEngine]


def engine(data: bytes) -> None:
    """Feed ``data`` (after a 2-byte split seed) to an open engine whole and split; compare."""
    reader = ByteReader(data)
    step = reader.byte() + 1
    eof = reader.byte() % 2 == 1
    stream = reader.rest()
    cuts = list(range(0, len(stream), step))
    for factory in ENGINE_FACTORIES:
        results = []
        for chunks in ([stream], splits(stream, cuts)):
            ws = open_engine(factory, 4096)  # type: ignore[arg-type]
            events = []
            for chunk in chunks:
                events += ws.receive(chunk)
                ws.data_to_send()
            if eof:
                events += ws.receive_eof()
            results.append(same_events(events))
        assert results[0] == results[1]


def core(data: bytes) -> None:
    """Play ``data`` as a script of server bytes, user calls and time against a client."""
    reader = ByteReader(data)
    harness = CoreHarness(reader.byte())
    while reader.left:
        op = reader.byte() % 10
        arg = reader.byte()
        if op <= 2:
            harness.receive(reader.take(arg))
        elif op == 3:
            harness.receive(harness.reply_frame(arg, "ok" if arg % 3 else "error"))
        elif op == 4:
            harness.join(TOPICS[arg % 3])
        elif op == 5:
            harness.push(TOPICS[arg % 3], b"\x01" if arg % 5 == 0 else {"n": arg})
        elif op == 6:
            harness.leave(TOPICS[arg % 3])
        elif op == 7:
            harness.advance(arg / 4)
        elif op == 8:
            harness.eof()
        else:
            frame = harness.reply_frame(arg)
            harness.receive(frame[: arg % (len(frame) + 1)])
    harness.finish()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "serializer_text": serializer_text,
    "serializer_binary": serializer_binary,
    "engine": engine,
    "core": core,
}
