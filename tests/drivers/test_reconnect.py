"""Reconnect, rejoin, heartbeat, giving up, and failures of the pump itself.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import trio

import stx_trio
from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelMessage,
    ConnectionClosedError,
    Disconnected,
    DisconnectReason,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    RetryPolicy,
)
from stx_proto.driver import (
    Channel,
)

from .support import LIMIT, Impl, frames, make_socket

pytestmark = pytest.mark.anyio


async def test_reconnect_after_a_drop_rejoins_every_channel(impl: Impl, srv: TestServer) -> None:
    rejoined: list[str] = []
    all_rejoined = anyio.Event()
    opens: list[int] = []
    closes: list[Disconnected] = []

    async def on_rejoin(channel: Channel) -> None:
        rejoined.append(channel.topic)
        if len(rejoined) == 3:
            all_rejoined.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl,
            srv,
            on_rejoin=on_rejoin,
            on_open=lambda: opens.append(1),
            on_close=closes.append,
        ) as sock:
            channels = [await sock.join(f"room:{n}") for n in range(3)]
            srv.phoenix.drop_all()
            await all_rejoined.wait()
            assert sorted(rejoined) == ["room:0", "room:1", "room:2"]
            assert all(ch.joined for ch in channels)
            assert sock.stats.reconnects == 1 and sock.stats.connections == 2
            assert await channels[0].push("echo", {"after": "reconnect"}) == {"after": "reconnect"}
            assert srv.phoenix.join_counts == {"room:0": 2, "room:1": 2, "room:2": 2}
            srv.phoenix.broadcast("room:1", "tick", {})
            assert (await anext(aiter(channels[1]))).event == "tick"
    assert len(opens) == 2
    assert [c.reason for c in closes] == [
        DisconnectReason.TRANSPORT_CLOSED,
        DisconnectReason.CLIENT_CLOSED,
    ]
    assert closes[0].retry_at is not None and closes[1].retry_at is None


async def test_server_close_frame_reconnects(impl: Impl, srv: TestServer) -> None:
    rejoined = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, on_rejoin=lambda ch: rejoined.set()) as sock:
            await sock.join("room:1")
            srv.phoenix.close_all(1001, "going away")
            await rejoined.wait()
    assert srv.phoenix.all_connections[0].close_code == 1001


async def test_heartbeat_timeout_is_detected(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.heartbeat_replies = False
    timed_out = anyio.Event()

    def on_close(event: Disconnected) -> None:
        if event.reason is DisconnectReason.HEARTBEAT_TIMEOUT:
            timed_out.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, heartbeat_interval=0.2, on_close=on_close) as sock:
            await sock.join("room:1")
            await timed_out.wait()
            srv.phoenix.heartbeat_replies = True
            await srv.wait_for_join("room:1", 2)  # reconnected and rejoined
    assert frames(srv, "heartbeat")


async def test_heartbeat_round_trip_time_is_measured(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, heartbeat_interval=0.05) as sock:
            ch = await sock.join("room:1")
            await srv.wait_for_frame(lambda m: m.event == "heartbeat")
            await ch.push("echo", {})  # replied after the heartbeat: its reply came first
            rtt = sock.stats.last_heartbeat_rtt
            assert rtt is not None and 0 <= rtt < 1
            assert "last_heartbeat_rtt=" in repr(sock.stats)


async def test_refused_handshake_gives_up(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.refuse_handshake = 403
    closes: list[Disconnected] = []
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_refusals=1)
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError) as info:
        async with make_socket(impl, srv, retry=retry, on_close=closes.append) as sock:
            await sock.join("room:1")
    cause = info.value.__cause__
    assert isinstance(cause, HandshakeRefusedError) and cause.status_code == 403
    assert [c.reason for c in closes] == [DisconnectReason.HANDSHAKE_REFUSED]
    with pytest.raises(GaveUpError):
        await sock.join("room:1")


async def test_gave_up_cancels_the_block(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.refuse_handshake = 403
    retry = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, max_refusals=2)
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError):
        async with make_socket(impl, srv, retry=retry):
            await anyio.sleep_forever()  # cancelled when the socket gives up


async def test_on_gave_up_hook_instead_of_raising(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.refuse_handshake = 503
    seen: list[GaveUpError] = []
    called = anyio.Event()

    async def on_gave_up(exc: GaveUpError) -> None:
        seen.append(exc)
        called.set()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, retry=None, on_gave_up=on_gave_up) as sock:
            with pytest.raises(GaveUpError):
                await sock.join("room:1")
            await called.wait()
            with pytest.raises(GaveUpError):
                await sock.wait_closed()
    assert len(seen) == 1 and isinstance(seen[0].__cause__, HandshakeRefusedError)


async def test_connection_refused_gives_up_with_the_reason(impl: Impl) -> None:
    async with TestServer() as srv:
        url = srv.url
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError) as info:
        async with impl.Socket(
            url, retry=RetryPolicy(max_attempts=1, initial_backoff=0.01)
        ) as sock:
            await sock.join("room:1")
    assert "connect failed" in str(info.value)
    assert not isinstance(info.value.__cause__, OSError)


async def test_phx_error_rejoins_and_a_refused_rejoin_is_retried(
    impl: Impl, srv: TestServer
) -> None:
    rejoined = anyio.Event()
    fast_rejoin = RetryPolicy(initial_backoff=0.01, max_backoff=0.02, max_refusals=None)
    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl, srv, rejoin=fast_rejoin, on_rejoin=lambda ch: rejoined.set()
        ) as sock:
            ch = await sock.join("room:1")
            conn = await srv.wait_for_join("room:1")
            srv.phoenix.refuse_joins["room:1"] = {"reason": "busy"}
            conn.send_error("room:1")
            # The first join, then at least two refused rejoins.
            await srv.wait_until(lambda: len(frames(srv, "phx_join")) >= 3, what="2 rejoins")
            joined_while_refused = ch.joined
            del srv.phoenix.refuse_joins["room:1"]
            await rejoined.wait()
            assert ch.joined and not joined_while_refused
            assert await ch.push("echo", {"n": 1}) == {"n": 1}


async def test_malformed_frames_are_counted_and_skipped(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=impl.logger)
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, heartbeat_interval=None) as sock:
            ch = await sock.join("room:1")
            conn = await srv.wait_for_join("room:1")
            conn.send_raw("this is not phoenix")
            srv.phoenix.broadcast("room:1", "tick", {"n": 1})
            assert (await anext(aiter(ch))).payload == {"n": 1}
            assert sock.stats.malformed_frames == 1
    assert "malformed frame" in caplog.text


@pytest.mark.parametrize("dispatch", ["inline", "queue"])
async def test_a_failing_pump_surfaces_as_connection_closed_error(
    impl: Impl,
    srv: TestServer,
    dispatch: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(now: float, data: bytes) -> None:
        raise RuntimeError("bug")

    caplog.set_level(logging.ERROR, logger=impl.logger)
    with anyio.fail_after(LIMIT), pytest.raises(ConnectionClosedError) as info:
        async with make_socket(impl, srv, dispatch=dispatch) as sock:
            ch = await sock.join("room:1")
            # Whichever the transport feeds: bytes (a stream) or whole messages (picows).
            monkeypatch.setattr(sock._session.client, "receive_data", broken)
            monkeypatch.setattr(sock._session.client, "receive_messages", broken)
            await ch.push("echo", {})
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "pump failed" in caplog.text
    with pytest.raises(ConnectionClosedError):
        await sock.join("room:2")
    if dispatch == "queue":  # the iteration of sock.messages() ends with the error too
        with pytest.raises(ConnectionClosedError):
            await anext(aiter(sock.messages()))


async def test_a_stuck_handler_cannot_hold_the_exit(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    started = anyio.Event()

    async def stuck(msg: ChannelMessage) -> None:
        started.set()
        await anyio.sleep_forever()

    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, close_timeout=0.1) as sock:
            await sock.join("room:1", on_message=stuck)
            srv.phoenix.broadcast("room:1", "tick", {})
            await started.wait()
    assert "handlers still running" in caplog.text


async def test_queue_dispatch_overflow_is_counted(impl: Impl, srv: TestServer) -> None:
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, dispatch="queue", queue_size=2) as sock:
            await sock.join("room:1")
            for n in range(4):
                srv.phoenix.broadcast("room:1", "tick", {"n": n})
            srv.phoenix.broadcast("room:1", "last", {"n": 4})
            # A stream transport may carry all five in one read; a message transport feeds
            # them one by one, each after the back-pressure pause: wait until all are in.
            while sock.stats.messages < 5:
                await anyio.sleep(0.005)
            got = []
            async for msg in sock.messages():
                got.append(msg.payload["n"])
                if msg.event == "last":
                    break
            assert got == [3, 4] and sock.stats.dropped == 3


async def test_gave_up_surfaces_through_a_task_group_in_the_block(
    impl: Impl, srv: TestServer
) -> None:
    # On trio, cancelling a body that holds a nursery reaches __aexit__ as an exception group
    # of Cancelled; the socket's GaveUpError must still be what the block raises.
    retry = RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.05)
    with anyio.fail_after(LIMIT), pytest.raises(GaveUpError):
        async with make_socket(impl, srv, retry=retry) as sock:
            await sock.join("room:1")
            if impl.module is stx_trio:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trio.sleep_forever)
                    srv.phoenix.refuse_handshake = 403
                    srv.drop_all()
                    await trio.sleep_forever()
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(anyio.sleep_forever)
                    srv.phoenix.refuse_handshake = 403
                    srv.drop_all()
                    await anyio.sleep_forever()


async def test_a_refused_rejoin_ends_the_channel_with_join_error_and_a_warning(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    # After a deploy the server may no longer know the topic: the channel is closed for good,
    # and its reader and the log say so instead of ending as if the user had left.
    srv.phoenix.route("market:*")
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv) as sock:
            ch = await sock.join("market:1")
            gone = {"reason": "unmatched topic"}  # what Phoenix answers for a removed route
            srv.phoenix.route("market:*", on_join=lambda t, p, c: ("error", gone))
            srv.drop_all()
            with pytest.raises(JoinError, match="rejoin refused") as info:
                async for _ in ch:
                    pass
    assert info.value.response == {"reason": "unmatched topic"}
    assert any(
        r.levelname == "WARNING" and "closed for good: join_failed" in r.getMessage()
        for r in caplog.records
    )
