"""The endpoint URL and the WebSocket handshake request, built as phoenix.js builds them."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import attrs

from ._errors import UsageError

AUTH_TOKEN_PREFIX = "base64url.bearer.phx."

#: A value, or a zero-argument callable evaluated at every connect.
Params = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None
Token = str | Callable[[], str | None] | None
Headers = (
    Mapping[str, str]
    | Iterable[tuple[str, str]]
    | Callable[[], Mapping[str, str] | Iterable[tuple[str, str]]]
    | None
)

_SCHEMES = {"ws": ("ws", 80), "http": ("ws", 80), "wss": ("wss", 443), "https": ("wss", 443)}
# encodeURIComponent leaves these unescaped; quote() needs them spelled out.
_URI_COMPONENT_SAFE = "-_.!~*'()"


@attrs.frozen(slots=True)
class Endpoint:
    """Where to connect: parsed once from the URL the user gave."""

    scheme: str  # "ws" or "wss"
    host: str
    port: int
    path: str  # ends with "/websocket"
    query: str  # the URL's own query string, kept in front of params and vsn

    @property
    def tls(self) -> bool:
        """True for ``wss``."""
        return self.scheme == "wss"

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """Parse ``ws://``, ``wss://``, ``http://`` or ``https://`` URLs.

        ``/websocket`` is appended to the path unless it is already there, so both the
        phoenix.js form (``wss://host/socket``) and the full form (``.../socket/websocket``)
        work. Raises UsageError for anything else.
        """
        try:
            parts = urlsplit(url)
            port_given = parts.port
        except ValueError as exc:
            raise UsageError(f"invalid URL: {exc}") from None
        if parts.scheme.lower() not in _SCHEMES:
            raise UsageError(f"URL scheme must be ws, wss, http or https, got {parts.scheme!r}")
        if not parts.hostname:
            raise UsageError("URL has no host")
        scheme, default_port = _SCHEMES[parts.scheme.lower()]
        path = parts.path.rstrip("/")
        if not path.endswith("/websocket"):
            path += "/websocket"
        return cls(scheme, parts.hostname, port_given or default_port, path, parts.query)

    def target(self, params: Mapping[str, Any], vsn: str) -> str:
        """The request target: path, the URL's query, the params, then ``vsn``."""
        pieces = [self.query] if self.query else []
        pieces.extend(_encode_query(params))
        pieces.append(f"vsn={quote(vsn, safe=_URI_COMPONENT_SAFE)}")
        return f"{self.path}?{'&'.join(pieces)}"

    def url(self, target: str) -> str:
        """The full URL for ``target``."""
        return f"{self.scheme}://{self.host_header}{target}"


def _encode_query(params: Mapping[str, Any], parent: str | None = None) -> list[str]:
    # phoenix.js ajax.serialize: nested objects become parent[child]=value, values are
    # encodeURIComponent'ed, keys in insertion order.
    out: list[str] = []
    for key, value in params.items():
        name = f"{parent}[{key}]" if parent is not None else str(key)
        if isinstance(value, Mapping):
            out.extend(_encode_query(value, name))
        else:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            out.append(
                f"{quote(name, safe=_URI_COMPONENT_SAFE)}={quote(text, safe=_URI_COMPONENT_SAFE)}"
            )
    return out


def auth_subprotocols(token: str | None) -> tuple[str, ...]:
    """The subprotocol pair that carries an auth token, as phoenix.js sends it.

    Despite the "base64url" in the prefix, phoenix.js and the server use standard base64 with
    the padding removed.
    """
    if token is None:
        return ()
    encoded = base64.b64encode(token.encode()).decode().rstrip("=")
    return ("phoenix", AUTH_TOKEN_PREFIX + encoded)


_FORBIDDEN_HEADERS = frozenset(
    {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
)
# RFC 9110 token characters: what a header name may be made of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def check_params(value: Any, where: str = "params") -> Mapping[str, Any]:
    """``value`` if it is a mapping of query parameters: str keys; values that are str, int,
    float, bool, or mappings of the same. Raises UsageError (naming ``where``, never echoing a
    value, which may be a secret) otherwise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UsageError(f"{where} must be a mapping, got {_kind(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise UsageError(f"{where}: keys must be non-empty str, got {_kind(key)}")
        if isinstance(item, Mapping):
            check_params(item, f"{where}[{key!r}]")
        elif not isinstance(item, (str, int, float)):
            raise UsageError(
                f"{where}[{key!r}] must be a str, a number, a bool or a mapping, got {_kind(item)}"
            )
    return value


def check_token(value: Any, where: str = "auth token") -> str | None:
    """``value`` if it is None or a non-empty str without line breaks; UsageError otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{where} must be a str, got {_kind(value)}")
    if not value:
        raise UsageError(f"{where} must not be empty")
    if _has_control(value):
        raise UsageError(
            f"{where} holds a control character (a line break?): a token read from a file often "
            "ends with one; strip it"
        )
    return value


def check_headers(value: Any, where: str = "headers") -> tuple[tuple[str, str], ...]:
    """``value`` (a mapping or an iterable of (name, value) pairs of str) as pairs.

    Names must be HTTP tokens and not ones the handshake sets itself; values may not hold
    control characters (CR, LF, NUL...). Raises UsageError naming the header, never echoing
    its value (which may be a secret).
    """
    if value is None:
        return ()
    if isinstance(value, (str, bytes)):
        raise UsageError(f"{where} must be a mapping or (name, value) pairs, got {_kind(value)}")
    try:
        pairs = list(value.items() if isinstance(value, Mapping) else value)
    except TypeError:
        raise UsageError(
            f"{where} must be a mapping or (name, value) pairs, got {_kind(value)}"
        ) from None
    out = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise UsageError(f"{where}: each header must be a (name, value) pair of str")
        name, text = pair
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN:
            shown = repr(name) if isinstance(name, str) else _kind(name)
            raise UsageError(f"{where}: {shown} is not a valid header name")
        if name.lower() in _FORBIDDEN_HEADERS:
            raise UsageError(f"header {name!r} is set by the WebSocket handshake itself")
        if not isinstance(text, str):
            raise UsageError(f"header {name!r}: its value must be a str, got {_kind(text)}")
        if _has_control(text):
            raise UsageError(
                f"header {name!r}: its value holds a control character (a line break?): a "
                "secret read from a file often ends with one; strip it"
            )
        out.append((name, text))
    return tuple(out)


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_source(name: str, value: Any, check: Any) -> None:
    """A credential option (params, token, headers): a value is checked now with ``check``; a
    callable is checked at each connect. Raises UsageError."""
    if value is not None and not callable(value):
        check(value, name)


def check_credentials(params: Any, token: Any, headers: Any) -> None:
    """Check the params, auth token and headers options of a client (see check_source)."""
    check_source("params", params, check_params)
    check_source("auth token", token, check_token)
    check_source("headers", headers, check_headers)


def resolve_params(params: Params) -> Mapping[str, Any]:
    """Evaluate ``params`` (a mapping, a callable returning one, or None) and check it."""
    return check_params(params() if callable(params) else params)


def resolve_token(token: Token) -> str | None:
    """Evaluate ``token`` (a string, a callable returning one or None, or None) and check it."""
    return check_token(token() if callable(token) else token)


def resolve_headers(headers: Headers) -> tuple[tuple[str, str], ...]:
    """Evaluate ``headers`` into checked (name, value) pairs."""
    return check_headers(headers() if callable(headers) else headers)
