"""Fuzz the serializers: whatever a server sends, decoding returns a well-typed message or
raises FrameError, never anything else; a valid frame decodes to what was encoded."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stx_proto import ChannelMessage, FrameError, OrjsonCodec, StdlibJsonCodec
from stx_proto._serializer import (
    Serializer,
    encode_broadcast_binary,
    encode_reply_binary,
    encode_server_push_binary,
    make_serializer,
)

from .strategies import FUZZ, binary_frames, deep_json, field, text_frames

SERIALIZERS = [
    pytest.param(make_serializer(vsn, codec), id=f"{vsn}-{name}")
    for vsn in ("2.0.0", "1.0.0")
    for name, codec in (("stdlib", StdlibJsonCodec()), ("orjson", OrjsonCodec()))
]


def check_message(msg: ChannelMessage) -> None:
    """The types every decoded message promises."""
    assert type(msg.topic) is str
    assert type(msg.event) is str
    assert msg.ref is None or type(msg.ref) is str
    assert msg.join_ref is None or type(msg.join_ref) is str
    if msg.event == "phx_reply":
        assert type(msg.payload) is dict
        assert type(msg.payload["status"]) is str


def decode(serializer: Serializer, data: str | bytes, binary: bool) -> ChannelMessage | None:
    """Decode; None for a FrameError. Any other exception fails the test."""
    try:
        if binary:
            assert isinstance(data, bytes)
            msg = serializer.decode_binary(data)
        else:
            msg = serializer.decode_text(data)
    except FrameError:
        return None
    check_message(msg)
    return msg


@pytest.mark.parametrize("serializer", SERIALIZERS)
@FUZZ
@given(data=text_frames)
def test_text_frames_decode_or_raise_frame_error(serializer: Serializer, data: str) -> None:
    decode(serializer, data, binary=False)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@FUZZ
@given(data=st.binary(max_size=200))
def test_text_frames_as_random_bytes(serializer: Serializer, data: bytes) -> None:
    decode(serializer, data, binary=False)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@FUZZ
@given(data=binary_frames)
def test_binary_frames_decode_or_raise_frame_error(serializer: Serializer, data: bytes) -> None:
    decode(serializer, data, binary=True)


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_deep_nesting_is_a_frame_error_not_a_crash(
    serializer: Serializer, kind: str, depth: int
) -> None:
    assert decode(serializer, deep_json(depth, kind), binary=False) is None


@FUZZ
@given(
    kind=st.integers(0, 2),
    join_ref=st.none() | field,
    ref=field,
    names=st.tuples(field, field),
    payload=st.binary(max_size=50),
)
def test_valid_binary_frames_round_trip(
    kind: int, join_ref: str | None, ref: str, names: tuple[str, str], payload: bytes
) -> None:
    topic, event = names
    serializer = make_serializer("2.0.0", StdlibJsonCodec())
    expected: Any
    if kind == 0:
        data = encode_server_push_binary(join_ref, topic, event, payload)
        expected = ChannelMessage(topic, event, payload, None, join_ref or None)
    elif kind == 1:
        data = encode_reply_binary(join_ref, ref, topic, event, payload)
        expected = ChannelMessage(
            topic,
            "phx_reply",
            {"status": event, "response": payload},
            ref or None,
            join_ref or None,
        )
    else:
        data = encode_broadcast_binary(topic, event, payload)
        expected = ChannelMessage(topic, event, payload, None, None)
    assert serializer.decode_binary(data) == expected
