"""STX presets: the host table, the channels, and the user-scoped topic rule."""

from __future__ import annotations

import pytest

from stx_proto import STX_HOSTS, Channels, UsageError, stx_topic, stx_url


@pytest.mark.parametrize(
    ("region", "env", "host"),
    [
        ("ontario", "production", "api.on.stxapp.ca"),
        ("ontario", "staging", "api-staging.on.sportsxapp.com"),
        ("ontario", "demo", "demo.stxapp.ca"),
        ("us", "demo", "demo.stxapp.io"),
    ],
)
def test_host_table(region: str, env: str, host: str) -> None:
    assert STX_HOSTS[region, env] == host
    assert stx_url(region, env) == f"wss://{host}/socket/websocket"


def test_default_is_ontario_staging() -> None:
    assert stx_url() == "wss://api-staging.on.sportsxapp.com/socket/websocket"


def test_unknown_region_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"env=.production.; known: ontario/production"):
        stx_url("us", "production")


def test_channel_values() -> None:
    assert [c.value for c in Channels] == [
        "market_info",
        "active_trades",
        "active_orders",
        "active_positions",
        "active_settlements",
        "portfolio",
        "user_info",
    ]


def test_market_info_is_the_only_public_channel() -> None:
    assert [c for c in Channels if not c.user_scoped] == [Channels.MARKET_INFO]
    assert Channels.MARKET_INFO.topic() == "market_info"
    assert Channels.MARKET_INFO.topic("u-1") == "market_info"


@pytest.mark.parametrize("channel", [c for c in Channels if c.user_scoped])
def test_user_scoped_topics(channel: Channels) -> None:
    assert channel.topic("u-1") == f"{channel.value}:u-1"
    with pytest.raises(UsageError, match="user_uid"):
        channel.topic()
    with pytest.raises(UsageError, match="user_uid"):
        channel.topic("")


def test_stx_topic_accepts_members_values_and_raw_topics() -> None:
    assert stx_topic(Channels.ACTIVE_ORDERS, "u") == "active_orders:u"
    assert stx_topic("portfolio", "u") == "portfolio:u"
    assert stx_topic("market_info") == "market_info"
    assert stx_topic("market_info:123") == "market_info:123"
    assert stx_topic("fills", "u") == "fills:u"  # the current API's per-user channels too
    assert stx_topic("ticker", "u") == "ticker"
    assert stx_topic("fills:other", "u") == "fills:other"
    with pytest.raises(UsageError, match="fills is per-user"):
        stx_topic("fills")


def test_settings_from_arguments_environment_and_table() -> None:
    from stx_proto import stx_settings

    assert stx_settings("us", "demo", token="jwt") == (
        "wss://demo.stxapp.io/socket/websocket",
        "jwt",
    )
    env = {"STX_WS_URL": "ws://127.0.0.1:9/socket", "STX_TOKEN": "from-env"}
    assert stx_settings(environ=env) == ("ws://127.0.0.1:9/socket", "from-env")
    assert stx_settings(url="ws://x/socket", token="t", environ=env)[0] == "ws://x/socket"
    source = lambda: "later"  # noqa: E731 - a token source is any callable
    assert stx_settings(token=source)[1] is source
    with pytest.raises(UsageError, match="STX_TOKEN"):
        stx_settings(environ={"STX_TOKEN": ""})
    with pytest.raises(UsageError, match="str or a callable"):
        stx_settings(token=42)  # type: ignore[arg-type]


def test_token_params_refuse_what_is_not_a_token_without_echoing_it() -> None:
    from stx_proto._stx import stx_token_params

    assert stx_token_params("jwt") == {"token": "jwt"}
    with pytest.raises(UsageError, match="non-empty str, got str \\(empty\\)"):
        stx_token_params("")
    with pytest.raises(UsageError, match="non-empty str, got int") as info:
        stx_token_params(12345)
    assert "12345" not in str(info.value)
