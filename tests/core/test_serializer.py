"""Serializer tests. Vectors are from phoenix-protocol.md 1.2-1.4 (phoenix.js and server tests)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from stx_proto._codec import JsonCodec, OrjsonCodec, StdlibJsonCodec
from stx_proto._errors import FrameError, UsageError
from stx_proto._message import ChannelMessage
from stx_proto._serializer import (
    Serializer,
    V1Serializer,
    V2Serializer,
    decode_client_push_binary,
    encode_broadcast_binary,
    encode_reply_binary,
    encode_server_push_binary,
    make_serializer,
)

CODECS = [pytest.param(StdlibJsonCodec, id="stdlib"), pytest.param(OrjsonCodec, id="orjson")]


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> JsonCodec:
    factory: type[JsonCodec] = request.param
    return factory()


@pytest.fixture
def v2(codec: JsonCodec) -> V2Serializer:
    return V2Serializer(codec)


@pytest.fixture
def v1(codec: JsonCodec) -> V1Serializer:
    return V1Serializer(codec)


def b(decimals: str) -> bytes:
    """Bytes from the spec's comma-separated decimal notation."""
    return bytes(int(x) for x in decimals.split(","))


def msg(
    topic: str, event: str, payload: Any, ref: str | None = None, join_ref: str | None = None
) -> ChannelMessage:
    return ChannelMessage(topic=topic, event=event, payload=payload, ref=ref, join_ref=join_ref)


# --------------------------------------------------------------------------------------------
# 1.4 binary: client encode (phoenix.js serializer_test.js, and the observed round trip)

CLIENT_PUSH_VECTORS = [
    pytest.param(("0", "1", "t", "e", bytes([1])), b("0,1,1,1,1,48,49,116,101,1"), id="encodes"),
    pytest.param(
        ("10", "1", "top", "ev", bytes([1])),
        b("0,2,1,3,2,49,48,49,116,111,112,101,118,1"),
        id="variable-length-segments",
    ),
    pytest.param(
        ("🚀", "1", "room:café", "π", bytes([1])),
        b("0,4,1,10,2,240,159,154,128,49,114,111,111,109,58,99,97,102,195,169,207,128,1"),
        id="non-ascii-metadata-as-utf8",
    ),
    pytest.param(
        ("3", "4", "t", "binary_event", bytes([1, 2])),
        b("0,1,1,1,12,51,52,116,98,105,110,97,114,121,95,101,118,101,110,116,1,2"),
        id="observed-round-trip",
    ),
    pytest.param(
        ("12", "123", "topic", "event", b"efg"),
        b("0,2,3,5,5,49,50,49,50,51,116,111,112,105,99,101,118,101,110,116,101,102,103"),
        id="elixir-client-push",
    ),
]


@pytest.mark.parametrize(("fields", "expected"), CLIENT_PUSH_VECTORS)
def test_client_push_encode_vectors(
    v2: V2Serializer, fields: tuple[str, str, str, str, bytes], expected: bytes
) -> None:
    frame = v2.encode(*fields)
    assert type(frame) is bytes
    assert frame == expected


@pytest.mark.parametrize(("fields", "expected"), CLIENT_PUSH_VECTORS)
def test_client_push_decode_vectors(
    fields: tuple[str, str, str, str, bytes], expected: bytes
) -> None:
    join_ref, ref, topic, event, payload = fields
    assert decode_client_push_binary(expected) == msg(topic, event, payload, ref, join_ref)


@pytest.mark.parametrize("payload_type", [bytes, bytearray, memoryview])
def test_any_bytes_like_payload_is_binary(v2: V2Serializer, payload_type: Any) -> None:
    frame = v2.encode("0", "1", "t", "e", payload_type(b"\x01"))
    assert frame == bytes([0, 1, 1, 1, 1, 48, 49, 116, 101, 1])


