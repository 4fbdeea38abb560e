"""Hostile servers (issue 13, item 4): what the user sees, row by row, on every driver.

Each test flips a switch of the loopback :class:`~stx_anyio.testing.TestServer` (or of its
:class:`~stx_proto.testing.PhoenixServer`) and checks what a bot would see through the public
API: the exception and its message, the hook calls, the counters, the time it took, and whether
the client tries again. Every row runs on ``stx_anyio`` over asyncio, ``stx_anyio`` over trio,
and ``stx_trio`` (the ``impl`` fixture).

=====================================  ===================================================
server does                            test
=====================================  ===================================================
HTTP 500 on upgrade                    test_http_500_*
101 without the accept header,         test_bad_handshake_*
garbage bytes instead of HTTP
accepts TCP, never answers             test_slowloris_*
a message over the maximum             test_message_over_the_maximum_*
invalid UTF-8 in a text frame          test_invalid_utf8_*
never completes the close handshake    test_close_handshake_never_completed_*
a flood faster than the consumer       test_flood_*
binary frames whose lengths overrun,   test_malformed_frames_*
deeply nested JSON
=====================================  ===================================================

Each row is written to the table; the rows that fell short of it (the joins that did not say
why they failed, F2's uncounted messages) failed before their fixes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import anyio
import pytest

import stx_anyio
import stx_trio
from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelMessage,
    Disconnected,
    DisconnectReason,
    QueueOverflowError,
    RetryPolicy,
    StxWsError,
)
from stx_proto.testing import OP_TEXT, ws_frame

pytestmark = pytest.mark.anyio

FAST = RetryPolicy(initial_backoff=0.05, max_backoff=0.1)
LIMIT = 8.0  # seconds any one test may take


@dataclass(frozen=True)
class Impl:
    """One driver on one event loop."""

    module: ModuleType
    backend: str  # the anyio backend the test runs on

    def socket(self, srv: TestServer, **options: Any) -> Any:
        """A socket of this driver to ``srv``, with short timeouts and fast reconnects."""
        options.setdefault("timeout", 2.0)
        options.setdefault("retry", FAST)
        return self.module.Socket(srv.url, **options)


IMPLS = {
    "anyio-asyncio": Impl(stx_anyio, "asyncio"),
    "anyio-trio": Impl(stx_anyio, "trio"),
    "trio": Impl(stx_trio, "trio"),
}


@pytest.fixture(params=list(IMPLS.values()), ids=list(IMPLS))
def impl(request: pytest.FixtureRequest) -> Impl:
    """The driver (and event loop) under test."""
    chosen: Impl = request.param
    return chosen


@pytest.fixture
def anyio_backend(impl: Impl) -> str:
    """The anyio backend of ``impl`` (overrides conftest's, which runs both for each test)."""
    return impl.backend


@pytest.fixture
async def srv() -> AsyncIterator[TestServer]:
    """A test server that accepts ``room:*`` (joins answered ok, pushes echoed)."""
    async with TestServer() as server:
        server.phoenix.route("room:*")
        yield server


@dataclass
class Seen:
    """What the hooks saw, with the time of each call on the test's clock."""

    start: float = field(default_factory=anyio.current_time)
    closes: list[tuple[float, Disconnected]] = field(default_factory=list)
    opens: list[float] = field(default_factory=list)
    rejoins: list[str] = field(default_factory=list)

    def hooks(self) -> dict[str, Callable[..., None]]:
        """The socket options that record into this object."""
        return {
            "on_close": lambda ev: self.closes.append((anyio.current_time(), ev)),
            "on_open": lambda: self.opens.append(anyio.current_time()),
            "on_rejoin": lambda ch: self.rejoins.append(ch.topic),
        }

    def elapsed(self, at: float) -> float:
        """Seconds from the start to ``at``."""
        return at - self.start


async def until(condition: Callable[[], object], timeout: float = 3.0, what: str = "") -> None:
    """Wait (polling every 5 ms) until ``condition()`` is true. Raises TimeoutError."""
    try:
        with anyio.fail_after(timeout):
            while not condition():
                await anyio.sleep(0.005)
    except TimeoutError:
        raise TimeoutError(f"not within {timeout} s: {what or condition}") from None


# --------------------------------------------------------------------------------------------
# HTTP 500 on upgrade: a handshake failure naming 500, within the join's timeout, with backoff


async def test_http_500_retries_with_backoff_and_names_the_status(
    impl: Impl, srv: TestServer
) -> None:
    srv.phoenix.refuse_handshake = 500
    seen = Seen()
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, **seen.hooks()) as sock:
            await until(lambda: len(seen.closes) >= 3, what="three refused attempts")
            assert not sock.connected
    events = [ev for _, ev in seen.closes[:3]]
    for ev in events:
        assert ev.reason is DisconnectReason.HANDSHAKE_REFUSED
        assert "500" in ev.detail
        assert ev.retry_at is not None  # it will try again
    statuses = [c.rejected_status for c in srv.phoenix.all_connections]
    assert statuses[:3] == [500, 500, 500]
    # Backoff: attempts are spaced by the policy's delay (jittered down to half of it).
    times = [t for t, _ in seen.closes[:3]]
    assert all(b - a >= FAST.initial_backoff * 0.5 * 0.9 for a, b in itertools.pairwise(times))


