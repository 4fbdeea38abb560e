"""The STX test server on loopback: server-wide timers on the loop, and a signed connect."""

from __future__ import annotations

import time

import anyio
import pytest

from stx_anyio import Socket
from stx_anyio.testing import TestServer
from stx_proto import load_private_key, sign_request, user_agent
from stx_proto.testing import PhoenixServer, StxServer

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0


class AlarmServer(PhoenixServer):
    """A server with one server-wide alarm, set by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.alarm: float | None = None
        self.fired: list[float] = []

    def set_alarm(self, when: float) -> None:
        self.alarm = when
        self.timers_changed()

    def next_deadline(self) -> float | None:
        return self.alarm

    def handle_timer(self, now: float) -> None:
        if self.alarm is not None and self.alarm <= now:
            self.fired.append(now)
            self.alarm = None


async def test_the_test_server_fires_server_wide_timers(anyio_backend: str) -> None:
    phoenix = AlarmServer()
    with anyio.fail_after(TIMEOUT):
        async with TestServer(phoenix) as server:
            await anyio.sleep(0)  # the timer task is waiting, with no deadline
            start = anyio.current_time()
            phoenix.set_alarm(start + 0.05)  # wakes the timer task
            fired = await server.wait_until(lambda: phoenix.fired or None, what="the alarm")
            assert fired[0] >= start + 0.05
            phoenix.set_alarm(anyio.current_time() - 1)  # already due
            await server.wait_until(lambda: len(phoenix.fired) == 2, what="the second alarm")
        assert phoenix.on_timers_changed is None


async def test_a_signed_connect_over_loopback(anyio_backend: str) -> None:
    stx = StxServer(clock=time.time)
    key_id, pem = stx.new_api_key("u-1")
    key = load_private_key(pem)

    def headers() -> tuple[tuple[str, str], ...]:
        stamp = time.time_ns() // 1_000_000
        return (*sign_request(key_id, key, stamp), ("User-Agent", user_agent()))

    with anyio.fail_after(TIMEOUT):
        async with TestServer(stx) as server, Socket(server.url, headers=headers) as sock:
            orders = await sock.join(
                "orders:u-1", {"cancel_on_disconnect": True, "ping_timeout": 1}
            )
            assert orders.join_response == {"cancel_on_disconnect": True, "ping_timeout": 5000}
            assert await orders.push("ping", {}) == {}
            conn = server.connections[0]
            assert stx.user_of(conn) == "u-1"
            assert dict(conn.request_headers)["user-agent"].startswith("stx-ws/")
            await orders.leave()
            assert stx.armed("orders:u-1") is None
