"""``STXWebSocket``'s part that every driver shares: a socket set up for the STX exchange.

The presets themselves (hosts, channels, topics, signing, settings) are pure data and
functions in ``stx_proto``; what lives here reads the environment and the credentials file
(:mod:`.stx_io`), the wall clock (the runtime's), and awaits the user's token sources.

Two generations, one class; the credentials decide:

* ``token=`` (or ``STX_TOKEN``): the legacy SDK's JWT in the ``token`` query parameter;
* ``key_id=`` with ``private_key=``: STX's current API, three ``X-STX-ACCESS-*`` headers signed
  with Ed25519 at every connect (a fresh timestamp each time);
* ``access_token=``: the current API's OAuth header, the token fetched at every connect (a
  provider that raises ends the socket at once: a revoked grant);
* none: an unsigned socket, for the public channels.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from random import Random
from typing import TYPE_CHECKING, Any, TypedDict

from .._codec import JsonCodec
from .._engines import EngineFactory
from .._errors import CredentialsRevokedError, GaveUpError, UsageError
from .._events import Disconnected
from .._keepalive import DEFAULT_PING, PingPlan
from .._retry import RetryPolicy
from .._stx import Channels, StxToken, stx_token_params, stx_topic
from .._stx_auth import load_private_key, oauth_headers, sign_request, user_agent
from .._stx_channels import (
    WATCH_EVENT,
    StxChannel,
    answers_channel_ping,
    apply_filter_push,
    clamp_ping_timeout,
)
from .._stx_settings import AccessToken, StxAuthKind, StxSettings
from .channel import Channel
from .dispatch import Dispatch, ErrorHandler
from .queues import Overflow
from .router import ChannelRoute, Handler
from .session import Session
from .socket import OnChannelClose, OnChannelError, SocketBase, TokenSource
from .transport import Transport

if TYPE_CHECKING:
    from typing_extensions import Unpack
from .stx_io import read_stx_settings

#: Seconds between channel pings on an STX socket (STX's official SDK pings every 30 s).
STX_CHANNEL_PING_INTERVAL = 30.0
#: The share of a granted cancel-on-disconnect time at which that channel is pinged: 60%, as
#: STX's SDK does. A ping then reaches the server even when one is lost or late by most of
#: an interval, and the gap the server sees stays under the grant.
COD_PING_SHARE = 0.6

_UNSET: Any = object()


class StxSocketOptions(TypedDict, total=False):
    """The ``Socket`` options an ``STXWebSocket`` passes on (typed, so that mypy catches a
    misspelt one): every one but ``params`` and ``headers`` (the credentials make them) and
    the channel-ping options (``STXWebSocket`` has its own). A test holds it to
    ``SocketBase.__init__``."""

    auth_token: TokenSource
    vsn: str
    heartbeat_interval: float | None
    heartbeat_timeout: float | None
    timeout: float
    connect_timeout: float
    close_timeout: float
    retry: RetryPolicy | None
    reconnect: bool | None
    rejoin: RetryPolicy
    dispatch: Dispatch
    max_concurrency: int
    queue_size: int
    overflow: Overflow
    on_handler_error: ErrorHandler | None
    on_open: Callable[[], object] | None
    on_close: Callable[[Disconnected], object] | None
    on_rejoin: Callable[[Channel], object] | None
    on_gave_up: Callable[[GaveUpError], object] | None
    control_frames: bool
    ssl: Any
    json: str | JsonCodec | None
    max_buffered_pushes: int
    max_message_size: int | None
    rng: Random | None
    transport: Transport | str | None
    engine: str | EngineFactory
    busy_poll: float


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


def stx_headers(
    settings: StxSettings, wall_clock: Callable[[], float] | None
) -> Callable[[], Any] | tuple[tuple[str, str], ...]:
    """The handshake headers of an STX socket: the User-Agent, and the current API's
    credentials made fresh at every connect (a callable) when ``settings`` has them.

    Raises UsageError for a private key that cannot be loaded (never quoting it), or when
    signing needs a wall clock and there is none.
    """
    agent = ("User-Agent", user_agent())
    if settings.auth is StxAuthKind.API_KEY:
        assert settings.key_id is not None and settings.private_key is not None
        if wall_clock is None:
            raise UsageError("signing STX requests needs a wall clock: pass wall_clock=time.time")
        key_id, key, clock = settings.key_id, load_private_key(settings.private_key), wall_clock

        def signed() -> tuple[tuple[str, str], ...]:
            return (*sign_request(key_id, key, int(clock() * 1000)), agent)

        return signed
    if settings.auth is StxAuthKind.OAUTH:
        assert settings.access_token is not None
        return _oauth(settings.access_token, agent)
    return (agent,)


def _oauth(source: AccessToken, agent: tuple[str, str]) -> Callable[[], Any]:
    async def headers() -> tuple[tuple[str, str], ...]:
        try:
            value = source() if callable(source) else source
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            # The provider could not give a token: its grant is revoked (or broken). Final.
            revoked = f"the STX access token provider raised: {exc!r}"
            raise CredentialsRevokedError(revoked) from exc
        if not isinstance(value, str) or not value:
            raise UsageError(
                f"the STX access token must be a non-empty str, got {type(value).__name__}"
            )
        return (*oauth_headers(value), agent)

    return headers


def granted_ping_plan(reply: Any) -> PingPlan:
    """The ping plan of a cancel-on-disconnect join: from the join reply's granted
    ``ping_timeout`` (ms; clamped as the server does, 20 s when missing), ping at
    :data:`COD_PING_SHARE` of it and report a reply later than all of it."""
    granted = reply.get("ping_timeout") if isinstance(reply, Mapping) else None
    seconds = clamp_ping_timeout(granted if isinstance(granted, int) else 20_000) / 1000
    return PingPlan(COD_PING_SHARE * seconds, seconds)


class StxChannelHandle(Channel):
    """A joined STX channel: a :class:`Channel`, plus STX's filter pushes and ``watch``,
    whose effect survives a rejoin (the next join sends the filters; after every rejoin the
    whole watched set is sent again)."""

    __slots__ = ("_join_payload", "_watched")

    def __init__(self, session: Session, route: ChannelRoute, join_payload: Any) -> None:
        super().__init__(session, route)
        self._join_payload = join_payload
        self._watched: list[Any] = []

    @property
    def granted_ping_timeout(self) -> int | None:
        """Cancel-on-disconnect's granted time in ms, from the latest join reply (or None)."""
        reply = self.join_response
        value = reply.get("ping_timeout") if isinstance(reply, Mapping) else None
        return value if isinstance(value, int) else None

    @property
    def watched(self) -> tuple[Any, ...]:
        """The market ids ``watch`` added, in the order they were first added."""
        return tuple(self._watched)

    async def select_filters(
        self, *, market_ids: Iterable[Any] | None = None, event_ids: Iterable[Any] | None = None
    ) -> Any:
        """Change the markets or events the channel receives; the next rejoin asks for the
        same. Returns the reply's response; raises as :meth:`Channel.push`."""
        payload = {
            k: list(v) for k, v in (("market_ids", market_ids), ("event_ids", event_ids)) if v
        }
        return await self._filter("select_filters", payload)

    async def select_rule_filters(self, rule_filters: Any) -> Any:
        """Change the ``markets`` channel's rule filters (survives a rejoin)."""
        return await self._filter("select_rule_filters", {"rule_filters": rule_filters})

    async def select_message_types(self, message_types: Iterable[str]) -> Any:
        """Change the message types received (survives a rejoin)."""
        return await self._filter("select_message_types", {"message_types": list(message_types)})

    async def watch(self, market_ids: Iterable[Any]) -> Any:
        """Add ``market_ids`` to the watched set (``market_updates``); after every rejoin the
        whole set is sent again. Returns the reply's response."""
        ids = list(market_ids)
        response = await self.push(WATCH_EVENT, ids)
        self._watched.extend(i for i in ids if i not in self._watched)
        after = [(WATCH_EVENT, list(self._watched))]
        self._session.client.configure_channel(self.topic, after_join=after)
        return response

    async def _filter(self, event: str, payload: dict[str, Any]) -> Any:
        response = await self.push(event, payload)  # raises unless the reply is ok
        self._join_payload = apply_filter_push(self._join_payload or {}, event, payload)
        self._session.client.configure_channel(self.topic, join_payload=self._join_payload)
        return response


