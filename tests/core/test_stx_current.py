"""STX's current API as data: the host rules and the channels (topics, options, pings)."""

from __future__ import annotations

import pytest

from stx_proto import Channels, UsageError
from stx_proto._stx import STX_HOSTS, stx_env, stx_host, stx_host_url, stx_url
from stx_proto._stx_channels import (
    NO_PING_TOPIC_PREFIXES,
    StxChannel,
    StxChannelName,
    StxChannels,
    answers_channel_ping,
    apply_filter_push,
    clamp_ping_timeout,
)

# ------------------------------------------------------------------------------------------
# Hosts


def test_one_table_holds_both_generations() -> None:
    assert STX_HOSTS == {
        ("ontario", "production"): "api.on.stxapp.ca",
        ("ontario", "staging"): "api-staging.on.sportsxapp.com",
        ("ontario", "demo"): "demo.stxapp.ca",
        ("us", "demo"): "demo.stxapp.io",
    }


@pytest.mark.parametrize("name", ["production", "prod", "live", "PROD", " Live "])
def test_prod_and_live_name_production(name: str) -> None:
    assert stx_env(name) == "production"
    assert stx_host("ontario", name) == "api.on.stxapp.ca"
    assert stx_url("Ontario", name) == "wss://api.on.stxapp.ca/socket/websocket"


@pytest.mark.parametrize("name", ["production", "prod", "live"])
def test_us_production_is_refused_clearly(name: str) -> None:
    with pytest.raises(UsageError, match="STX has no US production host yet"):
        stx_host("us", name)


def test_other_unknown_pairs_name_the_known_ones_only() -> None:
    with pytest.raises(UsageError, match="known: ontario/production") as exc:
        stx_host("mars", "demo")
    assert "US production" not in str(exc.value)


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("localhost:4000", "wss://localhost:4000/socket/websocket"),
        ("api.example", "wss://api.example/socket/websocket"),
        ("http://localhost:4000", "ws://localhost:4000/socket/websocket"),
        ("http://localhost:4000/", "ws://localhost:4000/socket/websocket"),
        ("HTTPS://api.example", "wss://api.example/socket/websocket"),
        ("ws://127.0.0.1:9", "ws://127.0.0.1:9/socket/websocket"),
        ("wss://h/custom/socket", "wss://h/custom/socket"),
        ("https://h/socket/websocket?x=1", "wss://h/socket/websocket?x=1"),
        ("  h  ", "wss://h/socket/websocket"),
    ],
)
def test_host_override(host: str, url: str) -> None:
    assert stx_host_url(host) == url


@pytest.mark.parametrize(
    ("host", "match"),
    [("", "empty"), ("ftp://h", "scheme"), ("http://", "names no host")],
)
def test_bad_host_override(host: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        stx_host_url(host)


def test_channels_format_as_their_value() -> None:
    assert str(Channels.PORTFOLIO) == "portfolio"
    assert f"{Channels.ACTIVE_ORDERS}:u" == "active_orders:u"
    assert f"{Channels.USER_INFO:>12}" == "   user_info"
    assert isinstance(Channels.MARKET_INFO, str)


# ------------------------------------------------------------------------------------------
# Channels


def test_public_topics_and_payloads() -> None:
    ob = StxChannels.orderbook(market_ids=["m1", 2])
    assert (ob.topic, ob.payload()) == ("orderbook", {"market_ids": ["m1", 2]})
    assert StxChannels.ticker().payload() == {}
    t = StxChannels.ticker(sports=["soccer"], competitions=iter(["epl"]))
    assert (t.topic, t.payload()) == ("ticker", {"sports": ["soccer"], "competitions": ["epl"]})
    tr = StxChannels.trades(event_ids=["e"])
    assert (tr.topic, tr.payload()) == ("trades", {"event_ids": ["e"]})
    assert StxChannels.trades(market_ids=["m"]).payload() == {"market_ids": ["m"]}
    rules = {"sport": "soccer"}
    mk = StxChannels.markets(rule_filters=rules, message_types=["market_created"])
    assert (mk.topic, mk.payload()) == (
        "markets",
        {"rule_filters": rules, "message_types": ["market_created"]},
    )
    ms = StxChannels.market_stats(["m"], range="1d")
    assert (ms.topic, ms.payload()) == ("market_stats", {"market_ids": ["m"], "range": "1d"})
    mu = StxChannels.market_updates()
    assert (mu.topic, mu.payload()) == ("market_updates", {})
    m = StxChannels.market(1234)
    assert (m.topic, m.payload(), m.user_scoped) == ("market:1234", {}, False)
    assert m.for_user("u") is m


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (StxChannels.fills, "fills"),
        (StxChannels.positions, "positions"),
        (StxChannels.settlements, "settlements"),
        (StxChannels.balances, "balances"),
        (StxChannels.account, "account"),
        (StxChannels.user_info, "user_info"),
        (StxChannels.rfq, "rfq"),
        (StxChannels.combo_quote, "combo_quote"),
        (StxChannels.orders, "orders"),
    ],
)
def test_per_user_topics_are_suffixed_with_the_user_id(make: object, name: str) -> None:
    channel = make()  # type: ignore[operator]
    assert isinstance(channel, StxChannel) and channel.user_scoped
    with pytest.raises(UsageError, match="give the socket a user_id"):
        _ = channel.topic
    with pytest.raises(UsageError, match="give the socket a user_id"):
        channel.for_user(None)
    scoped = channel.for_user("u-1")
    assert scoped.topic == f"{name}:u-1"
    assert scoped.for_user(None) is scoped
    assert scoped.for_user("u-1").topic == f"{name}:u-1"
    with pytest.raises(UsageError, match="another user"):
        scoped.for_user("u-2")