async def test_http_500_join_fails_within_its_timeout(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.refuse_handshake = 500
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv) as sock:
            start = anyio.current_time()
            with pytest.raises(StxWsError):
                await sock.join("room:a", timeout=0.5)
            assert anyio.current_time() - start < 0.5 + 0.5
    assert len(srv.phoenix.all_connections) >= 2  # it kept trying meanwhile


async def test_http_500_join_error_names_the_status(impl: Impl, srv: TestServer) -> None:
    srv.phoenix.refuse_handshake = 500
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv) as sock:
            with pytest.raises(StxWsError) as info:
                await sock.join("room:a", timeout=0.5)
    assert "500" in str(info.value)


# --------------------------------------------------------------------------------------------
# 101 without the accept header, or garbage: a protocol failure naming the handshake, within
# the connect timeout, with backoff

NO_ACCEPT = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
GARBAGE = b"\x00\xff\x13\x37 this is no HTTP\r\n\r\n"
BAD_ANSWERS = pytest.mark.parametrize("answer", [NO_ACCEPT, GARBAGE], ids=["no-accept", "garbage"])


@BAD_ANSWERS
async def test_bad_handshake_is_a_protocol_failure_and_retried(
    impl: Impl, srv: TestServer, answer: bytes
) -> None:
    srv.raw_handshake = answer
    seen = Seen()
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, connect_timeout=1.0, **seen.hooks()):
            await until(lambda: len(seen.closes) >= 3, what="three failed handshakes")
    at, first = seen.closes[0]
    assert first.reason is DisconnectReason.PROTOCOL_ERROR
    assert "handshake" in first.detail
    assert first.retry_at is not None
    assert seen.elapsed(at) < 1.0  # within the connect timeout (at once, in fact)
    assert len(srv.raw_requests) >= 3
    assert all(r.startswith(b"GET /socket/websocket?") for r in srv.raw_requests)
    assert not seen.opens


@BAD_ANSWERS
async def test_bad_handshake_join_error_names_the_handshake(
    impl: Impl, srv: TestServer, answer: bytes
) -> None:
    srv.raw_handshake = answer
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv) as sock:
            with pytest.raises(StxWsError) as info:
                await sock.join("room:a", timeout=0.5)
    assert "handshake" in str(info.value)


# --------------------------------------------------------------------------------------------
# Accepts TCP, never answers: a connect timeout, within the connect timeout, with backoff


async def test_slowloris_times_out_the_connect_and_retries(impl: Impl, srv: TestServer) -> None:
    srv.stall_handshake = True
    seen = Seen()
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, timeout=3.0, connect_timeout=0.3, **seen.hooks()):
            await until(lambda: len(seen.closes) >= 2, what="two connect timeouts")
    at, first = seen.closes[0]
    assert first.reason is DisconnectReason.CONNECT_TIMEOUT
    assert first.retry_at is not None
    assert 0.3 * 0.9 <= seen.elapsed(at) < 0.3 + 0.5
    assert len(srv.raw_requests) >= 2  # a second attempt, well within the join's timeout


