"""Busy-polling for push replies (``Socket(busy_poll=...)``), on every driver and event loop.

The socket's runtime is given a counting ``checkpoint`` and a scripted ``real_clock``, so that
the tests see exactly how many times a push's caller turned the loop while it waited, with no
dependence on how fast this machine is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

from stx_anyio.testing import TestServer
from stx_proto import UsageError
from stx_proto.driver import Channel, SocketBase
from stx_proto.driver.session import DEFAULT_BUSY_POLL, MAX_BUSY_POLL

from .support import LIMIT, Impl

pytestmark = pytest.mark.anyio


class Spins:
    """Counts the runtime's checkpoints per task (a push's spin is made of them)."""

    def __init__(self, impl: Impl) -> None:
        self._impl = impl
        self.by_task: Counter[object] = Counter()

    async def checkpoint(self) -> None:
        self.by_task[self._impl.runtime.current_task()] += 1
        await self._impl.runtime.checkpoint()

    def of_this_task(self) -> int:
        return self.by_task[self._impl.runtime.current_task()]


def counted_socket(
    impl: Impl, srv: TestServer, spins: Spins, clock: Callable[[], float] | None, **options: Any
) -> SocketBase:
    """A socket of ``impl`` whose runtime counts checkpoints and reads ``clock`` as real time."""
    runtime = attrs.evolve(impl.runtime, checkpoint=spins.checkpoint, real_clock=clock)
    counted: type[SocketBase] = type("Counted", (impl.Socket,), {"runtime": runtime})
    return counted(srv.url, timeout=2.0, **options)


async def test_a_push_turns_the_loop_until_its_reply_comes(impl: Impl, srv: TestServer) -> None:
    # The real clock stands still: only the reply ends the spin, and it comes (the loopback
    # server runs in this loop, on the caller's checkpoints).
    spins = Spins(impl)
    with anyio.fail_after(LIMIT):
        async with counted_socket(impl, srv, spins, lambda: 0.0) as sock:
            ch = await sock.join("room:1")
            for n in range(3):
                before = spins.of_this_task()
                assert await ch.push("echo", {"n": n}) == {"n": n}
                assert spins.of_this_task() > before


async def test_the_spin_ends_after_busy_poll_and_a_slow_server_stops_it(
    impl: Impl, srv: TestServer
) -> None:
    # Each reading of the scripted clock is a second later: a spin stops after its first
    # turn of the loop; the reply then took seconds, more than twice busy_poll, so the next
    # push sleeps at once. A quick reply after that starts the spinning again.
    spins = Spins(impl)
    seconds = iter(range(10**6))
    with anyio.fail_after(LIMIT):
        async with counted_socket(
            impl, srv, spins, lambda: float(next(seconds)), busy_poll=0.001
        ) as sock:
            ch = await sock.join("room:1")
            before = spins.of_this_task()
            assert await ch.push("echo", {"n": 1}) == {"n": 1}
            assert spins.of_this_task() == before + 1  # one turn, then the budget was spent
            assert await ch.push("echo", {"n": 2}) == {"n": 2}
            assert spins.of_this_task() == before + 1  # the last reply was slow: no spin
    frozen = Spins(impl)
    times = iter([0.0, 0.0005])  # a reply within twice busy_poll, then a stopped clock
    with anyio.fail_after(LIMIT):
        async with counted_socket(
            impl, srv, frozen, lambda: next(times, 0.0005), busy_poll=0.001
        ) as sock:
            ch = await sock.join("room:1")
            for n in range(2):
                before = frozen.of_this_task()
                assert await ch.push("echo", {"n": n}) == {"n": n}
                assert frozen.of_this_task() > before


async def test_one_caller_spins_at_a_time(impl: Impl, srv: TestServer) -> None:
    # Two pushes wait at once for held replies: one caller spins, the other sleeps.
    spins = Spins(impl)
    srv.phoenix.reply_delay = 0.05
    turns: dict[str, int] = {}

    async def push(ch: Channel, name: str) -> None:
        assert await ch.push("echo", {"who": name}) == {"who": name}
        turns[name] = spins.of_this_task()

    with anyio.fail_after(LIMIT):
        async with counted_socket(impl, srv, spins, lambda: 0.0) as sock:
            ch = await sock.join("room:1")
            async with anyio.create_task_group() as tg:
                tg.start_soon(push, ch, "one")
                tg.start_soon(push, ch, "other")
    # Whichever pushed first spun (trio does not promise which task starts first).
    sleeper, spinner = sorted(turns.values())
    assert sleeper == 0
    assert spinner > 1


@pytest.mark.parametrize(
    ("options", "clock"),
    [({"busy_poll": 0}, lambda: 0.0), ({}, None)],
    ids=["busy_poll=0", "runtime without a real clock"],
)
async def test_no_spin_when_off(
    impl: Impl, srv: TestServer, options: dict[str, float], clock: Callable[[], float] | None
) -> None:
    spins = Spins(impl)
    with anyio.fail_after(LIMIT):
        async with counted_socket(impl, srv, spins, clock, **options) as sock:
            ch = await sock.join("room:1")
            before = spins.of_this_task()
            for n in range(3):
                assert await ch.push("echo", {"n": n}) == {"n": n}
            assert spins.of_this_task() == before


async def test_busy_poll_is_checked(impl: Impl, srv: TestServer) -> None:
    assert 0 < DEFAULT_BUSY_POLL <= MAX_BUSY_POLL
    bad: Any
    for bad, says in (
        (-0.001, "busy_poll must be >= 0, got -0.001"),
        (MAX_BUSY_POLL * 2, f"busy_poll must be at most {MAX_BUSY_POLL} s"),
        ("fast", "busy_poll must be a number, got str"),
        (True, "busy_poll must be a number, got bool"),
        (float("inf"), "busy_poll must be finite"),
    ):
        with pytest.raises(UsageError, match=says):
            impl.Socket(srv.url, busy_poll=bad)