def test_client_push_none_refs_encode_empty(v2: V2Serializer) -> None:
    frame = v2.encode(None, None, "t", "e", b"\x07")
    assert frame == bytes([0, 0, 0, 1, 1, 116, 101, 7])
    assert decode_client_push_binary(frame) == msg("t", "e", b"\x07")


# --------------------------------------------------------------------------------------------
# 1.4 binary: client decode of server frames

SERVER_FRAME_VECTORS = [
    pytest.param(
        b("0,3,3,10,49,50,51,116,111,112,115,111,109,101,45,101,118,101,110,116,1,1"),
        msg("top", "some-event", b"\x01\x01", None, "123"),
        id="decodes-push",
    ),
    pytest.param(
        b("1,3,2,3,2,49,48,48,49,50,116,111,112,111,107,1,1"),
        msg("top", "phx_reply", {"status": "ok", "response": b"\x01\x01"}, "12", "100"),
        id="decodes-reply",
    ),
    pytest.param(
        b("2,3,10,116,111,112,115,111,109,101,45,101,118,101,110,116,1,1"),
        msg("top", "some-event", b"\x01\x01"),
        id="decodes-broadcast",
    ),
    pytest.param(
        b("1,1,1,1,2,51,52,116,111,107,1,2,3,4"),
        msg("t", "phx_reply", {"status": "ok", "response": b"\x01\x02\x03\x04"}, "4", "3"),
        id="observed-reply",
    ),
    pytest.param(
        b("2,1,3,116,98,105,110,9,9"), msg("t", "bin", b"\x09\x09"), id="observed-broadcast"
    ),
    pytest.param(
        b("1,2,3,5,2,49,50,49,50,51,116,111,112,105,99,111,107,101,102,103"),
        msg("topic", "phx_reply", {"status": "ok", "response": b"efg"}, "123", "12"),
        id="elixir-reply",
    ),
    pytest.param(
        b("2,5,5,116,111,112,105,99,101,118,101,110,116,101,102,103"),
        msg("topic", "event", b"efg"),
        id="elixir-broadcast",
    ),
    pytest.param(
        b("0,2,5,5,49,50,116,111,112,105,99,101,118,101,110,116,101,102,103"),
        msg("topic", "event", b"efg", None, "12"),
        id="elixir-server-push",
    ),
]


@pytest.mark.parametrize(("frame", "expected"), SERVER_FRAME_VECTORS)
def test_server_frame_decode_vectors(
    v2: V2Serializer, frame: bytes, expected: ChannelMessage
) -> None:
    decoded = v2.decode_binary(frame)
    assert decoded == expected
    payload = decoded.response if decoded.is_reply else decoded.payload
    assert type(payload) is bytes


def test_elixir_server_side_encode_vectors() -> None:
    assert encode_reply_binary("12", "123", "topic", "ok", b"efg") == bytes(
        [1, 2, 3, 5, 2, 49, 50, 49, 50, 51, 116, 111, 112, 105, 99, 111, 107, 101, 102, 103]
    )
    assert encode_broadcast_binary("topic", "event", b"efg") == bytes(
        [2, 5, 5, 116, 111, 112, 105, 99, 101, 118, 101, 110, 116, 101, 102, 103]
    )
    assert encode_server_push_binary("12", "topic", "event", b"efg") == bytes(
        [0, 2, 5, 5, 49, 50, 116, 111, 112, 105, 99, 101, 118, 101, 110, 116, 101, 102, 103]
    )


def test_observed_server_frames_from_server_helpers() -> None:
    assert encode_reply_binary("3", "4", "t", "ok", b"\x01\x02\x03\x04") == bytes(
        [1, 1, 1, 1, 2, 51, 52, 116, 111, 107, 1, 2, 3, 4]
    )
    assert encode_broadcast_binary("t", "bin", b"\x09\x09") == bytes(
        [2, 1, 3, 116, 98, 105, 110, 9, 9]
    )


