"""``STXWebSocket``'s part that every driver shares: a socket set up for the STX exchange.

The presets themselves (hosts, channels, topics, token checks) are pure data and functions in
``stx_proto``; what lives here reads the environment and awaits the user's token source.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .._stx import StxToken, stx_settings, stx_token_params, stx_topic
from .socket import SocketBase


def stx_params(token: StxToken) -> Mapping[str, str] | Callable[[], Awaitable[dict[str, str]]]:
    """The socket's ``params`` for ``token``: a mapping for a str, else an async callable that
    calls the token source (awaiting it if async) at every connect."""
    if isinstance(token, str):
        return stx_token_params(token)
    source = token

    async def params() -> dict[str, str]:
        value = source()
        if inspect.isawaitable(value):
            value = await value
        return stx_token_params(value)

    return params


class StxPreset(SocketBase):
    """The STX preset that every driver's ``STXWebSocket`` is made of: this class comes
    before the driver's ``Socket`` in the bases."""

    def __init__(
        self,
        region: str = "ontario",
        env: str = "staging",
        *,
        token: StxToken | None = None,
        user_uid: str | None = None,
        url: str | None = None,
        **socket_options: Any,
    ) -> None:
        """A socket to STX: ``wss://<host>/socket/websocket?token=<jwt>&vsn=2.0.0``.

        ``region``/``env`` pick the host (``url=`` or ``$STX_WS_URL`` override it). ``token``
        is the JWT, or a sync or async callable returning one, called at every connect, which
        is where a login over STX's HTTP API plugs in; ``$STX_TOKEN`` is used when it is not
        given. ``user_uid`` scopes the user channels: joining ``Channels.ACTIVE_ORDERS`` joins
        ``active_orders:<user_uid>``. Every other option is the driver's ``Socket``'s.

        Raises:
            UsageError: no token, or an unknown region/env.
        """
        url, source = stx_settings(region, env, url=url, token=token, environ=os.environ)
        super().__init__(url, params=stx_params(source), **socket_options)
        self.user_uid = user_uid

    def resolve_topic(self, topic: str) -> str:
        """A :class:`Channels` member as its topic (user-scoped ones as
        ``<channel>:<user_uid>``), any other topic as it is: what ``join`` and ``subscribe``
        join."""
        return stx_topic(topic, self.user_uid)
