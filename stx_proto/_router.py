"""From the core's events to the calls waiting for them: pure bookkeeping, no I/O.

Theory of operation
-------------------
A user call (``join``, ``push``, ``leave``, ``close``) calls the core, then registers a
:class:`Pending` here before it awaits anything, so the matching event cannot come out of the
core first. The pump hands every event to :meth:`Router.handle`, which resolves or fails the
waiters with the errors of ``stx_proto``'s hierarchy, keeps :class:`SocketStats`, and returns
the channel the event was about so that the driver can run its hooks.

Channels are kept per topic in the order they were joined: the core emits a channel's
:class:`~stx_proto.ChannelClosed` before any event of a later join of the same topic (a join
may replace a channel that is still leaving), so events always belong to the oldest open record
of their topic, and ``ChannelClosed`` retires it.

Nothing here imports an event loop: a :class:`Pending` is woken through a plain callable (an
``anyio.Event().set`` or a ``trio.Event().set``), so another driver can reuse this module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ._client import CoreStats
from ._errors import (
    ConnectionClosedError,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    PushError,
    PushFailedError,
    PushTimeout,
    StxWsError,
)
from ._events import (
    ChannelClosed,
    ChannelCloseReason,
    Closed,
    Connected,
    Event,
    GaveUp,
    HandshakeRefused,
    Joined,
    JoinFailed,
    PushFailed,
    PushFailure,
    ReplyReceived,
)

C = TypeVar("C")

_UNSET: Any = object()


class Pending:
    """The outcome of one call, set once by the pump; ``wake`` is called when it is set."""

    __slots__ = ("_error", "_value", "_wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self._wake = wake
        self._value: Any = _UNSET
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """True once resolved or failed."""
        return self._value is not _UNSET or self._error is not None

    def resolve(self, value: Any = None) -> None:
        """Set the result (ignored if already done) and wake the caller."""
        if not self.done:
            self._value = value
            self._wake()

    def fail(self, error: BaseException) -> None:
        """Set the error (ignored if already done) and wake the caller."""
        if not self.done:
            self._error = error
            self._wake()

    def result(self) -> Any:
        """Return the result, or raise the error. Only call it once done."""
        if self._error is not None:
            raise self._error
        assert self._value is not _UNSET, "Pending.result() before it is done"
        return self._value


class SocketStats:
    """Counters of one socket. Nothing is dropped without a count.

    ``messages``: messages received for live channels. ``dropped``: messages lost to a full
    queue (the overflow policy). ``reconnects``: successful connections after the first.
    ``last_heartbeat_rtt``: seconds from the last answered heartbeat to its reply, or None.
    ``connections``, ``stale_dropped``, ``unknown_topic_dropped`` and ``malformed_frames`` are
    the core's counters (see :class:`stx_proto.CoreStats`).
    """

    __slots__ = ("_core", "_rtt", "dropped", "reconnects")

    def __init__(self, core: CoreStats, rtt: Callable[[], float | None]) -> None:
        self._core = core
        self._rtt = rtt
        self.dropped = 0
        self.reconnects = 0

    @property
    def messages(self) -> int:
        """Messages received for live channels."""
        return self._core.messages

    @property
    def connections(self) -> int:
        """Successful WebSocket opens."""
        return self._core.connections

    @property
    def stale_dropped(self) -> int:
        """Frames of an earlier join of their channel, or replies nobody awaited."""
        return self._core.stale_dropped

    @property
    def unknown_topic_dropped(self) -> int:
        """Frames for a topic with no live channel."""
        return self._core.unknown_topic_dropped

    @property
    def malformed_frames(self) -> int:
        """Frames that could not be decoded."""
        return self._core.malformed_frames

    @property
    def last_heartbeat_rtt(self) -> float | None:
        """Seconds between the last answered heartbeat and its reply, or None."""
        return self._rtt()

    def count_drop(self) -> None:
        """Count one message lost to a full queue."""
        self.dropped += 1

    def __repr__(self) -> str:
        return (
            f"SocketStats(messages={self.messages}, dropped={self.dropped}, "
            f"reconnects={self.reconnects}, connections={self.connections}, "
            f"last_heartbeat_rtt={self.last_heartbeat_rtt!r}, "
            f"stale_dropped={self.stale_dropped}, "
            f"unknown_topic_dropped={self.unknown_topic_dropped}, "
            f"malformed_frames={self.malformed_frames})"
        )


class ChannelRecord(Generic[C]):
    """What the router knows about one join: its waiters and how it ended.

    ``owner`` is the driver's channel object. ``leaving`` is set by the driver when the user
    asks to leave; ``failure`` by the driver when it fails the channel (a queue overflow).
    """

    __slots__ = (
        "close_payload",
        "close_reason",
        "closed",
        "failure",
        "join",
        "joined",
        "leaves",
        "leaving",
        "owner",
        "response",
        "topic",
    )

    def __init__(self, topic: str, owner: C, join: Pending | None) -> None:
        self.topic = topic
        self.owner = owner
        self.join = join
        self.leaves: list[Pending] = []
        self.joined = False
        self.response: Any = None
        self.leaving = False
        self.closed = False
        self.close_reason: ChannelCloseReason | None = None
        self.close_payload: Any = None
        self.failure: StxWsError | None = None


def gave_up_error(event: GaveUp, refusal: HandshakeRefused | None) -> GaveUpError:
    """The error users see when reconnecting stopped for ``event``.

    After refused handshakes its ``__cause__`` is the :class:`HandshakeRefusedError` of the
    last refusal (status code and body), so ``except GaveUpError`` sees why.
    """
    detail = f": {event.detail}" if event.detail else ""
    exc = GaveUpError(
        f"gave up after {event.attempts} attempt(s): {event.reason.value}{detail}", event.code
    )
    if refusal is not None:
        exc.__cause__ = HandshakeRefusedError(refusal.status_code, refusal.body)
    return exc


def push_failure_error(event: PushFailed, name: str, gave_up: GaveUpError | None) -> StxWsError:
    """The error for a push ``name`` that ended without a reply."""
    reason = event.reason
    if reason is PushFailure.TIMEOUT:
        return PushTimeout(event.topic, name)
    if reason is PushFailure.SOCKET_CLOSED and gave_up is not None:
        return gave_up
    return PushFailedError(event.topic, name, reason.value)


class Router(Generic[C]):
    """Waiters by topic and ref, resolved from the core's events. See the module docstring."""

    def __init__(self, core_stats: CoreStats, rtt: Callable[[], float | None]) -> None:
        self._topics: dict[str, deque[ChannelRecord[C]]] = {}
        self._pushes: dict[str, tuple[Pending, str]] = {}  # ref -> (waiter, event name)
        self._closes: list[Pending] = []
        self._refusal: HandshakeRefused | None = None
        self._connected_once = False
        self.stats = SocketStats(core_stats, rtt)
        #: Set when the core gave up reconnecting (before the channels close).
        self.gave_up: GaveUpError | None = None
        #: True once the core emitted Closed: no event will come any more.
        self.closed = False

    # ------------------------------------------------------------------------------------
    # Registration (by user calls, right after calling the core, before any await)

    def add_channel(self, record: ChannelRecord[C]) -> None:
        """Record a join that the core accepted; ``record.join`` waits for its outcome."""
        self._topics.setdefault(record.topic, deque()).append(record)

    def channel(self, topic: str) -> ChannelRecord[C] | None:
        """The record that the core's events about ``topic`` refer to now, or None."""
        records = self._topics.get(topic)
        return records[0] if records else None

    def is_current(self, record: ChannelRecord[C]) -> bool:
        """True if ``record`` is the newest join of its topic (the core's live channel)."""
        records = self._topics.get(record.topic)
        return records is not None and records[-1] is record

    def add_push(self, ref: str, name: str, waiter: Pending) -> None:
        """Wait for the outcome of the push with ``ref`` (event ``name``)."""
        self._pushes[ref] = (waiter, name)

    def forget_push(self, ref: str) -> None:
        """Stop waiting for push ``ref`` (its caller was cancelled)."""
        self._pushes.pop(ref, None)

    def add_leave(self, record: ChannelRecord[C], waiter: Pending) -> None:
        """Wait for ``record``'s channel to close (resolved at once if it already has)."""
        if record.closed:
            waiter.resolve()
        else:
            record.leaves.append(waiter)

    def add_close(self, waiter: Pending) -> None:
        """Wait for the core's Closed (resolved at once if it already came)."""
        if self.closed:
            waiter.resolve()
        else:
            self._closes.append(waiter)

    # ------------------------------------------------------------------------------------
    # Events

    def handle(self, event: Event) -> ChannelRecord[C] | None:
        """Resolve or fail the waiters ``event`` settles; return the channel it was about.

        MessageReceived is the driver's (it only needs :meth:`channel`); any event type this
        router does not track returns None.
        """
        kind = type(event)
        if kind is ReplyReceived:
            self._on_reply(event)  # type: ignore[arg-type]
            return None
        if kind is PushFailed:
            self._on_push_failed(event)  # type: ignore[arg-type]
            return None
        if kind is Joined:
            return self._on_joined(event)  # type: ignore[arg-type]
        if kind is JoinFailed:
            return self._on_join_failed(event)  # type: ignore[arg-type]
        if kind is ChannelClosed:
            return self._on_channel_closed(event)  # type: ignore[arg-type]
        if kind is Connected:
            if self._connected_once:
                self.stats.reconnects += 1
            self._connected_once = True
            self._refusal = None
        elif kind is HandshakeRefused:
            self._refusal = event  # type: ignore[assignment]
        elif kind is GaveUp:
            self.gave_up = gave_up_error(event, self._refusal)  # type: ignore[arg-type]
        elif kind is Closed:
            self._on_closed()
        return None

    def _on_reply(self, event: ReplyReceived) -> None:
        entry = self._pushes.pop(event.ref, None)
        if entry is None:
            return  # the caller stopped waiting (cancelled); nothing to do
        waiter, name = entry
        if event.status == "ok":
            waiter.resolve(event.response)
        else:
            waiter.fail(PushError(event.topic, name, event.status, event.response))

    def _on_push_failed(self, event: PushFailed) -> None:
        entry = self._pushes.pop(event.ref, None)
        if entry is not None:
            waiter, name = entry
            waiter.fail(push_failure_error(event, name, self.gave_up))

    def _on_joined(self, event: Joined) -> ChannelRecord[C] | None:
        record = self.channel(event.topic)
        if record is None:
            return None
        record.joined = True
        record.response = event.response
        join, record.join = record.join, None
        if join is not None:
            join.resolve(event.response)
        return record

    def _on_join_failed(self, event: JoinFailed) -> ChannelRecord[C] | None:
        record = self.channel(event.topic)
        if record is None:
            return None
        if event.retry_at is None and record.join is not None:
            join, record.join = record.join, None
            join.fail(
                JoinError(event.topic, event.response, "timeout" if event.timed_out else "refused")
            )
        return record

    def _on_channel_closed(self, event: ChannelClosed) -> ChannelRecord[C] | None:
        records = self._topics.get(event.topic)
        if not records:
            return None
        record = records.popleft()
        if not records:
            del self._topics[event.topic]
        record.closed = True
        record.close_reason = event.reason
        record.close_payload = event.payload
        join, record.join = record.join, None
        if join is not None:
            join.fail(self._join_ended_error(event))
        leaves, record.leaves = record.leaves, []
        for waiter in leaves:
            waiter.resolve()
        return record

    def _join_ended_error(self, event: ChannelClosed) -> StxWsError:
        reason = event.reason
        if reason is ChannelCloseReason.SOCKET_CLOSED:
            if self.gave_up is not None:
                return self.gave_up
            return ConnectionClosedError("socket closed before the join completed")
        if reason is ChannelCloseReason.SERVER_CLOSED:
            return JoinError(event.topic, event.payload, "closed by the server")
        return JoinError(event.topic, event.payload, reason.value)

    def _on_closed(self) -> None:
        self.closed = True
        closes, self._closes = self._closes, []
        for waiter in closes:
            waiter.resolve()

    # ------------------------------------------------------------------------------------
    # Failure of the driver itself

    def abort(self, error: StxWsError) -> list[ChannelRecord[C]]:
        """Fail every waiter with ``error``: the driver cannot carry on.

        Returns the channel records it closed, so the driver can end their iterations.
        """
        self.closed = True
        pushes, self._pushes = self._pushes, {}
        for waiter, _ in pushes.values():
            waiter.fail(error)
        topics, self._topics = self._topics, {}
        closed = [record for records in topics.values() for record in records]
        for record in closed:
            record.closed = True
            record.failure = error
            join, record.join = record.join, None
            if join is not None:
                join.fail(error)
            leaves, record.leaves = record.leaves, []
            for waiter in leaves:
                waiter.resolve()
        closes, self._closes = self._closes, []
        for waiter in closes:
            waiter.resolve()
        return closed