def test_empty_binary_join_ref_and_ref_decode_as_none(v2: V2Serializer) -> None:
    # The server writes nil as "": reading it back as None keeps the stale-join_ref check sane.
    assert encode_server_push_binary(None, "t", "e", b"") == bytes([0, 0, 1, 1, 116, 101])
    assert v2.decode_binary(bytes([0, 0, 1, 1, 116, 101])) == msg("t", "e", b"")
    reply = bytes([1, 0, 0, 1, 2, 116, 111, 107])
    assert v2.decode_binary(reply) == msg("t", "phx_reply", {"status": "ok", "response": b""})


def test_empty_topic_event_and_status_stay_strings(v2: V2Serializer) -> None:
    assert v2.decode_binary(bytes([2, 0, 0])) == msg("", "", b"")
    assert v2.decode_binary(bytes([1, 0, 0, 0, 0])).payload == {"status": "", "response": b""}


@pytest.mark.parametrize("data_type", [bytearray, memoryview])
def test_binary_decoders_accept_bytes_like(v2: V2Serializer, data_type: Any) -> None:
    decoded = v2.decode_binary(data_type(bytes([2, 1, 3, 116, 98, 105, 110, 9, 9])))
    assert decoded == msg("t", "bin", b"\x09\x09")
    assert type(decoded.payload) is bytes
    pushed = decode_client_push_binary(data_type(bytes([0, 1, 1, 1, 1, 48, 49, 116, 101, 1])))
    assert pushed == msg("t", "e", b"\x01", "1", "0")
    assert type(pushed.payload) is bytes


# --------------------------------------------------------------------------------------------
# 255-byte limit and other encode errors

LIMIT_MESSAGE = (
    r"unable to convert {} to binary: must be less than or equal to 255 bytes, but is {} bytes"
)


@pytest.mark.parametrize("field", ["join_ref", "ref", "topic", "event"])
def test_client_push_field_over_255_bytes(v2: V2Serializer, field: str) -> None:
    fields = {"join_ref": "1", "ref": "2", "topic": "t", "event": "e"}
    fields[field] = "a" * 255
    v2.encode(payload=b"", **fields)  # exactly 255 is fine
    fields[field] = "a" * 256
    with pytest.raises(UsageError, match=LIMIT_MESSAGE.format(field, 256)):
        v2.encode(payload=b"", **fields)


def test_limit_counts_utf8_bytes_not_characters(v2: V2Serializer) -> None:
    with pytest.raises(UsageError, match=LIMIT_MESSAGE.format("topic", 256)):
        v2.encode("1", "2", "é" * 128, "e", b"")


def test_limit_does_not_apply_to_json_frames(v2: V2Serializer) -> None:
    assert v2.encode("1", "2", "a" * 300, "e", {}) == f'["1","2","{"a" * 300}","e",{{}}]'


def test_server_helpers_enforce_the_limit() -> None:
    long = "x" * 256
    with pytest.raises(UsageError, match=LIMIT_MESSAGE.format("join_ref", 256)):
        encode_server_push_binary(long, "t", "e", b"")
    with pytest.raises(UsageError, match=LIMIT_MESSAGE.format("status", 256)):
        encode_reply_binary("1", "2", "t", long, b"")
    with pytest.raises(UsageError, match=LIMIT_MESSAGE.format("ref", 256)):
        encode_reply_binary("1", long, "t", "ok", b"")
    with pytest.raises(UsageError, match=LIMIT_MESSAGE.format("event", 256)):
        encode_broadcast_binary("t", long, b"")


def test_lone_surrogate_in_binary_field(v2: V2Serializer) -> None:
    with pytest.raises(UsageError, match="unable to convert event to binary"):
        v2.encode("1", "2", "t", "\ud800", b"")


