"""Misuse refused at once, and a block cancelled from outside.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    ClientClosedError,
    ConnectionClosedError,
    QueueOverflowError,
    StxWsError,
    UsageError,
)
from stx_proto.driver import (
    Channel,
)

from .support import LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio


async def test_usage_errors(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        sock = make_socket(impl, srv)
        with pytest.raises(UsageError):
            await sock.join("room:1")
        await sock.close()  # a no-op before connecting
        with pytest.raises(UsageError):
            await sock.wait_closed()
        async with sock:
            ch = await sock.join("room:1")
            with pytest.raises(UsageError):
                await sock.join("room:1")  # already joined
            with pytest.raises(UsageError):
                await ch.push("phx_join", {})  # reserved
        with pytest.raises(UsageError):
            async with sock:
                pass
        for bad in (
            {"dispatch": "threads"},
            {"max_concurrency": 0},
            {"queue_size": 0},
            {"overflow": "block"},
            {"close_timeout": 0},
            {"timeout": -1},
        ):
            with pytest.raises(UsageError):
                impl.Socket(srv.url, **bad)
        with pytest.raises(UsageError):
            impl.Socket("ftp://example.com/socket")
        assert issubclass(QueueOverflowError, StxWsError)


async def test_outer_cancellation_aborts_the_connection(impl: Impl, srv: TestServer) -> None:
    sock = make_socket(impl, srv)
    ended: list[BaseException] = []

    async def reader(ch: Channel) -> None:
        # Outside the socket's block: it must not hang once the socket is gone.
        try:
            async for _ in ch:
                pass
        except ConnectionClosedError as exc:
            ended.append(exc)

    async def body(scope: anyio.CancelScope, outer: anyio.abc.TaskGroup) -> None:
        async with sock:
            outer.start_soon(reader, await sock.join("room:1"))
            scope.cancel()
            await anyio.sleep_forever()

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as outer:
            with anyio.CancelScope() as scope:
                await body(scope, outer)
        assert scope.cancelled_caught
        assert len(ended) == 1
        await srv.wait_until(lambda: not srv.phoenix.connections, what="connection gone")
        assert srv.phoenix.all_connections[0].close_code is None  # aborted, no close frame
        with pytest.raises(ClientClosedError):
            await sock.join("room:2")
