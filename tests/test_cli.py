"""The stx-ws command: listen, push, demo and the error paths."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal

from stx_anyio import (
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    RetryPolicy,
    STXWebSocket,
    StxWsError,
    UsageError,
    _cli,
)
from stx_anyio._demo import demo
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage, StxAuthKind
from stx_proto.testing import PhoenixServer, StxServer

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
        (
            ["listen", "ws://h/socket", "t", "--retry-initial-backoff", "0"],
            "--retry-initial-backoff: expected",
        ),
        (
            ["listen", "ws://h/socket", "t", "--retry-max-backoff", "-2"],
            "--retry-max-backoff: expected",
        ),
        (
            [
                "listen",
                "ws://h/socket",
                "t",
                "--retry-initial-backoff",
                "5",
                "--retry-max-backoff",
                "1",
            ],
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


# ------------------------------------------------------------------------------------------------
# Help, version, logging, retry options


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"stx-ws {metadata.version('stx-ws')}"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = _cli._parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_argument_has_help_and_the_exit_codes_are_documented() -> None:
    commands = _subparsers()
    assert set(commands) == {"listen", "push", "demo", "serve"}
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"{name}: {action.dest} has no help"
        text = sub.format_help()
        for line in ("0  done", "1  failed", "2  usage error"):
            assert line in text, name
    assert "--vsn" in commands["listen"].format_help()
    assert "2  usage error" in _cli._parser().format_help()


def test_retry_options_make_the_policy() -> None:
    args = parse(
        "listen",
        "ws://h/socket",
        "t",
        "--retry-attempts",
        "3",
        "--retry-initial-backoff",
        "0.2",
        "--retry-max-backoff",
        "4",
    )
    assert args.retry == RetryPolicy(
        max_attempts=3, initial_backoff=0.2, max_backoff=4.0, max_refusals=1
    )
    assert parse("listen", "ws://h/socket", "t", "--no-reconnect").retry is None
    default = parse("push", "ws://h/socket", "t", "e").retry
    assert (default.max_attempts, default.initial_backoff, default.max_backoff) == (None, 0.5, 30.0)
    # A first wait longer than the default longest one raises the longest one with it.
    assert parse("listen", "ws://h/socket", "t", "--retry-initial-backoff", "60").retry == (
        RetryPolicy(initial_backoff=60.0, max_backoff=60.0, max_refusals=1)
    )


async def test_no_reconnect_ends_listen_on_the_first_lost_connection() -> None:
    phoenix = PhoenixServer()
    phoenix.route("*")
    out, err = io.StringIO(), io.StringIO()
    failures: list[StxWsError] = []
    done = anyio.Event()
    async with TestServer(phoenix) as server, anyio.create_task_group() as tg:
        args = parse("listen", server.url, "a", "--no-reconnect")

        async def run() -> None:
            try:
                await _cli.listen(args, out, err)
            except StxWsError as exc:
                failures.append(exc)
            finally:
                done.set()

        tg.start_soon(run)
        await server.wait_for_join("a")
        server.drop_all()
        with anyio.fail_after(5):
            await done.wait()
    assert len(failures) == 1
    assert "transport closed" in str(failures[0])
    assert phoenix.join_counts["a"] == 1


@contextlib.contextmanager
def served(phoenix: PhoenixServer) -> Iterator[TestServer]:
    """A TestServer running in a thread of its own, for tests of main() (which runs its own
    event loop)."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(TestServer(phoenix)) as server,
    ):
        yield server


def test_log_level_sends_the_library_log_to_stderr() -> None:
    phoenix = PhoenixServer()
    phoenix.route("*")
    with served(phoenix) as server:
        quiet, loud = io.StringIO(), io.StringIO()
        argv = ["push", server.url, "room:1", "e", "{}"]
        assert _cli.main(argv, io.StringIO(), quiet) == _cli.EXIT_OK
        assert _cli.main([*argv, "--log-level", "debug"], io.StringIO(), loud) == _cli.EXIT_OK
    assert "INFO stx_anyio: connected to 127.0.0.1" not in quiet.getvalue()
    assert "INFO stx_anyio: connected to 127.0.0.1" in loud.getvalue()
    assert "DEBUG stx_anyio" in loud.getvalue()
    # The command's handler is gone afterwards.
    assert not [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is loud]


