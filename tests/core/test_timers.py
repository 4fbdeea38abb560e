"""Unit tests of the keyed timer queue: ordering, re-arming, cancelling, compaction."""

from __future__ import annotations

from stx_proto._timers import TimerQueue


def test_timer_queue_empty() -> None:
    q: TimerQueue[str] = TimerQueue()
    assert len(q) == 0
    assert q.next_deadline() is None
    assert q.pop_due(1e9) is None
    assert q.get("x") is None


def test_timer_queue_orders_by_deadline_then_arming_order() -> None:
    q: TimerQueue[str] = TimerQueue()
    q.set("c", 3.0)
    q.set("a", 1.0)
    q.set("b1", 2.0)
    q.set("b2", 2.0)
    assert len(q) == 4
    assert q.next_deadline() == 1.0
    assert q.pop_due(0.5) is None  # nothing due yet
    assert q.pop_due(10.0) == ("a", 1.0)
    assert q.pop_due(10.0) == ("b1", 2.0)
    assert q.pop_due(10.0) == ("b2", 2.0)
    assert q.pop_due(2.5) is None
    assert q.pop_due(3.0) == ("c", 3.0)  # due exactly at its deadline
    assert len(q) == 0


def test_timer_queue_rearm_replaces_and_cancel_forgets() -> None:
    q: TimerQueue[str] = TimerQueue()
    q.set("k", 5.0)
    q.set("k", 1.0)  # earlier
    assert q.get("k") == 1.0
    assert q.next_deadline() == 1.0
    q.set("k", 9.0)  # later: the stale 1.0 and 5.0 heap entries are skipped
    assert len(q) == 1
    assert q.next_deadline() == 9.0
    assert q.pop_due(8.0) is None
    assert q.pop_due(9.0) == ("k", 9.0)
    assert q.pop_due(100.0) is None  # the stale entries never come out

    q.set("a", 1.0)
    q.set("b", 2.0)
    q.cancel("a")
    q.cancel("never-set")  # a no-op
    assert q.get("a") is None
    assert q.next_deadline() == 2.0
    q.clear()
    assert len(q) == 0
    assert q.next_deadline() is None


def test_timer_queue_rearm_to_the_same_deadline_fires_once() -> None:
    q: TimerQueue[str] = TimerQueue()
    q.set("k", 1.0)
    q.set("k", 1.0)
    assert q.pop_due(1.0) == ("k", 1.0)
    assert q.pop_due(1.0) is None


def test_timer_queue_compacts_cancelled_entries() -> None:
    timers: TimerQueue[str] = TimerQueue()
    timers.set("heartbeat", 1.0)
    for i in range(1000):
        timers.set(f"push{i}", 600.0 + i)
        timers.cancel(f"push{i}")
    assert len(timers) == 1
    assert len(timers._heap) < 100  # not 1001: cancelled entries do not pile up
    assert timers.next_deadline() == 1.0
    assert timers.pop_due(1.0) == ("heartbeat", 1.0)
    assert timers.next_deadline() is None
