"""Phoenix frame serializers: vsn 2.0.0 (JSON arrays, binary frames) and 1.0.0 (JSON objects).

Theory of operation
-------------------

A serializer turns one outbound message into the data of one WebSocket message, and the data of
one inbound WebSocket message into a :class:`~stx_proto.ChannelMessage`. It knows nothing of
channels or refs beyond their wire shape.

vsn 2.0.0 text frames are ``[join_ref, ref, topic, event, payload]``; a ``bytes``-like payload
is sent as a binary frame instead, as phoenix.js does for an ``ArrayBuffer``. Binary frames carry
their metadata as length-prefixed UTF-8 strings (each at most 255 bytes) and the payload as the
raw remainder::

    kind  lengths (1 byte each)            strings, in this order          then
    0     join_ref, ref, topic, event      join_ref, ref, topic, event     payload  (client push)
    0     join_ref, topic, event           join_ref, topic, event          payload  (server push)
    1     join_ref, ref, topic, status     join_ref, ref, topic, status    response (reply)
    2     topic, event                     topic, event                    payload  (broadcast)

Binary frames have no ``null``: a missing join_ref or ref is written as the empty string (the
server does the same for ``nil``). The decoders therefore read an **empty join_ref or ref as
None**, so the client's stale-join_ref check sees "no join_ref" (phoenix.js gets the same result
because its check is a truthiness test). Text frames are decoded exactly as they are.

vsn 1.0.0 frames are JSON objects ``{"topic", "event", "payload", "ref", "join_ref"}``; that
version has no binary frames, and the server never sends a join_ref in it.

Decoders raise :class:`~stx_proto.FrameError` and nothing else, whatever the input; the core
reports such a frame and skips it. Encoders raise :class:`~stx_proto.UsageError` for a message
that cannot be put on the wire (a binary field over 255 bytes, a payload the codec cannot encode).

The module also holds the server side of the binary format (``encode_server_push_binary``,
``encode_reply_binary``, ``encode_broadcast_binary``, ``decode_client_push_binary``), for the
scripted Phoenix server in :mod:`stx_proto.testing`.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._codec import JsonCodec
from ._errors import FrameError, UsageError
from ._message import PHX_REPLY, ChannelMessage, new_tuple

__all__ = [
    "Serializer",
    "V1Serializer",
    "V2Serializer",
    "decode_client_push_binary",
    "encode_broadcast_binary",
    "encode_reply_binary",
    "encode_server_push_binary",
    "make_serializer",
]

_KIND_PUSH = 0
_KIND_REPLY = 1
_KIND_BROADCAST = 2
_MAX_FIELD_BYTES = 255

_BINARY_TYPES = (bytes, bytearray, memoryview)
# What a codec's dumps() raises for an object it cannot encode (RecursionError: deep nesting
# in the stdlib encoder).
_ENCODE_ERRORS = (TypeError, ValueError, RecursionError)
# What a codec's loads() raises for bad input. RecursionError: the stdlib decoder on deeply
# nested arrays, which a hostile server can send.
_DECODE_ERRORS = (ValueError, RecursionError)


class Serializer(Protocol):
    """Encodes outbound messages and decodes inbound frames for one protocol version."""

    @property
    def vsn(self) -> str:
        """The protocol version sent as the ``vsn`` query parameter."""
        ...

    def encode(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> str | bytes:
        """Return a text frame (``str``) or a binary frame (``bytes``); raise UsageError."""
        ...

    def decode_text(self, data: str | bytes) -> ChannelMessage:
        """Decode a text frame; raise FrameError (only) if it is not a valid Phoenix message."""
        ...

    def decode_binary(self, data: bytes) -> ChannelMessage:
        """Decode a binary frame; raise FrameError (only) if it is not a valid Phoenix message."""
        ...


# --------------------------------------------------------------------------------------------
# Binary helpers


def _field(name: str, value: str | None) -> bytes:
    """One metadata field as UTF-8 (None as empty); UsageError if over 255 bytes."""
    if value is None:
        return b""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"unable to convert {name} to binary: it is not valid Unicode") from exc
    if len(raw) > _MAX_FIELD_BYTES:
        raise UsageError(
            f"unable to convert {name} to binary: must be less than or equal to "
            f"{_MAX_FIELD_BYTES} bytes, but is {len(raw)} bytes"
        )
    return raw


def _as_bytes(data: Any) -> bytes:
    """``data`` as ``bytes`` (the decoders slice it and hand the payload to the user)."""
    try:
        return bytes(data)
    except TypeError:
        raise FrameError(f"a binary frame must be bytes, not {type(data).__name__}") from None


def _truncated(what: str, needed: int, size: int) -> FrameError:
    return FrameError(f"truncated binary {what} frame: needs {needed} bytes, has {size}")


def _encode_client_push_binary(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
) -> bytes:
    jr = _field("join_ref", join_ref)
    r = _field("ref", ref)
    t = _field("topic", topic)
    e = _field("event", event)
    return b"".join((bytes((_KIND_PUSH, len(jr), len(r), len(t), len(e))), jr, r, t, e, payload))


def _decode_server_binary(data: bytes) -> ChannelMessage:
    """Decode a binary frame sent by a server (push, reply or broadcast)."""
    if type(data) is not bytes:
        data = _as_bytes(data)
    size = len(data)
    if not size:
        raise FrameError("empty binary frame")
    kind = data[0]
    try:
        if kind == _KIND_PUSH:
            if size < 4:
                raise _truncated("push", 4, size)
            a = 4 + data[1]
            b = a + data[2]
            c = b + data[3]
            if c > size:
                raise _truncated("push", c, size)
            return ChannelMessage(
                data[a:b].decode("utf-8"),
                data[b:c].decode("utf-8"),
                data[c:],
                None,
                data[4:a].decode("utf-8") or None,
            )
        if kind == _KIND_REPLY:
            if size < 5:
                raise _truncated("reply", 5, size)
            a = 5 + data[1]
            b = a + data[2]
            c = b + data[3]
            d = c + data[4]
            if d > size:
                raise _truncated("reply", d, size)
            return ChannelMessage(
                data[b:c].decode("utf-8"),
                PHX_REPLY,
                {"status": data[c:d].decode("utf-8"), "response": data[d:]},
                data[a:b].decode("utf-8") or None,
                data[5:a].decode("utf-8") or None,
            )
        if kind == _KIND_BROADCAST:
            if size < 3:
                raise _truncated("broadcast", 3, size)
            a = 3 + data[1]
            b = a + data[2]
            if b > size:
                raise _truncated("broadcast", b, size)
            return ChannelMessage(
                data[3:a].decode("utf-8"), data[a:b].decode("utf-8"), data[b:], None, None
            )
    except UnicodeDecodeError as exc:
        raise FrameError(f"binary frame metadata is not valid UTF-8: {exc}") from exc
    raise FrameError(f"unknown binary frame kind {kind}")


# --------------------------------------------------------------------------------------------
# Server side of the binary format (for the scripted server in stx_proto.testing)


def encode_server_push_binary(
    join_ref: str | None, topic: str, event: str, payload: bytes
) -> bytes:
    """Return a server-to-client binary push (kind 0, no ref), as Phoenix encodes a ``push``.

    Raises UsageError if join_ref, topic or event is over 255 UTF-8 bytes.
    """
    jr = _field("join_ref", join_ref)
    t = _field("topic", topic)
    e = _field("event", event)
    return b"".join((bytes((_KIND_PUSH, len(jr), len(t), len(e))), jr, t, e, payload))


def encode_reply_binary(
    join_ref: str | None, ref: str, topic: str, status: str, response: bytes
) -> bytes:
    """Return a binary reply (kind 1) whose response is ``response``.

    Raises UsageError if join_ref, ref, topic or status is over 255 UTF-8 bytes.
    """
    jr = _field("join_ref", join_ref)
    r = _field("ref", ref)
    t = _field("topic", topic)
    s = _field("status", status)
    return b"".join((bytes((_KIND_REPLY, len(jr), len(r), len(t), len(s))), jr, r, t, s, response))


def encode_broadcast_binary(topic: str, event: str, payload: bytes) -> bytes:
    """Return a binary fastlane broadcast (kind 2; no join_ref, no ref).

    Raises UsageError if topic or event is over 255 UTF-8 bytes.
    """
    t = _field("topic", topic)
    e = _field("event", event)
    return b"".join((bytes((_KIND_BROADCAST, len(t), len(e))), t, e, payload))


def decode_client_push_binary(data: bytes) -> ChannelMessage:
    """Decode a client-to-server binary push (kind 0 with 4 length bytes).

    Returns a message whose payload is the raw ``bytes``; an empty join_ref or ref becomes None.
    Raises FrameError for any other kind, a truncated frame or metadata that is not UTF-8.
    """
    if type(data) is not bytes:
        data = _as_bytes(data)
    size = len(data)
    if not size:
        raise FrameError("empty binary frame")
    if data[0] != _KIND_PUSH:
        raise FrameError(f"a client binary frame must be a push (kind 0), not kind {data[0]}")
    if size < 5:
        raise _truncated("push", 5, size)
    a = 5 + data[1]
    b = a + data[2]
    c = b + data[3]
    d = c + data[4]
    if d > size:
        raise _truncated("push", d, size)
    try:
        return ChannelMessage(
            data[b:c].decode("utf-8"),
            data[c:d].decode("utf-8"),
            data[d:],
            data[a:b].decode("utf-8") or None,
            data[5:a].decode("utf-8") or None,
        )
    except UnicodeDecodeError as exc:
        raise FrameError(f"binary frame metadata is not valid UTF-8: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Text-frame validation, slow path (only run once the fast check has failed)


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fields_ok(join_ref: Any, ref: Any, topic: Any, event: Any, payload: Any) -> bool:
    """True if the five fields make a valid message (ChannelSet.on_messages, the per-message
    path, inlines the same test)."""
    return (
        type(topic) is str
        and type(event) is str
        and (join_ref is None or type(join_ref) is str)
        and (ref is None or type(ref) is str)
        and (event != PHX_REPLY or (type(payload) is dict and type(payload.get("status")) is str))
    )


def _fields_error(join_ref: Any, ref: Any, topic: Any, event: Any, payload: Any) -> FrameError:
    """Why these fields are not a valid message (call only when :func:`_fields_ok` is False)."""
    if join_ref is not None and type(join_ref) is not str:
        return FrameError(f"join_ref must be a string or null, not {_describe(join_ref)}")
    if ref is not None and type(ref) is not str:
        return FrameError(f"ref must be a string or null, not {_describe(ref)}")
    if type(topic) is not str:
        return FrameError(f"topic must be a string, not {_describe(topic)}")
    if type(event) is not str:
        return FrameError(f"event must be a string, not {_describe(event)}")
    # Only a phx_reply payload is checked, so that is what is left.
    if type(payload) is not dict:
        return FrameError(f"a phx_reply payload must be an object, not {_describe(payload)}")
    return FrameError("a phx_reply payload must have a string status")


def _encode_failed(topic: Any, event: Any, exc: BaseException) -> UsageError:
    return UsageError(f"message {event!r} to {topic!r} cannot be encoded as JSON: {exc}")


# --------------------------------------------------------------------------------------------
# Serializers


class _JsonSerializer:
    """What both JSON serializers hold: the codec, and its functions bound once."""

    __slots__ = ("_dumps", "_loads", "codec")

    def __init__(self, codec: JsonCodec) -> None:
        self.codec = codec
        self._dumps = codec.dumps
        self._loads = codec.loads

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.codec!r})"


class V2Serializer(_JsonSerializer):
    """vsn 2.0.0: JSON array text frames, and binary frames for ``bytes`` payloads (the default)."""

    vsn = "2.0.0"

    __slots__ = ()

    def encode(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> str | bytes:
        """Return the frame for one client message.

        A ``bytes``, ``bytearray`` or ``memoryview`` payload gives a binary push frame
        (``bytes``); anything else the JSON text ``[join_ref, ref, topic, event, payload]``.

        Raises UsageError if a binary frame's join_ref, ref, topic or event is over 255 UTF-8
        bytes, or if the codec cannot encode the message.
        """
        if isinstance(payload, _BINARY_TYPES):
            return _encode_client_push_binary(join_ref, ref, topic, event, payload)
        try:
            return self._dumps([join_ref, ref, topic, event, payload])
        except _ENCODE_ERRORS as exc:
            raise _encode_failed(topic, event, exc) from exc

    def decode_text(self, data: str | bytes) -> ChannelMessage:
        """Decode a ``[join_ref, ref, topic, event, payload, ...]`` text frame.

        Extra trailing elements are ignored, as the server does. join_ref and ref must be
        strings or null, topic and event strings, and a ``phx_reply`` payload an object with a
        string ``status``. Raises FrameError (only) otherwise, or for data that is not JSON.
        """
        try:
            msg = self._loads(data)
        except _DECODE_ERRORS as exc:
            raise FrameError(f"text frame is not valid JSON: {exc}") from exc
        if type(msg) is not list or (size := len(msg)) < 5:
            raise FrameError(f"a vsn 2.0.0 text frame must be an array of 5, not {_shape(msg)}")
        join_ref, ref, topic, event, payload = msg if size == 5 else msg[:5]
        # Off the per-message path: ChannelSet.on_messages decodes a well-formed frame itself.
        if _fields_ok(join_ref, ref, topic, event, payload):
            # ChannelMessage(...) without the named tuple's Python-level __new__.
            return new_tuple(ChannelMessage, (topic, event, payload, ref, join_ref))
        raise _fields_error(join_ref, ref, topic, event, payload)

    def decode_binary(self, data: bytes) -> ChannelMessage:
        """Decode a server push (kind 0), reply (kind 1) or broadcast (kind 2) binary frame.

        The payload (a reply's response) is ``bytes``; an empty join_ref or ref becomes None.
        Raises FrameError (only) for an unknown kind, a truncated frame, or metadata that is
        not UTF-8.
        """
        return _decode_server_binary(data)


class V1Serializer(_JsonSerializer):
    """vsn 1.0.0: JSON object text frames, no binary frames, no join_ref from the server.

    With this version the client cannot tell a stale message (from an earlier join of the same
    topic) from a current one, because nothing the server sends carries a join_ref.
    """

    vsn = "1.0.0"

    __slots__ = ()

    def encode(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> str | bytes:
        """Return the JSON text ``{"topic", "event", "payload", "ref", "join_ref"}``.

        Raises UsageError for a ``bytes``-like payload (vsn 1.0.0 has no binary frames) or if
        the codec cannot encode the message.
        """
        if isinstance(payload, _BINARY_TYPES):
            raise UsageError("vsn 1.0.0 has no binary frames: a bytes payload needs vsn 2.0.0")
        try:
            return self._dumps(
                {
                    "topic": topic,
                    "event": event,
                    "payload": payload,
                    "ref": ref,
                    "join_ref": join_ref,
                }
            )
        except _ENCODE_ERRORS as exc:
            raise _encode_failed(topic, event, exc) from exc

    def decode_text(self, data: str | bytes) -> ChannelMessage:
        """Decode a ``{"topic", "event", "payload", "ref"[, "join_ref"]}`` text frame.

        ``topic``, ``event``, ``payload`` and ``ref`` are required and ``join_ref`` is optional
        (None when absent), with the same types as in vsn 2.0.0. Raises FrameError (only)
        otherwise, or for data that is not JSON.
        """
        try:
            msg = self._loads(data)
        except _DECODE_ERRORS as exc:
            raise FrameError(f"text frame is not valid JSON: {exc}") from exc
        if type(msg) is not dict:
            raise FrameError(f"a vsn 1.0.0 text frame must be an object, not {_shape(msg)}")
        try:
            topic = msg["topic"]
            event = msg["event"]
            payload = msg["payload"]
            ref = msg["ref"]
        except KeyError as exc:
            raise FrameError(f"a vsn 1.0.0 text frame needs the key {exc}") from None
        join_ref = msg.get("join_ref")
        if _fields_ok(join_ref, ref, topic, event, payload):
            return ChannelMessage(topic, event, payload, ref, join_ref)
        raise _fields_error(join_ref, ref, topic, event, payload)

    def decode_binary(self, data: bytes) -> ChannelMessage:
        """Raise FrameError: vsn 1.0.0 has no binary frames."""
        raise FrameError("vsn 1.0.0 has no binary frames")


def _shape(value: Any) -> str:
    if type(value) is list:
        return f"an array of {len(value)}"
    return _describe(value)


def make_serializer(vsn: str, codec: JsonCodec) -> Serializer:
    """Return the serializer for protocol version ``vsn`` (``"2.0.0"`` or ``"1.0.0"``).

    Raises UsageError for any other version.
    """
    if vsn == V2Serializer.vsn:
        return V2Serializer(codec)
    if vsn == V1Serializer.vsn:
        return V1Serializer(codec)
    raise UsageError(f"unsupported protocol vsn {vsn!r}: use '2.0.0' or '1.0.0'")
