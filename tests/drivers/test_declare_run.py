"""Declare, then run: ``subscribe`` before or after connecting, ``add_handler`` for every
message, ``arun()`` until closed or cancelled, hooks added and removed later, and the
channel's state and ``on_error``/``on_close`` hooks, on every driver and event loop."""

from __future__ import annotations

import anyio
import pytest

from stx_anyio import Channel
from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    ChannelMessage,
    GaveUpError,
    JoinError,
    RetryPolicy,
    UsageError,
)

from .support import LIMIT, Impl, frames, make_socket

pytestmark = pytest.mark.anyio


async def test_subscribe_before_running_then_arun_until_a_handler_closes(
    impl: Impl, srv: TestServer
) -> None:
    seen: list[tuple[str, str]] = []
    every: list[str] = []
    sock = make_socket(impl, srv)
    a, b = sock.subscribe(["room:a", "room:b"], {"depth": 5})
    assert a.state.value == "joining" and "subscribed" in repr(a)
    c = sock.subscribe("room:c", on_message=lambda m: seen.append((m.topic, m.event)))
    a.on("tick", lambda m: seen.append((m.topic, m.event)))

    def on_every(msg: ChannelMessage) -> None:
        every.append(msg.topic)

    assert sock.add_handler(on_every) is on_every
    with pytest.raises(UsageError, match="already subscribed"):
        sock.subscribe("room:a")

    async def stop(msg: ChannelMessage) -> None:
        if msg.event == "stop":
            await sock.close()

    sock.add_handler(stop)

    async def drive() -> None:
        await srv.wait_for_join("room:c")
        for topic in ("room:a", "room:c"):
            srv.phoenix.broadcast(topic, "tick", {})
        srv.phoenix.broadcast("room:b", "stop", {})

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            await sock.arun()
    assert sorted(seen) == [("room:a", "tick"), ("room:c", "tick")]
    assert sorted(every) == ["room:a", "room:b", "room:c"]
    assert [m.payload for m in frames(srv, "phx_join")] == [{"depth": 5}] * 2 + [{}]
    assert sorted(m.topic for m in frames(srv, "phx_leave")) == ["room:a", "room:b", "room:c"]
    assert [conn.close_code for conn in srv.phoenix.all_connections] == [1000]
    assert b.state.value == "closed" and c.closed
    with pytest.raises(UsageError, match="connects once"):
        await sock.arun()


async def test_a_cancelled_arun_closes_cleanly(impl: Impl, srv: TestServer) -> None:
    sock = make_socket(impl, srv)
    sock.subscribe("room:1")
    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sock.arun)
            await srv.wait_for_join("room:1")
            tg.cancel_scope.cancel()
    assert [m.topic for m in frames(srv, "phx_leave")] == ["room:1"]
    assert [conn.close_code for conn in srv.phoenix.all_connections] == [1000]


async def test_subscribe_after_connecting_and_arun_on_a_started_socket(
    impl: Impl, srv: TestServer
) -> None:
    srv.phoenix.refuse_joins["nope:1"] = {"reason": "denied"}
    closed: list[ChannelClosed] = []
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = sock.subscribe("room:1")
            assert isinstance(ch, Channel)
            refused = sock.subscribe("nope:1", on_close=closed.append)
            await srv.wait_for_join("room:1")
            async with anyio.create_task_group() as tg:
                tg.start_soon(sock.arun)  # waits for the close
                srv.phoenix.broadcast("room:1", "tick", {})
                async for msg in ch:
                    assert msg.event == "tick"
                    break
                with pytest.raises(JoinError):
                    async for _ in refused:
                        pass
                await sock.close()
    assert [e.reason for e in closed] == [ChannelCloseReason.JOIN_FAILED]


async def test_subscriptions_of_a_socket_closed_before_it_opened_end(
    impl: Impl, srv: TestServer
) -> None:
    port = srv.port
    await srv.stop()
    sock = impl.Socket(f"ws://127.0.0.1:{port}/socket")
    ch = sock.subscribe("room:1")
    with anyio.fail_after(LIMIT):
        await sock.connect()
        await sock.close()
        async for _ in ch:
            pass
    assert ch.state.value == "closed"


