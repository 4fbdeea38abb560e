"""``sock.run()``: the socket starts its own event loop and blocks until closed; Ctrl-C
closes it cleanly (leaves, close 1000). The loopback server runs in a thread of its own."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import anyio
import anyio.from_thread
import pytest

import stx_anyio
import stx_trio
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage, UsageError
from stx_proto.driver import SocketBase

from .support import FAST, frames

RUNS = {
    "anyio-asyncio": (stx_anyio, None),
    "anyio-trio": (stx_anyio, "trio"),
    "trio": (stx_trio, None),
}


class Threaded:
    """A test server accepting ``room:*``, on an event loop in another thread."""

    def __init__(self, server: TestServer, portal: Any) -> None:
        self.server = server
        self.url = server.url
        self._portal = portal

    def push_after_join(self, topic: str, event: str) -> None:
        """Push ``event`` right after each join of ``topic`` (set in the server's thread)."""

        def on_join(joined: str, payload: Any, conn: Any) -> tuple[str, Any]:
            conn.push(joined, event, {})
            return "ok", {}

        self._portal.call(lambda: self.server.phoenix.route(topic, on_join=on_join))


@pytest.fixture
def threaded_srv() -> Iterator[Threaded]:
    with anyio.from_thread.start_blocking_portal() as portal:
        server = TestServer()
        server.phoenix.route("room:*")
        with portal.wrap_async_context_manager(server):
            yield Threaded(server, portal)


@pytest.mark.parametrize(("module", "backend"), list(RUNS.values()), ids=list(RUNS))
def test_run_blocks_until_a_handler_closes(
    module: ModuleType, backend: str | None, threaded_srv: Threaded
) -> None:
    sock: SocketBase = module.Socket(threaded_srv.url, retry=FAST)
    got: list[str] = []

    async def on_msg(msg: ChannelMessage) -> None:
        got.append(msg.event)
        await sock.close()

    threaded_srv.push_after_join("room:1", "hello")
    sock.subscribe("room:1", on_message=on_msg)
    sock.run(backend=backend)
    assert got == ["hello"]
    assert [c.close_code for c in threaded_srv.server.phoenix.all_connections] == [1000]


@pytest.mark.parametrize(("module", "backend"), list(RUNS.values()), ids=list(RUNS))
def test_ctrl_c_closes_cleanly(
    module: ModuleType, backend: str | None, threaded_srv: Threaded
) -> None:
    sock: SocketBase = module.Socket(threaded_srv.url, retry=FAST)

    def interrupt(msg: ChannelMessage) -> None:
        signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C

    threaded_srv.push_after_join("room:2", "tick")
    sock.subscribe("room:1")
    sock.subscribe("room:2", on_message=interrupt)
    sock.run(backend=backend)  # returns: the interrupt is handled
    assert sorted(m.topic for m in frames(threaded_srv.server, "phx_leave")) == ["room:1", "room:2"]
    assert [c.close_code for c in threaded_srv.server.phoenix.all_connections] == [1000]


def test_a_driver_without_a_loop_of_its_own() -> None:
    class Loopless(SocketBase):
        runtime = stx_anyio.Socket.runtime
        default_transport = stx_anyio.Socket.default_transport

    with pytest.raises(UsageError, match="arun"):
        Loopless("ws://127.0.0.1:9/socket").run()


@pytest.mark.parametrize(("module", "backend"), list(RUNS.values()), ids=list(RUNS))
def test_run_in_another_thread(
    module: ModuleType, backend: str | None, threaded_srv: Threaded
) -> None:
    # Signals are the main thread's: elsewhere run() only runs (and a handler closes).
    sock: SocketBase = module.Socket(threaded_srv.url, retry=FAST)

    async def stop(msg: ChannelMessage) -> None:
        await sock.close()

    threaded_srv.push_after_join("room:1", "hello")
    sock.subscribe("room:1", on_message=stop)
    thread = threading.Thread(target=sock.run, kwargs={"backend": backend})
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert [c.close_code for c in threaded_srv.server.phoenix.all_connections] == [1000]
