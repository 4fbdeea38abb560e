"""End-to-end throughput of the drivers over real loopback sockets (127.0.0.1 only).

The loopback test server (``stx_anyio.testing.TestServer``) runs in the same process. For a
burst it writes ``--count`` ~300-byte market updates, broadcast to one joined channel, as
WebSocket frames encoded once beforehand, so the server's JSON encoding and framing are not
timed (its socket writes are). A burst is timed from the moment it is handed to the server to
the moment the client's handler (or ``sock.messages()`` reader) has handled its last message.
Push round trips are sequential ``await ch.push(...)``: there the server's decoding and its
echo reply are part of every round trip.

    python benchmarks/driver_throughput.py            # full run
    python benchmarks/driver_throughput.py --quick    # a smoke run (used by the test suite)
    python benchmarks/driver_throughput.py --profile  # cProfile of one stx_anyio asyncio burst
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import attrs

import stx_anyio
import stx_trio
from stx_anyio.testing import TestServer
from stx_proto import ChannelMessage
from stx_proto.testing import PhoenixServer, ServerConnection

# The market updates are core_throughput's: the benchmarks directory is not a package.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from core_throughput import TOPIC, joined_client, market_update  # noqa: E402

EVENT = "market_update"
LAST_EVENT = "market_update_last"  # the burst's last frame: same payload shape, own event
LIMIT = 60.0  # seconds one driver's runs (setup, every repetition, close) may take

SocketClass = type[stx_anyio.Socket] | type[stx_trio.Socket]


class BurstConnection(ServerConnection):
    """A server connection that can also write bytes framed beforehand, as they are."""

    def __init__(self, server: PhoenixServer) -> None:
        super().__init__(server)
        self._burst = b""

    def send_burst(self, frames: bytes) -> None:
        """Have ``frames`` (whole server-to-client WebSocket frames) written after what is
        pending; wakes the test server's writer."""
        self._burst += frames
        if self.on_output is not None:
            self.on_output()

    def data_to_send(self) -> bytes:
        """What the server has queued, then the burst (returned once)."""
        out = super().data_to_send()
        if self._burst:
            out, self._burst = (out + self._burst if out else self._burst), b""
        return out


class BurstServer(PhoenixServer):
    """A :class:`PhoenixServer` (accepting every join) whose connections can send bursts."""

    def __init__(self) -> None:
        super().__init__()
        self.route("*")

    def connect(self) -> ServerConnection:
        """A new :class:`BurstConnection`, registered like the base class's connections."""
        conn = BurstConnection(self)
        self.connections.append(conn)
        self.all_connections.append(conn)
        return conn


def build_burst(count: int) -> bytes:
    """``count`` fastlane broadcasts to TOPIC as WebSocket frames (server to client).

    Broadcasts carry no join_ref, and server frames are unmasked, so the same bytes suit any
    client joined to TOPIC. The last one has event LAST_EVENT, so a client knows it is the end.
    """
    server = PhoenixServer()
    server.route("*")
    conn = joined_client("stdlib", server).connection
    assert conn is not None
    for i in range(count - 1):
        conn.broadcast(TOPIC, EVENT, market_update(i))
    conn.broadcast(TOPIC, LAST_EVENT, market_update(count - 1))
    return conn.data_to_send()


class Sink:
    """Counts handled messages and notes when the burst is complete."""

    def __init__(self, count: int, dropped: Callable[[], int]) -> None:
        self.count = count
        self._dropped = dropped
        self.handled = 0
        self.base = 0
        self.end = 0.0
        self.done = anyio.Event()

    def reset(self) -> None:
        """Ready for the next burst."""
        self.handled = 0
        self.base = self._dropped()
        self.end = 0.0
        self.done = anyio.Event()

    def dropped(self) -> int:
        """Messages of this burst lost to a full queue."""
        return self._dropped() - self.base

    def __call__(self, msg: ChannelMessage) -> None:
        self.handled += 1
        # A lost message (counted in stats.dropped) is never handled: the last message, once
        # handled, says when to add the drops up. Without drops, the count alone is enough
        # (whatever order the handlers ran in).
        if (self.handled == self.count or msg.event == LAST_EVENT) and (
            self.handled + self.dropped() >= self.count
        ):
            self.end = time.perf_counter()
            self.done.set()


class Outcome:
    """The best of a driver's runs, and what they lost."""

    def __init__(self) -> None:
        self.best = float("inf")
        self.dropped = 0

    def add(self, elapsed: float, dropped: int) -> None:
        self.best = min(self.best, elapsed)
        self.dropped += dropped


@attrs.frozen(slots=True)
class Plan:
    """What each driver runs: ``repeat`` bursts of ``count`` messages, framed in ``frames``."""

    frames: bytes
    count: int
    repeat: int


