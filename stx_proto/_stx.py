"""STX exchange presets: hosts, channels, user-scoped topics. Pure data.

STX's real-time API is Phoenix Channels at ``wss://<host>/socket/websocket``, authenticated
with a JWT in the ``token`` query parameter. Getting that JWT (logging in with e-mail and
password) belongs to STX's HTTP API; pass a callable as the token to plug that login in, so
that a refreshed JWT is used at every reconnect.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._errors import UsageError
from ._stx_channels import StxChannel, StxChannelName

#: A JWT, or a sync or async callable returning one (called at every connect).
StxToken = str | Callable[[], str | Awaitable[str]]

#: (region, env) -> host, for both generations of STX's API: the staging host is the legacy
#: API's only (STX's current SDK knows demo and production). There is no (us, production) host.
STX_HOSTS: Mapping[tuple[str, str], str] = {
    ("ontario", "production"): "api.on.stxapp.ca",
    ("ontario", "staging"): "api-staging.on.sportsxapp.com",
    ("ontario", "demo"): "demo.stxapp.ca",
    ("us", "demo"): "demo.stxapp.io",
}

#: Other names accepted for an env.
STX_ENV_ALIASES: Mapping[str, str] = {"prod": "production", "live": "production"}

STX_SOCKET_PATH = "/socket/websocket"

#: ``host=`` URL schemes and the WebSocket scheme each means.
_HOST_SCHEMES: Mapping[str, str] = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class Channels(str, enum.Enum):
    """The STX channels. Every one but MARKET_INFO is scoped to a user."""

    MARKET_INFO = "market_info"
    ACTIVE_TRADES = "active_trades"
    ACTIVE_ORDERS = "active_orders"
    ACTIVE_POSITIONS = "active_positions"
    ACTIVE_SETTLEMENTS = "active_settlements"
    PORTFOLIO = "portfolio"
    USER_INFO = "user_info"

    def __str__(self) -> str:
        """The value (``"market_info"``), so f-strings and str() give the topic name."""
        return self.value

    def __format__(self, spec: str) -> str:
        """Format the value, as a str would (f"{Channels.PORTFOLIO}" is "portfolio")."""
        return format(self.value, spec)

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


def stx_env(env: str) -> str:
    """``env`` in the host table's spelling: lowercased, ``prod`` and ``live`` as
    ``production``."""
    env = env.strip().lower()
    return STX_ENV_ALIASES.get(env, env)


def stx_host(region: str = "ontario", env: str = "staging") -> str:
    """The host of ``region``/``env`` in :data:`STX_HOSTS` (case-insensitive; ``prod`` and
    ``live`` name production).

    Raises UsageError for an unknown pair, naming the known ones, and saying so plainly for
    (us, production), which STX does not have yet.
    """
    key = (region.strip().lower(), stx_env(env))
    host = STX_HOSTS.get(key)
    if host is None:
        known = ", ".join(f"{r}/{e}" for r, e in STX_HOSTS)
        hint = (
            " (STX has no US production host yet: use us/demo, or ontario/production)"
            if key == ("us", "production")
            else ""
        )
        raise UsageError(f"no STX host for region={region!r} env={env!r}; known: {known}{hint}")
    return host


def stx_url(region: str = "ontario", env: str = "staging") -> str:
    """The socket URL for ``region``/``env`` (the token goes in the params, not here; the core
    appends ``vsn=2.0.0`` to the query itself).

    Raises UsageError for an unknown pair, naming the known ones (see :func:`stx_host`).
    """
    return f"wss://{stx_host(region, env)}{STX_SOCKET_PATH}"


def stx_host_url(host: str) -> str:
    """The socket URL for a ``host=`` override: a bare host (``localhost:4000``, which means
    ``wss://``) or a URL (``http://`` means ``ws://``, ``https://`` means ``wss://``; ``ws://``
    and ``wss://`` are kept).

    A URL with no path (or ``/``) gets ``/socket/websocket``; a URL with a path is kept as
    given, query included. Raises UsageError for an empty host, another scheme, or a URL
    with no host.
    """
    host = host.strip()
    if not host:
        raise UsageError("host is empty")
    if "://" not in host:
        host = f"wss://{host}"
    parts = urlsplit(host)
    scheme = _HOST_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise UsageError(f"host URL scheme must be http, https, ws or wss, got {parts.scheme!r}")
    if not parts.netloc:
        raise UsageError(f"host {host!r} names no host")
    path = parts.path if parts.path not in ("", "/") else STX_SOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def stx_topic(channel: Channels | str, user_uid: str | None = None) -> str:
    """The topic for ``channel``: a :class:`Channels` member, its value, the bare name of a
    current-API channel (a per-user one such as ``"fills"`` becomes ``fills:<user_uid>``), or a
    raw topic, which passes through.

    Raises UsageError for a user-scoped channel with no ``user_uid``.
    """
    if isinstance(channel, Channels):
        return channel.topic(user_uid)
    try:
        return Channels(channel).topic(user_uid)
    except ValueError:
        pass
    try:
        name = StxChannelName(channel)
    except ValueError:
        return channel  # a raw topic such as "market_info:123" passes through
    return StxChannel(name).for_user(user_uid).topic


def stx_settings(
    region: str = "ontario",
    env: str = "staging",
    *,
    url: str | None = None,
    token: StxToken | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, StxToken]:
    """The URL and the JWT source of an STX socket.

    The URL is ``url``, else ``$STX_WS_URL``, else the host table's for ``region``/``env``.
    The token is ``token``, else ``$STX_TOKEN``: a str, or a sync or async callable that the
    drivers call at every connect (so a refreshed JWT is used after a reconnect) and pass
    through :func:`stx_token_params`. ``environ`` is the environment to read (the drivers
    pass ``os.environ``). Raises UsageError when there is no token or the region/env pair is
    unknown.
    """
    environ = environ if environ is not None else {}
    url = url or environ.get("STX_WS_URL") or stx_url(region, env)
    if token is None:
        token = environ.get("STX_TOKEN") or None
    if token is None:
        raise UsageError("STX needs a JWT: pass token= (a str or a callable) or set STX_TOKEN")
    if isinstance(token, str):
        stx_token_params(token)
    elif not callable(token):
        raise UsageError(f"token must be a str or a callable, got {type(token).__name__}")
    return url, token


def stx_token_params(value: Any) -> dict[str, str]:
    """The query params carrying the JWT ``value``: ``{"token": value}``.

    Raises UsageError unless ``value`` is a non-empty str (never echoing it: it is a secret).
    """
    if not isinstance(value, str) or not value:
        raise UsageError(
            f"the STX token must be a non-empty str, got {type(value).__name__}"
            + (" (empty)" if value == "" else "")
        )
    return {"token": value}
