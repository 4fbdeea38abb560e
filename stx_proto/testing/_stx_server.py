"""A scripted STX server: the current API's handshake authentication, channels and deadlines.

:class:`StxServer` is a :class:`~stx_proto.testing.PhoenixServer` that behaves as STX's
real-time API does (``STX.md``), so drivers' tests and users' bot tests exercise the real
thing, on :class:`~stx_proto.testing.Link`'s virtual clock or on the loopback ``TestServer``:

* **Handshake.** API-key headers are verified with the key's public key, and the timestamp
  against the server's own ``clock`` (Unix seconds, injectable) with a 30 s window; OAuth
  tokens must be known and not revoked; a legacy ``token`` query parameter must be known.
  Anything wrong is refused with HTTP 401 (the reason goes to the connection's ``errors``). A
  handshake with no credentials is accepted, for public channels only.
* **Channels.** Every topic of ``STX.md``. A per-user topic (``orders:<uid>``...) joins only on
  a connection authenticated as that user (else an error reply ``unauthorized``).
  ``orderbook`` and ``market_stats`` refuse a join without ``market_ids``. ``market:<id>``
  answers with :attr:`StxServer.markets`' state for it (with ``ob``); ``market_stats`` with
  ``{"markets": {id: history}}`` from :attr:`StxServer.market_stats_history`. After a join,
  ``orderbook`` pushes a ``book`` per market, and the per-user channels their snapshot
  (``all_orders``, ``all_trades``, ``all_positions``, ``balances``) from
  :attr:`StxServer.snapshots`.
* **Pushes.** ``ping`` is answered ok, except on ``market:``, ``rfq:`` and ``combo_quote:``
  topics, where it (like any unknown event there) crashes the channel (``phx_error``).
  ``select_filters``, ``select_rule_filters`` and ``select_message_types`` are answered ok and
  kept as the channel's current filters; ``watch`` on ``market_updates`` adds market ids to the
  channel's watched set and answers ``{"subscriptions": {"watches": [...]}}``. State is per
  connection and channel (:meth:`StxServer.channel_state`): a rejoin starts from its join
  payload, as a new channel process would.
* **Cancel-on-disconnect.** Joining ``orders:<uid>`` with ``{"cancel_on_disconnect": true,
  "ping_timeout": ms}`` is granted the value clamped to 5,000-20,000 ms (returned in the join
  reply's ``ping_timeout``). The deadline restarts at each ping on that channel and at each
  (re)join, on any connection; a leave disarms it; a dropped connection does not, so it then
  fires. When it passes, a :class:`Cancellation` is appended to
  :attr:`StxServer.cancellations`. The deadlines are server-wide timers (see
  :meth:`PhoenixServer.next_deadline`), on the clock the transport passes as ``now``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from stx_proto._codec import JsonCodec
from stx_proto._errors import UsageError
from stx_proto._message import ChannelMessage
from stx_proto._stx_auth import (
    ACCESS_KEY_HEADER,
    ACCESS_SIGNATURE_HEADER,
    ACCESS_TIMESTAMP_HEADER,
    OAUTH_HEADER,
    SIGNATURE_WINDOW_MS,
    SIGNED_METHOD,
)
from stx_proto._stx_channels import (
    CHANNEL_PING_EVENT,
    FILTER_EVENTS,
    PING_TIMEOUT_MAX_MS,
    WATCH_EVENT,
    StxChannelName,
    answers_channel_ping,
    clamp_ping_timeout,
)

from ._server import PhoenixServer, ServerConnection

__all__ = ["Cancellation", "StxChannelState", "StxServer"]

_KEY = ACCESS_KEY_HEADER.lower()
_TIMESTAMP = ACCESS_TIMESTAMP_HEADER.lower()
_SIGNATURE = ACCESS_SIGNATURE_HEADER.lower()

_PUBLIC = ("orderbook", "ticker", "trades", "markets", "market_stats", "market_updates")
_PER_USER = tuple(n.value for n in StxChannelName if n.user_scoped)
_NEEDS_MARKET_IDS = frozenset({"orderbook", "market_stats"})
#: Per-user channel -> the snapshot events pushed after its join.
_SNAPSHOTS: Mapping[str, tuple[str, ...]] = {
    "orders": ("all_orders",),
    "fills": ("all_trades",),
    "positions": ("all_positions",),
    "balances": ("balances",),
    "account": ("all_orders", "all_trades", "all_positions", "balances"),
}
_UNAUTHORIZED = {"reason": "unauthorized"}


@attrs.frozen(slots=True)
class Cancellation:
    """A cancel-on-disconnect that fired: the user's orders would have been cancelled.

    ``at`` is the deadline that passed (on the transport's clock), ``topic`` the orders topic,
    ``user_id`` its user, ``connection`` the connection that armed it last (``connection.open``
    says whether it was still up), ``granted_ms`` the ping timeout that was granted.
    """

    at: float
    topic: str
    user_id: str
    connection: ServerConnection
    granted_ms: int


@attrs.define(slots=True)
class StxChannelState:
    """What the server keeps for one joined channel of one connection.

    ``join_payload`` is what the join sent; ``filters`` the current filter options (from the
    join, then from the filter pushes); ``watches`` the watched market ids
    (``market_updates``); ``granted_ping_timeout`` the cancel-on-disconnect grant (ms), if
    armed; ``pings`` the channel pings answered.
    """

    join_payload: dict[str, Any]
    filters: dict[str, Any] = attrs.Factory(dict)
    watches: set[Any] = attrs.Factory(set)
    granted_ping_timeout: int | None = None
    pings: int = 0


@attrs.define(slots=True)
class _Arm:
    conn: ServerConnection
    user_id: str
    granted_ms: int
    deadline: float


def _crypto() -> Any:
    """The cryptography modules the server uses; UsageError naming the extra if missing."""
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - optional (stx-ws[stx])
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415
    except ImportError:
        raise UsageError(
            "the STX server's API keys need cryptography: pip install 'stx-ws[stx]'"
        ) from None
    return serialization, ed25519


def _load_public_key(public_key: Any) -> Any:
    """An Ed25519 public key from PEM text/bytes or a key object; UsageError otherwise."""
    serialization, ed25519 = _crypto()
    key = public_key
    if isinstance(public_key, (str, bytes)):
        data = public_key.encode() if isinstance(public_key, str) else public_key
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise UsageError("public_key is not a PEM public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(f"public_key must be Ed25519, got {type(key).__name__}")
    return key


class StxServer(PhoenixServer):
    """A scripted STX server (see the module docstring).

    ``clock`` returns Unix time in seconds; it checks API-key timestamps (pass the same clock
    the client signs with; on a virtual clock, ``lambda: T0 + link.now``). The other arguments
    are :class:`PhoenixServer`'s. Register credentials with :meth:`add_api_key` (or
    :meth:`new_api_key`), :meth:`add_oauth_token` and :meth:`add_legacy_token`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        codec: JsonCodec | None = None,
        max_channels: int = 100,
        path: str | None = None,
    ) -> None:
        super().__init__(codec=codec, max_channels=max_channels, path=path)
        self.clock = clock
        #: Cancel-on-disconnects that fired, oldest first.
        self.cancellations: list[Cancellation] = []
        #: ``market:<key>`` join replies: market id or symbol -> state (with ``ob``).
        self.markets: dict[str, Any] = {}
        #: ``market_stats`` join replies: market id -> history.
        self.market_stats_history: dict[str, list[Any]] = {}
        #: Snapshot event (``all_orders``...) -> payload pushed after a per-user join ({}).
        self.snapshots: dict[str, Any] = {}
        self._api_keys: dict[str, tuple[Any, str]] = {}
        self._oauth_tokens: dict[str, str] = {}
        self._legacy_tokens: dict[str, str] = {}
        self._identities: dict[ServerConnection, str | None] = {}
        self._channels: dict[tuple[ServerConnection, str], StxChannelState] = {}
        self._armed: dict[str, _Arm] = {}
        self._key_ids = itertools.count(1)
        for name in _PUBLIC:
            self.route(name, on_join=self._on_join, on_push=self._on_push)
        for name in (StxChannelName.MARKET.value, *_PER_USER):
            self.route(
                f"{name}:*", on_join=self._on_join, on_push=self._on_push, on_leave=self._on_leave
            )

    # ----------------------------------------------------------------------------------------
    # Credentials

    def add_api_key(self, key_id: str, public_key: Any, user_id: str) -> None:
        """Accept API key ``key_id`` for ``user_id``; ``public_key`` is its Ed25519 public key
        (PEM text or bytes, or a ``cryptography`` key). Raises UsageError for another key or
        without ``cryptography``."""
        self._api_keys[key_id] = (_load_public_key(public_key), user_id)

    def new_api_key(self, user_id: str, key_id: str | None = None) -> tuple[str, str]:
        """Make a fresh Ed25519 API key for ``user_id`` and accept it; return ``(key_id,
        private key PEM text)`` to give the client. Raises UsageError without
        ``cryptography``."""
        serialization, ed25519 = _crypto()
        private = ed25519.Ed25519PrivateKey.generate()
        key_id = key_id if key_id is not None else f"key-{next(self._key_ids)}"
        self.add_api_key(key_id, private.public_key(), user_id)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return key_id, pem.decode("ascii")

    def remove_api_key(self, key_id: str) -> None:
        """Stop accepting ``key_id`` (new handshakes with it get 401)."""
        self._api_keys.pop(key_id, None)

    def add_oauth_token(self, token: str, user_id: str) -> None:
        """Accept the OAuth access token ``token`` for ``user_id``."""
        self._oauth_tokens[token] = user_id

    def revoke_oauth_token(self, token: str) -> None:
        """Revoke ``token``: new handshakes with it get 401 (open connections stay up)."""
        self._oauth_tokens.pop(token, None)

    def add_legacy_token(self, token: str, user_id: str) -> None:
        """Accept the legacy JWT ``token`` (the ``token`` query parameter) for ``user_id``."""
        self._legacy_tokens[token] = user_id

    def user_of(self, conn: ServerConnection) -> str | None:
        """The user ``conn`` authenticated as, or None (unsigned, or not accepted)."""
        return self._identities.get(conn)

    def channel_state(self, conn: ServerConnection, topic: str) -> StxChannelState | None:
        """What the server keeps for ``topic`` joined on ``conn`` (its last join), or None."""
        return self._channels.get((conn, topic))

    def armed(self, topic: str) -> int | None:
        """The granted ping timeout (ms) of ``topic``'s armed cancel-on-disconnect, or None."""
        arm = self._armed.get(topic)
        return arm.granted_ms if arm is not None else None

    # ----------------------------------------------------------------------------------------
    # Handshake

    def check_handshake(self, conn: ServerConnection) -> int | None:
        """Authenticate the handshake (see the module docstring): None to accept, 401 to
        refuse (the reason is appended to ``conn.errors``)."""
        headers = dict(conn.request_headers)
        signed = any(h in headers for h in (_KEY, _TIMESTAMP, _SIGNATURE))
        oauth = OAUTH_HEADER in headers
        legacy = "token" in conn.params
        if signed + oauth + legacy > 1:
            return self._refuse(conn, "more than one kind of credentials")
        user: str | None = None
        if signed:
            reason, user = self._check_signature(conn, headers)
            if reason is not None:
                return self._refuse(conn, reason)
        elif oauth:
            user = self._oauth_tokens.get(headers[OAUTH_HEADER])
            if user is None:
                return self._refuse(conn, "unknown or revoked OAuth token")
        elif legacy:
            user = self._legacy_tokens.get(conn.params["token"])
            if user is None:
                return self._refuse(conn, "unknown legacy token")
        self._identities[conn] = user
        return None

    def _check_signature(
        self, conn: ServerConnection, headers: Mapping[str, str]
    ) -> tuple[str | None, str | None]:
        missing = [h for h in (_KEY, _TIMESTAMP, _SIGNATURE) if h not in headers]
        if missing:
            return f"missing {missing[0]} header", None
        entry = self._api_keys.get(headers[_KEY])
        if entry is None:
            return "unknown key id", None
        public_key, user = entry
        stamp = headers[_TIMESTAMP]
        if not stamp.isascii() or not stamp.isdigit():
            return "malformed timestamp", None
        if abs(self.clock() * 1000 - int(stamp)) > SIGNATURE_WINDOW_MS:
            return "stale timestamp", None
        try:
            signature = base64.b64decode(headers[_SIGNATURE], validate=True)
        except (binascii.Error, ValueError):
            return "malformed signature", None
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415 - optional

        # The signed path is the request's own, with no query string.
        message = f"{stamp}{SIGNED_METHOD}{conn.path}".encode()
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            return "bad signature", None
        return None, user

    def _refuse(self, conn: ServerConnection, reason: str) -> int:
        conn.errors.append(f"401: {reason}")
        return 401

    # ----------------------------------------------------------------------------------------
    # Channels

    def _on_join(self, topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
        name, _, key = topic.partition(":")
        if not isinstance(payload, dict):
            return "error", {"reason": "the join payload must be an object"}
        if name in _PER_USER and self._identities.get(conn) != key:
            return "error", _UNAUTHORIZED
        if name in _NEEDS_MARKET_IDS:
            ids = payload.get("market_ids")
            if not isinstance(ids, list) or not ids:
                return "error", {"reason": "market_ids required"}
        response: Any = {}
        if name == StxChannelName.MARKET.value:
            if key not in self.markets:
                return "error", {"reason": "market not found"}
            response = self.markets[key]
        elif name == "market_stats":
            response = {
                "markets": {
                    i: self.market_stats_history.get(str(i), []) for i in payload["market_ids"]
                }
            }
        state = StxChannelState(
            join_payload=dict(payload),
            filters={
                k: payload[k]
                for keys in FILTER_EVENTS.values()
                for k in keys
                if payload.get(k) is not None
            },
        )
        if name == StxChannelName.ORDERS.value:
            if payload.get("cancel_on_disconnect") is True:
                requested = payload.get("ping_timeout")
                granted = clamp_ping_timeout(
                    requested if type(requested) is int else PING_TIMEOUT_MAX_MS
                )
                state.granted_ping_timeout = granted
                self._armed[topic] = _Arm(conn, key, granted, conn.now + granted / 1000)
                response = {"cancel_on_disconnect": True, "ping_timeout": granted}
            else:
                self._armed.pop(topic, None)
            self.timers_changed()
        self._channels[conn, topic] = state
        if name == "orderbook":
            for market_id in payload["market_ids"]:
                book = self.markets.get(str(market_id), {}).get("ob", {})
                conn.push(topic, "book", {"market_id": market_id, "ob": book})
        for event in _SNAPSHOTS.get(name, ()):
            conn.push(topic, event, self.snapshots.get(event, {}))
        return "ok", response

    def _on_push(self, msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any] | None:
        topic, event, payload = msg.topic, msg.event, msg.payload
        if not answers_channel_ping(topic):
            # These channels have no clause for ping or filters: the channel crashes.
            conn.send_error(topic)
            return None
        state = self._channels.setdefault((conn, topic), StxChannelState(join_payload={}))
        if event == CHANNEL_PING_EVENT:
            state.pings += 1
            arm = self._armed.get(topic)
            if arm is not None and arm.conn is conn:
                arm.deadline = conn.now + arm.granted_ms / 1000
                self.timers_changed()
            return "ok", {}
        keys = FILTER_EVENTS.get(event)
        if keys is not None:
            if not isinstance(payload, dict):
                return "error", {"reason": "filters must be an object"}
            for k in keys:
                if payload.get(k) is None:
                    state.filters.pop(k, None)
                else:
                    state.filters[k] = payload[k]
            return "ok", {"filters": dict(state.filters)}
        if event == WATCH_EVENT and topic == StxChannelName.MARKET_UPDATES.value:
            if not isinstance(payload, list):
                return "error", {"reason": "watch takes a list of market ids"}
            state.watches.update(payload)
            return "ok", {"subscriptions": {"watches": sorted(state.watches, key=str)}}
        return "error", {"reason": f"unknown event {event!r}"}

    def _on_leave(self, topic: str, conn: ServerConnection) -> None:
        self._channels.pop((conn, topic), None)
        arm = self._armed.get(topic)
        if arm is not None and arm.conn is conn:
            del self._armed[topic]
            self.timers_changed()

    # ----------------------------------------------------------------------------------------
    # Deadlines

    def next_deadline(self) -> float | None:
        """The earliest armed cancel-on-disconnect deadline, or None."""
        return min((arm.deadline for arm in self._armed.values()), default=None)

    def handle_timer(self, now: float) -> None:
        """Record a :class:`Cancellation` for each cancel-on-disconnect deadline passed, and
        disarm it."""
        for topic, arm in list(self._armed.items()):
            if arm.deadline <= now:
                del self._armed[topic]
                self.cancellations.append(
                    Cancellation(arm.deadline, topic, arm.user_id, arm.conn, arm.granted_ms)
                )
