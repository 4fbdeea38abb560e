"""Fuzz the whole core: a client past a real handshake, fed server bytes (valid, mutated,
random, split anywhere) between user calls and the passing of time.

Invariants (see :class:`~tests.fuzz.harness.CoreHarness`): no exception escapes an input
method; only the documented commands and events come out; every push resolves exactly once;
refs are unique; the timer heap and the output buffers stay bounded by what is live; and a read
split at any points gives the same events as the whole read.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stx_proto import SendBytes
from stx_proto.testing import OP_BINARY, OP_TEXT, ws_frame

from .harness import TOPICS, CoreHarness
from .strategies import FUZZ, binary_frames, same_events, splits, text_frames, ws_messages

topics = st.sampled_from(TOPICS)


@st.composite
def server_bytes(draw: st.DrawFn, harness: CoreHarness) -> bytes:
    """What the server sends next: replies to the client's refs, broadcasts, Phoenix frames of
    every shape, rule-breaking WebSocket frames, or random bytes."""
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return harness.reply_frame(
            draw(st.integers(0, 50)),
            draw(st.sampled_from(["ok", "error"])),
            draw(st.sampled_from([0, 0, 0, 1, 99])),
        )
    if kind == 1:
        topic = draw(topics)
        fields: list[Any] = [
            harness.client.join_ref(topic),
            None,
            topic,
            draw(st.sampled_from(["msg", "phx_error", "phx_close", "presence_state"])),
            {},
        ]
        return ws_frame(OP_TEXT, json.dumps(fields).encode())
    if kind == 2:
        return ws_frame(OP_TEXT, draw(text_frames).encode("utf-8", "surrogatepass"))
    if kind == 3:
        return ws_frame(OP_BINARY, draw(binary_frames))
    if kind == 4:
        return b"".join(draw(ws_messages(4096)))
    if kind == 5:
        return draw(st.binary(max_size=40))
    frame = harness.reply_frame(draw(st.integers(0, 50)))
    cut = draw(st.integers(0, len(frame)))
    return frame[:cut]  # the rest never comes: a frame cut mid-way


@FUZZ
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_the_core_survives_anything_a_server_sends(data: st.DataObject, seed: int) -> None:
    harness = CoreHarness(seed)
    for _ in range(data.draw(st.integers(1, 30), label="steps")):
        step = data.draw(st.integers(0, 9), label="step")
        if step <= 3:
            harness.receive(data.draw(server_bytes(harness), label="server bytes"))
        elif step == 4:
            harness.join(data.draw(topics))
        elif step == 5:
            payload: Any = data.draw(st.sampled_from([{}, {"n": 1}, b"\x00bin"]))
            harness.push(data.draw(topics), payload)
        elif step == 6:
            harness.leave(data.draw(topics))
        elif step == 7:
            harness.advance(data.draw(st.floats(0.0, 40.0)))
        elif step == 8:
            harness.eof()
            harness.advance(data.draw(st.floats(0.0, 5.0)))
        else:
            harness.receive(b"")
    harness.finish()


def _joined_harness(seed: int) -> CoreHarness:
    """A client joined to every topic, with two pushes out on each."""
    harness = CoreHarness(seed)
    for topic in TOPICS:
        harness.join(topic)
    for i in range(len(harness.join_refs)):
        harness.receive(harness.reply_frame(len(harness.pushes) + i))
    for topic in TOPICS:
        harness.push(topic, {"n": 1})
        harness.push(topic, {"n": 2})
    return harness


def _events(harness: CoreHarness, start: int) -> list[Any]:
    # SendBytes hold masked frames (random masks): compare everything else.
    return [out for out in harness.outputs[start:] if type(out) is not SendBytes]


@FUZZ
@given(
    data=st.data(),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 5000), max_size=10),
)
def test_a_read_split_anywhere_gives_the_same_events(
    data: st.DataObject, seed: int, cuts: list[int]
) -> None:
    whole = _joined_harness(seed)
    split = _joined_harness(seed)
    stream = b"".join(
        data.draw(st.lists(server_bytes(whole), min_size=1, max_size=8), label="stream")
    )
    start_whole, start_split = len(whole.outputs), len(split.outputs)
    whole.receive(stream)
    for piece in splits(stream, cuts):
        split.receive(piece)
    assert same_events(_events(split, start_split)) == same_events(_events(whole, start_whole))
    whole.finish()
    split.finish()