async def _burst(
    socket_class: SocketClass,
    dispatch: stx_anyio.Dispatch,
    plan: Plan,
    profiler: cProfile.Profile | None = None,
) -> Outcome:
    count = plan.count
    outcome = Outcome()
    with anyio.fail_after(LIMIT):
        async with (
            TestServer(BurstServer()) as server,
            socket_class(server.url, dispatch=dispatch) as sock,
        ):
            sink = Sink(count, lambda: sock.stats.dropped)
            queue = dispatch == "queue"
            await sock.join(TOPIC, on_message=None if queue else sink)
            conn = await server.wait_for_join(TOPIC)
            assert isinstance(conn, BurstConnection)
            messages = sock.messages() if queue else None
            for _ in range(plan.repeat):
                sink.reset()
                if profiler is not None:
                    profiler.enable()
                start = time.perf_counter()
                conn.send_burst(plan.frames)
                if messages is None:
                    await sink.done.wait()
                else:
                    async for msg in messages:
                        sink(msg)
                        if sink.done.is_set():
                            break
                if profiler is not None:
                    profiler.disable()
                if sink.handled + sink.dropped() != count:
                    raise SystemExit(f"burst: {sink.handled} handled + {sink.dropped()} dropped")
                outcome.add(sink.end - start, sink.dropped())
    return outcome


async def _round_trips(socket_class: SocketClass, count: int, repeat: int) -> Outcome:
    outcome = Outcome()
    payload = market_update(0)
    with anyio.fail_after(LIMIT):
        async with TestServer(BurstServer()) as server, socket_class(server.url) as sock:
            ch = await sock.join(TOPIC)
            for _ in range(repeat):
                start = time.perf_counter()
                for _ in range(count):
                    reply = await ch.push("echo", payload)
                outcome.add(time.perf_counter() - start, 0)
                if reply != payload:
                    raise SystemExit(f"push: the echo {reply!r} is not the payload")
            outcome.dropped = sock.stats.dropped
    return outcome


# (label, socket class, anyio backend, dispatch) of each burst run.
BURSTS: list[tuple[str, SocketClass, str, stx_anyio.Dispatch]] = [
    ("stx_anyio asyncio inline", stx_anyio.Socket, "asyncio", "inline"),
    ("stx_anyio asyncio task", stx_anyio.Socket, "asyncio", "task"),
    ("stx_anyio asyncio queue", stx_anyio.Socket, "asyncio", "queue"),
    ("stx_anyio trio inline", stx_anyio.Socket, "trio", "inline"),
    ("stx_trio inline", stx_trio.Socket, "trio", "inline"),
]
# stx_trio runs in anyio's trio runner: the test server is anyio code, and on trio anyio is
# trio itself underneath.
ROUND_TRIPS: list[tuple[str, SocketClass, str]] = [
    ("stx_anyio asyncio", stx_anyio.Socket, "asyncio"),
    ("stx_trio", stx_trio.Socket, "trio"),
]


def _row(label: str, count: int, outcome: Outcome, unit: str) -> None:
    rate = count / outcome.best
    note = "" if outcome.dropped == 0 else "  <- dropped: a queue overflowed"
    print(
        f"{label:<26} {rate:>9,.0f} {unit}/s {outcome.best / count * 1e6:>8.2f} us/{unit}"
        f" {outcome.dropped:>8,}{note}"
    )


def profile(frames: bytes, count: int, top: int = 10) -> str:
    """Profile one stx_anyio asyncio inline burst; return the ``top`` functions by tottime."""
    profiler = cProfile.Profile()
    plan = Plan(frames, count, 1)
    anyio.run(_burst, stx_anyio.Socket, "inline", plan, profiler, backend="asyncio")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per burst")
    parser.add_argument("--repeat", type=int, default=5, help="runs per line (the best counts)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--profile", action="store_true", help="cProfile one asyncio burst")
    args = parser.parse_args(argv)
    count, repeat = (500, 1) if args.quick else (args.count, args.repeat)
    if count < 10 or repeat < 1:
        parser.error("--count must be >= 10 and --repeat >= 1")

    frames = build_burst(count)
    plan = Plan(frames, count, repeat)
    if args.profile:
        print(profile(frames, count))
        return
    print(
        f"{count:,} market updates per burst, {len(frames) / count:.0f} bytes per WebSocket "
        f"frame, best of {repeat}\nloopback TCP, test server in the same process; it writes "
        "frames encoded beforehand (server encoding not timed)\ndropped: stats.dropped over "
        "all the runs of a line (default queue sizes)\n"
    )
    print(f"{'burst (server -> handler)':<26} {'rate':>15} {'time':>14} {'dropped':>8}")
    for label, socket_class, backend, dispatch in BURSTS:
        outcome = anyio.run(_burst, socket_class, dispatch, plan, backend=backend)
        _row(label, count, outcome, "msg")

    pushes = count // 10
    print(
        f"\n{'push round trips':<26} {'rate':>15} {'time':>14} {'dropped':>8}"
        f"\n({pushes:,} sequential `await ch.push` of ~300 bytes, echoed; server time included)"
    )
    for label, socket_class, backend in ROUND_TRIPS:
        outcome = anyio.run(_round_trips, socket_class, pushes, repeat, backend=backend)
        _row(label, pushes, outcome, "rt")


if __name__ == "__main__":
    main()
