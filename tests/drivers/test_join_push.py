"""Joining, pushing, leaving and closing, on every driver and event loop.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import itertools

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelCloseReason,
    ClientClosedError,
    ConnectionClosedError,
    JoinError,
    PushError,
    PushFailedError,
    PushTimeout,
    RetryPolicy,
    UsageError,
)

from .support import LIMIT, Impl, frames, make_socket

pytestmark = pytest.mark.anyio


async def test_join_push_and_reply(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1", {"since": 0})
            assert ch.joined and ch.topic == "room:1" and ch.join_response == {}
            assert "joined" in repr(ch)
            conn = await srv.wait_for_join("room:1")
            assert [m.payload for m in conn.received if m.event == "phx_join"] == [{"since": 0}]
            assert await ch.push("new_msg", {"body": "hi"}) == {"body": "hi"}
            assert await ch.push("bin", b"\x00\x01") == b"\x00\x01"  # binary both ways
            assert sock.connected


async def test_join_payload_callable_is_evaluated_at_each_join(impl: Impl, srv: TestServer) -> None:
    counter = itertools.count()
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            await sock.join("room:1", lambda: {"n": next(counter)})
            srv.drop_all()
            await srv.wait_for_join("room:1", 2)
    assert [m.payload for m in frames(srv, "phx_join")] == [{"n": 0}, {"n": 1}]


async def test_push_answered_with_error_raises_push_error(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.route("err:*", on_push=lambda msg, conn: ("error", {"reason": "nope"}))
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("err:1")
            with pytest.raises(PushError) as info:
                await ch.push("order", {"qty": 1})
            assert (info.value.status, info.value.response) == ("error", {"reason": "nope"})
            assert info.value.event == "order" and info.value.topic == "err:1"


async def test_push_timeout_with_delayed_reply(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            srv.phoenix.reply_delay = 0.5
            with pytest.raises(PushTimeout):
                await ch.push("echo", {"n": 1}, timeout=0.05)
            srv.phoenix.reply_delay = 0.0
            assert await ch.push("echo", {"n": 2}) == {"n": 2}


async def test_push_in_flight_when_the_connection_drops(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            srv.phoenix.reply_delay = 10.0
            async with anyio.create_task_group() as tg:

                async def push() -> None:
                    with pytest.raises(PushFailedError) as info:
                        await ch.push("echo", {"n": 1})
                    assert info.value.reason == "connection_lost"

                tg.start_soon(push)
                await srv.wait_for_frame(lambda m: m.event == "echo")
                srv.drop_all()


async def test_refused_join_raises_join_error(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.refuse_joins["room:secret"] = {"reason": "unauthorized"}
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            with pytest.raises(JoinError) as info:
                await sock.join("room:secret")
            assert info.value.response == {"reason": "unauthorized"}
            assert info.value.reason == "refused"
            with pytest.raises(JoinError) as unmatched:
                await sock.join("nowhere:1")  # no route on the server
            assert unmatched.value.response == {"reason": "unmatched topic"}
            # The socket goes on, and the refused topic can be joined again.
            del srv.phoenix.refuse_joins["room:secret"]
            assert (await sock.join("room:secret")).joined


async def test_join_timeout(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.route("mute:*", on_join=lambda topic, payload, conn: None)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            with pytest.raises(JoinError) as info:
                await sock.join("mute:1", timeout=0.1)
            assert info.value.reason == "timeout"


async def test_cancelled_join_leaves_the_channel(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.route("mute:*", on_join=lambda topic, payload, conn: None)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            with anyio.move_on_after(0.05):
                await sock.join("mute:1")
            await srv.wait_for_frame(lambda m: m.event == "phx_leave" and m.topic == "mute:1")


async def test_leave(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            await ch.leave()
            assert ch.closed and ch.close_reason is ChannelCloseReason.LEFT and not ch.joined
            assert "closed (left)" in repr(ch)
            assert [m.topic for m in frames(srv, "phx_leave")] == ["room:1"]
            await ch.leave()  # a no-op now
            with pytest.raises(UsageError):
                await ch.push("echo", {})
            assert [m async for m in ch] == []  # iteration of a left channel ends
            again = await sock.join("room:1")
            assert again.joined and again is not ch


async def test_clean_close_leaves_every_channel_then_closes_1000(
    impl: Impl, srv: TestServer
) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            await sock.join("room:1")
            await sock.join("room:2")
        conn = srv.phoenix.all_connections[-1]
        assert conn.close_code == 1000
        assert sorted(m.topic for m in conn.received if m.event == "phx_leave") == [
            "room:1",
            "room:2",
        ]
        assert not sock.connected
        with pytest.raises(ClientClosedError):
            await sock.join("room:3")
        await sock.close()  # a no-op


async def test_close_inside_the_block_and_wait_closed(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")

            async def closer() -> None:
                await sock.close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(closer)
                await sock.wait_closed()
            assert ch.closed and ch.close_reason is ChannelCloseReason.SOCKET_CLOSED
            with pytest.raises(ClientClosedError):
                await ch.push("echo", {})
        assert srv.phoenix.all_connections[-1].close_code == 1000


async def test_server_closing_a_channel_ends_its_iteration_with_an_error(
    impl: Impl, srv: TestServer
) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            conn = await srv.wait_for_join("room:1")
            conn.send_close("room:1")
            with pytest.raises(ConnectionClosedError):
                async for _ in ch:
                    pass
            assert ch.close_reason is ChannelCloseReason.SERVER_CLOSED


async def test_a_refused_leave_changes_nothing(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            with pytest.raises(UsageError, match="timeout"):
                await ch.leave(timeout=0)
            assert await ch.push("still", {"ok": 1}) == {"ok": 1}
            await ch.leave()
            assert ch.closed


async def test_a_cancelled_push_that_was_not_sent_never_goes_out(
    impl: Impl, srv: TestServer
) -> None:
    # A bot that times out on place_order and places it again must not place it twice.
    patient = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_refusals=None)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, retry=patient) as sock:
            ch = await sock.join("room:1")
            srv.phoenix.refuse_handshake = 403  # the reconnect waits: pushes are buffered
            srv.drop_all()
            while sock.connected:
                await anyio.sleep(0.01)
            with anyio.move_on_after(0.2):
                await ch.push("place_order", {"qty": 100})
            srv.phoenix.refuse_handshake = None
            await srv.wait_for_join("room:1", count=2)
            assert await ch.push("place_order", {"qty": 100}) == {"qty": 100}
    assert [m.payload for m in frames(srv, "place_order")] == [{"qty": 100}]
    assert not sock._session.router.waiting_pushes


async def test_a_cancelled_push_that_was_sent_is_forgotten(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.reply_delay = 60.0
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            with anyio.move_on_after(0.05):
                await ch.push("slow", {})
            assert not sock._session.router.waiting_pushes  # nobody waits for that reply any more
            srv.phoenix.reply_delay = 0.0
            assert await ch.push("fast", {"n": 1}) == {"n": 1}


async def test_a_leave_racing_close_from_another_task(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("room:1")
            session = sock._session
            session.client.close(impl.runtime.now())  # as if close() ran in another task
            session.abandon(ch._route)  # the cancelled-join path: must not raise nor leave
            assert not ch._route.leaving