def test_per_user_options() -> None:
    b = StxChannels.balances(account_id="acc", user_id="u")
    assert (b.topic, b.payload()) == ("balances:u", {"account_id": "acc"})
    o = StxChannels.orders(market_ids=["m"], cancel_on_disconnect=True, ping_timeout=8000)
    assert o.for_user("u").payload() == {
        "market_ids": ["m"],
        "cancel_on_disconnect": True,
        "ping_timeout": 8000,
    }
    assert o.cancel_on_disconnect
    assert StxChannels.orders(cancel_on_disconnect=True).payload() == {"cancel_on_disconnect": True}
    assert not StxChannels.orders().cancel_on_disconnect


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StxChannels.orderbook(market_ids=[]), "needs market_ids"),
        (lambda: StxChannels.orderbook(market_ids=None), "needs market_ids"),  # type: ignore[arg-type]
        (lambda: StxChannels.market_stats([]), "needs market_ids"),
        (lambda: StxChannels.trades(market_ids="m1"), "must be a list"),
        (lambda: StxChannels.market(""), "market id or symbol"),
        (lambda: StxChannels.orders(ping_timeout=5000), "only applies"),
        (lambda: StxChannels.orders(cancel_on_disconnect=True, ping_timeout=0), "positive int"),
        (lambda: StxChannels.orders(cancel_on_disconnect=True, ping_timeout=2.5), "positive int"),  # type: ignore[arg-type]
    ],
)
def test_option_refusals(make: object, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        make()  # type: ignore[operator]


def test_which_topics_answer_channel_pings() -> None:
    assert NO_PING_TOPIC_PREFIXES == ("market:", "rfq:", "combo_quote:")
    for topic in ("market:1", "rfq:u", "combo_quote:u"):
        assert not answers_channel_ping(topic)
    for topic in ("markets", "market_stats", "market_updates", "orders:u", "orderbook"):
        assert answers_channel_ping(topic)
    silent = {StxChannelName.MARKET, StxChannelName.RFQ, StxChannelName.COMBO_QUOTE}
    for name in StxChannelName:
        assert StxChannel(name).answers_ping is (name not in silent)
    assert f"{StxChannelName.ORDERS}" == str(StxChannelName.ORDERS) == "orders"
    assert f"{StxChannelName.ORDERS:>7}" == " orders"


def test_clamp_ping_timeout() -> None:
    assert [clamp_ping_timeout(v) for v in (1, 5000, 12345, 20000, 99999)] == [
        5000,
        5000,
        12345,
        20000,
        20000,
    ]


def test_filter_pushes_update_the_next_join_payload() -> None:
    joined = {"market_ids": ["a"], "event_ids": ["e"], "cancel_on_disconnect": True}
    assert apply_filter_push(joined, "select_filters", {"market_ids": ["b"]}) == {
        "market_ids": ["b"],
        "cancel_on_disconnect": True,
    }
    rules = {"rule_filters": {"x": 1}}
    assert apply_filter_push({}, "select_rule_filters", rules) == rules
    types = {"message_types": ["market_created"]}
    assert apply_filter_push({"message_types": ["x"]}, "select_message_types", types) == types
    assert apply_filter_push(joined, "watch", ["m"]) is joined
    with pytest.raises(UsageError, match="JSON object"):
        apply_filter_push(joined, "select_filters", ["m"])