async def test_slowloris_join_error_names_the_connect_timeout(impl: Impl, srv: TestServer) -> None:
    srv.stall_handshake = True
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, connect_timeout=0.2) as sock:
            with pytest.raises(StxWsError) as info:
                await sock.join("room:a", timeout=0.7)
    assert "connect" in str(info.value)


# --------------------------------------------------------------------------------------------
# A message over the maximum (close 1009) and invalid UTF-8 in a text frame (close 1007):
# at once, counted, and the client reconnects and rejoins


async def _fails_the_connection(
    impl: Impl, srv: TestServer, send: Callable[[Any], None], code: int, **options: Any
) -> None:
    seen = Seen()
    got: list[ChannelMessage] = []
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, **seen.hooks(), **options) as sock:
            await sock.join("room:a", on_message=got.append)
            conn = await srv.wait_for_join("room:a")
            sent_at = anyio.current_time()
            send(conn)
            await until(lambda: seen.closes, what="the connection to fail")
            at, ev = seen.closes[0]
            assert ev.reason is DisconnectReason.PROTOCOL_ERROR
            assert ev.code == code
            assert ev.retry_at is not None
            assert at - sent_at < 0.5  # at once
            await srv.wait_until(lambda: conn.closed, what="the old connection to end")
            assert conn.close_code == code  # the client said why, with the right close code
            await srv.wait_for_join("room:a", 2)  # reconnected and rejoined
            await until(lambda: seen.rejoins == ["room:a"], what="on_rejoin")
            assert sock.stats.reconnects == 1
            srv.phoenix.broadcast("room:a", "after", {})
            await until(lambda: [m.event for m in got] == ["after"], what="the next message")


async def test_message_over_the_maximum_closes_1009_and_reconnects(
    impl: Impl, srv: TestServer
) -> None:
    await _fails_the_connection(
        impl,
        srv,
        lambda conn: conn.broadcast("room:a", "big", {"blob": "x" * 2048}),
        1009,
        max_message_size=1024,
    )


async def test_invalid_utf8_in_a_text_frame_closes_1007_and_reconnects(
    impl: Impl, srv: TestServer
) -> None:
    await _fails_the_connection(
        impl, srv, lambda conn: conn.send_wire(ws_frame(OP_TEXT, b'["\xff\xfe"]')), 1007
    )


# --------------------------------------------------------------------------------------------
# Never completes the close handshake: the close ends after close_timeout, no retry


async def test_close_handshake_never_completed_ends_after_close_timeout(
    impl: Impl, srv: TestServer
) -> None:
    srv.phoenix.close_replies = False
    seen = Seen()
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, close_timeout=0.3, **seen.hooks()) as sock:
            await sock.join("room:a")
            conn = await srv.wait_for_join("room:a")
            start = anyio.current_time()
            await sock.close()
            took = anyio.current_time() - start
        await srv.wait_until(lambda: conn.closed, what="the client to close the stream")
    assert 0.3 * 0.9 <= took < 0.3 + 0.5
    assert conn.close_code == 1000  # the client did send its close frame
    assert len(srv.phoenix.all_connections) == 1  # and did not reconnect
    assert [ev.reason for _, ev in seen.closes] == [DisconnectReason.CLIENT_CLOSED]


async def test_close_handshake_answered_ends_before_close_timeout(
    impl: Impl, srv: TestServer
) -> None:
    # The contrast that makes the test above mean something: an answered close is quick.
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, close_timeout=2.0) as sock:
            await sock.join("room:a")
            start = anyio.current_time()
            await sock.close()
            assert anyio.current_time() - start < 1.0


# --------------------------------------------------------------------------------------------
# A flood faster than the consumer: bounded memory, every drop counted

