"""Heartbeat: a fixed cadence of ``phoenix``/``heartbeat`` frames and a reply deadline.

The cadence is never reset by other traffic (a busy socket still heartbeats, so the server's
60 s idle timer never fires on a socket that is only receiving). A heartbeat whose reply has
not arrived by its own deadline means the connection is dead, however much else arrives.
"""

from __future__ import annotations


class Heartbeat:
    """Heartbeat bookkeeping for one connection; the client owns the timers."""

    __slots__ = ("interval", "last_rtt", "pending_ref", "sent_at", "timeout")

    def __init__(self, interval: float, timeout: float) -> None:
        self.interval = interval
        self.timeout = timeout
        self.pending_ref: str | None = None
        self.sent_at = 0.0
        self.last_rtt: float | None = None

    def reset(self) -> None:
        """Forget the pending heartbeat (the connection ended)."""
        self.pending_ref = None

    def sent(self, ref: str, now: float) -> float:
        """Record a heartbeat sent as ``ref``; returns its reply deadline."""
        self.pending_ref = ref
        self.sent_at = now
        return now + self.timeout

    def acknowledge(self, now: float) -> float:
        """The pending heartbeat was answered; returns (and records) the round-trip time."""
        self.pending_ref = None
        self.last_rtt = rtt = now - self.sent_at
        return rtt