@pytest.mark.parametrize("serializer_type", [V2Serializer, V1Serializer])
def test_unencodable_json_payload_is_a_usage_error(
    codec: JsonCodec, serializer_type: type[V2Serializer | V1Serializer]
) -> None:
    serializer: Serializer = serializer_type(codec)
    with pytest.raises(UsageError, match="'e' to 't' cannot be encoded as JSON") as info:
        serializer.encode("1", "2", "t", "e", {"x": object()})
    assert isinstance(info.value.__cause__, TypeError)


def test_nan_payload_is_a_usage_error_with_stdlib() -> None:
    with pytest.raises(UsageError, match="cannot be encoded as JSON"):
        V2Serializer(StdlibJsonCodec()).encode("1", "2", "t", "e", {"x": float("nan")})


# --------------------------------------------------------------------------------------------
# Binary decode errors


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        pytest.param(b"", "empty binary frame", id="empty"),
        pytest.param(bytes([3, 0, 0]), "unknown binary frame kind 3", id="unknown-kind"),
        pytest.param(bytes([255]), "unknown binary frame kind 255", id="kind-255"),
        pytest.param(bytes([0]), "truncated binary push", id="push-no-header"),
        pytest.param(bytes([0, 1, 1]), "truncated binary push", id="push-short-header"),
        pytest.param(bytes([0, 1, 1, 1, 49, 116]), "needs 7 bytes, has 6", id="push-truncated"),
        pytest.param(bytes([1, 0, 0, 0]), "truncated binary reply", id="reply-short-header"),
        pytest.param(bytes([1, 0, 0, 0, 2, 111]), "needs 7 bytes", id="reply-truncated"),
        pytest.param(bytes([2, 0]), "truncated binary broadcast", id="broadcast-short-header"),
        pytest.param(bytes([2, 5, 5, 116]), "needs 13 bytes", id="broadcast-truncated"),
        pytest.param(bytes([0, 1, 1, 1, 0xFF, 116, 101]), "not valid UTF-8", id="push-bad-utf8"),
        pytest.param(bytes([1, 0, 0, 1, 1, 116, 0xC3]), "not valid UTF-8", id="reply-bad-utf8"),
        pytest.param(bytes([2, 1, 1, 0xE2, 101]), "not valid UTF-8", id="broadcast-bad-utf8"),
    ],
)
def test_malformed_binary_frames(v2: V2Serializer, frame: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        v2.decode_binary(frame)


def test_binary_frame_of_wrong_type(v2: V2Serializer) -> None:
    with pytest.raises(FrameError, match="must be bytes, not str"):
        v2.decode_binary("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        pytest.param(b"", "empty binary frame", id="empty"),
        pytest.param(bytes([1, 0, 0, 0, 0]), "must be a push", id="reply-kind"),
        pytest.param(bytes([2, 0, 0]), "must be a push", id="broadcast-kind"),
        pytest.param(bytes([0, 0, 0, 0]), "needs 5 bytes, has 4", id="short-header"),
        pytest.param(bytes([0, 0, 0, 1, 1, 116]), "needs 7 bytes, has 6", id="truncated"),
        pytest.param(bytes([0, 0, 0, 1, 1, 0x80, 101]), "not valid UTF-8", id="bad-utf8"),
        pytest.param("abc", "must be bytes", id="str"),
    ],
)
def test_malformed_client_push_frames(frame: Any, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_client_push_binary(frame)


# --------------------------------------------------------------------------------------------
# 1.2 V2 JSON text frames


def test_json_vector_encodes_exactly(v2: V2Serializer) -> None:
    assert v2.encode("0", "1", "t", "e", {"foo": 1}) == '["0","1","t","e",{"foo":1}]'
    assert v2.decode_text('["0","1","t","e",{"foo":1}]') == msg("t", "e", {"foo": 1}, "1", "0")


def test_json_vectors_from_socket_tests(v2: V2Serializer) -> None:
    assert (
        v2.encode("1", "2", "topic", "join", {"foo": "bar"})
        == '["1","2","topic","join",{"foo":"bar"}]'
    )
    assert v2.encode(None, "1", "phoenix", "heartbeat", {}) == '[null,"1","phoenix","heartbeat",{}]'


def test_json_non_ascii_is_kept(v2: V2Serializer) -> None:
    assert (
        v2.encode("🚀", "1", "room:café", "π", {"é": "ü"}) == '["🚀","1","room:café","π",{"é":"ü"}]'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('[null,null,"t","e",{"m":1}]', msg("t", "e", {"m": 1}), id="server-message"),
        pytest.param(
            '["11","2","t","phx_reply",{"status":"ok","response":{"m":1}}]',
            msg("t", "phx_reply", {"status": "ok", "response": {"m": 1}}, "2", "11"),
            id="reply",
        ),
        pytest.param(
            '["1","1","t","phx_reply",{"status":"ok"}]',
            msg("t", "phx_reply", {"status": "ok"}, "1", "1"),
            id="reply-without-response",
        ),
        pytest.param(
            '["1","2","t","e",{},"extra",[1]]', msg("t", "e", {}, "2", "1"), id="extra-elements"
        ),
        pytest.param(
            '["","","t","e",[1,2]]', msg("t", "e", [1, 2], "", ""), id="text-keeps-empty-strings"
        ),
        pytest.param(
            ' [ "1" , null , "t" , "e" , null ] ', msg("t", "e", None, None, "1"), id="ws"
        ),
    ],
)
def test_json_decode(v2: V2Serializer, text: str, expected: ChannelMessage) -> None:
    assert v2.decode_text(text) == expected
    assert v2.decode_text(text.encode()) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param("not json", "not valid JSON", id="not-json"),
        pytest.param(b"\xff[]", "not valid JSON", id="bad-utf8"),
        pytest.param(b'["\xc3"]', "not valid JSON", id="truncated-utf8"),
        pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON", id="deep-nesting"),
        pytest.param("{}", "array of 5, not dict", id="object"),
        pytest.param('"x"', "array of 5, not str", id="string"),
        pytest.param("null", "array of 5, not null", id="null"),
        pytest.param("[]", "array of 5, not an array of 0", id="empty-array"),
        pytest.param('["1","2","t","e"]', "not an array of 4", id="four-elements"),
        pytest.param('[1,"2","t","e",{}]', "join_ref must be a string or null, not int", id="jr"),
        pytest.param('["1",[],"t","e",{}]', "ref must be a string or null, not list", id="ref"),
        pytest.param('["1","2",null,"e",{}]', "topic must be a string, not null", id="topic"),
        pytest.param('["1","2","t",5,{}]', "event must be a string, not int", id="event"),
        pytest.param('["1","2","t","phx_reply",[]]', "must be an object, not list", id="reply-l"),
        pytest.param('["1","2","t","phx_reply",{}]', "must have a string status", id="no-status"),
        pytest.param(
            '["1","2","t","phx_reply",{"status":1}]', "must have a string status", id="int-status"
        ),
        # The server's own test encodes a Reply with status nil this way; a real channel always
        # replies with a status, and a reply without one cannot resolve a push.
        pytest.param(
            '[null,null,"t","phx_reply",{"response":{"m":1},"status":null}]',
            "must have a string status",
            id="null-status",
        ),
    ],
)
def test_malformed_json_frames(v2: V2Serializer, text: str | bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        v2.decode_text(text)


# --------------------------------------------------------------------------------------------
# 1.3 V1 JSON objects


def test_v1_encode(v1: V1Serializer) -> None:
    assert (
        v1.encode("0", "1", "t", "e", {"foo": 1})
        == '{"topic":"t","event":"e","payload":{"foo":1},"ref":"1","join_ref":"0"}'
    )
    assert (
        v1.encode(None, "1", "phoenix", "heartbeat", {})
        == '{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1","join_ref":null}'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '{"topic":"t","event":"phx_reply","ref":"1","payload":{"status":"ok","response":{}}}',
            msg("t", "phx_reply", {"status": "ok", "response": {}}, "1"),
            id="reply",
        ),
        pytest.param(
            '{"topic":"t","event":"e","payload":{"m":1},"ref":null}',
            msg("t", "e", {"m": 1}),
            id="broadcast",
        ),
        pytest.param(
            '{"topic":"t","event":"e","payload":{},"ref":"2","join_ref":"1","x":0}',
            msg("t", "e", {}, "2", "1"),
            id="with-join-ref",
        ),
    ],
)
def test_v1_decode(v1: V1Serializer, text: str, expected: ChannelMessage) -> None:
    assert v1.decode_text(text) == expected
    assert v1.decode_text(text.encode()) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("nope", "not valid JSON", id="not-json"),
        pytest.param(b"\xff", "not valid JSON", id="bad-utf8"),
        pytest.param('[null,"1","t","e",{}]', "must be an object, not an array of 5", id="array"),
        pytest.param('"x"', "must be an object, not str", id="string"),
        pytest.param('{"event":"e","payload":{},"ref":null}', "needs the key 'topic'", id="topic"),
        pytest.param('{"topic":"t","payload":{},"ref":null}', "needs the key 'event'", id="event"),
        pytest.param('{"topic":"t","event":"e","ref":null}', "needs the key 'payload'", id="pay"),
        pytest.param('{"topic":"t","event":"e","payload":{}}', "needs the key 'ref'", id="ref"),
        pytest.param(
            '{"topic":"t","event":"e","payload":{},"ref":1}', "ref must be a string", id="int-ref"
        ),
        pytest.param(
            '{"topic":"t","event":"e","payload":{},"ref":null,"join_ref":2}',
            "join_ref must be a string",
            id="int-join-ref",
        ),
        pytest.param(
            '{"topic":"t","event":"phx_reply","payload":{"response":{}},"ref":"1"}',
            "must have a string status",
            id="reply-without-status",
        ),
    ],
)
def test_v1_malformed(v1: V1Serializer, text: str | bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        v1.decode_text(text)


def test_v1_has_no_binary(v1: V1Serializer) -> None:
    with pytest.raises(UsageError, match=r"vsn 1\.0\.0 has no binary frames"):
        v1.encode("1", "2", "t", "e", b"\x01")
    with pytest.raises(FrameError, match=r"vsn 1\.0\.0 has no binary frames"):
        v1.decode_binary(bytes([2, 1, 1, 116, 101]))


# --------------------------------------------------------------------------------------------
# make_serializer and the Serializer protocol


def test_make_serializer(codec: JsonCodec) -> None:
    v2 = make_serializer("2.0.0", codec)
    assert type(v2) is V2Serializer
    assert v2.vsn == "2.0.0"
    v1 = make_serializer("1.0.0", codec)
    assert type(v1) is V1Serializer
    assert v1.vsn == "1.0.0"
    assert repr(v2) == f"V2Serializer({codec!r})"
    assert repr(v1) == f"V1Serializer({codec!r})"


@pytest.mark.parametrize("vsn", ["3.0.0", "2.0", "", "2.0.1"])
def test_make_serializer_unknown_vsn(vsn: str) -> None:
    with pytest.raises(UsageError, match="unsupported protocol vsn"):
        make_serializer(vsn, StdlibJsonCodec())


# --------------------------------------------------------------------------------------------
# Properties


def _utf8_at_most_255(text: str) -> bool:
    return len(text.encode("utf-8")) <= 255


short_text = st.text(max_size=80).filter(_utf8_at_most_255)
optional_ref = st.none() | short_text

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


# JSON that is shaped almost like a frame of either version, to reach every field check.
frame_values = (
    json_values
    | st.sampled_from(["phx_reply", "ok"])
    | st.fixed_dictionaries({}, optional={"status": json_values, "response": json_values})
)
near_frames = st.lists(frame_values, max_size=7).map(json.dumps) | st.dictionaries(
    st.sampled_from(["topic", "event", "payload", "ref", "join_ref"]), frame_values
).map(json.dumps)


@given(
    join_ref=optional_ref, ref=optional_ref, topic=short_text, event=short_text, payload=st.binary()
)
def test_client_push_binary_round_trip(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: bytes
) -> None:
    frame = V2Serializer(StdlibJsonCodec()).encode(join_ref, ref, topic, event, payload)
    assert isinstance(frame, bytes)
    # Binary frames have no null: "" and None both travel as an empty field and come back None.
    assert decode_client_push_binary(frame) == msg(
        topic, event, payload, ref or None, join_ref or None
    )


@given(
    join_ref=optional_ref, ref=short_text, topic=short_text, text=short_text, payload=st.binary()
)
def test_server_binary_round_trips(
    join_ref: str | None, ref: str, topic: str, text: str, payload: bytes
) -> None:
    v2 = V2Serializer(StdlibJsonCodec())
    pushed = v2.decode_binary(encode_server_push_binary(join_ref, topic, text, payload))
    assert pushed == msg(topic, text, payload, None, join_ref or None)
    replied = v2.decode_binary(encode_reply_binary(join_ref, ref, topic, text, payload))
    assert replied == msg(
        topic, "phx_reply", {"status": text, "response": payload}, ref or None, join_ref or None
    )
    assert v2.decode_binary(encode_broadcast_binary(topic, text, payload)) == msg(
        topic, text, payload
    )


@pytest.mark.parametrize("codec_type", [StdlibJsonCodec, OrjsonCodec])
@given(
    fields=st.tuples(st.none() | st.text(), st.none() | st.text(), st.text(), st.text()),
    payload=json_values,
)
def test_json_round_trip(
    codec_type: type[JsonCodec], fields: tuple[str | None, str | None, str, str], payload: Any
) -> None:
    join_ref, ref, topic, event = fields
    assume(event != "phx_reply")
    serializer = V2Serializer(codec_type())
    text = serializer.encode(join_ref, ref, topic, event, payload)
    assert isinstance(text, str)
    assert serializer.decode_text(text) == msg(topic, event, payload, ref, join_ref)
    assert serializer.decode_text(text.encode()) == msg(topic, event, payload, ref, join_ref)


@pytest.mark.parametrize("codec_type", [StdlibJsonCodec, OrjsonCodec])
@given(ref=st.none() | st.text(), topic=st.text(), event=st.text(), payload=json_values)
def test_v1_json_round_trip(
    codec_type: type[JsonCodec], ref: str | None, topic: str, event: str, payload: Any
) -> None:
    assume(event != "phx_reply")
    serializer = V1Serializer(codec_type())
    text = serializer.encode("1", ref, topic, event, payload)
    assert serializer.decode_text(text) == msg(topic, event, payload, ref, "1")


@given(data=st.binary(max_size=64))
def test_binary_decoders_only_raise_frame_error(data: bytes) -> None:
    for decode in (V2Serializer(StdlibJsonCodec()).decode_binary, decode_client_push_binary):
        try:
            decoded = decode(data)
        except FrameError:
            continue
        assert type(decoded.payload if not decoded.is_reply else decoded.response) is bytes


@pytest.mark.parametrize("codec_type", [StdlibJsonCodec, OrjsonCodec])
@given(data=st.binary(max_size=64) | st.text(max_size=64) | near_frames)
def test_text_decoders_only_raise_frame_error(
    codec_type: type[JsonCodec], data: str | bytes
) -> None:
    for serializer in (V2Serializer(codec_type()), V1Serializer(codec_type())):
        with contextlib.suppress(FrameError):
            serializer.decode_text(data)