FLOOD = 2000


async def _flood(srv: TestServer, sock: Any, n: int = FLOOD) -> None:
    conn = await srv.wait_for_join("room:a")
    for i in range(n):
        conn.broadcast("room:a", "tick", {"i": i})
    await until(lambda: sock.stats.messages >= n, what=f"{n} messages read")


async def test_flood_into_an_unread_channel_keeps_the_newest_and_counts_the_rest(
    impl: Impl, srv: TestServer
) -> None:
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, queue_size=50) as sock:
            ch = await sock.join("room:a")
            await _flood(srv, sock)
            assert sock.stats.messages == FLOOD
            assert sock.stats.dropped == FLOOD - 50
            got: list[int] = []
            async for msg in ch:
                got.append(msg.payload["i"])
                if len(got) == 50:
                    break
    assert got == list(range(FLOOD - 50, FLOOD))  # drop_oldest: the newest 50, in order


async def test_flood_into_a_slow_handler_is_bounded_and_every_drop_counted(
    impl: Impl, srv: TestServer
) -> None:
    release = anyio.Event()
    handled: list[int] = []

    async def slow(msg: ChannelMessage) -> None:
        await release.wait()
        handled.append(msg.payload["i"])

    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, queue_size=20, overflow="drop_newest") as sock:
            await sock.join("room:a", on_message=slow)
            await _flood(srv, sock)
            # Every message counted has also been handed on (queued, in the handler, or
            # dropped) before the handler is released: the pump may still be draining the
            # core's events of the last read when the count is reached.
            await until(lambda: sock.stats.dropped >= FLOOD - 21, what="the flood handed on")
            release.set()
            await until(
                lambda: len(handled) + sock.stats.dropped >= FLOOD,
                timeout=6.0,
                what=f"the handler to drain ({len(handled)} handled, {sock.stats!r})",
            )
            assert len(handled) <= 20 + 1  # the queue, and the one call in progress
            assert len(handled) + sock.stats.dropped == FLOOD
    # drop_newest: what got in was handled in order, the first ones before any loss.
    assert handled == sorted(handled)
    assert handled[:20] == list(range(20))


async def test_flood_with_overflow_error_accounts_for_every_message(
    impl: Impl, srv: TestServer
) -> None:
    delivered = 0
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, queue_size=5, overflow="error") as sock:
            ch = await sock.join("room:a")
            await _flood(srv, sock, 50)
            with pytest.raises(QueueOverflowError):
                async for _ in ch:
                    delivered += 1
            assert delivered == 5
            assert delivered + sock.stats.dropped == sock.stats.messages


# --------------------------------------------------------------------------------------------
# Binary frames whose lengths overrun, deeply nested JSON: the frame dropped and counted, at
# once, and the connection goes on

OVERRUN_PUSH = bytes([0, 200, 10, 10]) + b"short"  # join_ref of 200 bytes in a 9-byte frame
OVERRUN_REPLY = bytes([1, 1, 1, 7, 2]) + b"12room:aok"  # topic length 7 runs past the end
DEEP_JSON = "[" * 100_000 + "]" * 100_000


async def test_malformed_frames_are_dropped_counted_and_the_connection_goes_on(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    got: list[str] = []
    caplog.set_level(logging.WARNING)
    with anyio.fail_after(LIMIT):
        async with impl.socket(srv, **seen.hooks()) as sock:
            await sock.join("room:a", on_message=lambda m: got.append(m.event))
            conn = await srv.wait_for_join("room:a")
            for bad in (OVERRUN_PUSH, OVERRUN_REPLY, DEEP_JSON):
                conn.send_raw(bad)
            conn.broadcast("room:a", "after", {})
            await until(lambda: got == ["after"], what="the message after the bad frames")
            assert sock.stats.malformed_frames == 3
            assert sock.connected
            assert sock.stats.connections == 1
    assert not [ev for _, ev in seen.closes if ev.reason is not DisconnectReason.CLIENT_CLOSED]
    assert sum("malformed frame" in r.getMessage() for r in caplog.records) == 3
