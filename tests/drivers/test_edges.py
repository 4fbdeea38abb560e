"""The edges a new user hits (issue 9): bad options refused at once, failures that say why,
no secret in any message, and the small defects found trying the project as a new user."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    Channels,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    PushTimeout,
    RetryPolicy,
    UsageError,
)

from .support import FAST, LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-t0ken-v4lue"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"params": "a=b"}, "params must be a mapping"),
        ({"params": {"a": object()}}, r"params\['a'\] must be a str, a number"),
        ({"headers": [("x",)]}, r"each header must be a \(name, value\) pair"),
        ({"headers": "x: y"}, "headers must be a mapping or"),
        ({"headers": {"bad name": "v"}}, "'bad name' is not a valid header name"),
        ({"headers": {"X-Token": 5}}, "header 'X-Token': its value must be a str, got int"),
        ({"retry": 3}, "retry must be a RetryPolicy, or None never to reconnect, got int"),
        ({"rejoin": None}, "rejoin must be a RetryPolicy, got None"),
        ({"timeout": "10"}, "timeout must be a number, got str"),
        ({"timeout": float("nan")}, "timeout must be finite and > 0"),
        ({"heartbeat_interval": True}, "heartbeat_interval must be a number or None, got bool"),
        ({"max_message_size": 1.5}, "max_message_size must be an int or None, got float"),
        ({"max_buffered_pushes": -1}, "max_buffered_pushes must be >= 0"),
        ({"rng": 42}, "rng must be a random.Random"),
        ({"auth_token": 42}, "auth token must be a str, got int"),
        ({"auth_token": ""}, "auth token must not be empty"),
        ({"on_open": "print"}, "on_open must be a callable or None, got str"),
        ({"reconnect_policy": FAST}, r"'reconnect_policy' \(stx-ws calls it retry"),
        ({"ping_interval": 20}, r"'ping_interval' \(stx-ws calls it heartbeat_interval\)"),
        ({"ping_timeout": 20}, r"'ping_timeout' \(stx-ws calls it heartbeat_timeout\)"),
        ({"heartbeat_intreval": 5}, "unknown option: 'heartbeat_intreval'"),
    ],
)
def test_every_option_is_checked_at_construction(
    impl: Impl, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        impl.Socket("ws://127.0.0.1:9/socket", **options)


def test_the_url_must_be_a_string(impl: Impl) -> None:
    with pytest.raises(UsageError, match="url must be a str, got int"):
        impl.Socket(123)  # type: ignore[arg-type]


@pytest.mark.parametrize("where", ["headers", "auth_token"])
def test_a_secret_with_a_line_break_is_refused_without_echoing_it(impl: Impl, where: str) -> None:
    # A token read from a file ends with "\n": say so, and never print the token.
    options: dict[str, Any] = (
        {"headers": {"Authorization": f"Bearer {SECRET}\n"}}
        if where == "headers"
        else {"auth_token": f"{SECRET}\n"}
    )
    with pytest.raises(UsageError, match="line break") as info:
        impl.Socket("ws://127.0.0.1:9/socket", **options)
    assert SECRET not in str(info.value)


async def test_a_callable_that_returns_a_bad_secret_ends_the_socket_with_the_cause(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = lambda: {"Authorization": f"Bearer {SECRET}\r\n"}  # noqa: E731
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError) as info:
        async with make_socket(impl, srv, headers=headers) as sock:
            await sock.join("room:1")
    assert isinstance(info.value.__cause__, UsageError)
    assert "line break" in str(info.value.__cause__)
    assert "1 attempt(s)" in str(info.value)  # given up at once, not retried forever
    assert SECRET not in str(info.value) and SECRET not in caplog.text


async def test_event_names_are_checked_like_topics(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            for bad in (123, "", None):
                with pytest.raises(UsageError, match="event must be a non-empty str"):
                    await ch.push(bad, {})  # type: ignore[arg-type]
            assert await ch.push("ok", {"n": 1}) == {"n": 1}  # nothing was sent, nothing broke
    assert srv.phoenix.all_connections[0].close_code == 1000


async def test_the_repr_says_rejoining_while_the_channel_rejoins(
    impl: Impl, srv: TestServer
) -> None:
    patient = RetryPolicy(initial_backoff=5.0, max_backoff=5.0, jitter=False)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, retry=patient) as sock:
            ch = await sock.join("room:1")
            assert repr(ch) == "<Channel 'room:1' joined>"
            srv.drop_all()
            await srv.wait_until(lambda: not sock.connected, what="the client saw the drop")
            assert not ch.joined
            assert repr(ch) == "<Channel 'room:1' rejoining>"


async def test_an_oversized_push_is_refused_before_anything_is_sent(
    impl: Impl, srv: TestServer
) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, max_message_size=1000) as sock:
            ch = await sock.join("room:1")
            with pytest.raises(UsageError, match="over max_message_size"):
                await ch.push("big", {"data": "x" * 2000})
            assert await ch.push("small", {"n": 1}) == {"n": 1}
    assert not [m for c in srv.phoenix.all_connections for m in c.received if m.event == "big"]


async def test_a_clean_session_counts_no_drops(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            await sock.join("room:2")
            await ch.push("echo", {})
            await ch.leave()
    stats = sock.stats
    assert (stats.stale_dropped, stats.unknown_topic_dropped, stats.dropped) == (0, 0, 0)


async def test_wait_until_notices_a_condition_on_the_clients_side(srv: TestServer) -> None:
    flag: list[bool] = []

    async def later() -> None:
        await anyio.sleep(0.05)
        flag.append(True)  # the server sees no traffic for this

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            assert await srv.wait_until(lambda: bool(flag), timeout=2.0, what="the flag")


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (500, "HTTP 500"),
        (401, "HTTP 401 (bad or missing credentials?)"),
        (404, "HTTP 404 (wrong path? the socket URL ends in /socket)"),
    ],
)
async def test_a_join_that_could_not_connect_says_how(
    impl: Impl, srv: TestServer, status: int, hint: str
) -> None:
    srv.phoenix.refuse_handshake = status
    patient = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_refusals=None)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, retry=patient, timeout=0.3) as sock:
            with pytest.raises(JoinError) as info:
                await sock.join("room:1")
            ch_error = info.value
            assert str(ch_error) == f"join of 'room:1' failed (could not connect: {hint})"
            assert isinstance(ch_error.__cause__, HandshakeRefusedError)
            assert ch_error.__cause__.status_code == status


async def test_a_push_that_waited_for_a_connection_in_vain_says_why(
    impl: Impl, srv: TestServer
) -> None:
    patient = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_refusals=None)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, retry=patient) as sock:
            ch = await sock.join("room:1")
            srv.phoenix.refuse_handshake = 503
            srv.drop_all()
            await srv.wait_until(lambda: not sock.connected, what="the client saw the drop")
            with pytest.raises(PushTimeout, match=r"timeout \(could not connect: HTTP 503\)"):
                await ch.push("order", {"qty": 1}, timeout=0.3)


async def test_an_unreachable_host_is_said_at_warning_once_then_info(
    impl: Impl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=impl.logger)
    with anyio.fail_after(LIMIT):
        # A port nobody listens on: every connect is refused.
        async with TestServer() as probe:
            port = probe.port
        sock = impl.Socket(f"ws://127.0.0.1:{port}/socket", retry=FAST, timeout=0.3)
        async with sock:
            with pytest.raises(JoinError, match=r"could not connect: transport error: connect"):
                await sock.join("room:1")
    records = [r for r in caplog.records if "could not connect" in r.getMessage()]
    assert len(records) >= 2
    assert records[0].levelno == logging.WARNING
    assert {r.levelno for r in records[1:]} == {logging.INFO}
    assert all(getattr(r, "stx_ws_event", None) == "connect_failed" for r in records)
    assert not any("disconnected" in r.getMessage() for r in caplog.records)


def test_channels_format_as_their_value() -> None:
    assert f"{Channels.ACTIVE_ORDERS}" == "active_orders"
    assert str(Channels.MARKET_INFO) == "market_info"


def test_a_return_inside_async_with_passes_mypy_strict(tmp_path: Path) -> None:
    script = tmp_path / "bot.py"
    script.write_text(
        "from stx_anyio import Socket\n\n\n"
        "async def first_reply(url: str) -> object:\n"
        "    async with Socket(url) as sock:\n"
        "        ch = await sock.join('room:lobby')\n"
        "        return await ch.push('ping', {})\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
