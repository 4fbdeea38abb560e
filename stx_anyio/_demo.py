"""``stx-ws demo``: a live market feed, a cut connection, and the resubscribe that follows.

Everything runs on this machine: the Phoenix test server listens on 127.0.0.1 on a free port.
"""

from __future__ import annotations

from typing import Any, TextIO

import anyio

from stx_anyio import ChannelMessage, Disconnected, RetryPolicy, Socket, UsageError

from ._serve import feed_server, market_feed
from .testing import TestServer

TOPIC = "market_info"
FEED_INTERVAL = 0.15


async def demo(updates: int, out: TextIO) -> int:
    """Run the demo, printing to ``out``: ``updates`` market updates (at least 1) before the
    cut and as many after it. Returns the exit status (0); raises TimeoutError if it takes
    over a minute and UsageError if ``updates`` is below 1."""
    if updates < 1:
        raise UsageError(f"updates must be at least 1, got {updates}")

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    phoenix = feed_server()
    seen = 0
    first_phase, second_phase = anyio.Event(), anyio.Event()

    def on_update(msg: ChannelMessage) -> None:
        nonlocal seen
        seen += 1
        p = msg.payload
        say(f"  #{p['seq']:<3} {msg.topic} {p['market_id']} bid {p['bid']} offer {p['offer']}")
        if seen == updates:
            first_phase.set()
        elif seen == 2 * updates:
            second_phase.set()

    def on_close(event: Disconnected) -> None:
        say(f"-- disconnected: {event.describe(anyio.current_time())}")

    def on_rejoin(channel: Any) -> None:
        say(f"-- rejoined {channel.topic}: updates sent while we were away were missed;")
        say("   a real bot reconciles over HTTP here")

    with anyio.fail_after(60):
        async with TestServer(phoenix) as server:
            say(f"Phoenix test server on {server.url}")
            retry = RetryPolicy(initial_backoff=0.5, max_backoff=2.0)
            async with (
                Socket(
                    server.url,
                    retry=retry,
                    on_open=lambda: say("-- connected"),
                    on_close=on_close,
                    on_rejoin=on_rejoin,
                ) as sock,
                anyio.create_task_group() as tg,
            ):
                await sock.join(TOPIC, on_message=on_update)
                say(f"-- joined {TOPIC}; the feed starts")
                tg.start_soon(market_feed, phoenix, [TOPIC], FEED_INTERVAL)
                await first_phase.wait()
                say("-- the network cuts the connection (no close frame)")
                server.drop_all()
                await second_phase.wait()
                tg.cancel_scope.cancel()
                say("-- leaving: phx_leave for each channel, then close 1000")
            say(f"-- closed cleanly; {seen} updates received, one reconnect, one resubscribe")
    return 0
