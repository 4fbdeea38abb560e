"""The stx-ws command as a real process: its output pipe closing, and ``serve`` from start to
Ctrl-C. Each test starts one Python process and bounds everything it waits for."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import anyio
import pytest
from anyio import to_thread
from anyio.abc import ByteReceiveStream, Process

from stx_anyio import Socket
from stx_anyio._serve import market_feed
from stx_anyio.testing import TestServer
from stx_proto.testing import PhoenixServer

pytestmark = pytest.mark.anyio

COMMAND = [sys.executable, "-m", "stx_anyio._cli"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def read_line(stream: ByteReceiveStream | None) -> bytes:
    """Read one line, byte by byte (so nothing after it is taken from the pipe)."""
    assert stream is not None
    line = bytearray()
    while not line.endswith(b"\n"):
        line += await stream.receive(1)
    return bytes(line)


async def read_all(stream: ByteReceiveStream | None) -> str:
    """Everything up to the end of the stream, decoded."""
    assert stream is not None
    data = bytearray()
    try:
        while True:
            data += await stream.receive()
    except anyio.EndOfStream:
        return data.decode()


async def open_command(*argv: str) -> Process:
    """Start ``stx-ws argv...`` with stdout and stderr as pipes."""
    return await anyio.open_process(
        [*COMMAND, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_listen_exits_quietly_with_status_0_once_its_output_pipe_closes() -> None:
    # As in `stx-ws listen URL market_info | head -1`: the reader takes one line and goes.
    phoenix = PhoenixServer()
    phoenix.route("*")
    async with TestServer(phoenix) as server, anyio.create_task_group() as tg:
        # subprocess, not anyio.open_process: closing anyio's stdout stream does not close
        # the pipe, and the point here is a reader that really goes away.
        proc = subprocess.Popen(
            [*COMMAND, "listen", server.url, "market_info"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            tg.start_soon(market_feed, phoenix, ["market_info"], 0.02)
            with anyio.fail_after(10):
                first = await to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
                proc.stdout.close()
                status = await to_thread.run_sync(proc.wait, abandon_on_cancel=True)
            err = proc.stderr.read().decode()
        finally:
            if proc.poll() is None:  # pragma: no cover - only when the test fails
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()
        tg.cancel_scope.cancel()
    assert b'"event":"market_update"' in first
    assert status == 0, err
    assert "Traceback" not in err
    assert "BrokenPipe" not in err
    assert "Exception ignored" not in err
    # Status lines only: connected, joined (nothing per message after the pipe closed).
    assert err.splitlines() == ["[stx-ws] connected", "[stx-ws] joined market_info"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serve_prints_its_url_feeds_echoes_and_exits_0_on_ctrl_c(
    signum: signal.Signals,
) -> None:
    proc = await open_command("serve", "--port", "0", "--interval", "0.05")
    async with proc:
        with anyio.fail_after(10):
            url = (await read_line(proc.stdout)).decode().strip()
            match = re.fullmatch(r"ws://127\.0\.0\.1:(\d+)/socket", url)
            assert match is not None, url
            assert int(match[1]) > 0
            async with Socket(url) as sock:
                market = await sock.join("market_info")
                lobby = await sock.join("room:lobby")
                assert await lobby.push("new_msg", {"body": "hi"}) == {"body": "hi"}
                async for msg in market:
                    assert msg.event == "market_update"
                    assert set(msg.payload) == {"seq", "market_id", "bid", "offer"}
                    break
            proc.send_signal(signum)
            status = await proc.wait()
            err = await read_all(proc.stderr)
    assert status == 0, err
    assert "Traceback" not in err
    assert "Ctrl-C to stop" in err