async def test_a_subscription_that_cannot_be_encoded_is_logged_and_closed(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    sock = make_socket(impl, srv)
    ch = sock.subscribe("room:1", {"bad": object()})
    with anyio.fail_after(LIMIT):
        await sock.connect()
        with pytest.raises(UsageError):
            async for _ in ch:
                pass
        await sock.close()
    assert "could not subscribe to 'room:1'" in caplog.text


async def test_hooks_added_and_removed_after_construction(impl: Impl, srv: TestServer) -> None:
    calls: list[str] = []
    opened = anyio.Event()

    def first() -> None:
        calls.append("first")

    def second() -> None:
        calls.append("second")
        opened.set()

    sock = make_socket(impl, srv, on_open=first)
    sock.add_hook("open", second)
    sock.add_hook("close", lambda event: calls.append(f"close {event.reason.value}"))
    with pytest.raises(UsageError, match="unknown hook kind"):
        sock.add_hook("opened", second)  # type: ignore[call-overload]
    with pytest.raises(UsageError, match="callable"):
        sock.add_hook("open", None)  # type: ignore[call-overload]
    with anyio.fail_after(LIMIT):
        async with sock:
            await opened.wait()
            sock.remove_hook("open", first)
            with pytest.raises(UsageError, match="no such"):
                sock.remove_hook("open", first)
            opened = anyio.Event()
            srv.drop_all()
            await opened.wait()
    assert calls == ["first", "second", "close transport_closed", "second", "close client_closed"]


async def test_remove_handler_and_queue_mode(impl: Impl, srv: TestServer) -> None:
    got: list[str] = []
    sock = make_socket(impl, srv)

    def everything(msg: ChannelMessage) -> None:
        got.append(msg.event)

    sock.add_handler(everything)
    sock.remove_handler(everything)
    with pytest.raises(UsageError, match="no such handler"):
        sock.remove_handler(everything)
    queued = make_socket(impl, srv, dispatch="queue")
    with pytest.raises(UsageError, match="queue"):
        queued.add_handler(everything)
    with pytest.raises(UsageError, match="queue"):
        queued.subscribe("room:1", on_message=everything)
    with anyio.fail_after(LIMIT):
        async with sock:
            ch = await sock.join("room:1")
            srv.phoenix.broadcast("room:1", "tick", {})
            async for msg in ch:
                assert msg.event == "tick"
                break
    assert got == []


async def test_channel_state_and_error_and_close_hooks(impl: Impl, srv: TestServer) -> None:
    errors: list[ChannelErrored] = []
    closes: list[ChannelClosed] = []
    errored = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:

            def on_error(event: ChannelErrored) -> None:
                errors.append(event)
                errored.set()

            ch = await sock.join("room:1", on_error=on_error, on_close=closes.append)
            assert ch.state.value == "joined"
            with pytest.raises(UsageError, match="presence"):
                ch.presence  # noqa: B018
            conn = await srv.wait_for_join("room:1")
            conn.send_error("room:1")
            await errored.wait()
            await srv.wait_for_join("room:1", 2)
            await ch.leave()
            assert ch.state.value == "closed"
        with pytest.raises(UsageError, match="callable"):
            await sock.join("room:2", on_error="nope")  # type: ignore[arg-type]
    assert [e.reason for e in errors] == ["phx_error"]
    assert [e.reason for e in closes] == [ChannelCloseReason.LEFT]


async def test_a_channel_replaced_while_leaving_says_leaving(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.reply_delay = 0.2
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            old = await sock.join("room:1")
            async with anyio.create_task_group() as tg:
                tg.start_soon(old.leave)
                await srv.wait_for_frame(lambda m: m.event == "phx_leave")
                new = sock.subscribe("room:1")
                assert old.state.value in ("leaving", "closed")
                assert new.state.value == "joining"


async def test_arun_raises_gave_up(impl: Impl, srv: TestServer) -> None:
    port = srv.port
    await srv.stop()
    sock = impl.Socket(
        f"ws://127.0.0.1:{port}/socket", retry=RetryPolicy(max_attempts=1, initial_backoff=0.01)
    )
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError):
        await sock.arun()
