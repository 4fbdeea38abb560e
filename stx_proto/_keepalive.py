"""Channel pings: a keepalive per channel, on the core's one timer heap.

Some servers (STX's current API) want a ``ping`` push on every joined channel, and a market
maker's orders channel with cancel-on-disconnect must be pinged within a granted time, or the
server cancels the orders. A late ping costs money, so its deadline is a timer here, tested
on the virtual clock, never a driver's sleep loop.

Theory of operation
-------------------
A channel's :class:`PingPlan` comes from its join reply (``plan_for``): a fixed interval, or a
callable that reads the reply (cancel-on-disconnect's granted time is in it). From each join
or rejoin reply, a ping goes out every ``interval`` seconds on a fixed cadence (like the
heartbeat, never reset by other traffic), until the channel leaves, errors, closes or the
connection drops. Each ping waits ``timeout`` seconds for its reply; a ping unanswered in time,
or answered with an error, is a :class:`~stx_proto.ChannelPingFailed` and counted, never
fatal. So the gap between two pings the server sees is at most ``interval``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from ._events import ChannelPingFailed
from ._outbox import Outbox
from ._serializer import Serializer
from ._stats import CoreStats
from ._timers import TimerKey, TimerKind, TimerQueue

_PING = TimerKind.PING
_PING_REPLY = TimerKind.PING_REPLY

#: The event of a channel ping; its payload is ``{}``.
PING_EVENT = "ping"


@attrs.frozen(slots=True)
class PingPlan:
    """Ping every ``interval`` seconds; a reply later than ``timeout`` seconds is a failure."""

    interval: float
    timeout: float


class DefaultPing(enum.Enum):
    """The type of :data:`DEFAULT_PING`."""

    DEFAULT = "default"


#: ``join(ping=...)`` left out: the client's ``channel_ping_interval`` applies.
DEFAULT_PING = DefaultPing.DEFAULT

#: What a channel is pinged with: a plan, a number (the interval; the reply timeout is the
#: channel's), a callable reading the join reply and returning either (or None: no pings for
#: this join), or None (no pings).
PingSpec = PingPlan | float | Callable[[Any], "PingPlan | float | None"] | None


class Keepalive:
    """The pings of one client's channels. See the module docstring."""

    __slots__ = ("_out", "_refs", "_serializer", "_stats", "_timers", "plans")

    def __init__(
        self, out: Outbox, timers: TimerQueue[TimerKey], serializer: Serializer, stats: CoreStats
    ) -> None:
        self._out = out
        self._timers = timers
        self._serializer = serializer
        self._stats = stats
        #: The current join's plan, by topic (only for channels being pinged).
        self.plans: dict[str, PingPlan] = {}
        self._refs: dict[str, str] = {}  # pings awaiting their reply: ref -> topic

    @staticmethod
    def plan_for(spec: PingSpec, response: Any, timeout: float) -> PingPlan | None:
        """The plan of a join whose reply was ``response`` (``timeout``: the channel's)."""
        value = spec(response) if callable(spec) else spec
        if value is None or isinstance(value, PingPlan):
            return value
        return PingPlan(float(value), timeout)

    def joined(self, now: float, topic: str, plan: PingPlan | None) -> None:
        """A join (or rejoin) of ``topic`` was acknowledged: its cadence starts now."""
        self.stop(topic)
        if plan is not None:
            self.plans[topic] = plan
            self._timers.set((_PING, topic), now + plan.interval)

    def stop(self, topic: str) -> None:
        """``topic`` left, errored, closed or lost its connection: no more pings, and the
        replies of those in flight are no longer awaited."""
        if self.plans.pop(topic, None) is None:
            return
        self._timers.cancel((_PING, topic))
        for ref in [r for r, t in self._refs.items() if t == topic]:
            del self._refs[ref]
            self._timers.cancel((_PING_REPLY, ref))

    def due(self, now: float, deadline: float, topic: str, join_ref: str | None) -> None:
        """The ping of ``topic`` is due: send it, arm its reply deadline and the next ping."""
        plan = self.plans[topic]  # stop() disarms the timer of a channel no longer pinged
        ref = self._out.next_ref()
        self._out.send(self._serializer.encode(join_ref, ref, topic, PING_EVENT, {}))
        self._refs[ref] = topic
        self._timers.set((_PING_REPLY, ref), now + plan.timeout)
        # A fixed cadence from the join reply; a late wake-up does not bunch pings up.
        next_at = deadline + plan.interval
        self._timers.set((_PING, topic), next_at if next_at > now else now + plan.interval)

    def owns(self, ref: str | None) -> bool:
        """True if ``ref`` is the ref of a ping awaiting its reply."""
        return ref is not None and ref in self._refs

    def replied(self, ref: str, status: str, response: Any) -> None:
        """The reply to ping ``ref``: an error reply is a failure (counted, reported)."""
        topic = self._refs.pop(ref)
        self._timers.cancel((_PING_REPLY, ref))
        if status != "ok":
            self._failed(topic, "error", response)

    def reply_overdue(self, ref: str) -> None:
        """Ping ``ref`` got no reply within its plan's timeout."""
        topic = self._refs.pop(ref)
        self._failed(topic, "timeout", None, self.plans[topic].timeout)

    def _failed(self, topic: str, reason: str, response: Any, timeout: float | None = None) -> None:
        self._stats.ping_failures += 1
        self._out.emit(ChannelPingFailed(topic, reason, response, timeout))
