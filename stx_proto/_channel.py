"""Channels: the transition table, each channel's record, and everything a channel does.

Theory of operation
-------------------
A channel exists from the user's ``join`` until it is closed for good. It is *live* in every
state but CLOSED. JOINING means "a join is wanted": the join frame is out when ``join_ref`` is
set, otherwise it waits for the connection. ERRORED means "joined before, or tried, and broken":
it rejoins when its rejoin timer fires (socket open) or at once when the socket reopens.
LEAVING waits for the leave's reply (or ``phx_close``, or the leave timeout). Channels move
only through :meth:`ChannelRecord.transition`, so an input a state does not accept is a bug
that fails loudly in tests instead of corrupting state quietly.

The client routes here everything that concerns one topic, as h2 keeps a stream's behaviour in
its stream module: the user's join, push and leave; join, push and leave replies;
``phx_error`` and ``phx_close``; the join, rejoin, leave and push deadlines; and what each
channel does when the connection opens, drops or closes. :class:`ChannelSet` holds the live
channels, the unresolved pushes, and the parts of the client they write to (its
:class:`~._outbox.Outbox`, its timers, its counters). The client keeps the connection: its
life cycle, the heartbeat, reconnects, and routing frames and timers to the channels.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from random import Random
from typing import TYPE_CHECKING, Any

from ._checks import callable_or_none, name_text, real
from ._codec import JsonCodec
from ._errors import FrameError, StxWsError, UsageError
from ._events import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    ControlReceived,
    DisconnectReason,
    FrameDropped,
    Joined,
    JoinFailed,
    PresenceChanged,
    PushFailed,
    PushFailure,
    ReplyReceived,
)
from ._keepalive import DEFAULT_PING, DefaultPing, Keepalive, PingSpec
from ._message import (
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    ChannelMessage,
    new_tuple,
)
from ._outbox import Outbox
from ._presence import Presence
from ._retry import RetryPolicy
from ._serializer import Serializer, V2Serializer
from ._stats import CoreStats
from ._timers import TimerKey, TimerKind, TimerQueue

if TYPE_CHECKING:
    from ._heartbeat import Heartbeat
    from ._typed import TypedSerializer

RESERVED_EVENTS = frozenset({PHX_JOIN, PHX_LEAVE, PHX_REPLY, PHX_ERROR, PHX_CLOSE})
#: The server frames a channel acts on itself (the others are the application's messages).
CONTROL_EVENTS = frozenset({PHX_REPLY, PHX_ERROR, PHX_CLOSE})
UNMATCHED_TOPIC = "unmatched topic"

#: configure(join_payload=...) left out: the join payload stays as it is.
UNCHANGED: Any = object()

#: At most this many topics are remembered as just left (see ChannelSet.expected_after_leave).
_MAX_LEFT = 1000

_JOIN = TimerKind.JOIN
_REJOIN = TimerKind.REJOIN
_LEAVE = TimerKind.LEAVE
_PUSH = TimerKind.PUSH
_PING = TimerKind.PING
_PING_REPLY = TimerKind.PING_REPLY


class ChannelState(str, enum.Enum):
    """Where a channel is in its life."""

    CLOSED = "closed"
    JOINING = "joining"
    JOINED = "joined"
    LEAVING = "leaving"
    ERRORED = "errored"


_JOINED = ChannelState.JOINED
_JOINING = ChannelState.JOINING


class ChannelInput(enum.Enum):
    """What can happen to a channel."""

    JOIN = "join"  # the user joins
    JOIN_OK = "join_ok"  # the join's reply said ok
    JOIN_RETRY = "join_retry"  # the join was refused or timed out; it will be retried
    REJOIN = "rejoin"  # the rejoin timer fired, or the socket opened
    ERROR = "error"  # phx_error, "unmatched topic", or the connection dropped
    LEAVE = "leave"  # the user leaves while a leave must be sent
    CLOSE = "close"  # phx_close, leave done, socket closed: closed for good


S = ChannelState
I = ChannelInput  # noqa: E741 - the table reads better with a one-letter alias

#: (state, input) -> next state. A pair not in the table is a bug in the client.
TRANSITIONS: dict[tuple[ChannelState, ChannelInput], ChannelState] = {
    (S.CLOSED, I.JOIN): S.JOINING,
    (S.JOINING, I.JOIN_OK): S.JOINED,
    (S.JOINING, I.JOIN_RETRY): S.ERRORED,
    (S.JOINING, I.ERROR): S.ERRORED,
    (S.JOINING, I.REJOIN): S.JOINING,
    (S.JOINING, I.LEAVE): S.LEAVING,
    (S.JOINING, I.CLOSE): S.CLOSED,
    (S.JOINED, I.ERROR): S.ERRORED,
    (S.JOINED, I.LEAVE): S.LEAVING,
    (S.JOINED, I.CLOSE): S.CLOSED,
    (S.ERRORED, I.REJOIN): S.JOINING,
    (S.ERRORED, I.ERROR): S.ERRORED,
    (S.ERRORED, I.CLOSE): S.CLOSED,
    (S.LEAVING, I.CLOSE): S.CLOSED,
}

del S, I


class IllegalTransition(StxWsError):
    """The client tried a channel transition the table does not allow (a bug in stx_proto)."""


class Push:
    """One user push, from ``push()`` until its single outcome."""

    __slots__ = ("deadline", "event", "payload", "ref", "sent", "topic")

    def __init__(self, topic: str, event: str, payload: Any, ref: str, deadline: float) -> None:
        self.topic = topic
        self.event = event
        self.payload = payload
        self.ref = ref
        self.deadline = deadline
        self.sent = False


class ChannelRecord:
    """The client's record of one topic (the user's handle is the drivers' ``Channel``)."""

    __slots__ = (
        "after_join",
        "buffer",
        "control",
        "in_flight",
        "join_payload",
        "join_ref",
        "joined_at",
        "joined_once",
        "leave_ref",
        "ping",
        "presence",
        "rejoin_attempts",
        "state",
        "timeout",
        "topic",
        "types",
    )

    def __init__(self, topic: str, join_payload: Any, timeout: float) -> None:
        self.topic = topic
        self.join_payload = join_payload  # a value, or a callable evaluated at each join
        self.timeout = timeout
        self.state = ChannelState.CLOSED
        self.join_ref: str | None = None  # the ref of the join in flight or acknowledged
        self.joined_once = False
        self.joined_at = 0.0  # when the last join was acknowledged
        self.leave_ref: str | None = None
        self.rejoin_attempts = 0
        # Pushes waiting for the join: a list, not a deque (56 bytes empty, not 624: a socket
        # may hold tens of thousands of channels, and buffers are short).
        self.buffer: list[Push] = []
        self.in_flight: dict[str, Push] = {}  # pushes sent, waiting for their reply
        self.presence: Presence | None = None
        self.ping: PingSpec = None  # the keepalive of each join (see _keepalive)
        #: Pushes (event, payload) sent after each join reply, before the buffered ones.
        self.after_join: list[tuple[str, Any]] = []
        #: Typed payloads: the decoder of each typed event (see stx_proto._typed), or None.
        self.types: dict[str, Any] | None = None
        #: Hand this channel's control frames to the application (ControlReceived).
        self.control = False

    def transition(self, event: ChannelInput) -> ChannelState:
        """Apply ``event`` and return the new state; raises IllegalTransition if not allowed."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise IllegalTransition(
                f"{self.topic}: {event.value} in state {self.state.value}"
            ) from None
        return self.state

    def __repr__(self) -> str:
        return f"<ChannelRecord {self.topic!r} {self.state.value} join_ref={self.join_ref!r}>"


def positive(name: str, value: float) -> float:
    """``value`` if it is > 0; raises UsageError naming ``name`` otherwise."""
    if not value > 0:
        raise UsageError(f"{name} must be > 0, got {value!r}")
    return value


def is_unmatched(response: Any) -> bool:
    """True for Phoenix's "unmatched topic" error response (no channel for the topic)."""
    return isinstance(response, Mapping) and response.get("reason") == UNMATCHED_TOPIC


