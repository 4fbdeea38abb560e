"""STX's current channels as data: topics, join options, and the channel-ping rules. Pure.

Each channel is a frozen :class:`StxChannel` made by one of the :class:`StxChannels`
constructors, which check the join options::

    StxChannels.orderbook(market_ids=["m1"]).topic        # "orderbook"
    StxChannels.orderbook(market_ids=["m1"]).payload()    # {"market_ids": ["m1"]}
    StxChannels.orders(cancel_on_disconnect=True, ping_timeout=10_000).for_user("u").topic
                                                          # "orders:u"

A per-user channel is made without a user id; the socket that knows the user id (given once)
scopes it with :meth:`StxChannel.for_user`. The filter pushes (``select_filters``,
``select_rule_filters``, ``select_message_types``) and ``watch`` are described here too, with
:func:`apply_filter_push`, the pure rule for what the next rejoin must send.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ._errors import UsageError

__all__ = [
    "CHANNEL_PING_EVENT",
    "FILTER_EVENTS",
    "NO_PING_TOPIC_PREFIXES",
    "PING_TIMEOUT_MAX_MS",
    "PING_TIMEOUT_MIN_MS",
    "WATCH_EVENT",
    "StxChannel",
    "StxChannelName",
    "StxChannels",
    "answers_channel_ping",
    "apply_filter_push",
    "clamp_ping_timeout",
]

#: The event of a channel ping (payload ``{}``).
CHANNEL_PING_EVENT = "ping"
#: The push that adds market ids to ``market_updates``' watched set (payload: a JSON list).
WATCH_EVENT = "watch"
#: Topic prefixes whose channels do not answer a channel ping: an unknown event crashes them.
NO_PING_TOPIC_PREFIXES = ("market:", "rfq:", "combo_quote:")
#: The range the server clamps a cancel-on-disconnect ``ping_timeout`` (ms) to.
PING_TIMEOUT_MIN_MS = 5_000
PING_TIMEOUT_MAX_MS = 20_000

#: Filter pushes -> the join options each one replaces (once its reply is ok).
FILTER_EVENTS: Mapping[str, tuple[str, ...]] = {
    "select_filters": ("market_ids", "event_ids"),
    "select_rule_filters": ("rule_filters",),
    "select_message_types": ("message_types",),
}


class StxChannelName(str, enum.Enum):
    """The current API's channel names (a per-user topic is ``<name>:<user_id>``; ``market``
    is ``market:<id or symbol>``)."""

    ORDERBOOK = "orderbook"
    TICKER = "ticker"
    TRADES = "trades"
    MARKETS = "markets"
    MARKET_STATS = "market_stats"
    MARKET_UPDATES = "market_updates"
    MARKET = "market"
    ORDERS = "orders"
    FILLS = "fills"
    POSITIONS = "positions"
    SETTLEMENTS = "settlements"
    BALANCES = "balances"
    ACCOUNT = "account"
    USER_INFO = "user_info"
    RFQ = "rfq"
    COMBO_QUOTE = "combo_quote"

    def __str__(self) -> str:
        """The value, so f-strings give the name."""
        return self.value

    def __format__(self, spec: str) -> str:
        """Format the value, as a str would."""
        return format(self.value, spec)

    @property
    def user_scoped(self) -> bool:
        """True for the per-user channels (``<name>:<user_id>``)."""
        return self in _USER_SCOPED


_USER_SCOPED = frozenset(
    {
        StxChannelName.ORDERS,
        StxChannelName.FILLS,
        StxChannelName.POSITIONS,
        StxChannelName.SETTLEMENTS,
        StxChannelName.BALANCES,
        StxChannelName.ACCOUNT,
        StxChannelName.USER_INFO,
        StxChannelName.RFQ,
        StxChannelName.COMBO_QUOTE,
    }
)


def answers_channel_ping(topic: str) -> bool:
    """False for the topics that do not answer a channel ping (``market:<id>``,
    ``rfq:<uid>``, ``combo_quote:<uid>``): a ping would crash them. True for any other."""
    return not topic.startswith(NO_PING_TOPIC_PREFIXES)


def clamp_ping_timeout(ms: int) -> int:
    """The ``ping_timeout`` the server grants for a requested one: clamped to 5,000-20,000."""
    return max(PING_TIMEOUT_MIN_MS, min(PING_TIMEOUT_MAX_MS, ms))


def apply_filter_push(join_payload: Mapping[str, Any], event: str, push_payload: Any) -> Any:
    """The join payload the next rejoin sends once a filter push was answered ok.

    For ``select_filters``, ``select_rule_filters`` and ``select_message_types`` (see
    :data:`FILTER_EVENTS`), returns a new dict: ``join_payload`` with the push's options
    replacing the ones that event covers (an option the push leaves out is removed, as the
    server's filter is then unset). Returns ``join_payload`` itself for any other event.
    Raises UsageError for a filter push whose payload is not a JSON object.
    """
    keys = FILTER_EVENTS.get(event)
    if keys is None:
        return join_payload
    if not isinstance(push_payload, Mapping):
        raise UsageError(f"{event} takes a JSON object, got {type(push_payload).__name__}")
    updated = {k: v for k, v in join_payload.items() if k not in keys}
    updated.update({k: push_payload[k] for k in keys if push_payload.get(k) is not None})
    return updated


def _ids(name: str, values: Iterable[Any] | None, *, required: bool = False) -> tuple[Any, ...]:
    if values is None:
        if required:
            raise UsageError(f"this channel needs {name} (a non-empty list)")
        return ()
    if isinstance(values, (str, bytes)):
        raise UsageError(f"{name} must be a list, not a single {type(values).__name__}")
    items = tuple(values)
    if required and not items:
        raise UsageError(f"this channel needs {name} (a non-empty list)")
    return items


@attrs.frozen(slots=True)
class StxChannel:
    """One channel of STX's current API with its join options.

    ``name`` is the channel; ``key`` the market id or symbol of a ``market`` channel;
    ``user_id`` scopes a per-user channel (set it with :meth:`for_user`); ``options`` are the
    join options (only those given). Make one with the :class:`StxChannels` constructors.
    """

    name: StxChannelName
    options: tuple[tuple[str, Any], ...] = ()
    key: str | None = None
    user_id: str | None = None

    @property
    def user_scoped(self) -> bool:
        """True for a per-user channel."""
        return self.name.user_scoped

    @property
    def topic(self) -> str:
        """The topic to join. Raises UsageError for a per-user channel with no user id."""
        if self.key is not None:
            return f"{self.name.value}:{self.key}"
        if not self.user_scoped:
            return self.name.value
        if not self.user_id:
            raise UsageError(f"{self.name.value} is per-user: give the socket a user_id")
        return f"{self.name.value}:{self.user_id}"

    @property
    def answers_ping(self) -> bool:
        """False for the channels that must never get a channel ping."""
        return answers_channel_ping(f"{self.name.value}:")

    @property
    def cancel_on_disconnect(self) -> bool:
        """True when the join arms cancel-on-disconnect (orders only)."""
        return bool(dict(self.options).get("cancel_on_disconnect"))

    def for_user(self, user_id: str | None) -> StxChannel:
        """This channel scoped to ``user_id`` (itself for a public channel or an already
        scoped one). Raises UsageError if a per-user channel gets no user id, or a user id
        other than the one it has."""
        if not self.user_scoped:
            return self
        if not user_id:
            if self.user_id:
                return self
            raise UsageError(f"{self.name.value} is per-user: give the socket a user_id")
        if self.user_id and self.user_id != user_id:
            raise UsageError(f"{self.name.value} is already scoped to another user")
        return attrs.evolve(self, user_id=user_id)

    def payload(self) -> dict[str, Any]:
        """The join payload: a new dict of the options given (lists as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}


def _channel(name: StxChannelName, user_id: str | None = None, **options: Any) -> StxChannel:
    given = tuple((k, v) for k, v in options.items() if v is not None and v != ())
    return StxChannel(name, given, user_id=user_id or None)


class StxChannels:
    """Constructors of every :class:`StxChannel` (public ones, then per-user ones).

    List options take any iterable of ids (not a bare str). Per-user constructors take an
    optional ``user_id``; without it, the socket's is used. Raises UsageError for a missing
    required option or a wrong one.
    """

    @staticmethod
    def orderbook(market_ids: Iterable[Any]) -> StxChannel:
        """``orderbook``: a full ``book`` snapshot per market; ``market_ids`` is required."""
        return _channel(
            StxChannelName.ORDERBOOK, market_ids=_ids("market_ids", market_ids, required=True)
        )

    @staticmethod
    def ticker(
        *, sports: Iterable[Any] | None = None, competitions: Iterable[Any] | None = None
    ) -> StxChannel:
        """``ticker``: ``ticker`` events; optional ``sports``, ``competitions``."""
        return _channel(
            StxChannelName.TICKER,
            sports=_ids("sports", sports),
            competitions=_ids("competitions", competitions),
        )

    @staticmethod
    def trades(
        *, market_ids: Iterable[Any] | None = None, event_ids: Iterable[Any] | None = None
    ) -> StxChannel:
        """``trades``: every execution, anonymised; optional ``market_ids``, ``event_ids``."""
        return _channel(
            StxChannelName.TRADES,
            market_ids=_ids("market_ids", market_ids),
            event_ids=_ids("event_ids", event_ids),
        )

    @staticmethod
    def markets(
        *, rule_filters: Any = None, message_types: Iterable[str] | None = None
    ) -> StxChannel:
        """``markets``: ``market_created``, ``market_updated``; optional ``rule_filters``
        (passed as given) and ``message_types``."""
        return _channel(
            StxChannelName.MARKETS,
            rule_filters=rule_filters,
            message_types=_ids("message_types", message_types),
        )

    @staticmethod
    def market_stats(market_ids: Iterable[Any], *, range: Any = None) -> StxChannel:
        """``market_stats``: history in the join reply (``markets``), then ``market_stats``
        and ``market_stats_snapshot``; ``market_ids`` is required, ``range`` optional."""
        return _channel(
            StxChannelName.MARKET_STATS,
            market_ids=_ids("market_ids", market_ids, required=True),
            range=range,
        )

    @staticmethod
    def market_updates() -> StxChannel:
        """``market_updates``: ``created``/``updated`` for the markets pushed with ``watch``."""
        return _channel(StxChannelName.MARKET_UPDATES)

    @staticmethod
    def market(market: str | int) -> StxChannel:
        """``market:<id or symbol>``: the join reply is the market's state (with ``ob``);
        this topic answers no channel ping."""
        key = str(market)
        if not key:
            raise UsageError("market needs a market id or symbol")
        return StxChannel(StxChannelName.MARKET, key=key)

    @staticmethod
    def orders(
        *,
        market_ids: Iterable[Any] | None = None,
        cancel_on_disconnect: bool = False,
        ping_timeout: int | None = None,
        user_id: str | None = None,
    ) -> StxChannel:
        """``orders:<user_id>``: ``all_orders``, then ``new_open_order``; optional
        ``market_ids``. ``cancel_on_disconnect=True`` arms the dead man's switch, with
        ``ping_timeout`` in ms (the server clamps it to 5,000-20,000 and grants it in the join
        reply). Raises UsageError for a ``ping_timeout`` without ``cancel_on_disconnect`` or
        one that is not a positive int."""
        if ping_timeout is not None:
            if not cancel_on_disconnect:
                raise UsageError("ping_timeout only applies with cancel_on_disconnect=True")
            if type(ping_timeout) is not int or ping_timeout <= 0:
                raise UsageError("ping_timeout must be a positive int (milliseconds)")
        return _channel(
            StxChannelName.ORDERS,
            user_id,
            market_ids=_ids("market_ids", market_ids),
            cancel_on_disconnect=True if cancel_on_disconnect else None,
            ping_timeout=ping_timeout,
        )

    @staticmethod
    def fills(*, user_id: str | None = None) -> StxChannel:
        """``fills:<user_id>``: ``all_trades``, then ``trade``."""
        return _channel(StxChannelName.FILLS, user_id)

    @staticmethod
    def positions(*, user_id: str | None = None) -> StxChannel:
        """``positions:<user_id>``: ``all_positions``, then ``updated_positions`` deltas."""
        return _channel(StxChannelName.POSITIONS, user_id)

    @staticmethod
    def settlements(*, user_id: str | None = None) -> StxChannel:
        """``settlements:<user_id>``: ``new_settlements``."""
        return _channel(StxChannelName.SETTLEMENTS, user_id)

    @staticmethod
    def balances(*, account_id: Any = None, user_id: str | None = None) -> StxChannel:
        """``balances:<user_id>``: ``balances``, then ``update``, ``payment_update``;
        optional ``account_id``."""
        return _channel(StxChannelName.BALANCES, user_id, account_id=account_id)

    @staticmethod
    def account(*, user_id: str | None = None) -> StxChannel:
        """``account:<user_id>``: everything the other per-user channels send."""
        return _channel(StxChannelName.ACCOUNT, user_id)

    @staticmethod
    def user_info(*, user_id: str | None = None) -> StxChannel:
        """``user_info:<user_id>``: ``user_updated``."""
        return _channel(StxChannelName.USER_INFO, user_id)

    @staticmethod
    def rfq(*, user_id: str | None = None) -> StxChannel:
        """``rfq:<user_id>`` (combos, US demo); answers no channel ping."""
        return _channel(StxChannelName.RFQ, user_id)

    @staticmethod
    def combo_quote(*, user_id: str | None = None) -> StxChannel:
        """``combo_quote:<user_id>`` (combos, US demo); answers no channel ping."""
        return _channel(StxChannelName.COMBO_QUOTE, user_id)
