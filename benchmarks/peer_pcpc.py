"""phoenix-channels-python-client, received the way its docs say.

Run by side_by_side.py with the interpreter of its own virtual environment
(``.bench/venv-pcpc``), never with the project's. ``async with PHXChannelsClient(url,
api_key) as client`` and ``await client.subscribe_to_topic(topic, async_callback)``. Its
per-topic queue (``max_topic_queue_size``, 1,000 by default, drop-oldest) is raised to hold
the whole blast, so that every message reaches the callback. It has no push with a reply,
so it has no round trip. It drops vsn 2.0.0 messages whose join_ref is null (as Phoenix
broadcasts are) as stale, so the server sends it channel pushes carrying its join_ref.

    python peer_pcpc.py inbound --port N --count N
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_common import (  # noqa: E402
    EVENT,
    INBOUND,
    LAST_EVENT,
    TOPIC,
    Clock,
    emit,
    fail,
    inbound_result,
)


async def run(port: int, count: int) -> dict[str, Any]:
    """Time a blast of ``count`` messages to a subscription's callback that counts."""
    from phoenix_channels_python_client import PHXChannelsClient

    state: dict[str, Any] = {"n": 0, "done": None}

    async def on_message(message: Any) -> None:
        if message.event == EVENT:
            state["n"] += 1
        elif message.event == LAST_EVENT:
            state["n"] += 1
            state["done"].set_result(state["n"])

    async with PHXChannelsClient(
        f"ws://127.0.0.1:{port}/socket/websocket",
        "bench",
        max_topic_queue_size=count + 1000,
    ) as client:
        await client.subscribe_to_topic(TOPIC, on_message)
        # The client has no push API: the blast is requested on a second, raw connection.
        loop = asyncio.get_running_loop()
        for blast in (max(10, count // 10), count):  # a warm-up, then the measured one
            state["n"], state["done"] = 0, loop.create_future()
            clock = Clock()
            await request_blast(client, blast)
            got = await state["done"]
            wall, cpu = clock.elapsed()
            if got != blast:
                fail(f"counted {got} of {blast}")
    return inbound_result(count, wall, cpu)


async def request_blast(client: Any, count: int) -> None:
    """Ask the server for a blast on the client's own connection.

    The client exposes no push: the request is written as a raw Phoenix frame on its
    websockets connection (the reply, a ``phx_reply`` for a ref it did not send, is
    ignored by the client).
    """
    import json

    join_ref = client.get_current_subscriptions()[TOPIC].join_ref
    request = {"count": count, "join_ref": join_ref}
    frame = json.dumps([join_ref, f"blast-{count}", TOPIC, "blast", request])
    await client.connection.send(frame)


def main() -> None:
    """Parse the arguments, run, print the result line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=(INBOUND,))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    emit(asyncio.run(run(args.port, args.count)))


if __name__ == "__main__":
    main()
