"""The heartbeat's own bookkeeping (the client's heartbeat, on the virtual clock, is in
test_client.py)."""

from __future__ import annotations

import pytest

from stx_proto import UsageError
from stx_proto._codec import StdlibJsonCodec
from stx_proto._heartbeat import HEARTBEAT_KEY, HEARTBEAT_REPLY_KEY, Heartbeat
from stx_proto._outbox import Outbox
from stx_proto._serializer import V2Serializer
from stx_proto._timers import TimerKey, TimerQueue


def make(interval: float | None = 30.0, timeout: float | None = 10.0) -> Heartbeat | None:
    timers: TimerQueue[TimerKey] = TimerQueue()
    return Heartbeat.configured(
        interval, timeout, Outbox(), timers, V2Serializer(StdlibJsonCodec())
    )


def pending(hb: Heartbeat) -> str | None:
    return hb.pending_ref


def test_heartbeat_bookkeeping() -> None:
    hb = make()
    assert hb is not None
    assert (hb.interval, hb.timeout, hb.pending_ref, hb.last_rtt) == (30.0, 10.0, None, None)
    timers = hb._timers
    hb.start(100.0)
    assert timers.get(HEARTBEAT_KEY) == 130.0
    hb.due(130.0, 130.0)
    assert (hb.pending_ref, hb.sent_at) == ("1", 130.0)
    assert timers.get(HEARTBEAT_REPLY_KEY) == 140.0
    assert timers.get(HEARTBEAT_KEY) == 160.0
    assert not hb.answered(130.25, "1", "room:1")  # only the phoenix topic's reply counts
    assert not hb.answered(130.25, "2", "phoenix")
    assert hb.answered(130.25, "1", "phoenix")
    assert (hb.pending_ref, hb.last_rtt) == (None, 0.25)
    assert timers.get(HEARTBEAT_REPLY_KEY) is None
    hb.due(160.0, 160.0)
    hb.due(190.0, 190.0)  # still pending: no second heartbeat
    assert pending(hb) == "2"
    hb.due(400.0, 220.0)  # woke up late: the next one is an interval from now, no burst
    assert timers.get(HEARTBEAT_KEY) == 430.0
    hb.stop()
    # The last measurement is kept across connections.
    assert (hb.pending_ref, hb.last_rtt) == (None, 0.25)
    assert timers.get(HEARTBEAT_KEY) is None and timers.get(HEARTBEAT_REPLY_KEY) is None


def test_heartbeat_options() -> None:
    assert make(None, None) is None
    defaulted = make(20.0, None)
    assert defaulted is not None and defaulted.timeout == 20.0
    with pytest.raises(UsageError, match="heartbeat_timeout must be"):
        make(None, -1.0)
    with pytest.raises(UsageError, match="heartbeat_interval must be > 0"):
        make(0.0, None)