class StxPreset(SocketBase):
    """The STX preset that every driver's ``STXWebSocket`` is made of: this class comes
    before the driver's ``Socket`` in the bases."""

    def __init__(
        self,
        region: str | None = None,
        env: str | None = None,
        *,
        host: str | None = None,
        url: str | None = None,
        token: StxToken | None = None,
        key_id: str | None = None,
        private_key: str | None = None,
        access_token: AccessToken | None = None,
        user_id: str | None = None,
        user_uid: str | None = None,
        profile: str | None = None,
        verify_tls: bool | None = None,
        channel_ping_interval: float | None = STX_CHANNEL_PING_INTERVAL,
        wall_clock: Callable[[], float] | None = None,
        environ: Mapping[str, str] | None = None,
        **socket_options: Unpack[StxSocketOptions],
    ) -> None:
        """A socket to STX, legacy or current API: the credentials decide (see the module).

        Settings come from the keywords, then the environment (``STX_WS_URL``, ``STX_HOST``,
        ``STX_REGION``, ``STX_ENV``, ``STX_TOKEN``, ``STX_KEY_ID``, ``STX_PRIVATE_KEY``,
        ``STX_USER_ID``/``STX_USER_UID``, ``STX_VERIFY_TLS``, ``STX_PROFILE``), then a
        ``~/.stx/credentials`` profile, then defaults (``environ`` replaces ``os.environ``).
        ``region``/``env`` pick the host (``prod`` and ``live`` mean production; ``host=`` a
        host or URL, ``url=`` a full socket URL). ``user_id`` (alias ``user_uid``) scopes the
        per-user channels. ``channel_ping_interval`` pings every joined channel that answers
        pings (None: off). ``wall_clock`` stamps signed handshakes (default: the driver's).
        Every other option is the driver's ``Socket``'s (:class:`StxSocketOptions`).

        Raises:
            UsageError: two kinds of credentials, an unknown region/env, a bad key, an unknown
                option...
        """
        settings = read_stx_settings(
            environ=environ,
            region=region,
            env=env,
            host=host,
            url=url,
            token=token,
            key_id=key_id,
            private_key=private_key,
            access_token=access_token,
            user_id=user_id,
            user_uid=user_uid,
            profile=profile,
            verify_tls=verify_tls,
        )
        if not settings.verify_tls and "transport" not in socket_options:
            socket_options["transport"] = "tcp-unverified"
        params = None
        if settings.auth is StxAuthKind.TOKEN:
            assert settings.token is not None
            params = stx_params(settings.token)
        super().__init__(
            settings.url,
            params=params,
            headers=stx_headers(settings, wall_clock or self.runtime.wall_clock),
            channel_ping_interval=channel_ping_interval,
            channel_ping_skip=_no_ping,
            **socket_options,
        )
        self.settings = settings
        self.user_id = settings.user_id

    @property
    def user_uid(self) -> str | None:
        """The user id (the legacy SDK's name for it)."""
        return self.user_id

    @classmethod
    def from_env(cls, **options: Any) -> Any:
        """A socket from every STX setting the environment (and the credentials file) holds;
        ``options`` add to or override them. The same as calling the class: it reads the
        environment anyway; here for those who expect the name (maicoin.ws's ``from_env``)."""
        return cls(**options)

    def resolve_topic(self, topic: str) -> str:
        """A :class:`Channels` member as its topic (user-scoped ones as
        ``<channel>:<user_id>``), any other topic as it is: what ``join`` and ``subscribe``
        join."""
        return stx_topic(topic, self.user_id)

    async def join(
        self,
        topic: str | Channels | StxChannel,
        payload: Any = _UNSET,
        *,
        on_message: Handler | None = None,
        timeout: float | None = None,
        presence: bool = False,
        control_frames: bool | None = None,
        on_error: OnChannelError | None = None,
        on_close: OnChannelClose | None = None,
        types: Mapping[str, Any] | None = None,
        cancel_on_disconnect: bool = False,
        ping_timeout: int | None = None,
    ) -> StxChannelHandle:
        """Join an :class:`~stx_proto.StxChannel` (``StxChannels.orders(...)``: its topic and
        join options), a legacy :class:`Channels` member, or any raw topic. Per-user topics
        get ``:<user_id>``. ``cancel_on_disconnect=True`` (with ``ping_timeout`` in ms) arms
        STX's dead man's switch on the orders channel: the channel is then pinged at 60% of
        the time the server grants (``ch.granted_ping_timeout``), from each join and rejoin.
        Returns an STX channel handle; otherwise as ``Socket.join``.
        """
        if isinstance(topic, StxChannel):
            channel = topic.for_user(self.user_id) if topic.user_scoped else topic
            name = channel.topic
            join_options = channel.payload()
            cod = channel.cancel_on_disconnect
        else:
            name = stx_topic(topic, self.user_id)
            join_options = {}
            cod = False
        if cancel_on_disconnect:
            cod = True
            join_options["cancel_on_disconnect"] = True
            if ping_timeout is not None:
                join_options["ping_timeout"] = ping_timeout
        if payload is _UNSET:
            payload = join_options or None
        session = self._session
        route, options = self._route(
            name,
            on_message=on_message,
            presence=presence,
            control_frames=control_frames,
            on_error=on_error,
            on_close=on_close,
            timeout=timeout,
            types=types,
            ping=granted_ping_plan if cod else DEFAULT_PING,
        )
        session.check_running()
        return StxChannelHandle(session, await session.join_route(route, payload, options), payload)


def _no_ping(topic: str) -> bool:
    return not answers_channel_ping(topic)