class ChannelSet:
    """The live channels of one client, their pushes, and their behaviour.

    ``is_open`` tells whether the WebSocket is open now. Every method that changes something
    writes its frames and events to ``out``; the caller pulls them from the client.
    """

    __slots__ = (
        "_codec",
        "_internal",
        "_is_open",
        "_left",
        "_max_buffered",
        "_max_size",
        "_on_typed",
        "_out",
        "_ping_interval",
        "_ping_skip",
        "_rejoin",
        "_rng",
        "_serializer",
        "_stats",
        "_timers",
        "closing",
        "keepalive",
        "live",
        "pushes",
        "timeout",
        "typed",
    )

    def __init__(
        self,
        out: Outbox,
        timers: TimerQueue[TimerKey],
        serializer: Serializer,
        codec: JsonCodec,
        stats: CoreStats,
        *,
        timeout: float,
        rejoin: RetryPolicy,
        rng: Random,
        max_buffered: int,
        max_size: int | None,
        is_open: Callable[[], bool],
        ping_interval: float | None = None,
        ping_skip: Callable[[str], bool] | None = None,
        on_typed: Callable[[TypedSerializer], None] = lambda typed: None,
    ) -> None:
        self._out = out
        self._timers = timers
        self._serializer = serializer
        self._codec = codec
        self._stats = stats
        self._rejoin = rejoin
        self._rng = rng
        self._max_buffered = max_buffered
        self._max_size = max_size
        self._is_open = is_open
        self._ping_interval = real("channel_ping_interval", ping_interval, allow_none=True)
        self._ping_skip = callable_or_none("channel_ping_skip", ping_skip)
        self.keepalive = Keepalive(out, timers, serializer, stats)
        #: The typed serializer, once a channel has typed payloads (see stx_proto._typed).
        self.typed: TypedSerializer | None = None
        self._on_typed = on_typed
        self._internal: dict[str, str] = {}  # refs of after-join pushes -> topic
        self.timeout = timeout
        self.live: dict[str, ChannelRecord] = {}  # by topic, in join order
        self.pushes: dict[str, Push] = {}  # every unresolved push, by ref
        #: True once close() sent its leaves: their answers close nothing by themselves.
        self.closing = False
        # Topics just left (their leave was answered) -> that join's ref: the server's
        # phx_close that follows a leave reply is expected, not a frame for an unknown topic.
        self._left: dict[str, str] = {}

    # ------------------------------------------------------------------------------------
    # The user's calls

    def join(
        self,
        now: float,
        topic: str,
        payload: Any,
        timeout: float | None,
        presence: Any,
        *,
        ping: PingSpec | DefaultPing = DEFAULT_PING,
        types: Mapping[str, Any] | None = None,
        control_frames: bool = False,
    ) -> None:
        """See :meth:`stx_proto.Client.join`."""
        name_text("topic", topic)
        timeout = self.timeout if timeout is None else positive("timeout", timeout)
        existing = self.live.get(topic)
        if existing is not None and existing.state is not ChannelState.LEAVING:
            raise UsageError(f"{topic!r} is already {existing.state.value}; leave it first")
        ch = ChannelRecord(topic, payload, timeout)
        if types:
            ch.types = self._typed_serializer().decoders(types, presence is not False)
        if presence is not False:
            ch.presence = presence if isinstance(presence, Presence) else Presence()
        if ping is DEFAULT_PING:
            skip = self._ping_skip
            ping = None if skip is not None and skip(topic) else self._ping_interval
        elif isinstance(ping, (int, float)):
            positive("ping", ping)
        ch.ping = ping
        ch.control = control_frames
        frame = None
        if self._is_open():
            frame = self._join_frame(ch)  # raises before anything changes
        elif not callable(payload):
            self._encode(None, "0", topic, PHX_JOIN, {} if payload is None else payload)
        if existing is not None:  # a join replaces a channel that is still leaving
            self.close(existing, ChannelCloseReason.LEFT)
        self._left.pop(topic, None)
        ch.transition(ChannelInput.JOIN)
        self.live[topic] = ch
        self._timers.set((_JOIN, topic), now + timeout)
        if frame is not None:
            ch.join_ref = frame[0]
            self._out.send(frame[1])

    def push(self, now: float, topic: str, event: str, payload: Any, timeout: float | None) -> str:
        """See :meth:`stx_proto.Client.push`."""
        name_text("event", event)
        ch = self.live.get(topic)
        if ch is None:
            raise UsageError(f"push {event!r} to {topic!r} before joining it")
        if ch.state is ChannelState.LEAVING:
            raise UsageError(f"push {event!r} to {topic!r} while leaving it")
        if event in RESERVED_EVENTS:
            raise UsageError(f"{event!r} is reserved by the protocol")
        if payload is None:
            payload = {}
        timeout = self.timeout if timeout is None else positive("timeout", timeout)
        ref = self._out.next_ref()
        push = Push(topic, event, payload, ref, now + timeout)
        if ch.state is ChannelState.JOINED:
            self._out.send(self._encode(ch.join_ref, ref, topic, event, payload))
            push.sent = True
            ch.in_flight[ref] = push
        else:
            self._encode(None, ref, topic, event, payload)  # a bad payload fails here, not later
            # Keep a copy, not the caller's object: what is sent must be what was pushed,
            # even if the caller reuses or changes it before the join completes.
            push.payload = self._snapshot(payload)
            if len(ch.buffer) >= self._max_buffered:
                self._out.emit(PushFailed(topic, ref, PushFailure.BUFFER_FULL))
                return ref
            ch.buffer.append(push)
        self.pushes[ref] = push
        self._timers.set((_PUSH, ref), push.deadline)
        return ref

    def configure(
        self,
        topic: str,
        *,
        join_payload: Any = UNCHANGED,
        after_join: list[tuple[str, Any]] | None = None,
        payload_types: Mapping[str, Any] | None = None,
    ) -> None:
        """See :meth:`stx_proto.Client.configure_channel`."""
        ch = self.live.get(topic)
        if ch is None:
            raise UsageError(f"configure {topic!r}: not joined")
        if join_payload is not UNCHANGED and not callable(join_payload):
            self._encode(None, "0", topic, PHX_JOIN, {} if join_payload is None else join_payload)
        checked = None
        if after_join is not None:
            checked = []
            for event, payload in after_join:
                name_text("event", event)
                if event in RESERVED_EVENTS:
                    raise UsageError(f"{event!r} is reserved by the protocol")
                self._encode(None, "0", topic, event, payload)
                checked.append((event, payload))
        decoders = None
        if payload_types:
            decoders = self._typed_serializer().decoders(payload_types, ch.presence is not None)
            for event, decoder in decoders.items():
                known = (ch.types or {}).get(event)
                if known is not None and known is not decoder:
                    raise UsageError(f"{event!r} of {topic!r} is already typed as {known.type!r}")
        # Checked all: now change.
        if join_payload is not UNCHANGED:
            ch.join_payload = join_payload
        if checked is not None:
            ch.after_join = checked
        if decoders:
            ch.types = {**(ch.types or {}), **decoders}

    def _typed_serializer(self) -> TypedSerializer:
        """The typed serializer, set up (and decoding frames from then on) at the first call.

        Raises UsageError when msgspec is not installed.
        """
        typed = self.typed
        if typed is None:
            try:
                from ._typed import TypedSerializer  # noqa: PLC0415 - optional dependency
            except ImportError as exc:
                raise UsageError(
                    f"typed payloads need msgspec: pip install 'stx-ws[msgspec]' ({exc})"
                ) from exc
            typed = self.typed = TypedSerializer(
                self._serializer, self._codec, self._out, self._stats
            )
            self._on_typed(typed)
        return typed

    def cancel_push(self, ref: str) -> bool:
        """See :meth:`stx_proto.Client.cancel_push`."""
        push = self.pushes.get(ref)
        if push is None or push.sent:
            return False
        self.live[push.topic].buffer.remove(push)
        self._fail_push(push, PushFailure.CANCELLED)
        return True

    def leave(self, now: float, topic: str, timeout: float | None) -> None:
        """See :meth:`stx_proto.Client.leave`."""
        ch = self.live.get(topic)
        if ch is None:
            raise UsageError(f"leave {topic!r}: not joined")
        if ch.state is ChannelState.LEAVING:
            return
        timeout = ch.timeout if timeout is None else positive("timeout", timeout)
        if ch.join_ref is None or not self._is_open():
            self.close(ch, ChannelCloseReason.LEFT)
            return
        self._timers.cancel((_JOIN, topic))
        self._timers.cancel((_REJOIN, topic))
        self.keepalive.stop(topic)
        buffer, ch.buffer = ch.buffer, []
        for push in buffer:
            self._fail_push(push, PushFailure.CHANNEL_CLOSED)
        ch.transition(ChannelInput.LEAVE)
        ch.leave_ref = ref = self._out.next_ref()
        self._out.send(self._serializer.encode(ch.join_ref, ref, topic, PHX_LEAVE, {}))
        self._timers.set((_LEAVE, topic), now + timeout)

    # ------------------------------------------------------------------------------------
    # Inbound frames: the per-message path

    def on_messages(
        self,
        now: float,
        messages: Iterable[str | bytes],
        heartbeat: Heartbeat | None,
        *,
        closing: bool,
    ) -> None:
        """Decode and route a run of messages (a read's worth: the look-ups are made once).

        A message goes out as :class:`MessageReceived` (and :class:`PresenceChanged`) when its
        channel is joined or joining; a reply, error or close goes to :meth:`on_control`; a
        heartbeat's reply to ``heartbeat``; the rest is counted and dropped. ``closing``: the
        socket is closing (see :meth:`on_control`).
        """
        serializer = self.typed or self._serializer
        decode_text = serializer.decode_text
        # vsn 2.0.0 without types: a well-formed text frame is decoded here, without the
        # call (about 0.1 us of the 2.5 a message costs on picows); decode_text has the last
        # word on every other frame, and says what is wrong with a bad one. Such a frame (bad
        # JSON, more than five elements: rare) is parsed twice, the second time its verdict.
        loads = serializer.codec.loads if type(serializer) is V2Serializer else None
        typed = self.typed
        live = self.live
        stats = self._stats
        outbox = self._out
        wbuf = outbox.wbuf
        out = outbox.items
        for data in messages:
            msg = None
            if loads is not None and type(data) is str:
                try:
                    parsed = loads(data)
                except Exception:  # decode_text below raises the FrameError
                    parsed = None
                if type(parsed) is list and len(parsed) == 5:
                    join_ref, ref, topic, event, payload = parsed
                    # _fields_ok() inlined: this is the per-message path.
                    if (
                        type(topic) is str
                        and type(event) is str
                        and (join_ref is None or type(join_ref) is str)
                        and (ref is None or type(ref) is str)
                        and (
                            event != PHX_REPLY
                            or (type(payload) is dict and type(payload.get("status")) is str)
                        )
                    ):
                        msg = new_tuple(ChannelMessage, (topic, event, payload, ref, join_ref))
            if msg is None:
                try:
                    if type(data) is str or isinstance(data, str):
                        msg = decode_text(data)
                    else:
                        msg = serializer.decode_binary(data)
                except FrameError as exc:
                    stats.malformed_frames += 1
                    outbox.emit(FrameDropped(str(exc), data[:256]))
                    continue
            topic, event, _, ref, join_ref = msg
            if ref is not None and heartbeat is not None and heartbeat.answered(now, ref, topic):
                continue
            ch = live.get(topic)
            if ch is None:
                if not self.expected_after_leave(msg):
                    stats.unknown_topic_dropped += 1
                continue
            if join_ref and join_ref != ch.join_ref:  # null or "" is "no join_ref", as phoenix.js
                stats.stale_dropped += 1
                continue
            state = ch.state
            if event in CONTROL_EVENTS:
                self.on_control(now, ch, msg, closing=closing)
                continue
            if state is not _JOINED and state is not _JOINING:
                # Errored: the server's channel is gone. Leaving: the user is done with it, as
                # phoenix.js, which forgets a channel at leave().
                stats.stale_dropped += 1
                continue
            if typed is not None:
                resolved = typed.resolve(ch.types, msg)
                if resolved is None:
                    continue  # a typed payload that did not fit, or a payload that is not JSON
                msg = resolved
            stats.messages += 1
            # Queued bare: it leaves as MessageReceived (Client.next_events), or bare to the
            # driver kit (Client.next_outputs), which saves an object a message.
            if wbuf:
                outbox.emit(msg)
            else:  # Outbox.emit() without the call: nothing written waits to go first
                out.append(msg)
            presence = ch.presence
            if presence is not None:
                update = presence.handle(event, msg.payload, ch.join_ref, notify=False)
                if update is not None:
                    outbox.emit(
                        PresenceChanged(topic, update.joins, update.leaves, presence, update.synced)
                    )

    # ------------------------------------------------------------------------------------
    # Frames routed here (after the join_ref check)

    def on_control(
        self, now: float, ch: ChannelRecord, msg: ChannelMessage, *, closing: bool
    ) -> None:
        """A ``phx_reply``, ``phx_error`` or ``phx_close`` for ``ch`` (its join_ref checked by
        the client). ``closing``: the socket is closing (its answers close nothing)."""
        event = msg.event
        if event == PHX_REPLY:
            if ch.control and not closing:
                self._out.emit(ControlReceived(msg))
            self.on_reply(now, ch, msg)
            return
        # Phoenix sends both with ref = the join_ref, which survives on vsn 1.0.0 where
        # join_ref itself is absent: an earlier join's close must not close this one.
        ref = msg.ref
        if not msg.join_ref and ref is not None and ref != ch.join_ref:
            self._stats.stale_dropped += 1
        elif not closing:  # closing: the answer to close()'s leave; it closes with the socket
            if ch.control:
                self._out.emit(ControlReceived(msg))
            if event == PHX_ERROR:
                self.on_phx_error(now, ch, msg.payload)
            else:
                self.on_phx_close(ch, msg.payload)

    def on_reply(self, now: float, ch: ChannelRecord, msg: ChannelMessage) -> None:
        """A ``phx_reply`` for ``ch``: a push's, the join's or the leave's."""
        ref = msg.ref
        payload = msg.payload  # the serializer guarantees a dict with a str "status"
        status: str = payload["status"]
        response = payload.get("response")
        keepalive = self.keepalive
        if keepalive.plans and keepalive.owns(ref):
            assert ref is not None  # owns() says so
            keepalive.replied(ref, status, response)
            return
        if self._internal and ref in self._internal:
            del self._internal[ref]  # an after-join push of the client's: nobody waits
            return
        push = ch.in_flight.pop(ref, None) if ref is not None else None
        if push is not None:
            del self.pushes[push.ref]
            self._timers.cancel((_PUSH, push.ref))
            self._out.emit(ReplyReceived(ch.topic, push.ref, status, response))
            if (
                status == "error"
                and msg.join_ref is None
                and is_unmatched(response)
                and ch.state is ChannelState.JOINED
            ):
                # The server has no channel for this topic on this socket: it is not joined,
                # whatever we thought. Rejoin instead of pushing into the void.
                self._errored(now, ch, UNMATCHED_TOPIC, response)
        elif ref is not None and ref == ch.join_ref and ch.state is ChannelState.JOINING:
            self._join_replied(now, ch, status, response)
        elif ref is not None and ref == ch.leave_ref:
            if not self.closing:  # close()'s leaves: the channels close with the socket
                self._remember_left(ch)
                self.close(ch, ChannelCloseReason.LEFT)
        else:
            self._stats.stale_dropped += 1

    def _remember_left(self, ch: ChannelRecord) -> None:
        left = self._left
        assert ch.join_ref is not None  # a leave is sent (and answered) only with a join out
        if len(left) >= _MAX_LEFT:  # the server never sent phx_close: forget the oldest
            del left[next(iter(left))]
        left[ch.topic] = ch.join_ref

    def expected_after_leave(self, msg: ChannelMessage) -> bool:
        """True for the ``phx_close`` Phoenix sends after answering a leave (its topic is no
        longer live): a frame the client expects, not one to count as a drop."""
        join_ref = self._left.get(msg.topic)
        if (
            join_ref is not None
            and msg.event == PHX_CLOSE
            and (msg.join_ref or msg.ref) == join_ref
        ):
            del self._left[msg.topic]
            return True
        return False

    def on_phx_error(self, now: float, ch: ChannelRecord, payload: Any) -> None:
        """The server's ``phx_error`` for ``ch``: its channel crashed."""
        state = ch.state
        if state is ChannelState.LEAVING:
            self.close(ch, ChannelCloseReason.LEFT, payload)
        elif state is ChannelState.ERRORED:
            self._stats.stale_dropped += 1
        else:
            self._errored(now, ch, PHX_ERROR, payload)

    def on_phx_close(self, ch: ChannelRecord, payload: Any) -> None:
        """The server's ``phx_close`` for ``ch``: closed for good (the leave done, if leaving)."""
        reason = (
            ChannelCloseReason.LEFT
            if ch.state is ChannelState.LEAVING
            else ChannelCloseReason.SERVER_CLOSED
        )
        self.close(ch, reason, payload)

    # ------------------------------------------------------------------------------------
    # Deadlines

    def on_timer(self, now: float, deadline: float, kind: TimerKind, name: str) -> None:
        """A channel's (JOIN, REJOIN, LEAVE, PING: ``name`` is the topic) or a push's or
        ping's (PUSH, PING_REPLY: the ref) deadline passed."""
        if kind is _PUSH:
            self._push_timed_out(name)
            return
        if kind is _PING_REPLY:
            self.keepalive.reply_overdue(name)
            return
        if kind is _PING:
            self.keepalive.due(now, deadline, name, self.live[name].join_ref)
            return
        ch = self.live[name]  # closing a channel cancels its timers
        if kind is _JOIN:
            self._join_timed_out(now, ch)
        elif kind is _REJOIN:  # armed only while the socket is open; cancelled on a drop
            self._send_join(now, ch)
        else:
            self.close(ch, ChannelCloseReason.LEFT)

    # ------------------------------------------------------------------------------------
    # The connection's news

    def rejoin_all(self, now: float) -> None:
        """The WebSocket opened: join every channel waiting for it, in join order."""
        for ch in list(self.live.values()):
            state = ch.state
            # Always true today (a lost connection leaves every channel errored, or joining
            # with no join out, and closes those leaving); kept so no channel is joined twice.
            if state is ChannelState.ERRORED or (  # pragma: no branch
                state is ChannelState.JOINING and ch.join_ref is None
            ):
                self._timers.cancel((_REJOIN, ch.topic))
                ch.rejoin_attempts = 0
                self._send_join(now, ch)

    def connection_lost(self, reason: DisconnectReason) -> None:
        """The connection dropped: pushes in flight fail, channels error (or close, if leaving)."""
        self._left.clear()
        self._internal.clear()
        for ch in list(self.live.values()):
            self.keepalive.stop(ch.topic)
            for push in list(ch.in_flight.values()):
                self._fail_push(push, PushFailure.CONNECTION_LOST)
            ch.in_flight.clear()
            state = ch.state
            if state is ChannelState.LEAVING:
                self.close(ch, ChannelCloseReason.LEFT)
                continue
            self._timers.cancel((_REJOIN, ch.topic))
            if state is ChannelState.ERRORED or ch.join_ref is None:
                continue  # already broken, or a first join still waiting for a connection
            ch.transition(ChannelInput.ERROR)
            ch.join_ref = None
            if ch.joined_once:
                # A rejoin attempt in flight is moot; the first join keeps its overall deadline.
                self._timers.cancel((_JOIN, ch.topic))
                self._out.emit(ChannelErrored(ch.topic, reason.value))

    def leave_all_for_close(self) -> None:
        """close() leaves every channel: unsent pushes fail, sent ones wait for the close."""
        self.closing = True
        for ch in self.live.values():
            topic = ch.topic
            self.keepalive.stop(topic)
            self._timers.cancel((_JOIN, topic))
            self._timers.cancel((_REJOIN, topic))
            buffer, ch.buffer = ch.buffer, []
            for push in buffer:
                self._fail_push(push, PushFailure.SOCKET_CLOSED)
            state = ch.state
            if ch.join_ref is not None and (
                state is ChannelState.JOINED or state is ChannelState.JOINING
            ):
                ch.leave_ref = ref = self._out.next_ref()
                self._out.send(self._serializer.encode(ch.join_ref, ref, topic, PHX_LEAVE, {}))
                ch.transition(ChannelInput.LEAVE)

    def shut_down(self) -> None:
        """The client closed for good: every channel closes, every push fails."""
        for ch in list(self.live.values()):
            self.close(ch, ChannelCloseReason.SOCKET_CLOSED, push_reason=PushFailure.SOCKET_CLOSED)

    # ------------------------------------------------------------------------------------
    # Joins

    def _join_frame(self, ch: ChannelRecord) -> tuple[str, str | bytes]:
        payload = ch.join_payload() if callable(ch.join_payload) else ch.join_payload
        ref = self._out.next_ref()
        return ref, self._encode(ref, ref, ch.topic, PHX_JOIN, {} if payload is None else payload)

    def _send_join(self, now: float, ch: ChannelRecord) -> None:
        try:
            ref, frame = self._join_frame(ch)
        except Exception as exc:  # the user's payload callable failed, or its result
            self._join_failed(
                now, ch, {"reason": "join payload failed", "error": repr(exc)}, final=False
            )
            return
        ch.transition(ChannelInput.REJOIN)
        ch.join_ref = ref
        self._out.send(frame)
        if ch.joined_once:
            self._timers.set((_JOIN, ch.topic), now + ch.timeout)

    def _join_replied(self, now: float, ch: ChannelRecord, status: str, response: Any) -> None:
        self._timers.cancel((_JOIN, ch.topic))
        if status != "ok":
            self._join_failed(now, ch, response, final=is_unmatched(response))
            return
        ch.transition(ChannelInput.JOIN_OK)
        ch.joined_at = now
        join_ref = ch.join_ref
        assert join_ref is not None  # a reply matched it
        self._out.emit(Joined(ch.topic, response, join_ref, ch.joined_once))
        ch.joined_once = True
        out = self._out
        for event, push_payload in ch.after_join:
            ref = out.next_ref()
            self._internal[ref] = ch.topic
            out.send(self._serializer.encode(join_ref, ref, ch.topic, event, push_payload))
        self.keepalive.joined(now, ch.topic, Keepalive.plan_for(ch.ping, response, ch.timeout))
        buffer, ch.buffer = ch.buffer, []
        for push in buffer:
            out.send(
                self._serializer.encode(join_ref, push.ref, ch.topic, push.event, push.payload)
            )
            push.sent = True
            ch.in_flight[push.ref] = push

    def _join_timed_out(self, now: float, ch: ChannelRecord) -> None:
        if ch.join_ref is not None and self._is_open():
            # Tell the server to drop the join it may still complete (phoenix.js does too).
            ref = self._out.next_ref()
            self._out.send(self._serializer.encode(ch.join_ref, ref, ch.topic, PHX_LEAVE, {}))
        self._join_failed(now, ch, None, final=False, timed_out=True)

    def _join_failed(
        self, now: float, ch: ChannelRecord, response: Any, *, final: bool, timed_out: bool = False
    ) -> None:
        """A join attempt failed. The user's first join fails for good; a rejoin retries."""
        if final or not ch.joined_once:
            self._out.emit(JoinFailed(ch.topic, response, timed_out))
            self.close(ch, ChannelCloseReason.JOIN_FAILED, response)
            return
        if ch.state is ChannelState.JOINING:
            ch.transition(ChannelInput.JOIN_RETRY)
        ch.join_ref = None
        self._out.emit(JoinFailed(ch.topic, response, timed_out, self._schedule_rejoin(now, ch)))

    def _errored(self, now: float, ch: ChannelRecord, reason: str, payload: Any) -> None:
        self.keepalive.stop(ch.topic)
        for push in list(ch.in_flight.values()):
            self._fail_push(push, PushFailure.CHANNEL_ERRORED)
        ch.in_flight.clear()
        if not ch.joined_once:
            # The user's first join broke before it completed: that join has failed.
            self._join_failed(now, ch, payload, final=True)
            return
        self._timers.cancel((_JOIN, ch.topic))
        if now - ch.joined_at >= self._rejoin.stable_after:
            ch.rejoin_attempts = 0  # it stayed joined a while: not a crash loop
        ch.transition(ChannelInput.ERROR)
        ch.join_ref = None
        self._out.emit(ChannelErrored(ch.topic, reason, payload, self._schedule_rejoin(now, ch)))

    def _schedule_rejoin(self, now: float, ch: ChannelRecord) -> float | None:
        # Unreachable today: rejoins are only scheduled on a frame or a rejoin timer, and both
        # need the socket open. Kept as the safe answer should that change.
        if not self._is_open():  # pragma: no cover
            return None  # rejoined as soon as the socket reopens
        ch.rejoin_attempts += 1
        at = now + self._rejoin.delay(ch.rejoin_attempts, self._rng)
        self._timers.set((_REJOIN, ch.topic), at)
        return at

    def close(
        self,
        ch: ChannelRecord,
        reason: ChannelCloseReason,
        payload: Any = None,
        *,
        push_reason: PushFailure = PushFailure.CHANNEL_CLOSED,
    ) -> None:
        """Close ``ch`` for good: its timers stop, its pushes fail, ChannelClosed follows."""
        topic = ch.topic
        ch.transition(ChannelInput.CLOSE)
        del self.live[topic]
        self.keepalive.stop(topic)
        timers = self._timers
        timers.cancel((_JOIN, topic))
        timers.cancel((_REJOIN, topic))
        timers.cancel((_LEAVE, topic))
        for push in ch.buffer:
            self._fail_push(push, push_reason)
        for push in ch.in_flight.values():
            self._fail_push(push, push_reason)
        ch.buffer.clear()
        ch.in_flight.clear()
        self._out.emit(ChannelClosed(topic, reason, payload))

    # ------------------------------------------------------------------------------------
    # Pushes

    def _push_timed_out(self, ref: str) -> None:
        push = self.pushes.pop(ref)
        ch = self.live[push.topic]  # a closed channel has failed all its pushes
        if push.sent:
            del ch.in_flight[ref]
        else:
            ch.buffer.remove(push)
        self._out.emit(PushFailed(push.topic, ref, PushFailure.TIMEOUT, push.sent))

    def _fail_push(self, push: Push, reason: PushFailure) -> None:
        del self.pushes[push.ref]
        self._timers.cancel((_PUSH, push.ref))
        self._out.emit(PushFailed(push.topic, push.ref, reason, push.sent))

    def _encode(
        self, join_ref: str | None, ref: str, topic: str, event: str, payload: Any
    ) -> str | bytes:
        # The serializer turns every failure to encode into a UsageError naming event and topic.
        frame = self._serializer.encode(join_ref, ref, topic, event, payload)
        limit = self._max_size
        # A str of n code points is at most 4n UTF-8 bytes: the exact size is only needed
        # near the limit.
        if limit is not None and len(frame) * 4 > limit:
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "replace"))
            if size > limit:
                raise UsageError(
                    f"{event!r} to {topic!r} is {size} bytes on the wire, over "
                    f"max_message_size ({limit}): send less, or raise the limit"
                )
        if type(frame) is str and not frame.isascii():
            # JSON text may hold a lone surrogate, which no WebSocket text frame can carry:
            # refuse it here, where the caller can be told, not while sending.
            try:
                frame.encode()
            except UnicodeEncodeError as exc:
                raise UsageError(
                    f"cannot encode the payload of {event!r} to {topic!r} as UTF-8: {exc}"
                ) from None
        return frame

    def _snapshot(self, payload: Any) -> Any:
        if isinstance(payload, (bytes, bytearray, memoryview)):
            return bytes(payload)
        codec = self._codec
        return codec.loads(codec.dumps(payload))
