"""Typed payloads: a channel's payloads decoded straight into msgspec types, per event.

Theory of operation
-------------------
This module needs msgspec (``pip install 'stx-ws[msgspec]'``); the client imports it only at
the first join that asks for types, so ``import stx_proto`` never loads msgspec, and a client
with no typed channel decodes frames exactly as before.

From that first typed join on, :class:`TypedSerializer` takes over the client's decoding of
text frames. It decodes the frame with one ``msgspec.json.Decoder`` built for the frame's
shape (``[join_ref, ref, topic, event, payload]`` on vsn 2.0.0, the object on vsn 1.0.0)
whose payload is a :class:`msgspec.Raw`: the payload is checked as JSON in that same pass but
left as a slice of the frame's bytes. The control events the core reads itself
(``phx_reply``, ``phx_error``, ``phx_close``) have their payload decoded by the codec at once
and checked as the plain serializer checks them. A frame that msgspec refuses (a lone
surrogate, nesting too deep, extra array elements, the stdlib's ``NaN``) goes to the plain
serializer, which decodes it as before or raises the same :class:`~stx_proto.FrameError`.

The client routes the frame as usual (stale, unknown-topic and control frames never have their
payload decoded). Only when it is about to emit :class:`~stx_proto.MessageReceived` does it
call :meth:`TypedSerializer.resolve` with the channel's decoders (event -> decoder): a typed
event's payload is decoded by its own ``msgspec.json.Decoder(type)`` from the raw bytes, any
other by the codec. A payload that does not fit its type is not delivered: it is counted in
``CoreStats.invalid_payloads`` and a :class:`~stx_proto.PayloadInvalid` carries the message
(its payload as the codec decodes it) and msgspec's error, for the driver to log and report.
A binary payload for a typed event is invalid too (it is not JSON).

``resolve`` sets the decoded payload on the message the serializer has just built (nobody else
holds it yet) instead of building a second one: this is the per-message path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from msgspec import Raw

from ._checks import name_text
from ._codec import JsonCodec
from ._errors import FrameError, UsageError
from ._events import FrameDropped, PayloadInvalid
from ._message import PHX_CLOSE, PHX_ERROR, PHX_REPLY, ChannelMessage, new_tuple
from ._outbox import Outbox
from ._serializer import _DECODE_ERRORS, Serializer, V1Serializer, _fields_error, _fields_ok
from ._stats import CoreStats

__all__ = ["PRESENCE_EVENTS", "Decoders", "TypedSerializer"]

#: A typed channel's decoders, by event.
Decoders = dict[str, "msgspec.json.Decoder[Any]"]

#: Events whose payloads the core itself reads: decoded by the codec, never typed.
_CORE_EVENTS = frozenset({PHX_REPLY, PHX_ERROR, PHX_CLOSE})
#: Events a presence-tracking channel reads itself: not typed on such a channel.
PRESENCE_EVENTS = frozenset({"presence_state", "presence_diff"})
#: What msgspec raises for a frame it will not decode (the plain serializer then decides).
_REFUSED = (msgspec.DecodeError, RecursionError)


def _with_payload(msg: ChannelMessage, payload: Any) -> ChannelMessage:
    """``msg`` with its payload decoded (``msg._replace()`` without its Python layers)."""
    topic, event, _, ref, join_ref = msg
    return new_tuple(ChannelMessage, (topic, event, payload, ref, join_ref))


class _V1Frame(msgspec.Struct):
    """A vsn 1.0.0 frame, its payload left raw."""

    topic: str
    event: str
    payload: Raw
    ref: str | None
    join_ref: str | None = None


_V2Frame = tuple[str | None, str | None, str, str, Raw]


class TypedSerializer:
    """The client's serializer once a channel is typed: see the module docstring.

    Encoding and binary frames are the plain serializer's; ``stats`` and ``out`` are the
    client's, for :meth:`resolve`'s counts and events.
    """

    __slots__ = ("_cache", "_frame", "_loads", "_out", "_plain", "_stats", "_v1", "encode", "vsn")

    def __init__(self, plain: Serializer, codec: JsonCodec, out: Outbox, stats: CoreStats) -> None:
        self._plain = plain
        self._loads = codec.loads
        self._out = out
        self._stats = stats
        self._v1 = isinstance(plain, V1Serializer)
        frame: Any = _V1Frame if self._v1 else _V2Frame
        self._frame: Callable[[str | bytes], Any] = msgspec.json.Decoder(frame).decode
        self._cache: dict[Any, msgspec.json.Decoder[Any]] = {}
        self.encode = plain.encode
        self.vsn = plain.vsn

    # ------------------------------------------------------------------------------------
    # Set-up

    def decoders(self, types: Mapping[str, Any], presence: bool) -> Decoders:
        """Return a decoder for each ``event -> type`` of ``types`` (decoders are shared
        between channels with the same type).

        Raises UsageError for an event name that is not text, a control event
        (``phx_*``), a presence event on a channel that tracks presence, or a type msgspec
        cannot decode JSON into.
        """
        if not isinstance(types, Mapping):
            raise UsageError(f"types must be a mapping of event -> type, not {types!r}")
        decoders: Decoders = {}
        for event, tp in types.items():
            name_text("event", event)
            if event in _CORE_EVENTS:
                raise UsageError(f"{event!r} is a control event: its payload cannot be typed")
            if presence and event in PRESENCE_EVENTS:
                raise UsageError(f"{event!r} is read by presence tracking: it cannot be typed")
            decoders[event] = self.decoder(tp)
        return decoders

    def decoder(self, tp: Any) -> msgspec.json.Decoder[Any]:
        """The decoder of ``tp`` (built once per type). Raises UsageError if msgspec cannot
        decode JSON into ``tp``."""
        try:
            found = self._cache.get(tp)
        except TypeError:  # an unhashable "type"
            found = None
        if found is None:
            try:
                found = msgspec.json.Decoder(tp)
            except TypeError as exc:
                raise UsageError(f"msgspec cannot decode a payload into {tp!r}: {exc}") from None
            self._cache[tp] = found
        return found

    # ------------------------------------------------------------------------------------
    # Frames

    def decode_text(self, data: str | bytes) -> ChannelMessage:
        """Decode a text frame, leaving a non-control payload as :class:`msgspec.Raw`.

        Raises FrameError (only) as the plain serializer does.
        """
        try:
            frame = self._frame(data)
        except _REFUSED:
            return self._plain.decode_text(data)
        if self._v1:
            topic, event, payload = frame.topic, frame.event, frame.payload
            ref, join_ref = frame.ref, frame.join_ref
        else:
            join_ref, ref, topic, event, payload = frame
        if event in _CORE_EVENTS:
            try:
                payload = self._loads(bytes(payload))
            except _DECODE_ERRORS as exc:
                raise FrameError(f"text frame is not valid JSON: {exc}") from exc
            if not _fields_ok(join_ref, ref, topic, event, payload):
                raise _fields_error(join_ref, ref, topic, event, payload)
        return new_tuple(ChannelMessage, (topic, event, payload, ref, join_ref))

    def decode_binary(self, data: bytes) -> ChannelMessage:
        """Decode a binary frame as the plain serializer does (raises FrameError)."""
        return self._plain.decode_binary(data)

    # ------------------------------------------------------------------------------------
    # The per-message path

    def resolve(self, decoders: Decoders | None, msg: ChannelMessage) -> ChannelMessage | None:
        """Decode ``msg``'s payload for delivery, with its channel's ``decoders``.

        Returns the message to deliver, or None when it must not be delivered: a typed
        payload that does not fit its type (counted in ``invalid_payloads``,
        :class:`PayloadInvalid` emitted), or a payload the codec cannot decode (counted in
        ``malformed_frames``, :class:`FrameDropped` emitted). Next: the client emits the
        message, or nothing.
        """
        payload = msg.payload
        decoder = None if decoders is None else decoders.get(msg.event)
        error: Exception
        if type(payload) is Raw:
            if decoder is not None:
                try:
                    return _with_payload(msg, decoder.decode(payload))
                except (msgspec.DecodeError, RecursionError) as exc:
                    error = exc
            try:
                msg = _with_payload(msg, self._loads(bytes(payload)))
            except _DECODE_ERRORS as exc:
                self._stats.malformed_frames += 1
                self._out.emit(
                    FrameDropped(
                        f"payload of {msg.event!r} is not valid JSON: {exc}", bytes(payload)[:256]
                    )
                )
                return None
            if decoder is None:
                return msg
        elif decoder is None:
            return msg  # a binary payload, or a frame the plain serializer decoded
        elif isinstance(payload, bytes):
            error = msgspec.ValidationError(
                f"expected a JSON payload for {decoder.type!r}, got a binary one"
            )
        else:  # a frame msgspec refused and the plain serializer decoded: convert its value
            try:
                return _with_payload(msg, msgspec.convert(payload, decoder.type))
            except (msgspec.ValidationError, RecursionError) as exc:
                error = exc
        self._stats.invalid_payloads += 1
        self._out.emit(PayloadInvalid(msg, decoder.type, error))
        return None

    def __repr__(self) -> str:
        return f"TypedSerializer({self._plain!r})"
