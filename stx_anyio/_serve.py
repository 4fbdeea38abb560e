"""``stx-ws serve``: the loopback test server with a synthetic market feed, for trying things out.

It is :class:`~stx_anyio.testing.TestServer` (a scripted Phoenix server, not Phoenix): every
join is accepted with ``{}``, every push is echoed back as an ``ok`` reply, and a made-up market
update is broadcast on each feed topic every ``interval`` seconds. The demo uses the same feed.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import NoReturn, TextIO

import anyio

from stx_proto.testing import PhoenixServer

from .testing import TestServer

#: The topics ``stx-ws serve`` feeds by default: STX's market channel and the usual Phoenix room.
DEFAULT_TOPICS = ("market_info", "room:lobby")
DEFAULT_INTERVAL = 0.5
DEFAULT_PORT = 4000
FEED_EVENT = "market_update"


def feed_server() -> PhoenixServer:
    """A scripted Phoenix server that accepts every join and echoes every push."""
    phoenix = PhoenixServer()
    phoenix.route("*")
    return phoenix


def market_update(seq: int) -> dict[str, object]:
    """The payload of update number ``seq`` of the synthetic feed (a bid and an offer)."""
    bid = 4500 + (seq * 7) % 40
    return {"seq": seq, "market_id": "nhl-tor-mtl", "bid": bid, "offer": bid + 60}


async def market_feed(phoenix: PhoenixServer, topics: Sequence[str], interval: float) -> NoReturn:
    """Broadcast a ``market_update`` on every topic of ``topics`` every ``interval`` seconds,
    forever (cancel the task to stop it). Clients not joined to a topic get nothing."""
    seq = 0
    while True:
        seq += 1
        payload = market_update(seq)
        for topic in topics:
            phoenix.broadcast(topic, FEED_EVENT, payload)
        await anyio.sleep(interval)


async def serve(
    out: TextIO,
    err: TextIO,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    interval: float = DEFAULT_INTERVAL,
    topics: Sequence[str] = DEFAULT_TOPICS,
) -> int:
    """Serve the feed on ``host``:``port`` (0 picks a free port) until cancelled.

    The socket URL is the first line written to ``out`` (so a script can read it); a status
    line goes to ``err``. Runs until SIGINT (Ctrl-C) or SIGTERM, then returns 0 (even when
    started in the background, where a shell ignores SIGINT). Raises OSError if the port
    cannot be listened on.
    """
    phoenix = feed_server()
    async with TestServer(phoenix, host=host, port=port) as server:
        print(server.url, file=out, flush=True)
        print(
            f"[stx-ws] test server: {FEED_EVENT} on {', '.join(topics)} every {interval:g} s; "
            "every join accepted, every push echoed. Ctrl-C to stop.",
            file=err,
            flush=True,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(market_feed, phoenix, topics, interval)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:  # pragma: no branch - the first signal ends it
                    break
            tg.cancel_scope.cancel()
    return 0
