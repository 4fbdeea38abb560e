"""Pluggable JSON codecs: the standard library by default, orjson on request.

The serializers only need ``dumps`` (an object to compact JSON text) and ``loads`` (JSON text
or UTF-8 bytes to an object). Anything with those two methods can be passed as a codec, so a
user may plug in another JSON library without touching the protocol code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.scanner import make_scanner
from typing import Any, Protocol, cast

from ._errors import UsageError

__all__ = ["JsonCodec", "OrjsonCodec", "StdlibJsonCodec", "resolve_codec"]


class JsonCodec(Protocol):
    """What a serializer needs from a JSON library.

    ``dumps`` returns compact JSON text with non-ASCII characters kept as they are. It raises
    ``TypeError`` or ``ValueError`` for an object it cannot encode.

    ``loads`` accepts ``str`` or UTF-8 ``bytes`` and raises ``ValueError`` (for example
    :class:`json.JSONDecodeError` or ``orjson.JSONDecodeError``, both subclasses of it) for
    input that is not valid JSON or not valid UTF-8.
    """

    name: str

    def dumps(self, obj: Any) -> str:
        """Encode ``obj`` as compact JSON text."""
        ...

    def loads(self, data: str | bytes) -> Any:
        """Decode JSON text (or UTF-8 bytes); raise ``ValueError`` on bad input."""
        ...


class StdlibJsonCodec:
    """JSON through the standard library's :mod:`json` (the default).

    Output is compact (``separators=(",", ":")``) and keeps non-ASCII characters as they are.
    ``NaN`` and the infinities are refused with ``ValueError`` rather than written as the
    non-standard tokens ``NaN``/``Infinity`` that a Phoenix server (Jason) would reject.
    Dict keys may be ``str``, ``int``, ``float``, ``bool`` or ``None`` (the stdlib turns them
    into strings), and integers may be of any size.
    """

    name = "stdlib"

    __slots__ = ("_decode", "_encode", "_scan")

    def __init__(self) -> None:
        # One encoder and one decoder built up front: json.dumps() with non-default arguments
        # builds a new JSONEncoder on every call.
        self._encode = json.JSONEncoder(
            separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode
        decoder = json.JSONDecoder()
        self._decode = decoder.decode
        # The decoder's own scanner (its scan_once), which typeshed does not declare.
        self._scan = make_scanner(cast(Any, decoder))

    def dumps(self, obj: Any) -> str:
        """Return ``obj`` as compact JSON text; raise ``TypeError``/``ValueError`` if it cannot."""
        return self._encode(obj)

    def loads(self, data: str | bytes) -> Any:
        """Return the object in ``data``; raise ``ValueError`` for bad JSON or bad UTF-8."""
        if not isinstance(data, str):
            # UnicodeDecodeError is a ValueError, as the protocol asks.
            data = str(data, "utf-8")
        # The C scanner first: json.loads() spends a quarter of a message's decoding in two
        # Python layers and two whitespace matches. A document with nothing around it (every
        # frame a server sends) decodes the same; anything else (surrounding whitespace, bad
        # JSON) goes the standard way, which accepts it or raises the standard error.
        try:
            obj, end = self._scan(data, 0)
        except Exception:  # StopIteration, JSONDecodeError, RecursionError
            return self._decode(data)
        if end != len(data):
            return self._decode(data)
        return obj

    def __repr__(self) -> str:
        return "StdlibJsonCodec()"


class OrjsonCodec:
    """JSON through `orjson <https://github.com/ijl/orjson>`_ (install ``stx-ws[orjson]``).

    Faster than the standard library, with limits to know about: dict keys must be ``str``
    (other keys raise ``TypeError``); integers must fit in 64 bits (a larger one raises
    ``TypeError`` on encode, and is decoded as a ``float``, losing precision); strings with lone
    surrogates raise ``TypeError``; ``NaN`` and the infinities are written as ``null``; nesting
    deeper than 1024 levels is refused on decode with ``ValueError``.

    Raises :class:`~stx_proto.UsageError` when orjson is not installed.
    """

    name = "orjson"

    __slots__ = ("_dumps", "loads")

    #: Return the object in ``data``; raise ``ValueError`` for bad JSON or bad UTF-8. This is
    #: ``orjson.loads`` itself, with no method around it: it runs once per message.
    loads: Callable[[str | bytes], Any]

    def __init__(self) -> None:
        try:
            import orjson  # noqa: PLC0415 - optional dependency, imported only when asked for
        except ImportError as exc:
            raise UsageError(
                "the 'orjson' codec needs the orjson package: pip install 'stx-ws[orjson]'"
            ) from exc
        self._dumps = orjson.dumps
        self.loads = orjson.loads

    def dumps(self, obj: Any) -> str:
        """Return ``obj`` as compact JSON text; raise ``TypeError`` if it cannot."""
        return self._dumps(obj).decode("utf-8")

    def __repr__(self) -> str:
        return "OrjsonCodec()"


def resolve_codec(spec: str | JsonCodec | None) -> JsonCodec:
    """Turn a codec setting into a codec.

    ``None``, ``"stdlib"`` and ``"json"`` give :class:`StdlibJsonCodec`; ``"orjson"`` gives
    :class:`OrjsonCodec`; any object with callable ``dumps`` and ``loads`` is returned as is.

    Raises :class:`~stx_proto.UsageError` for any other value, or for ``"orjson"`` when orjson
    is not installed.
    """
    if spec is None or spec in ("stdlib", "json"):
        return StdlibJsonCodec()
    if spec == "orjson":
        return OrjsonCodec()
    if isinstance(spec, str):
        raise UsageError(f"unknown JSON codec {spec!r}: use 'stdlib', 'json' or 'orjson'")
    if callable(getattr(spec, "dumps", None)) and callable(getattr(spec, "loads", None)):
        return spec
    raise UsageError(
        f"a JSON codec must be 'stdlib', 'orjson' or an object with dumps() and loads(), "
        f"not {spec!r}"
    )
