"""The WebSocket upgrade a client performs: where, with which credentials, through which
engine. Credentials (params, auth token, headers) may be callables: they are read here, at
each handshake, so a refreshed token reaches the next reconnect."""

from __future__ import annotations

from typing import Any

from ._checks import integer
from ._engines import EngineFactory, resolve_engine
from ._errors import UsageError
from ._events import HandshakeRequest
from ._url import (
    Endpoint,
    Headers,
    Params,
    Token,
    auth_subprotocols,
    check_credentials,
    resolve_headers,
    resolve_params,
    resolve_token,
)
from ._websocket import WebSocketEngine


class Handshake:
    """One client's upgrade: its endpoint, credentials, protocol version and engine.

    ``engine_factory`` is None in message mode (the transport does its own WebSocket).
    Raises UsageError, at construction, for a URL, credential or size that cannot work.
    """

    __slots__ = ("_headers", "_params", "_token", "endpoint", "engine_factory", "max_size", "vsn")

    def __init__(
        self,
        url: Any,
        *,
        params: Params,
        token: Token,
        headers: Headers,
        vsn: str,
        engine: str | EngineFactory | None,
        max_message_size: int | None,
    ) -> None:
        if not isinstance(url, str):
            raise UsageError(f"url must be a str, got {type(url).__name__}")
        self.endpoint = Endpoint.parse(url)
        check_credentials(params, token, headers)
        self._params = params
        self._token = token
        self._headers = headers
        self.vsn = vsn
        self.max_size = integer("max_message_size", max_message_size, allow_none=True)
        self.engine_factory = None if engine is None else resolve_engine(engine)

    def request(self) -> HandshakeRequest:
        """Evaluate params, token and headers and return the upgrade to perform. Raises
        whatever a user's callable raises, or UsageError for a value that cannot be sent."""
        endpoint = self.endpoint
        target = endpoint.target(resolve_params(self._params), self.vsn)
        return HandshakeRequest(
            url=endpoint.url(target),
            host=endpoint.host_header,
            target=target,
            headers=resolve_headers(self._headers),
            subprotocols=auth_subprotocols(resolve_token(self._token)),
        )

    def engine(self) -> WebSocketEngine:
        """A new engine for the upgrade :meth:`request` makes now. Raises as :meth:`request`,
        or UsageError from the engine for a request it cannot build."""
        factory = self.engine_factory
        assert factory is not None  # only the built-in engine's path gets here
        request = self.request()
        return factory(
            host=request.host,
            target=request.target,
            headers=request.headers,
            subprotocols=request.subprotocols,
            max_message_size=self.max_size,
        )
