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
    return _cli._parser().parse_args(argv)


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
        (["listen", "ws://h/socket", "t", "--param", "novalue"], "key=value"),
        (["push", "ws://h/socket", "t", "e", "{bad"], "not valid JSON"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        _cli.main(argv)


def test_message_json_is_one_line() -> None:
    line = _cli.message_json(ChannelMessage("t", "e", {"a": [1, "é"]}, "1", "2"))
    assert "\n" not in line
    assert json.loads(line)["payload"] == {"a": [1, "é"]}
