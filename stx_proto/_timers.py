"""A keyed timer queue: the core's only notion of time, and the kinds of deadline it holds.

Each key has at most one deadline. Re-arming a key replaces its deadline; cancelling forgets it.
The heap keeps stale entries and skips them lazily, so arming, cancelling and finding the next
deadline all stay O(log n) however many pushes are in flight.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerKind(enum.Enum):
    """What a deadline is for. A key is ``(kind, name)``: the topic of a channel's timers, the
    ref of a push's, and ``""`` for the connection's own."""

    HEARTBEAT = "heartbeat"  # the next heartbeat is due
    HEARTBEAT_REPLY = "heartbeat_reply"  # the pending heartbeat's reply is overdue
    CONNECT = "connect"  # open plus handshake took too long
    RECONNECT = "reconnect"  # the backoff is over: connect again
    CLOSE = "close"  # the server never answered our close frame
    JOIN = "join"  # a join (or rejoin attempt) got no reply in time
    REJOIN = "rejoin"  # an errored channel's backoff is over: rejoin it
    LEAVE = "leave"  # a leave got no reply in time
    PUSH = "push"  # a push got no reply in time
    PING = "ping"  # a channel's next keepalive ping is due (name: the topic)
    PING_REPLY = "ping_reply"  # a channel ping got no reply in time (name: the ping's ref)

    # Members are singletons compared by identity, so identity's hash (in C) is as right as
    # Enum's hash of the name (in Python), which every push paid several times over.
    __hash__ = object.__hash__


#: The deadlines of a channel, a push or a channel ping (the client hands them to its channels).
CHANNEL_TIMERS = frozenset(
    {
        TimerKind.JOIN,
        TimerKind.REJOIN,
        TimerKind.LEAVE,
        TimerKind.PUSH,
        TimerKind.PING,
        TimerKind.PING_REPLY,
    }
)

#: A timer key: the kind, and the topic, the push ref, or "" for the connection's timers.
TimerKey = tuple[TimerKind, str]

# Rebuild the heap when it holds more than this many times its live entries (plus slack).
_COMPACT_FACTOR = 2
_COMPACT_SLACK = 32


class TimerQueue(Generic[K]):
    """Deadlines (absolute floats on the caller's clock) keyed by ``K``."""

    __slots__ = ("_deadlines", "_heap", "_seq")

    def __init__(self) -> None:
        self._deadlines: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    def set(self, key: K, deadline: float) -> None:
        """Arm ``key`` for ``deadline``, replacing any deadline it had."""
        self._deadlines[key] = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, key))

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline, if it has one."""
        if self._deadlines.pop(key, None) is not None and len(self._heap) > _COMPACT_FACTOR * (
            len(self._deadlines) + _COMPACT_SLACK
        ):
            # Stale entries leave the heap only when they reach its top; with long push
            # timeouts behind a short heartbeat that can take minutes, so rebuild instead.
            deadlines = self._deadlines
            self._heap = [e for e in self._heap if deadlines.get(e[2]) == e[0]]
            heapq.heapify(self._heap)

    def get(self, key: K) -> float | None:
        """The deadline armed for ``key``, or None."""
        return self._deadlines.get(key)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when nothing is armed."""
        heap = self._heap
        deadlines = self._deadlines
        while heap:
            deadline, _, key = heap[0]
            if deadlines.get(key) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> tuple[K, float] | None:
        """Disarm the earliest key due by ``now``; return it with its deadline, or None."""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return None
        key = heapq.heappop(self._heap)[2]
        del self._deadlines[key]
        return key, deadline

    def clear(self) -> None:
        """Forget every deadline."""
        self._deadlines.clear()
        self._heap.clear()
