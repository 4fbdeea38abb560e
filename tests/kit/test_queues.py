"""Bounded queues and wake-ups, on each runtime."""

from __future__ import annotations

import anyio
import pytest

from stx_proto.driver import BoundedQueue, MessageQueue, Signal

from .conftest import Loop

pytestmark = pytest.mark.anyio

LIMIT = 5.0


async def test_signal_wakes_every_waiter(loop: Loop) -> None:
    signal = Signal(loop.runtime.event)
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await signal.wait()
        woken.append(n)

    with anyio.fail_after(LIMIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            tg.start_soon(waiter, 2)
            await anyio.wait_all_tasks_blocked()
            signal.set()  # one set wakes both: the first to wake re-arms it for later waits
    assert sorted(woken) == [1, 2]


async def test_a_closed_message_queue_takes_nothing(loop: Loop) -> None:
    with anyio.fail_after(LIMIT):
        drops: list[int] = []
        queue = MessageQueue(
            BoundedQueue(1, "drop_newest", "q", lambda: drops.append(1)), loop.runtime.event
        )
        queue.close()
        assert queue.put("x", "t") is True  # nobody reads it any more: not a loss
        queue.put_control("hook")
        assert queue.take_all() == [] and drops == []