# ------------------------------------------------------------------------------------------------
# Failures: one line, once, with a hint, and no secret

SECRETS = [
    "--token",
    "TOKEN-s3cr3t",
    "--header",
    "x-api-key=HEADER-s3cr3t",
    "--param",
    "key=PARAM-s3cr3t",
]


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "usually means bad or missing credentials: check --token, --header, --param"),
        (403, "usually means bad or missing credentials: check --token, --header, --param"),
        (404, "usually means a wrong path: the URL should end in /socket"),
        (400, None),
    ],
)
def test_a_refused_handshake_is_said_once_with_a_hint(
    status: int, hint: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    phoenix = PhoenixServer()
    phoenix.refuse_handshake = status
    err = io.StringIO()
    with served(phoenix) as server:
        code = _cli.main(["listen", server.url, "room:1", *SECRETS], io.StringIO(), err)
    assert code == _cli.EXIT_FAILED
    text = err.getvalue() + capsys.readouterr().err
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("stx-ws: ")
    assert f"HTTP {status}" in lines[0]
    if hint is None:
        assert "usually" not in lines[0]
    else:
        assert hint in lines[0]
    assert "s3cr3t" not in text


def test_a_failed_connect_is_retried_and_said_once_per_attempt() -> None:
    phoenix = PhoenixServer()
    phoenix.refuse_handshake = 503
    err = io.StringIO()
    argv = ["listen", "--retry-attempts", "1", "--retry-initial-backoff", "0.01", "room:1"]
    with served(phoenix) as server:
        code = _cli.main([argv[0], server.url, *argv[1:]], io.StringIO(), err)
    assert code == _cli.EXIT_FAILED
    lines = err.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        "[stx-ws] could not connect: handshake refused: HTTP 503; reconnecting"
    )
    assert lines[1].startswith("stx-ws: gave up after 2 attempt(s)")
    assert "HTTP 503" in lines[1]


def test_no_secret_on_stderr_even_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("*")
    err = io.StringIO()
    with served(phoenix) as server:
        argv = ["push", server.url, "room:1", "e", "{}", *SECRETS, "--log-level", "DEBUG"]
        assert _cli.main(argv, io.StringIO(), err) == _cli.EXIT_OK
        phoenix.refuse_handshake = 403
        assert _cli.main(argv, io.StringIO(), err) == _cli.EXIT_FAILED
    conn = phoenix.all_connections[0]
    assert conn.auth_token == "TOKEN-s3cr3t"
    assert conn.params["key"] == "PARAM-s3cr3t"
    text = err.getvalue() + capsys.readouterr().err
    assert "DEBUG" in text
    assert "HTTP 403" in text
    assert "s3cr3t" not in text


def test_failure_line_finds_the_refusal_in_the_causes() -> None:
    exc = JoinError("t", None, "socket gave up")
    exc.__cause__ = GaveUpError("gave up")
    exc.__cause__.__context__ = HandshakeRefusedError(404)
    line = _cli.failure_line(exc)
    assert line.startswith("stx-ws: join of 't' failed")
    assert line.endswith("(HTTP 404 usually means a wrong path: the URL should end in /socket)")
    assert _cli.failure_line(JoinError("t", None)) == "stx-ws: join of 't' failed (refused)"


# ------------------------------------------------------------------------------------------------
# A closed output pipe, serve, demo


