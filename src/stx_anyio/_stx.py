"""``STXWebSocket``: a :class:`Socket` set up for the STX exchange."""

from __future__ import annotations

import os
from typing import Any

from stx_proto import StxToken, stx_settings, stx_topic

from ._channel import Channel, Handler
from ._socket import Socket


class STXWebSocket(Socket):
    """A socket to STX: ``wss://<host>/socket/websocket?token=<jwt>&vsn=2.0.0``.

    ``region``/``env`` pick the host (``url=`` or ``$STX_WS_URL`` override it). ``token`` is
    the JWT, or a sync or async callable returning one, called at every connect, which is
    where a login over STX's HTTP API plugs in; ``$STX_TOKEN`` is used when it is not given.
    ``user_uid`` scopes the user channels: joining ``Channels.ACTIVE_ORDERS`` joins
    ``active_orders:<user_uid>``. Every other option is :class:`Socket`'s.

    Raises UsageError without a token, or for an unknown region/env.
    """

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
        url, params = stx_settings(region, env, url=url, token=token, environ=os.environ)
        super().__init__(url, params=params, **socket_options)
        self.user_uid = user_uid

    async def join(
        self,
        topic: str,
        payload: Any = None,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
    ) -> Channel:
        """Join a :class:`Channels` member (user-scoped ones as ``<channel>:<user_uid>``) or
        any raw topic; otherwise as :meth:`Socket.join`."""
        return await super().join(
            stx_topic(topic, self.user_uid), payload, on_message=on_message, timeout=timeout
        )
