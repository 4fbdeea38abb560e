"""What only ``stx_trio`` has: no anyio anywhere in it, and ``trio.run`` as its entry point.

The tests here drive the socket with trio's own primitives (``trio.run``, nurseries, cancel
scopes, ``trio.fail_after``) rather than through anyio's pytest runner. The test server is
anyio-based; anyio runs it on trio by itself.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

import stx_trio
from stx_anyio.testing import TestServer
from stx_trio import ClientClosedError, ConnectionClosedError, Socket, UsageError, run

SRC = Path(stx_trio.__file__).parent


def test_importing_stx_trio_loads_no_anyio() -> None:
    probe = (
        "import json, sys, stx_trio\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('anyio', 'stx_anyio', 'trio', 'sniffio'))))"
    )
    # -I: a fresh, isolated interpreter (no user site, no PYTHON* variables).
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, check=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "trio" in loaded  # the probe sees modules: trio is there, anyio is not
    assert not [m for m in loaded if m.split(".")[0] in ("anyio", "stx_anyio")]


def test_no_stx_trio_source_imports_anyio() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert [p.name for p in files] == ["__init__.py", "_driver.py"]  # one driver module
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in ("anyio", "stx_anyio"), (path, name)


async def _echo(topic: str) -> Any:
    async with TestServer() as srv:
        srv.phoenix.route("room:*")
        with trio.fail_after(5):
            async with Socket(srv.url) as sock:
                ch = await sock.join(topic)
                return await ch.push("echo", {"topic": topic})


def test_run_outside_an_event_loop() -> None:
    assert run(_echo, "room:1") == {"topic": "room:1"}
    # backend_options go to trio.run.
    assert run(_echo, "room:3", backend_options={"strict_exception_groups": True}) == {
        "topic": "room:3"
    }


def test_run_refuses_other_backends() -> None:
    with pytest.raises(UsageError, match="trio only"):
        run(_echo, "room:1", backend="asyncio")


def test_trio_cancellation_from_outside_aborts_the_connection() -> None:
    async def main() -> None:
        async with TestServer() as srv:
            srv.phoenix.route("room:*")
            sock = Socket(srv.url, retry=None)
            ended: list[BaseException] = []

            async def reader(ch: stx_trio.Channel) -> None:
                try:
                    async for _ in ch:
                        pass
                except ConnectionClosedError as exc:
                    ended.append(exc)

            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    with trio.CancelScope() as scope:
                        async with sock:
                            nursery.start_soon(reader, await sock.join("room:1"))
                            scope.cancel()
                            await trio.sleep_forever()
                assert scope.cancelled_caught
                assert len(ended) == 1
                await srv.wait_until(lambda: not srv.phoenix.connections, what="connection gone")
            assert srv.phoenix.all_connections[0].close_code is None  # aborted: no close frame
            with pytest.raises(ClientClosedError):
                await sock.join("room:2")

    trio.run(main)


def test_a_trio_deadline_bounds_a_join() -> None:
    async def main() -> None:
        async with TestServer() as srv:
            srv.phoenix.route("mute:*", on_join=lambda topic, payload, conn: None)
            async with Socket(srv.url, timeout=5.0) as sock:
                with trio.move_on_after(0.05) as scope:
                    await sock.join("mute:1")
                assert scope.cancelled_caught
                await srv.wait_for_frame(lambda m: m.event == "phx_leave" and m.topic == "mute:1")

    trio.run(main)


def test_stx_trio_under_asyncio_says_so() -> None:
    import asyncio

    from stx_proto import UsageError

    async def main() -> None:
        async with Socket("ws://127.0.0.1:9/socket"):
            raise AssertionError("not reached")

    with pytest.raises(UsageError, match=r"stx_trio runs on trio only.*use stx_anyio"):
        asyncio.run(main())


def test_importing_stx_trio_without_trio_names_the_extra() -> None:
    probe = (
        "import sys; sys.modules['trio'] = None\n"
        "try:\n    import stx_trio\nexcept ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert "stx_trio needs trio: pip install 'stx-ws[trio]'" in result.stdout
