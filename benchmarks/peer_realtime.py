"""The realtime (Supabase) client, received and pushed the way its docs say.

Run by side_by_side.py with the interpreter of its own virtual environment
(``.bench/venv-realtime``: realtime pins an older websockets), never with the project's.
``AsyncRealtimeClient(url, token)``, ``client.channel(topic)``, ``channel.on_broadcast(event,
callback)``, ``await channel.subscribe()``; round trips are ``await channel.push(...)`` with
``push.receive("ok", callback)``. The server speaks vsn 1.0.0 (object frames) to it and
blasts Realtime broadcast envelopes on ``realtime:market_info``.

    python peer_realtime.py SCENARIO --port N --count N
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_common import (  # noqa: E402
    EVENT,
    INBOUND,
    LAST_EVENT,
    RTT,
    TOPIC,
    Clock,
    emit,
    fail,
    inbound_result,
    market_update,
    pushes_for,
    rtt_result,
)


async def push_and_wait(channel: Any, event: str, payload: dict[str, Any]) -> Any:
    """Push ``event`` and return the ok reply's response (an error reply fails the run)."""
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    push = await channel.push(event, payload)
    push.receive("ok", reply.set_result)
    push.receive("error", lambda response: reply.set_exception(RuntimeError(response)))
    return await reply


async def run(scenario: str, port: int, count: int) -> dict[str, Any]:
    """Run ``scenario`` against the server on ``port``; return the result."""
    from realtime import AsyncRealtimeClient

    client = AsyncRealtimeClient(f"ws://127.0.0.1:{port}/socket", token="bench")
    await client.connect()
    channel = client.channel(TOPIC)
    state: dict[str, Any] = {"n": 0, "done": None}

    def on_update(_payload: Any) -> None:
        state["n"] += 1

    def on_last(_payload: Any) -> None:
        state["n"] += 1
        state["done"].set_result(state["n"])

    channel.on_broadcast(EVENT, on_update).on_broadcast(LAST_EVENT, on_last)
    await channel.subscribe()
    try:
        if scenario == RTT:
            payload = market_update(0)
            warm, n = pushes_for(count)
            for _ in range(warm):
                await push_and_wait(channel, "echo", payload)
            samples = []
            now = time.perf_counter
            for _ in range(n):
                start = now()
                await push_and_wait(channel, "echo", payload)
                samples.append(now() - start)
            return rtt_result(samples)
        loop = asyncio.get_running_loop()
        for blast in (max(10, count // 10), count):  # a warm-up, then the measured one
            state["n"], state["done"] = 0, loop.create_future()
            clock = Clock()
            await push_and_wait(channel, "blast", {"count": blast, "shape": "realtime"})
            got = await state["done"]
            wall, cpu = clock.elapsed()
            if got != blast:
                fail(f"counted {got} of {blast}")
        return inbound_result(count, wall, cpu)
    finally:
        await client.close()


def main() -> None:
    """Parse the arguments, run, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=(INBOUND, RTT))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    emit(asyncio.run(run(args.scenario, args.port, args.count)))


if __name__ == "__main__":
    main()
