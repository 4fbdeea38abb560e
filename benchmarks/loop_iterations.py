"""Event-loop iterations per push round trip, with and without busy-polling.

Starts blast_server.py in its own process (127.0.0.1, a free port) and, for each driver and
event loop, awaits sequential pushes to its echo while counting the loop's iterations: on
asyncio the calls of ``BaseEventLoop._run_once``, on trio the scheduler's turns (an
instrument's ``before_io_wait``, called once a turn). uvloop has no such hook and is left out.
Prints one row per client and ``busy_poll``: iterations per round trip and the mean round trip
(the counting on, so a little slower than ``make bench``'s).

    python benchmarks/loop_iterations.py [--pushes 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from bench_common import TOPIC, market_update  # noqa: E402
from side_by_side import BlastServer  # noqa: E402

WARM_UP = 200
BUSY_POLLS = (0.0001, 0.0)  # the default, and off


class Iterations:
    """A count of event-loop iterations, on asyncio or trio."""

    def __init__(self) -> None:
        self.n = 0

    def install_asyncio(self) -> Callable[[], None]:
        """Count ``_run_once`` calls of asyncio's own loops; return the undo."""
        # asyncio has no public hook into its iterations: wrap the method each one calls.
        loop_class: Any = asyncio.base_events.BaseEventLoop
        original = loop_class._run_once  # noqa: SLF001

        def run_once(loop: Any) -> None:
            self.n += 1
            original(loop)

        loop_class._run_once = run_once  # noqa: SLF001

        def undo() -> None:
            loop_class._run_once = original  # noqa: SLF001

        return undo

    def trio_instrument(self) -> Any:
        """A trio instrument that counts the scheduler's turns."""
        import trio

        counter = self

        class Turns(trio.abc.Instrument):
            def before_io_wait(self, timeout: float) -> None:
                counter.n += 1

        return Turns()


async def round_trips(
    socket_class: Any, url: str, busy_poll: float, pushes: int, it: Iterations
) -> tuple[float, list[float]]:
    """Push ``pushes`` times after a warm-up; return (iterations a push, round trips in s)."""
    payload = market_update(0)
    async with socket_class(url, busy_poll=busy_poll) as sock:
        ch = await sock.join(TOPIC)
        for _ in range(WARM_UP):
            await ch.push("echo", payload)
        samples: list[float] = []
        start = it.n
        for _ in range(pushes):
            t = time.perf_counter()
            await ch.push("echo", payload)
            samples.append(time.perf_counter() - t)
        return (it.n - start) / pushes, samples


def measure(client: str, url: str, busy_poll: float, pushes: int) -> tuple[float, list[float]]:
    """One client's iterations a push and round trips, on a new event loop."""
    it = Iterations()
    if client == "stx_trio trio":
        import trio

        import stx_trio

        async def on_trio() -> tuple[float, list[float]]:
            trio.lowlevel.add_instrument(it.trio_instrument())
            return await round_trips(stx_trio.Socket, url, busy_poll, pushes, it)

        return trio.run(on_trio)
    import anyio

    import stx_anyio

    if client == "stx_anyio trio":
        import trio

        async def on_anyio_trio() -> tuple[float, list[float]]:
            trio.lowlevel.add_instrument(it.trio_instrument())
            return await round_trips(stx_anyio.Socket, url, busy_poll, pushes, it)

        return anyio.run(on_anyio_trio, backend="trio")
    undo = it.install_asyncio()
    try:
        return anyio.run(round_trips, stx_anyio.Socket, url, busy_poll, pushes, it)
    finally:
        undo()


CLIENTS = ("stx_trio trio", "stx_anyio trio", "stx_anyio asyncio")


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, float]]:
    """Measure every client with and without busy-polling; print and return the rows
    (client, busy_poll, iterations a push, mean round trip in µs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="50 pushes each")
    args = parser.parse_args(argv)
    pushes = 50 if args.quick else args.pushes
    rows: list[tuple[str, float, float, float]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        BlastServer(1000, 100, Path(tmp) / "server.log") as server,
    ):
        url = f"ws://127.0.0.1:{server.port}/socket/websocket"
        print(f"{'client':<20} {'busy_poll':>9} {'iterations':>10} {'mean us':>8}")
        for client in CLIENTS:
            for busy_poll in BUSY_POLLS:
                per_push, samples = measure(client, url, busy_poll, pushes)
                mean = statistics.fmean(samples) * 1e6
                rows.append((client, busy_poll, per_push, mean))
                print(f"{client:<20} {busy_poll:>9g} {per_push:>10.1f} {mean:>8.0f}")
    return rows


if __name__ == "__main__":
    main()
