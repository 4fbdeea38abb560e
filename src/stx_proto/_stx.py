"""STX exchange presets: hosts, channels, user-scoped topics. Pure data.

STX's real-time API is Phoenix Channels at ``wss://<host>/socket/websocket``, authenticated
with a JWT in the ``token`` query parameter. Getting that JWT (logging in with e-mail and
password) belongs to STX's HTTP API; pass a callable as the token to plug that login in, so
that a refreshed JWT is used at every reconnect.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ._errors import UsageError

#: (region, env) -> host.
STX_HOSTS: Mapping[tuple[str, str], str] = {
    ("ontario", "production"): "api.on.stxapp.ca",
    ("ontario", "staging"): "api-staging.on.sportsxapp.com",
    ("ontario", "demo"): "demo.stxapp.ca",
    ("us", "demo"): "demo.stxapp.io",
}

STX_SOCKET_PATH = "/socket/websocket"


class Channels(str, enum.Enum):
    """The STX channels. Every one but MARKET_INFO is scoped to a user."""

    MARKET_INFO = "market_info"
    ACTIVE_TRADES = "active_trades"
    ACTIVE_ORDERS = "active_orders"
    ACTIVE_POSITIONS = "active_positions"
    ACTIVE_SETTLEMENTS = "active_settlements"
    PORTFOLIO = "portfolio"
    USER_INFO = "user_info"

    @property
    def user_scoped(self) -> bool:
        """True when the topic is ``<channel>:<user_uid>``."""
        return self is not Channels.MARKET_INFO

    def topic(self, user_uid: str | None = None) -> str:
        """The topic to join: ``<channel>:<user_uid>`` for user-scoped channels.

        Raises UsageError when a user-scoped channel is given no ``user_uid``.
        """
        if not self.user_scoped:
            return self.value
        if not user_uid:
            raise UsageError(f"{self.name} is user-scoped: pass user_uid (the STX user's uid)")
        return f"{self.value}:{user_uid}"


def stx_url(region: str = "ontario", env: str = "staging") -> str:
    """The socket URL for ``region``/``env`` (the token goes in the params, not here).

    Raises UsageError for an unknown pair, naming the known ones.
    """
    host = STX_HOSTS.get((region, env))
    if host is None:
        known = ", ".join(f"{r}/{e}" for r, e in STX_HOSTS)
        raise UsageError(f"no STX host for region={region!r} env={env!r}; known: {known}")
    return f"wss://{host}{STX_SOCKET_PATH}"


def stx_topic(channel: Channels | str, user_uid: str | None = None) -> str:
    """The topic for ``channel``: a :class:`Channels` member, its value, or a raw topic."""
    if isinstance(channel, Channels):
        return channel.topic(user_uid)
    try:
        return Channels(channel).topic(user_uid)
    except ValueError:
        return channel  # a raw topic such as "market_info:123" passes through
