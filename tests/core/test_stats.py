"""Unit tests of the core's counters."""

from __future__ import annotations

from stx_proto._stats import CoreStats


def test_core_stats_repr() -> None:
    stats = CoreStats()
    stats.messages = 3
    assert repr(stats) == (
        "CoreStats(connections=0, malformed_frames=0, messages=3, ping_failures=0, "
        "stale_dropped=0, unknown_topic_dropped=0)"
    )
