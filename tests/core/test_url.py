"""Unit tests of the endpoint URL, the query, the auth subprotocols and the credential resolvers."""

from __future__ import annotations

from typing import Any

import pytest

from stx_proto._errors import UsageError
from stx_proto._url import (
    AUTH_TOKEN_PREFIX,
    Endpoint,
    auth_subprotocols,
    resolve_headers,
    resolve_params,
    resolve_token,
)

# --------------------------------------------------------------------------------------------
# Endpoint


def test_endpoint_phoenix_js_vectors() -> None:
    # phoenix-protocol.md 1.1 (1) and (2).
    ep = Endpoint.parse("wss://example.org/chat")
    assert ep.url(ep.target({}, "2.0.0")) == "wss://example.org/chat/websocket?vsn=2.0.0"
    ep = Endpoint.parse("ws://example.com/socket")
    target = ep.target({"n": 1, "nested": {"k": "v w"}}, "2.0.0")
    assert target == "/socket/websocket?n=1&nested%5Bk%5D=v%20w&vsn=2.0.0"
    assert ep.url(target) == "ws://example.com/socket/websocket?n=1&nested%5Bk%5D=v%20w&vsn=2.0.0"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/socket", ("ws", "h", 80, "/socket/websocket", "h")),
        ("http://h/socket", ("ws", "h", 80, "/socket/websocket", "h")),
        ("wss://h/socket", ("wss", "h", 443, "/socket/websocket", "h")),
        ("HTTPS://h/socket", ("wss", "h", 443, "/socket/websocket", "h")),
        ("ws://h:4000/socket/", ("ws", "h", 4000, "/socket/websocket", "h:4000")),
        ("wss://h:443/socket/websocket", ("wss", "h", 443, "/socket/websocket", "h")),
        ("wss://h:80/s", ("wss", "h", 80, "/s/websocket", "h:80")),
        ("ws://h", ("ws", "h", 80, "/websocket", "h")),
        ("ws://[::1]:4000/socket", ("ws", "::1", 4000, "/socket/websocket", "[::1]:4000")),
        ("ws://[::1]/socket", ("ws", "::1", 80, "/socket/websocket", "[::1]")),
    ],
)
def test_endpoint_parse(url: str, expected: tuple[str, str, int, str, str]) -> None:
    ep = Endpoint.parse(url)
    assert (ep.scheme, ep.host, ep.port, ep.path, ep.host_header) == expected
    assert ep.tls is (expected[0] == "wss")


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("ftp://h/socket", "scheme must be ws, wss, http or https"),
        ("/socket", "scheme must be"),
        ("ws:///socket", "no host"),
        ("ws://h:99999/socket", "invalid URL"),
        ("ws://[::1/socket", "invalid URL"),
    ],
)
def test_endpoint_parse_refuses(url: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Endpoint.parse(url)


def test_endpoint_target_keeps_the_urls_query_and_encodes_values() -> None:
    ep = Endpoint.parse("ws://h/socket?a=1")
    assert ep.query == "a=1"
    target = ep.target({"t": True, "f": False, "x": "a/b&c=d", "é": "~*'()"}, "1.0.0")
    assert target == ("/socket/websocket?a=1&t=true&f=false&x=a%2Fb%26c%3Dd&%C3%A9=~*'()&vsn=1.0.0")
    # Deeper nesting, and a non-str key.
    params: dict[Any, Any] = {"a": {"b": {"c": 1}}, 2: "x"}
    assert Endpoint.parse("ws://h/s").target(params, "2.0.0") == (
        "/s/websocket?a%5Bb%5D%5Bc%5D=1&2=x&vsn=2.0.0"
    )


# --------------------------------------------------------------------------------------------
# Auth subprotocols and credentials


def test_auth_subprotocols_phoenix_js_vectors() -> None:
    assert auth_subprotocols("1234") == ("phoenix", "base64url.bearer.phx.MTIzNA")
    assert auth_subprotocols("5678") == ("phoenix", "base64url.bearer.phx.NTY3OA")
    assert auth_subprotocols(None) == ()
    # Standard alphabet (+ and /), padding removed.
    assert auth_subprotocols("\xfb\xff")[1] == AUTH_TOKEN_PREFIX + "w7vDvw"
    assert auth_subprotocols("??>")[1] == AUTH_TOKEN_PREFIX + "Pz8+"
    assert auth_subprotocols("???")[1] == AUTH_TOKEN_PREFIX + "Pz8/"


def test_resolve_params() -> None:
    assert resolve_params(None) == {}
    assert resolve_params({"a": 1}) == {"a": 1}
    assert resolve_params(lambda: {"b": 2}) == {"b": 2}
    assert resolve_params(lambda: None) == {}  # type: ignore[arg-type, return-value]
    with pytest.raises(UsageError, match="params must be a mapping, got list"):
        resolve_params([("a", 1)])  # type: ignore[arg-type]


def test_resolve_token() -> None:
    assert resolve_token(None) is None
    assert resolve_token("t") == "t"
    assert resolve_token(lambda: "u") == "u"
    assert resolve_token(lambda: None) is None
    with pytest.raises(UsageError, match="auth token must be a str, got int"):
        resolve_token(lambda: 5)  # type: ignore[arg-type, return-value]


def test_resolve_headers() -> None:
    assert resolve_headers(None) == ()
    assert resolve_headers({"X-A": "1"}) == (("X-A", "1"),)
    assert resolve_headers([("X-B", "2"), ("X-B", "3")]) == (("X-B", "2"), ("X-B", "3"))
    assert resolve_headers(lambda: {"X-C": "4"}) == (("X-C", "4"),)
    for name in ("Host", "upgrade", "Connection", "Sec-WebSocket-Key"):
        with pytest.raises(UsageError, match="set by the WebSocket handshake"):
            resolve_headers({name: "x"})
