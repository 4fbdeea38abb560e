"""What every benchmark client process shares: constants, measurements and the result line.

Standard library only: the two Python peers import this module from their own virtual
environments, where neither stx-ws nor its dependencies are installed.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

TOPIC = "market_info"  # the blast's topic (STX's market feed)
EVENT = "market_update"
LAST_EVENT = "market_update_last"  # the blast's last frame: same payload shape, own event
RESULT_PREFIX = "RESULT "

# The scenarios.
INBOUND = "inbound"  # a blast of market updates: msg/s and CPU per message
RTT = "rtt"  # sequential pushes to the echo: round trip median and p99
CHANNELS = "channels"  # memory with many joined channels, then the rejoin after a drop
SLOW = "slow"  # memory under a blast with a slow handler
ALL_SCENARIOS = (INBOUND, RTT, CHANNELS, SLOW)
JOIN_BATCH = 500  # joins in flight at once when a client joins thousands of channels

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far, in seconds."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_kb() -> int:
    """The peak resident set size of this process so far, in KiB (ru_maxrss on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_kb() -> int:
    """The current resident set size of this process, in KiB (from /proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE_KB


class Clock:
    """Wall and CPU time from its creation: start one right before the measured work."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = cpu_seconds()

    def elapsed(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) since the clock was started."""
        return time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``samples``, nearest rank; raises ValueError if empty."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[rank]


def inbound_result(count: int, wall: float, cpu: float) -> dict[str, Any]:
    """The result of an inbound run: ``count`` messages took ``wall`` s and ``cpu`` CPU s."""
    return {
        "msgs": count,
        "msg_per_s": count / wall,
        "cpu_us_per_msg": cpu / count * 1e6,
        "seconds": wall,
        "peak_rss_kb": peak_rss_kb(),
    }


def rtt_result(samples: Sequence[float]) -> dict[str, Any]:
    """The result of a round-trip run from its samples (seconds each)."""
    return {
        "pushes": len(samples),
        "median_us": percentile(samples, 0.5) * 1e6,
        "p99_us": percentile(samples, 0.99) * 1e6,
    }


def emit(result: dict[str, Any]) -> None:
    """Print ``result`` as the one line the orchestrator reads (RESULT_PREFIX + JSON)."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    """Report a failed run to the orchestrator and exit with status 1."""
    emit({"error": message})
    raise SystemExit(1)


def pushes_for(count: int) -> tuple[int, int]:
    """(warm-up pushes, measured pushes) for a round-trip run of ``count`` pushes."""
    return max(10, count // 10), count


def market_update(i: int) -> dict[str, object]:
    """A market update shaped like STX's market_info payloads (~300 bytes on the wire)."""
    return {
        "market_id": f"6f1c2a9e-4b7d-4e21-9c3a-{i % 1000:012d}",
        "status": "open",
        "bids": [{"price": 4500 + i % 50, "quantity": 120}, {"price": 4450, "quantity": 300}],
        "offers": [{"price": 4600 + i % 50, "quantity": 80}, {"price": 4650, "quantity": 210}],
        "last_traded_price": 4550,
        "volume_24h": 1_204_330 + i,
        "updated_at": "2026-11-23T16:20:00.123456Z",
    }
