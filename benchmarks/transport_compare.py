"""``transport="picows"`` (and uvloop) beside the default transport, end to end on loopback.

The same runs as ``driver_throughput.py`` (whose server and timing this script reuses): a
burst of ``--count`` ~300-byte market updates, framed beforehand and written by the loopback
test server in the same process, timed until the handler has handled the last one; then
sequential ``await ch.push(...)`` round trips, echoed by the server. Every line runs on
``stx_anyio`` with inline dispatch; the lines are interleaved (each round runs every line
once) and the best run of each line counts.

    python benchmarks/transport_compare.py            # full run
    python benchmarks/transport_compare.py --quick    # a smoke run (used by the test suite)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import anyio

import stx_anyio

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
from driver_throughput import (  # noqa: E402
    Outcome,
    Plan,
    _burst,
    _round_trips,
    _row,
    build_burst,
)

UVLOOP = {"use_uvloop": True}


def _socket(label: str, **defaults: Any) -> type[stx_anyio.Socket]:
    """``stx_anyio.Socket`` with other defaults (a transport, a JSON codec)."""

    class Configured(stx_anyio.Socket):
        def __init__(self, url: str, **options: Any) -> None:
            super().__init__(url, **{**defaults, **options})

    Configured.__name__ = Configured.__qualname__ = label
    return Configured


# (label, socket class, anyio backend options) of each line.
LINES: list[tuple[str, type[stx_anyio.Socket], dict[str, Any] | None]] = [
    ("tcp asyncio (default)", stx_anyio.Socket, None),
    ("tcp uvloop", stx_anyio.Socket, UVLOOP),
    ("tcp uvloop orjson", _socket("TcpOrjson", json="orjson"), UVLOOP),
    ("picows asyncio", _socket("Picows", transport="picows"), None),
    ("picows uvloop", _socket("Picows", transport="picows"), UVLOOP),
    ("picows uvloop orjson", _socket("PicowsOrjson", transport="picows", json="orjson"), UVLOOP),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per burst")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (the best run counts)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    args = parser.parse_args(argv)
    count, repeat = (300, 1) if args.quick else (args.count, args.repeat)
    if count < 10 or repeat < 1:
        parser.error("--count must be >= 10 and --repeat >= 1")
    frames = build_burst(count)
    pushes = max(count // 10, 1)
    bursts = {label: Outcome() for label, _, _ in LINES}
    trips = {label: Outcome() for label, _, _ in LINES}
    plan = Plan(frames, count, 1)
    for _ in range(repeat):
        for label, socket_class, options in LINES:
            one = anyio.run(
                _burst, socket_class, "inline", plan, backend="asyncio", backend_options=options
            )
            bursts[label].add(one.best, one.dropped)
            one = anyio.run(
                _round_trips, socket_class, pushes, 1, backend="asyncio", backend_options=options
            )
            trips[label].add(one.best, one.dropped)
    print(
        f"{count:,} market updates per burst, {len(frames) / count:.0f} bytes per frame; "
        f"{pushes:,} push round trips; best of {repeat} interleaved rounds\n"
    )
    print(f"{'burst (server -> handler)':<26} {'rate':>15} {'time':>14} {'dropped':>8}")
    for label, _, _ in LINES:
        _row(label, count, bursts[label], "msg")
    print(f"\n{'push round trips':<26} {'rate':>15} {'time':>14} {'dropped':>8}")
    for label, _, _ in LINES:
        _row(label, pushes, trips[label], "rt")


if __name__ == "__main__":
    main()
