"""Unit tests of the heartbeat's bookkeeping (the client's heartbeat is in test_client.py)."""

from __future__ import annotations

from stx_proto._heartbeat import Heartbeat


def test_heartbeat_bookkeeping() -> None:
    hb = Heartbeat(30.0, 10.0)
    assert (hb.interval, hb.timeout, hb.pending_ref, hb.last_rtt) == (30.0, 10.0, None, None)
    assert hb.sent("7", 100.0) == 110.0
    assert (hb.pending_ref, hb.sent_at) == ("7", 100.0)
    assert hb.acknowledge(100.25) == 0.25
    assert (hb.pending_ref, hb.last_rtt) == (None, 0.25)
    hb.sent("8", 130.0)
    hb.reset()
    # The last measurement is kept across connections.
    assert (hb.pending_ref, hb.last_rtt) == (None, 0.25)