class ClosedPipe(io.StringIO):
    """A stdout whose reader goes away after ``lines`` lines: later flushes raise EPIPE."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.lines = lines

    def flush(self) -> None:
        if self.getvalue().count("\n") > self.lines:
            raise BrokenPipeError(32, "Broken pipe")


async def test_listen_stops_quietly_when_its_reader_goes_away() -> None:
    phoenix = PhoenixServer()
    phoenix.route("*")
    out, err = ClosedPipe(lines=1), io.StringIO()
    async with TestServer(phoenix) as server:
        args = parse("listen", server.url, "a")
        async with anyio.create_task_group() as tg:

            async def feed() -> None:
                await server.wait_for_join("a")
                for n in range(3):
                    phoenix.broadcast("a", "tick", {"n": n})

            tg.start_soon(feed)
            with anyio.fail_after(5):
                assert await _cli.listen(args, out, err) == _cli.EXIT_OK
        # It left the channel and closed cleanly.
        await server.wait_for_frame(lambda m: m.event == "phx_leave")
    assert [json.loads(line)["payload"] for line in out.getvalue().splitlines()] == [
        {"n": 0},
        {"n": 1},  # written, but its flush met the closed pipe
    ]
    assert "Broken" not in err.getvalue()


def test_silence_points_the_descriptor_at_the_null_device(tmp_path: Any) -> None:
    path = tmp_path / "out.txt"
    with path.open("w") as stream:
        stream.write("lost\n")
        _cli.silence(stream)
        stream.write("lost too\n")
    assert path.read_text() == ""
    _cli.silence(io.StringIO())  # no descriptor: nothing to do


def test_main_exits_0_when_the_output_pipe_is_closed(capsys: pytest.CaptureFixture[str]) -> None:
    phoenix = PhoenixServer()
    phoenix.route("*")
    with served(phoenix) as server:
        code = _cli.main(["push", server.url, "room:1", "e", "{}"], ClosedPipe(lines=-1))
    assert code == _cli.EXIT_OK
    assert capsys.readouterr().err == "[stx-ws] connected\n"


def test_serve_on_a_taken_port_fails_with_one_line() -> None:
    err = io.StringIO()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = _cli.main(["serve", "--port", str(port)], io.StringIO(), err)
    assert code == _cli.EXIT_FAILED
    assert err.getvalue().splitlines() == [
        f"stx-ws: cannot listen on 127.0.0.1 port {port}: Address already in use"
    ]


async def test_the_demo_refuses_fewer_than_one_update() -> None:
    with pytest.raises(UsageError, match="updates must be at least 1, got 0"):
        await demo(0, io.StringIO())


def test_the_demo_exits_0_when_its_output_pipe_is_closed() -> None:
    err = io.StringIO()
    assert _cli.main(["demo", "--updates", "1"], ClosedPipe(lines=-1), err) == _cli.EXIT_OK
    assert err.getvalue() == ""


@pytest.mark.parametrize(
    ("raised", "status", "said"),
    [
        (KeyboardInterrupt(), 0, ""),
        (BrokenPipeError(32, "Broken pipe"), 0, ""),
        (UsageError("a bad value"), 2, "stx-ws: a bad value\n"),
        (GaveUpError("gave up after 3 attempt(s): HTTP 503"), 1, "stx-ws: gave up after 3"),
    ],
)
def test_main_maps_what_ends_a_command_to_its_exit_status(
    monkeypatch: pytest.MonkeyPatch, raised: BaseException, status: int, said: str
) -> None:
    def run(args: Any, out: Any, err: Any) -> int:
        raise raised

    monkeypatch.setattr(_cli, "_run", run)
    monkeypatch.setattr(_cli, "silence", lambda out: None)
    out, err = io.StringIO(), io.StringIO()
    assert _cli.main(["listen", "ws://127.0.0.1:9/socket", "t"], out, err) == status
    assert err.getvalue().startswith(said)


STX_USER = "u-9"


def stx_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, **values: str) -> None:
    """Only these STX_* variables, and no credentials file of the machine's."""
    for name in list(os.environ):
        if name.startswith("STX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.stx/credentials: none
    for name, value in values.items():
        monkeypatch.setenv(name, value)


async def test_listen_with_stx_signs_with_the_environments_api_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    stx = StxServer(clock=time.time)
    key_id, pem = stx.new_api_key(STX_USER)
    out, err = io.StringIO(), io.StringIO()
    async with TestServer(stx) as server, anyio.create_task_group() as tg:
        stx_environment(
            monkeypatch,
            tmp_path,
            STX_WS_URL=server.url,
            STX_KEY_ID=key_id,
            STX_PRIVATE_KEY=pem,
            STX_USER_ID=STX_USER,
        )
        args = parse("listen", "--stx", "ontario/staging", "ticker", "fills")
        tg.start_soon(_cli.listen, args, out, err)
        await server.wait_for_join(f"fills:{STX_USER}")
        stx.broadcast(f"fills:{STX_USER}", "fill", {"n": 1})
        with anyio.fail_after(5):
            while not (
                fills := [
                    m for m in map(json.loads, out.getvalue().splitlines()) if m["event"] == "fill"
                ]
            ):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert fills[0]["topic"] == f"fills:{STX_USER}" and fills[0]["payload"] == {"n": 1}
    headers = dict(stx.all_connections[0].request_headers)
    assert headers["x-stx-access-key"] == key_id
    assert headers["user-agent"].startswith("stx-ws/")
    assert pem not in err.getvalue() and headers["x-stx-access-signature"] not in err.getvalue()


def test_a_refused_stx_key_is_said_once_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stx = StxServer(clock=time.time)
    key_id, _ = stx.new_api_key(STX_USER)
    _, other_pem = StxServer(clock=time.time).new_api_key(STX_USER)  # not this key's pair
    err = io.StringIO()
    with served(stx) as server:
        stx_environment(
            monkeypatch,
            tmp_path,
            STX_WS_URL=server.url,
            STX_KEY_ID=key_id,
            STX_PRIVATE_KEY=other_pem,
        )
        code = _cli.main(["listen", "--stx", "us/demo", "market_info"], io.StringIO(), err)
    assert code == _cli.EXIT_FAILED
    text = err.getvalue() + capsys.readouterr().err
    (line,) = text.splitlines()
    assert "HTTP 401" in line and "STX credentials" in line
    assert other_pem not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["listen", "--stx", "ontario", "a"], "expected REGION/ENV"),
        (["listen", "--stx", "us/prod", "a"], "no US production host"),
        (["listen", "--stx", "mars/demo", "a"], "known: ontario/production"),
        (["listen", "--stx", "us/demo", "a", "--token", "t"], "not --token"),
        (["push", "--stx", "us/demo", "a", "e", "--param", "k=v"], "not --param"),
        (["listen", "ws://127.0.0.1:1/socket", "a", "--profile", "p"], "option of --stx"),
    ],
)
def test_stx_options_that_contradict_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.parse_args(argv)
    assert info.value.code == _cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_stx_reads_the_named_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _, pem = StxServer(clock=time.time).new_api_key(STX_USER)
    (tmp_path / "bot.pem").write_text(pem)
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[bot]\nkey_id = k-42\nkey_file = {tmp_path / 'bot.pem'}\n")
    stx_environment(monkeypatch, tmp_path, STX_USER_ID=STX_USER)
    monkeypatch.setenv("STX_CREDENTIALS", str(credentials))
    args = parse("listen", "--stx", "ontario/staging", "--profile", "bot", "fills")
    sock = _cli._socket_from(args, _cli._Status(io.StringIO()))
    assert isinstance(sock, STXWebSocket)
    assert sock.settings.auth is StxAuthKind.API_KEY
    assert sock.settings.url == "wss://api-staging.on.sportsxapp.com/socket/websocket"
    assert sock.resolve_topic("fills") == f"fills:{STX_USER}"


def test_serve_passes_a_closed_output_pipe_up_to_main(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() ends quietly with status 0 on BrokenPipeError; serve's OSError handler (a taken
    # port) must not swallow it as a listen failure.
    async def serve(*args: Any, **kwargs: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(_cli, "serve", serve)
    err = io.StringIO()
    with pytest.raises(BrokenPipeError):
        _cli._run_serve(parse("serve", "--port", "0"), io.StringIO(), err)
    assert err.getvalue() == ""
