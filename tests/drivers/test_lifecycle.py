"""Manual life cycle: ``await sock.connect()`` and ``await sock.close()`` without ``async
with``, on every driver and event loop; what the task that connected must do, enforced."""

from __future__ import annotations

import anyio
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelMessage,
    ChannelState,
    ClientClosedError,
    GaveUpError,
    RetryPolicy,
    SocketState,
    UsageError,
)

from .support import LIMIT, Impl, frames, make_socket

pytestmark = pytest.mark.anyio


async def test_connect_join_close_without_async_with(impl: Impl, srv: TestServer) -> None:
    got: list[ChannelMessage] = []
    seen = anyio.Event()

    def on_msg(msg: ChannelMessage) -> None:
        got.append(msg)
        seen.set()

    with anyio.fail_after(LIMIT):
        sock = make_socket(impl, srv)
        assert sock.state.value == "idle"
        await sock.connect()
        await sock.connect()  # idempotent
        ch = await sock.join("room:1", on_message=on_msg)
        assert (sock.state, ch.state) == (SocketState.OPEN, ChannelState.JOINED)
        srv.phoenix.broadcast("room:1", "tick", {"n": 1})
        await seen.wait()
        await sock.close()
        assert (sock.state, ch.state) == (SocketState.CLOSED, ChannelState.CLOSED)
        await sock.close()  # idempotent
        await sock.wait_closed()
    assert [m.event for m in got] == ["tick"]
    assert [m.topic for m in frames(srv, "phx_leave")] == ["room:1"]
    assert [c.close_code for c in srv.phoenix.all_connections] == [1000]
    with pytest.raises(UsageError, match="connects once"):
        await sock.connect()
    with pytest.raises(ClientClosedError):
        await sock.join("room:2")


async def test_close_from_another_task_is_refused_after_connect(
    impl: Impl, srv: TestServer
) -> None:
    errors: list[BaseException] = []
    with anyio.fail_after(LIMIT):
        sock = make_socket(impl, srv)
        await sock.connect()
        await sock.join("room:1")

        async def other() -> None:
            try:
                await sock.close()
            except UsageError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(other)
        assert sock.connected  # nothing happened
        await sock.close()
    assert len(errors) == 1 and "task that called connect()" in str(errors[0])


async def test_a_handler_may_close_a_manually_connected_socket(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        sock = make_socket(impl, srv)

        async def stop(msg: ChannelMessage) -> None:
            await sock.close()

        await sock.connect()
        await sock.join("room:1", on_message=stop)
        srv.phoenix.broadcast("room:1", "stop", {})
        await sock.wait_closed()
        assert sock.state.value == "closed"
        await sock.close()  # the connecting task still ends the socket's tasks
    assert [c.close_code for c in srv.phoenix.all_connections] == [1000]


async def test_close_before_connect_is_a_no_op(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        sock = make_socket(impl, srv)
        await sock.close()
        await sock.connect()
        assert (await sock.join("room:1")).joined
        await sock.close()


async def test_gave_up_after_connect_is_raised_by_the_next_call(
    impl: Impl, srv: TestServer
) -> None:
    port = srv.port
    await srv.stop()
    with anyio.fail_after(LIMIT):
        sock = impl.Socket(
            f"ws://127.0.0.1:{port}/socket",
            retry=RetryPolicy(max_attempts=1, initial_backoff=0.01),
        )
        await sock.connect()
        with pytest.raises(GaveUpError):
            await sock.wait_closed()
        with pytest.raises(GaveUpError):
            await sock.join("room:1")
        with pytest.raises(GaveUpError):
            await sock.close()
        await sock.close()  # raised once; now a no-op


async def test_reconnect_false_is_retry_none(impl: Impl, srv: TestServer) -> None:
    with pytest.raises(UsageError, match="not both"):
        impl.Socket(srv.url, retry=None, reconnect=False)
    with pytest.raises(UsageError, match="True or False"):
        impl.Socket(srv.url, reconnect="no")  # type: ignore[arg-type]
    impl.Socket(srv.url, reconnect=True)  # the default policy
    closed = anyio.Event()
    with anyio.fail_after(LIMIT):
        sock = impl.Socket(srv.url, reconnect=False, on_gave_up=lambda exc: closed.set())
        async with sock:
            await sock.join("room:1")
            srv.drop_all()
            await closed.wait()
            assert sock.state.value == "closed"
    assert len(srv.phoenix.all_connections) == 1
