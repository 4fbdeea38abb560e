"""Heartbeat: a fixed cadence of ``phoenix``/``heartbeat`` frames and a reply deadline.

The cadence is never reset by other traffic (a busy socket still heartbeats, so the server's
60 s idle timer never fires on a socket that is only receiving). A heartbeat whose reply has
not arrived by its own deadline means the connection is dead, however much else arrives: the
client's timer for it (``HEARTBEAT_REPLY``) then aborts the connection. Only the ``phoenix``
topic's reply acknowledges a heartbeat; a channel frame that happens to carry the same ref (a
buggy or hostile server) is routed like any other.
"""

from __future__ import annotations

from ._checks import real
from ._message import HEARTBEAT, PHOENIX_TOPIC
from ._outbox import Outbox
from ._serializer import Serializer
from ._timers import TimerKey, TimerKind, TimerQueue

#: The timer of the next heartbeat, and of the pending one's reply.
HEARTBEAT_KEY: TimerKey = (TimerKind.HEARTBEAT, "")
HEARTBEAT_REPLY_KEY: TimerKey = (TimerKind.HEARTBEAT_REPLY, "")


class Heartbeat:
    """The heartbeat of one client: its cadence, the pending heartbeat, the last round trip."""

    __slots__ = (
        "_out",
        "_serializer",
        "_timers",
        "interval",
        "last_rtt",
        "pending_ref",
        "sent_at",
        "timeout",
    )

    def __init__(
        self,
        interval: float,
        timeout: float,
        out: Outbox,
        timers: TimerQueue[TimerKey],
        serializer: Serializer,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self._out = out
        self._timers = timers
        self._serializer = serializer
        self.pending_ref: str | None = None
        self.sent_at = 0.0
        self.last_rtt: float | None = None

    @classmethod
    def configured(
        cls,
        interval: float | None,
        timeout: float | None,
        out: Outbox,
        timers: TimerQueue[TimerKey],
        serializer: Serializer,
    ) -> Heartbeat | None:
        """The heartbeat the client's options ask for: None when ``interval`` is None; the
        reply timeout defaults to the interval. Raises UsageError for bad values."""
        real("heartbeat_interval", interval, allow_none=True)
        if interval is None:
            real("heartbeat_timeout", timeout, allow_none=True)
            return None
        timeout = real("heartbeat_timeout", interval if timeout is None else timeout)
        return cls(interval, timeout, out, timers, serializer)

    def start(self, now: float) -> None:
        """The connection opened: the first heartbeat is due one interval from now."""
        self._timers.set(HEARTBEAT_KEY, now + self.interval)

    def stop(self) -> None:
        """The connection ended: no more heartbeats, and the pending one is forgotten."""
        self._timers.cancel(HEARTBEAT_KEY)
        self._timers.cancel(HEARTBEAT_REPLY_KEY)
        self.pending_ref = None

    def due(self, now: float, deadline: float) -> None:
        """The heartbeat timer fired: send one (unless one is still pending), arm its reply
        deadline, and arm the next on the fixed cadence."""
        if self.pending_ref is None:
            self.pending_ref = ref = self._out.next_ref()
            self.sent_at = now
            self._out.send(self._serializer.encode(None, ref, PHOENIX_TOPIC, HEARTBEAT, {}))
            self._timers.set(HEARTBEAT_REPLY_KEY, now + self.timeout)
        # A caller that woke up late does not get a burst of catch-up heartbeats.
        next_at = deadline + self.interval
        self._timers.set(HEARTBEAT_KEY, next_at if next_at > now else now + self.interval)

    def answered(self, now: float, ref: str, topic: str) -> bool:
        """True (and the round trip recorded) if a frame with ``ref`` on ``topic`` is the
        pending heartbeat's reply; False for any other frame."""
        if ref != self.pending_ref or topic != PHOENIX_TOPIC:
            return False
        self.pending_ref = None
        self.last_rtt = now - self.sent_at
        self._timers.cancel(HEARTBEAT_REPLY_KEY)
        return True
