"""The stx-ws command: listen, push, demo and the error paths."""

from __future__ import annotations

import io
import json
from typing import Any

import anyio
import pytest

from stx_anyio import _cli
from stx_anyio._demo import demo
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage
from stx_proto.testing import PhoenixServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def parse(*argv: str) -> Any:
    return _cli.parse_args(argv)


async def wait_for_lines(buf: io.StringIO, count: int) -> list[str]:
    with anyio.fail_after(5):
        while len(lines := buf.getvalue().splitlines()) < count:
            await anyio.sleep(0.01)
    return lines


async def test_listen_prints_json_lines_and_status_on_stderr() -> None:
    phoenix = PhoenixServer()
    phoenix.route("*")
    out, err = io.StringIO(), io.StringIO()
    async with TestServer(phoenix) as server, anyio.create_task_group() as tg:
        args = parse("listen", server.url, "a", "b", "--param", "token=t1", "--payload", '{"x":1}')
        tg.start_soon(_cli.listen, args, out, err)
        await server.wait_for_join("b")
        phoenix.broadcast("a", "tick", {"n": 1})
        phoenix.broadcast("b", "bin", b"\x00\x01")
        first, second = await wait_for_lines(out, 2)
        server.drop_all()
        await server.wait_for_join("b", count=2)
        status = await wait_for_lines(err, 6)
        tg.cancel_scope.cancel()
    assert json.loads(first) == {
        "topic": "a",
        "event": "tick",
        "payload": {"n": 1},
        "ref": None,
        "join_ref": None,
    }
    assert json.loads(second)["payload"] == {"binary": "AAE="}
    conn = phoenix.all_connections[0]
    assert conn.params["token"] == "t1"
    assert [m.payload for m in conn.received if m.event == "phx_join"] == [{"x": 1}, {"x": 1}]
    text = "\n".join(status)
    assert "[stx-ws] connected" in text
    assert "joined a" in text
    assert "disconnected: transport closed" in text
    assert "rejoined b" in text


async def test_push_prints_the_reply() -> None:
    phoenix = PhoenixServer()
    phoenix.route("room:*")
    out, err = io.StringIO(), io.StringIO()
    async with TestServer(phoenix) as server:
        args = parse("push", server.url, "room:1", "say", '{"body":"hi"}', "--token", "secret")
        with anyio.fail_after(5):
            assert await _cli.push(args, out, err) == _cli.EXIT_OK
    assert json.loads(out.getvalue()) == {"body": "hi"}
    assert phoenix.all_connections[0].auth_token == "secret"
    assert "secret" not in err.getvalue()


async def test_demo_shows_the_cut_and_the_resubscribe() -> None:
    out = io.StringIO()
    assert await demo(2, out) == 0
    text = out.getvalue()
    for expected in (
        "-- connected",
        "-- disconnected: transport closed",
        "-- rejoined market_info",
        "-- closed cleanly",
    ):
        assert expected in text


def test_main_reports_failures_with_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    # Nothing listens on port 1: the join times out while reconnecting, and the command says so.
    status = _cli.main(["push", "ws://127.0.0.1:1/socket", "t", "e", "--timeout", "0.3"])
    assert status == _cli.EXIT_FAILED
    assert "join of 't' failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["listen", "ws://h/socket", "t", "--param", "novalue"], "--param: expected NAME=VALUE"),
        (["push", "ws://h/socket", "t", "e", "{bad"], "PAYLOAD: not valid JSON"),
        (["listen", "ws://h/socket", "t", "--payload", "{"], "--payload: not valid JSON"),
        (["demo", "--updates", "0"], "--updates: expected a whole number of at least 1, got 0"),
        (["demo", "--updates", "-3"], "--updates: expected a whole number of at least 1"),
        (["demo", "--updates", "two"], "--updates: expected a whole number of at least 1"),
        (["listen", "ws://h/socket", "t", "--timeout", "0"], "--timeout: expected a number of"),
        (["listen", "ws://h/socket", "t", "--timeout", "-1"], "--timeout: expected a number of"),
        (["listen", "ws://h/socket", "t", "--timeout", "nan"], "--timeout: expected a number of"),
        (["listen", "ws://h/socket", "t", "--timeout", "inf"], "--timeout: expected a number of"),
        (["push", "ws://h/socket", "t", "e", "--timeout", "x"], "--timeout: expected a number of"),
        (["listen", "ws://h/socket", "t", "--retry-attempts", "0"], "--retry-attempts: expected"),
        (["listen", "ws://h/socket", "t", "--retry-initial-backoff", "0"], "--retry-initial-backoff: expected"),
        (["listen", "ws://h/socket", "t", "--retry-max-backoff", "-2"], "--retry-max-backoff: expected"),
        (
            ["listen", "ws://h/socket", "t", "--retry-initial-backoff", "5", "--retry-max-backoff", "1"],
            "--retry-max-backoff must be at least --retry-initial-backoff",
        ),
        (
            ["listen", "ws://h/socket", "t", "--no-reconnect", "--retry-attempts", "3"],
            "--no-reconnect cannot be combined",
        ),
        (["serve", "--port", "65536"], "--port: expected a port from 0 to 65535, got 65536"),
        (["serve", "--port", "-1"], "--port: expected a port from 0 to 65535"),
        (["serve", "--port", "http"], "--port: expected a port from 0 to 65535"),
        (["serve", "--interval", "0"], "--interval: expected a number of seconds above 0"),
        (["serve", "--interval", "0.001"], "--interval: expected at least 0.01 s"),
        (["serve", "--topics", ""], "--topics: a topic cannot be empty"),
        (["listen", "ws://h/socket", ""], "TOPIC: a topic cannot be empty"),
        (["listen", "ftp://h/socket", "t"], "URL: the URL must start with ws:// or wss://"),
        (["listen", "ws:///socket", "t"], "URL: the URL has no host"),
        (["listen", "ws://h:99999/socket", "t"], "URL: not a valid URL"),
        (["listen", "ws://h/socket", "t", "--log-level", "LOUD"], "--log-level: expected one of"),
        (["listen", "ws://h/socket", "t", "--vsn", "3"], "--vsn: invalid choice"),
    ],
)
def test_bad_arguments_are_refused_at_once_with_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main(argv)
    assert info.value.code == _cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"error: argument {message}" in err or f"error: {message}" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "ws://h/socket?token=SECRET1", "t", "--param", "=SECRET2"],
        ["listen", "ftp://h/socket?token=SECRET1", "t"],
        ["listen", "ws://h:port/socket?token=SECRET1", "t"],
        ["push", "ws://h/socket", "t", "e", "--header", "SECRET2"],
    ],
)
def test_a_refused_argument_is_not_echoed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _cli.main(argv)
    err = capsys.readouterr().err
    assert "error:" in err
    assert "SECRET" not in err


def test_message_json_is_one_line() -> None:
    line = _cli.message_json(ChannelMessage("t", "e", {"a": [1, "é"]}, "1", "2"))
    assert "\n" not in line
    assert json.loads(line)["payload"] == {"a": [1, "é"]}
