"""From the core's events to the calls waiting for them, and to each channel's consumers.

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

A :class:`ChannelRoute` is the kit's record of one join: its waiters, how it ended, and its
consumers (``on_message``, the handlers added with ``on``, the buffer a channel's ``async for``
reads). The user's ``Channel`` is a handle on one route; the dispatcher runs a route's
consumers. Nothing here awaits: a :class:`Pending` is woken through a plain callable (an
``anyio.Event().set`` or a ``trio.Event().set``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._errors import (
    ConnectionClosedError,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    PushError,
    PushFailedError,
    PushTimeout,
    StxWsError,
)
from .._events import (
    ChannelClosed,
    ChannelCloseReason,
    Closed,
    Connected,
    Disconnected,
    DisconnectReason,
    Event,
    GaveUp,
    HandshakeRefused,
    Joined,
    JoinFailed,
    PushFailed,
    PushFailure,
    ReplyReceived,
)
from .._message import ChannelMessage
from .._stats import CoreStats
from .queues import MessageQueue

#: A message handler: ``handler(msg)``, sync or async.
Handler = Callable[[ChannelMessage], object]

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
    ``connections``, ``stale_dropped``, ``unknown_topic_dropped``, ``malformed_frames`` and
    ``invalid_payloads`` are the core's counters (see :class:`stx_proto.CoreStats`).
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
    def invalid_payloads(self) -> int:
        """Typed payloads that did not fit their type (not delivered)."""
        return self._core.invalid_payloads

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
            f"malformed_frames={self.malformed_frames}, "
            f"invalid_payloads={self.invalid_payloads})"
        )


class ChannelRoute:
    """The kit's record of one join: its waiters, its consumers, and how it ended.

    ``handle`` is the user's channel object (given to hooks such as ``on_rejoin``).
    ``leaving`` is set when the user asks to leave; ``failure`` when the channel is failed by
    the kit (a queue overflow under ``overflow="error"``). ``on_message`` and ``handlers``
    are run by the dispatcher (``plain_on_message`` is ``on_message`` when it is a plain
    function, which the dispatcher may call directly); ``buffer`` holds messages for the
    channel's ``async for``.
    ``on_error`` and ``on_close`` are the channel's hooks; ``presence`` its presence view
    (the driver's, when joined with presence); ``background`` is True for a join nobody
    awaits (``Socket.subscribe``).
    """

    __slots__ = (
        "background",
        "buffer",
        "close_payload",
        "close_reason",
        "closed",
        "failure",
        "handle",
        "handlers",
        "invalid_events",
        "join",
        "joined",
        "leaves",
        "leaving",
        "on_close",
        "on_error",
        "on_message",
        "plain_on_message",
        "presence",
        "response",
        "topic",
    )

    def __init__(self, topic: str, on_message: Handler | None = None) -> None:
        self.topic = topic
        self.handle: object = None
        self.join: Pending | None = None
        self.leaves: list[Pending] = []
        self.joined = False
        self.response: Any = None
        self.leaving = False
        self.closed = False
        self.close_reason: ChannelCloseReason | None = None
        self.close_payload: Any = None
        self.failure: StxWsError | None = None
        self.on_message = on_message
        self.plain_on_message = (
            None if on_message is None or inspect.iscoroutinefunction(on_message) else on_message
        )
        self.handlers: dict[str, list[Handler]] = {}
        self.buffer: MessageQueue | None = None
        #: Events whose invalid typed payloads have been logged (once each).
        self.invalid_events: set[str] | None = None  # made at the first one (memory)
        self.on_error: Callable[[Any], object] | None = None
        self.on_close: Callable[[Any], object] | None = None
        self.presence: Any = None
        self.background = False

    def end_error(self, gave_up: GaveUpError | None) -> StxWsError | None:
        """What ends this channel's iteration: None for a normal end (left, socket closed)."""
        if self.failure is not None:
            return self.failure
        reason = self.close_reason
        if reason is ChannelCloseReason.SERVER_CLOSED:
            return ConnectionClosedError(f"channel {self.topic!r} closed by the server")
        if reason is ChannelCloseReason.JOIN_FAILED:
            return JoinError(self.topic, self.close_payload, "rejoin refused")
        if reason is ChannelCloseReason.SOCKET_CLOSED:
            return gave_up
        return None

    def end_iteration(self, gave_up: GaveUpError | None) -> None:
        """The route is retired: end its ``async for`` (with its end error, if any)."""
        if self.buffer is not None:
            self.buffer.close(self.end_error(gave_up))


def gave_up_error(event: GaveUp, refusal: HandshakeRefused | None) -> GaveUpError:
    """The error users see when reconnecting stopped for ``event``.

    After refused handshakes its ``__cause__`` is the :class:`HandshakeRefusedError` of the
    last refusal (status code and body), so ``except GaveUpError`` sees why.
    """
    status = refusal.status_code if refusal is not None else None
    text = failure_text(Disconnected(event.reason, event.code, event.detail), status)
    exc = GaveUpError(f"gave up after {event.attempts} attempt(s): {text}", event.code)
    if event.error is not None:
        exc.__cause__ = event.error
    elif refusal is not None:
        exc.__cause__ = HandshakeRefusedError(refusal.status_code, refusal.body)
    return exc


#: Hints for handshake refusals whose cause is usually on the caller's side.
_STATUS_HINTS = {
    401: "bad or missing credentials?",
    403: "bad or missing credentials, or a refused vsn?",
    404: "wrong path? the socket URL ends in /socket",
}


def failure_text(event: Disconnected, status: int | None = None) -> str:
    """One line saying how a connection (attempt) failed: "HTTP 500", "TLS: certificate verify
    failed (...)", "the connect timed out"... ``status`` is the refused handshake's HTTP status.
    """
    reason = event.reason
    detail = event.detail
    if reason is DisconnectReason.HANDSHAKE_REFUSED and status is not None:
        hint = _STATUS_HINTS.get(status)
        return f"HTTP {status}" + (f" ({hint})" if hint else "")
    if reason is DisconnectReason.CONNECT_TIMEOUT:
        return "the connect timed out"
    if reason is DisconnectReason.HEARTBEAT_TIMEOUT:
        return "no heartbeat reply in time"
    if reason is DisconnectReason.SERVER_CLOSED:
        return "the server closed the connection"  # the errors add the close code
    if reason is DisconnectReason.PROTOCOL_ERROR:
        return f"WebSocket protocol error: {detail}"
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        return f"TLS: certificate verify failed ({detail})"
    text = reason.value.replace("_", " ")
    return f"{text}: {detail}" if detail else text


def push_failure_error(
    event: PushFailed, name: str, gave_up: GaveUpError | None, failure: StxWsError | None = None
) -> StxWsError:
    """The error for a push ``name`` that ended without a reply. ``failure`` is why the
    connection could not be made, when the push waited for it in vain."""
    reason = event.reason
    if reason is PushFailure.TIMEOUT:
        if failure is not None and not event.sent:
            error = PushTimeout(event.topic, name, str(failure))
            error.__cause__ = failure
            return error
        return PushTimeout(event.topic, name)
    if reason is PushFailure.SOCKET_CLOSED and gave_up is not None:
        return gave_up
    return PushFailedError(event.topic, name, reason.value)


class Router:
    """Waiters by topic and ref, resolved from the core's events. See the module docstring."""

    def __init__(self, core_stats: CoreStats, rtt: Callable[[], float | None]) -> None:
        # The joins of each topic, oldest first: lists, not deques (56 bytes, not 624, for
        # each of what may be tens of thousands of channels).
        self._topics: dict[str, list[ChannelRoute]] = {}
        self._pushes: dict[str, tuple[Pending, str]] = {}  # ref -> (waiter, event name)
        self._closes: list[Pending] = []
        self._refusal: HandshakeRefused | None = None
        self._connected_once = False
        #: True while the WebSocket is open.
        self.connected = False
        #: Why the last connection attempt failed, while none has succeeded since.
        self.connect_failure: ConnectionClosedError | None = None
        self.stats = SocketStats(core_stats, rtt)
        #: Set when the core gave up reconnecting (before the channels close).
        self.gave_up: GaveUpError | None = None
        #: True once the core emitted Closed: no event will come any more.
        self.closed = False

    # ------------------------------------------------------------------------------------
    # Registration (by user calls, right after calling the core, before any await)

    def add_channel(self, record: ChannelRoute) -> None:
        """Record a join that the core accepted; ``record.join`` waits for its outcome."""
        self._topics.setdefault(record.topic, []).append(record)

    def channel(self, topic: str) -> ChannelRoute | None:
        """The record that the core's events about ``topic`` refer to now, or None."""
        records = self._topics.get(topic)
        return records[0] if records else None

    def is_current(self, record: ChannelRoute) -> bool:
        """True if ``record`` is the newest join of its topic (the core's live channel)."""
        records = self._topics.get(record.topic)
        return records is not None and records[-1] is record

    def add_push(self, ref: str, name: str, waiter: Pending) -> None:
        """Wait for the outcome of the push with ``ref`` (event ``name``)."""
        self._pushes[ref] = (waiter, name)

    @property
    def waiting_pushes(self) -> int:
        """How many push calls wait for their outcome."""
        return len(self._pushes)

    def forget_push(self, ref: str) -> None:
        """Stop waiting for push ``ref`` (its caller was cancelled)."""
        self._pushes.pop(ref, None)

    def add_leave(self, record: ChannelRoute, waiter: Pending) -> None:
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

    def handle(self, event: Event) -> ChannelRoute | None:
        """Resolve or fail the waiters ``event`` settles; return the channel it was about.

        MessageReceived is the driver's (it only needs :meth:`channel`); any event type this
        router does not track returns None.
        """
        if type(event) is ReplyReceived:
            self._on_reply(event)
        elif type(event) is PushFailed:
            self._on_push_failed(event)
        elif type(event) is Joined:
            return self._on_joined(event)
        elif type(event) is JoinFailed:
            return self._on_join_failed(event)
        elif type(event) is ChannelClosed:
            return self._on_channel_closed(event)
        elif type(event) is Connected:
            if self._connected_once:
                self.stats.reconnects += 1
            self._connected_once = True
            self._refusal = None
            self.connected = True
            self.connect_failure = None
        elif type(event) is Disconnected:
            self._on_disconnected(event)
        elif type(event) is HandshakeRefused:
            self._refusal = event
        elif type(event) is GaveUp:
            self.gave_up = gave_up_error(event, self._refusal)
        elif type(event) is Closed:
            self._on_closed()
        return None

    def _on_disconnected(self, event: Disconnected) -> None:
        was_open, self.connected = self.connected, False
        if was_open or event.reason is DisconnectReason.CLIENT_CLOSED:
            return
        refusal = self._refusal
        text = failure_text(event, refusal.status_code if refusal is not None else None)
        if refusal is not None:
            error: ConnectionClosedError = HandshakeRefusedError(refusal.status_code, refusal.body)
            error.args = (f"could not connect: {text}",)
        else:
            error = ConnectionClosedError(f"could not connect: {text}", event.code)
        self.connect_failure = error

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
            waiter.fail(push_failure_error(event, name, self.gave_up, self.connect_failure))

    def _on_joined(self, event: Joined) -> ChannelRoute | None:
        record = self.channel(event.topic)
        if record is None:
            return None
        record.joined = True
        record.response = event.response
        join, record.join = record.join, None
        if join is not None:
            join.resolve(event.response)
        return record

    def _on_join_failed(self, event: JoinFailed) -> ChannelRoute | None:
        record = self.channel(event.topic)
        if record is None:
            return None
        if event.retry_at is None and record.join is not None:
            join, record.join = record.join, None
            failure = self.connect_failure
            if event.timed_out and failure is not None and not self.connected:
                # It timed out waiting for a connection that could not be made: say so.
                error = JoinError(event.topic, None, str(failure))
                error.__cause__ = failure
            else:
                error = JoinError(
                    event.topic, event.response, "timeout" if event.timed_out else "refused"
                )
            join.fail(error)
        return record

    def _on_channel_closed(self, event: ChannelClosed) -> ChannelRoute | None:
        records = self._topics.get(event.topic)
        if not records:
            return None
        record = records.pop(0)
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
        record.end_iteration(self.gave_up)
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

    def abort(self, error: StxWsError) -> None:
        """Fail every waiter with ``error`` and end every iteration: the kit cannot carry on."""
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
            record.end_iteration(None)
        closes, self._closes = self._closes, []
        for waiter in closes:
            waiter.resolve()
