"""``STXWebSocket``'s part that both drivers share: a socket set up for the STX exchange."""

from __future__ import annotations

import os
from typing import Any

from ._driver_channel import Channel, Handler
from ._driver_socket import SocketBase, TlsT
from ._stx import StxToken, stx_settings, stx_topic


class StxPreset(SocketBase[TlsT]):
    """The STX preset that both drivers' ``STXWebSocket`` are made of: this class comes
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
        any raw topic; otherwise as ``Socket.join``."""
        return await super().join(
            stx_topic(topic, self.user_uid), payload, on_message=on_message, timeout=timeout
        )
