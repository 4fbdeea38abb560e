"""Fuzz the WebSocket engines with what a server may send after (and instead of) the handshake.

Invariants, for every engine in :data:`~tests.fuzz.strategies.ENGINES`: ``receive`` never
raises; only :data:`~stx_proto._websocket.WsEvent` types come out; nothing comes after a
terminal event; a read split at any points gives the same events as the whole read; a rule
broken by the server fails the connection with the close code RFC 6455 names.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stx_proto._websocket import (
    WebSocketEngine,
    WsAccepted,
    WsClosed,
    WsEvent,
    WsFailed,
    WsRejected,
)
from stx_proto.testing import OP_BINARY, OP_PING, OP_TEXT, ws_frame

from .strategies import (
    ENGINES,
    FUZZ,
    EngineFactory,
    accept_response,
    open_engine,
    same_events,
    splits,
    ws_messages,
)

LIMIT = 4096
TERMINAL = (WsRejected, WsClosed, WsFailed)
EVENT_TYPES = (str, bytes, WsAccepted, WsRejected, WsClosed, WsFailed)


def feed(engine: WebSocketEngine, chunks: list[bytes], eof: bool = False) -> list[WsEvent]:
    """Feed every chunk (then the end of the stream), checking the invariants on the way."""
    events: list[WsEvent] = []
    for chunk in chunks:
        events += engine.receive(chunk)
        engine.data_to_send()
    if eof:
        events += engine.receive_eof()
    for i, ev in enumerate(events):
        assert isinstance(ev, EVENT_TYPES)
        if isinstance(ev, TERMINAL):
            assert i == len(events) - 1, f"events after a terminal one: {events}"
    if events and isinstance(events[-1], TERMINAL):
        assert not engine.open
        assert engine.receive(b"\x81\x00") == []
        assert engine.receive_eof() == []
    return events


@pytest.mark.parametrize("factory", ENGINES)
@FUZZ
@given(
    frames=ws_messages(LIMIT), cuts=st.lists(st.integers(0, 20_000), max_size=8), eof=st.booleans()
)
def test_server_frames_split_anywhere_give_the_same_events(
    factory: EngineFactory, frames: list[bytes], cuts: list[int], eof: bool
) -> None:
    data = b"".join(frames)
    whole = feed(open_engine(factory, LIMIT), [data], eof)
    split = feed(open_engine(factory, LIMIT), splits(data, cuts), eof)
    assert same_events(split) == same_events(whole)


@pytest.mark.parametrize("factory", ENGINES)
@FUZZ
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_random_bytes_after_the_handshake(
    factory: EngineFactory, data: bytes, cuts: list[int]
) -> None:
    whole = feed(open_engine(factory, LIMIT), [data], eof=True)
    split = feed(open_engine(factory, LIMIT), splits(data, cuts), eof=True)
    assert same_events(split) == same_events(whole)


@pytest.mark.parametrize("factory", ENGINES)
@FUZZ
@given(data=st.binary(max_size=300), accept=st.booleans(), prefix=st.booleans())
def test_random_bytes_instead_of_the_handshake_answer(
    factory: EngineFactory, data: bytes, accept: bool, prefix: bool
) -> None:
    engine = factory(host="test", target="/socket/websocket", max_message_size=LIMIT)
    request = engine.start()
    head = accept_response(request, accept=accept) if prefix else b""
    events = feed(engine, splits(head + data, [len(head)]), eof=True)
    assert events, "the stream ended: the engine must say how"
    if not prefix or not accept:
        assert not any(isinstance(ev, WsAccepted) for ev in events)


@pytest.mark.parametrize("factory", ENGINES)
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (ws_frame(OP_TEXT, b"x" * (LIMIT + 1)), 1009),
        (ws_frame(OP_BINARY, b"x" * (LIMIT + 1)), 1009),
        (ws_frame(OP_TEXT, b"x" * LIMIT, fin=False) + ws_frame(0, b"y", fin=True), 1009),
        (ws_frame(OP_TEXT, b'["\xff"]'), 1007),
        (ws_frame(OP_TEXT, b"a", mask=b"abcd"), 1002),
        (ws_frame(OP_TEXT, b"a", rsv=4), 1002),
        (ws_frame(OP_PING, b"p" * 126), 1002),
        (ws_frame(OP_PING, b"p", fin=False), 1002),
        (ws_frame(0, b"stray continuation"), 1002),
        (ws_frame(3, b"unknown opcode"), 1002),
    ],
    ids=[
        "text-too-big",
        "binary-too-big",
        "fragments-too-big",
        "bad-utf8",
        "masked",
        "rsv",
        "long-control",
        "fragmented-control",
        "stray-continuation",
        "unknown-opcode",
    ],
)
def test_a_broken_rule_fails_with_its_close_code(
    factory: EngineFactory, frame: bytes, code: int
) -> None:
    for chunks in ([frame], [frame[:1], frame[1:]], [bytes([b]) for b in frame]):
        engine = open_engine(factory, LIMIT)
        events = feed(engine, chunks)
        assert len(events) == 1
        assert isinstance(events[0], WsFailed)
        assert events[0].code == code
