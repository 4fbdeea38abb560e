"""The sans-IO Phoenix Channels client: one connection, many channels.

Theory of operation
-------------------
Inputs are method calls that take ``now`` (seconds on the caller's monotonic clock): the
transport's news (``transport_opened``, ``receive_data``, ``transport_closed``), the clock's
(``handle_timer``) and the user's (``connect``, ``join``, ``push``, ``leave``, ``close``).
Outputs are queued and pulled one at a time with :meth:`Client.next_event`: commands for the
transport, events for the application, and last a :class:`SleepUntil` with the next deadline.

The socket moves through :data:`SOCKET_TRANSITIONS`; each channel through
``_channel.TRANSITIONS``. Every deadline (heartbeat, heartbeat reply, connect, reconnect,
join, rejoin, leave, push, close) lives in one keyed :class:`TimerQueue`, so the next deadline
is one heap peek and ``handle_timer`` handles everything that is due, in deadline order.

Invariants the tests hold: each ref is used once; every push ends in exactly one of
:class:`ReplyReceived` or :class:`PushFailed`; a frame whose non-null join_ref is not its
channel's current one is never delivered; after a reconnect every channel the user has not
left is rejoined before its buffered pushes are sent.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Mapping
from random import Random
from typing import Any

from ._channel import Channel, ChannelInput, ChannelState, Push
from ._codec import JsonCodec, resolve_codec
from ._errors import ClientClosedError, FrameError, UsageError
from ._events import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    DisconnectReason,
    FrameDropped,
    GaveUp,
    HandshakeRefused,
    HandshakeRequest,
    Joined,
    JoinFailed,
    MessageReceived,
    OpenTransport,
    Output,
    PresenceChanged,
    PushFailed,
    PushFailure,
    ReplyReceived,
    SendBytes,
    SendMessage,
    SleepUntil,
)
from ._heartbeat import Heartbeat
from ._message import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    ChannelMessage,
)
from ._presence import Presence
from ._retry import DEFAULT_REJOIN_POLICY, SERVICE_RESTART, TRY_AGAIN_LATER, RetryPolicy
from ._serializer import make_serializer
from ._timers import TimerQueue
from ._url import (
    Endpoint,
    Headers,
    Params,
    Token,
    auth_subprotocols,
    resolve_headers,
    resolve_params,
    resolve_token,
)
from ._websocket import (
    WebSocketEngine,
    WsAccepted,
    WsBinary,
    WsClosed,
    WsEvent,
    WsFailed,
    WsprotoEngine,
    WsRejected,
    WsText,
)

EngineFactory = Callable[..., WebSocketEngine]

_RESERVED_EVENTS = frozenset({PHX_JOIN, PHX_LEAVE, PHX_REPLY, PHX_ERROR, PHX_CLOSE})
_UNMATCHED_TOPIC = "unmatched topic"

# Timer keys. Channel and push timers carry their topic or ref as the second element.
_HEARTBEAT = ("heartbeat",)
_HEARTBEAT_REPLY = ("heartbeat_reply",)
_CONNECT = ("connect",)
_RECONNECT = ("reconnect",)
_CLOSE = ("close",)
_JOIN = "join"
_REJOIN = "rejoin"
_LEAVE = "leave"
_PUSH = "push"


class SocketState(str, enum.Enum):
    """Where the connection is."""

    IDLE = "idle"  # created; connect() not called yet
    CONNECTING = "connecting"  # OpenTransport emitted, waiting for transport_opened
    HANDSHAKING = "handshaking"  # WebSocket upgrade sent, waiting for the answer
    OPEN = "open"  # WebSocket open
    WAITING = "waiting"  # between connections, until the reconnect deadline
    CLOSING = "closing"  # close() sent the WebSocket close, waiting for the server's
    CLOSED = "closed"  # closed for good: by the user, or after giving up


class SocketInput(enum.Enum):
    """What can happen to the connection."""

    CONNECT = "connect"
    OPENED = "opened"  # the transport is open; the handshake starts
    ACCEPTED = "accepted"  # the WebSocket is open
    LOST = "lost"  # the connection (attempt) failed; a reconnect is scheduled
    GIVE_UP = "give_up"  # the connection (attempt) failed; no more reconnects
    CLOSE = "close"  # the user closes an open socket: the close handshake starts
    CLOSED = "closed"  # closed for good


_S = SocketState
_I = SocketInput

#: (state, input) -> next state. A pair not in the table is a bug in the client.
SOCKET_TRANSITIONS: dict[tuple[SocketState, SocketInput], SocketState] = {
    (_S.IDLE, _I.CONNECT): _S.CONNECTING,
    (_S.WAITING, _I.CONNECT): _S.CONNECTING,
    (_S.CONNECTING, _I.OPENED): _S.HANDSHAKING,
    (_S.CONNECTING, _I.ACCEPTED): _S.OPEN,  # external WebSocket: opened means accepted
    (_S.HANDSHAKING, _I.ACCEPTED): _S.OPEN,
    (_S.CONNECTING, _I.LOST): _S.WAITING,
    (_S.HANDSHAKING, _I.LOST): _S.WAITING,
    (_S.OPEN, _I.LOST): _S.WAITING,
    (_S.CONNECTING, _I.GIVE_UP): _S.CLOSED,
    (_S.HANDSHAKING, _I.GIVE_UP): _S.CLOSED,
    (_S.OPEN, _I.GIVE_UP): _S.CLOSED,
    (_S.OPEN, _I.CLOSE): _S.CLOSING,
    (_S.IDLE, _I.CLOSED): _S.CLOSED,
    (_S.CONNECTING, _I.CLOSED): _S.CLOSED,
    (_S.HANDSHAKING, _I.CLOSED): _S.CLOSED,
    (_S.OPEN, _I.CLOSED): _S.CLOSED,  # external WebSocket: the transport does the handshake
    (_S.WAITING, _I.CLOSED): _S.CLOSED,
    (_S.CLOSING, _I.CLOSED): _S.CLOSED,
}

del _S, _I

_LIVE_CONNECTION = frozenset({SocketState.CONNECTING, SocketState.HANDSHAKING, SocketState.OPEN})


class CoreStats:
    """Counters the core keeps; drivers expose them. Nothing is dropped without a count."""

    __slots__ = (
        "connections",
        "malformed_frames",
        "messages",
        "stale_dropped",
        "unknown_topic_dropped",
    )

    def __init__(self) -> None:
        self.connections = 0  # successful WebSocket opens
        self.messages = 0  # MessageReceived events emitted
        self.stale_dropped = 0  # frames for a channel's earlier join, or a reply nobody awaits
        self.unknown_topic_dropped = 0  # frames for a topic with no live channel
        self.malformed_frames = 0  # frames that could not be decoded (FrameDropped)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"CoreStats({fields})"


class Client:
    """The Phoenix Channels client protocol, with no I/O.

    Args:
        url: the socket endpoint, ``ws(s)://host[:port]/socket`` (``/websocket`` is appended
            unless present; ``http(s)`` is taken as ``ws(s)``).
        params: query parameters, or a callable returning them, evaluated at every connect.
        auth_token: a token sent in the ``base64url.bearer.phx.`` subprotocol, or a callable
            returning one, evaluated at every connect.
        headers: extra handshake headers, or a callable returning them, evaluated at every connect.
        vsn: ``"2.0.0"`` (JSON arrays and binary frames) or ``"1.0.0"`` (JSON objects; the
            server then sends no join_ref, so frames of an earlier join cannot be told apart).
        json: ``"stdlib"`` (default), ``"orjson"``, or an object with ``dumps``/``loads``.
        heartbeat_interval: seconds between heartbeats; None turns heartbeats off.
        heartbeat_timeout: seconds to wait for a heartbeat's reply (default: the interval).
        timeout: default join, push and leave timeout, in seconds.
        connect_timeout: seconds for open plus handshake (default: ``timeout``).
        close_timeout: seconds to wait for the server's close frame after ``close()``.
        retry: the reconnect policy; None means never reconnect.
        rejoin: the policy for rejoining a channel after a join error or ``phx_error``.
        max_buffered_pushes: per channel, how many pushes may wait for the join.
        max_message_size: the largest WebSocket message accepted (None: no limit).
        rng: the source of jitter; inject a seeded ``random.Random`` for repeatable runs.
        engine: the WebSocket engine factory; None means the transport does its own WebSocket
            framing and hands whole messages to :meth:`receive_message`.

    Raises:
        UsageError: an invalid URL, vsn, codec or option.
    """

    def __init__(
        self,
        url: str,
        *,
        params: Params = None,
        auth_token: Token = None,
        headers: Headers = None,
        vsn: str = "2.0.0",
        json: str | JsonCodec | None = None,
        heartbeat_interval: float | None = 30.0,
        heartbeat_timeout: float | None = None,
        timeout: float = 10.0,
        connect_timeout: float | None = None,
        close_timeout: float = 5.0,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - frozen, so sharing is safe
        rejoin: RetryPolicy = DEFAULT_REJOIN_POLICY,
        max_buffered_pushes: int = 1000,
        max_message_size: int | None = 64 * 1024 * 1024,
        rng: Random | None = None,
        engine: EngineFactory | None = WsprotoEngine,
    ) -> None:
        self._endpoint = Endpoint.parse(url)
        self._params = params
        self._auth_token = auth_token
        self._headers = headers
        self._vsn = vsn
        self._codec = resolve_codec(json)
        self._serializer = make_serializer(vsn, self._codec)
        self._timeout = _positive("timeout", timeout)
        self._connect_timeout = _positive(
            "connect_timeout", timeout if connect_timeout is None else connect_timeout
        )
        self._close_timeout = _positive("close_timeout", close_timeout)
        if heartbeat_interval is not None:
            _positive("heartbeat_interval", heartbeat_interval)
            hb_timeout = _positive(
                "heartbeat_timeout",
                heartbeat_interval if heartbeat_timeout is None else heartbeat_timeout,
            )
            self._heartbeat: Heartbeat | None = Heartbeat(heartbeat_interval, hb_timeout)
        else:
            self._heartbeat = None
        self._retry = retry
        self._rejoin = rejoin
        if max_buffered_pushes < 0:
            raise UsageError("max_buffered_pushes must be >= 0")
        self._max_buffered = max_buffered_pushes
        self._max_message_size = max_message_size
        self._rng = rng if rng is not None else Random()
        self._engine_factory = engine
        self._engine: WebSocketEngine | None = None

        self._state = SocketState.IDLE
        self._ref = 0
        self._attempts = 0  # consecutive failed connection attempts
        self._refusals = 0  # consecutive refused handshakes
        self._close_code: int | None = None  # the code close() sent
        self._opened_at: float | None = None  # when the current connection opened
        self._channels: dict[str, Channel] = {}
        self._pushes: dict[str, Push] = {}  # every unresolved push, by ref
        self._timers: TimerQueue[tuple[str, ...]] = TimerQueue()
        self._out: deque[Output] = deque()
        self._wbuf = bytearray()  # bytes to send, coalesced into one SendBytes
        self.stats = CoreStats()

    # ------------------------------------------------------------------------------------
    # Introspection

    @property
    def state(self) -> SocketState:
        """The connection's state."""
        return self._state

    @property
    def is_connected(self) -> bool:
        """True while the WebSocket is open."""
        return self._state is SocketState.OPEN

    @property
    def vsn(self) -> str:
        """The protocol version in use."""
        return self._vsn

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics of the live channels, in join order."""
        return tuple(self._channels)

    @property
    def last_heartbeat_rtt(self) -> float | None:
        """Seconds between the last answered heartbeat and its reply, or None."""
        return self._heartbeat.last_rtt if self._heartbeat is not None else None

    def channel_state(self, topic: str) -> ChannelState:
        """The state of ``topic``'s channel; CLOSED when there is no live channel."""
        ch = self._channels.get(topic)
        return ch.state if ch is not None else ChannelState.CLOSED

    def join_ref(self, topic: str) -> str | None:
        """The join_ref of ``topic``'s current join, or None."""
        ch = self._channels.get(topic)
        return ch.join_ref if ch is not None else None

    def presence(self, topic: str) -> Presence | None:
        """The presence tracker of ``topic``'s channel, if it was joined with ``presence``."""
        ch = self._channels.get(topic)
        return ch.presence if ch is not None else None

    # ------------------------------------------------------------------------------------
    # Output

    def next_event(self) -> Output:
        """Return the next command or event; :class:`SleepUntil` when there is nothing left.

        Call it in a loop after every input, carrying out commands and handling events, until
        it returns SleepUntil; then wait for data, the deadline, or a user call.
        """
        if self._out:
            return self._out.popleft()
        if self._wbuf:
            data = bytes(self._wbuf)
            self._wbuf.clear()
            return SendBytes(data)
        return SleepUntil(self._timers.next_deadline())

    def next_deadline(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called, or None."""
        return self._timers.next_deadline()

    def _emit(self, item: Output) -> None:
        # Bytes written before this item must go out before it: flush them first.
        if self._wbuf:
            self._out.append(SendBytes(bytes(self._wbuf)))
            self._wbuf.clear()
        self._out.append(item)

    # ------------------------------------------------------------------------------------
    # Connection inputs

    def connect(self, now: float) -> None:
        """Start connecting (or, while waiting to reconnect, reconnect at once).

        Next: pull events; an :class:`OpenTransport` comes out. A no-op while connecting or
        connected. Raises ClientClosedError after close.
        """
        self._check_not_closed()
        if self._state in (SocketState.IDLE, SocketState.WAITING):
            self._open(now)

    def transport_opened(self, now: float) -> None:
        """The stream asked for by :class:`OpenTransport` is open.

        With the built-in WebSocket engine this sends the upgrade request (credentials are
        evaluated now). With an external WebSocket, call it once the handshake succeeded.
        Raises UsageError when no transport was being opened.
        """
        if self._state is not SocketState.CONNECTING:
            raise UsageError(f"transport_opened() while {self._state.value}")
        if self._engine_factory is None:
            self._on_accepted(now, None)
            return
        try:
            request = self.handshake_request()
            engine = self._engine_factory(
                host=request.host,
                target=request.target,
                headers=request.headers,
                subprotocols=request.subprotocols,
                max_message_size=self._max_message_size,
            )
        except Exception as exc:  # a user's params/token/headers callable failed
            self._emit(CloseTransport())
            self._lost(now, DisconnectReason.TRANSPORT_ERROR, detail=f"handshake: {exc!r}")
            return
        self._socket(SocketInput.OPENED)
        self._engine = engine
        self._wbuf += engine.start()

    def handshake_request(self) -> HandshakeRequest:
        """Evaluate params, token and headers and return the WebSocket upgrade to perform.

        The built-in engine calls this itself; a transport with its own WebSocket calls it
        after :class:`OpenTransport`. Raises whatever a user's callable raises, or UsageError.
        """
        endpoint = self._endpoint
        target = endpoint.target(resolve_params(self._params), self._vsn)
        return HandshakeRequest(
            url=endpoint.url(target),
            host=endpoint.host_header,
            target=target,
            headers=resolve_headers(self._headers),
            subprotocols=auth_subprotocols(resolve_token(self._auth_token)),
        )

    def receive_data(self, now: float, data: bytes) -> None:
        """Feed bytes read from the stream. Never raises on bad input from the server.

        Next: pull events. Data arriving when no stream is expected is ignored.
        """
        engine = self._engine
        if engine is None:
            return
        self._on_ws_events(now, engine.receive(data))

    def receive_message(self, now: float, data: str | bytes) -> None:
        """External WebSocket only: one whole message (text as ``str``, binary as ``bytes``)."""
        if self._engine_factory is not None:
            raise UsageError("receive_message() needs engine=None; use receive_data()")
        if self._state is SocketState.OPEN:
            self._on_message(now, data)

    def transport_closed(
        self, now: float, error: str | None = None, *, code: int | None = None, reason: str = ""
    ) -> None:
        """The stream ended (EOF, a failure, or it could not be opened).

        ``error`` describes a failure; ``code`` and ``reason`` are for external WebSockets that
        saw a close frame. Next: pull events (a reconnect deadline, or the end).
        """
        state = self._state
        if state not in _LIVE_CONNECTION and state is not SocketState.CLOSING:
            return
        engine = self._engine
        if engine is not None and error is None:
            events = engine.receive_eof()
            if state is SocketState.HANDSHAKING:
                # The stream ended before the server answered: a network failure, not a
                # protocol error, unless a refusal had started to arrive.
                events = [ev for ev in events if type(ev) is WsRejected]
            self._on_ws_events(now, events)
            if self._engine is None:  # the EOF ended the connection (close, refusal)
                return
        if state is SocketState.CLOSING:
            self._engine = None
            self._finish_close()
            return
        if code is not None:
            self._lost(now, DisconnectReason.SERVER_CLOSED, code, reason)
        elif error is not None:
            self._lost(now, DisconnectReason.TRANSPORT_ERROR, detail=error)
        elif state is SocketState.HANDSHAKING:
            self._lost(now, DisconnectReason.TRANSPORT_CLOSED, detail="closed during the handshake")
        else:
            self._lost(now, DisconnectReason.TRANSPORT_CLOSED)

    def handshake_refused(
        self,
        now: float,
        status_code: int,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> None:
        """External WebSocket only: the server answered the upgrade with ``status_code``."""
        if self._state is SocketState.CONNECTING:
            self._refused(now, status_code, headers, body)

    # ------------------------------------------------------------------------------------
    # Channel inputs

    def join(
        self,
        now: float,
        topic: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        presence: bool | Presence = False,
    ) -> None:
        """Join ``topic``. ``payload`` may be a callable, evaluated at each (re)join.

        The join is sent now if connected, else when the connection opens. ``timeout`` covers
        the whole first join, waiting for the connection included; each later rejoin attempt
        gets the same. ``presence`` (True, or a :class:`Presence` to use) tracks presence.
        Next: pull events; :class:`Joined` or :class:`JoinFailed` follows.

        Raises UsageError if ``topic`` already has a live channel (leave it first) or the
        payload cannot be encoded; ClientClosedError after close.
        """
        self._check_not_closed()
        if not isinstance(topic, str) or not topic:
            raise UsageError(f"topic must be a non-empty str, got {topic!r}")
        timeout = self._timeout if timeout is None else _positive("timeout", timeout)
        existing = self._channels.get(topic)
        if existing is not None and existing.state is not ChannelState.LEAVING:
            raise UsageError(f"{topic!r} is already {existing.state.value}; leave it first")
        ch = Channel(topic, payload, timeout)
        if presence is not False:
            ch.presence = presence if isinstance(presence, Presence) else Presence()
        frame = None
        if self._state is SocketState.OPEN:
            frame = self._join_frame(ch)  # raises before anything changes
        elif not callable(payload):
            self._encode_check(topic, PHX_JOIN, payload)
        if existing is not None:  # a join replaces a channel that is still leaving
            self._close_channel(existing, ChannelCloseReason.LEFT)
        ch.transition(ChannelInput.JOIN)
        self._channels[topic] = ch
        self._timers.set((_JOIN, topic), now + timeout)
        if frame is not None:
            self._send_join_frame(ch, *frame)

    def push(
        self,
        now: float,
        topic: str,
        event: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Push ``event`` with ``payload`` (``bytes`` is sent as a binary frame) to ``topic``.

        Returns the push's ref: exactly one :class:`ReplyReceived` or :class:`PushFailed`
        with that ref follows. Sent now if the channel is joined; otherwise it waits, within
        its own timeout, for the join (a full buffer fails it at once with BUFFER_FULL).

        Raises UsageError if ``topic`` has no live channel, is leaving, ``event`` is reserved,
        or the payload cannot be encoded; ClientClosedError after close.
        """
        self._check_not_closed()
        ch = self._channels.get(topic)
        if ch is None:
            raise UsageError(f"push {event!r} to {topic!r} before joining it")
        if ch.state is ChannelState.LEAVING:
            raise UsageError(f"push {event!r} to {topic!r} while leaving it")
        if event in _RESERVED_EVENTS:
            raise UsageError(f"{event!r} is reserved by the protocol")
        if payload is None:
            payload = {}
        timeout = self._timeout if timeout is None else _positive("timeout", timeout)
        ref = self._next_ref()
        push = Push(topic, event, payload, ref, now + timeout)
        if ch.state is ChannelState.JOINED:
            self._send(self._encode(ch.join_ref, ref, topic, event, payload))
            push.sent = True
            ch.in_flight[ref] = push
        else:
            self._encode(None, ref, topic, event, payload)  # a bad payload fails here, not later
            # Keep a copy, not the caller's object: what is sent must be what was pushed,
            # even if the caller reuses or changes it before the join completes.
            push.payload = self._snapshot(payload)
            if len(ch.buffer) >= self._max_buffered:
                self._emit(PushFailed(topic, ref, PushFailure.BUFFER_FULL))
                return ref
            ch.buffer.append(push)
        self._pushes[ref] = push
        self._timers.set((_PUSH, ref), push.deadline)
        return ref

    def cancel_push(self, now: float, ref: str) -> bool:
        """Withdraw push ``ref`` if it has not been sent yet.

        Returns True when it was still waiting for its join: it will never be sent, and its
        outcome is a :class:`PushFailed` (CANCELLED). Returns False when it was already sent
        (a frame on the wire cannot be recalled: its reply or failure still comes) or has
        already ended. Next: pull events.
        """
        push = self._pushes.get(ref)
        if push is None or push.sent:
            return False
        self._channels[push.topic].buffer.remove(push)
        self._fail_push(push, PushFailure.CANCELLED)
        return True

    def leave(self, now: float, topic: str, *, timeout: float | None = None) -> None:
        """Leave ``topic``: ``phx_leave`` if a join is out, then :class:`ChannelClosed` (LEFT).

        Unsent pushes fail with CHANNEL_CLOSED now; pushes in flight keep waiting for their
        replies until the channel closes. A no-op while already leaving. Raises UsageError
        if ``topic`` has no live channel; ClientClosedError after close.
        """
        self._check_not_closed()
        ch = self._channels.get(topic)
        if ch is None:
            raise UsageError(f"leave {topic!r}: not joined")
        if ch.state is ChannelState.LEAVING:
            return
        timeout = ch.timeout if timeout is None else _positive("timeout", timeout)
        if ch.join_ref is None or self._state is not SocketState.OPEN:
            self._close_channel(ch, ChannelCloseReason.LEFT)
            return
        self._timers.cancel((_JOIN, topic))
        self._timers.cancel((_REJOIN, topic))
        while ch.buffer:
            self._fail_push(ch.buffer.popleft(), PushFailure.CHANNEL_CLOSED)
        ch.transition(ChannelInput.LEAVE)
        ch.leave_ref = ref = self._next_ref()
        self._send(self._serializer.encode(ch.join_ref, ref, topic, PHX_LEAVE, {}))
        self._timers.set((_LEAVE, topic), now + timeout)

    def close(self, now: float, code: int = 1000, reason: str = "") -> None:
        """Close for good: ``phx_leave`` for each joined channel, then a WebSocket close.

        Unsent pushes fail now (SOCKET_CLOSED). Replies to pushes already sent still count
        until the server's close frame (Phoenix answers in order, so they arrive before it);
        then every channel closes (SOCKET_CLOSED) and what is still unanswered fails. No
        message is delivered after close(). Next: pull events until :class:`Closed`. Calling
        it again is a no-op. Raises UsageError, before anything changes, for a close code that
        cannot be sent (1004-1006, 1015-2999, or outside 1000-4999).
        """
        if not _sendable_close_code(code):
            # Checked first: the engine would refuse it only after the channels were closed.
            raise UsageError(
                f"close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999"
            )
        state = self._state
        if state is SocketState.CLOSED or state is SocketState.CLOSING:
            return
        self._stop_connection_timers()
        if state is SocketState.OPEN and self._engine is not None:
            for ch in self._channels.values():
                self._leave_for_close(ch)
            self._socket(SocketInput.CLOSE)
            self._close_code = code
            self._wbuf += self._engine.close(code, reason)
            self._timers.set(_CLOSE, now + self._close_timeout)
            return
        if state is SocketState.OPEN:  # external WebSocket: the transport closes at once
            for ch in self._channels.values():
                self._leave_for_close(ch)
        self._shutdown_channels()
        if state in _LIVE_CONNECTION:
            self._emit(CloseTransport(code, reason))
        self._engine = None
        self._timers.clear()
        self._socket(SocketInput.CLOSED)
        self._emit(Disconnected(DisconnectReason.CLIENT_CLOSED, code))
        self._emit(Closed())

    # ------------------------------------------------------------------------------------
    # Timers

    def handle_timer(self, now: float) -> None:
        """Act on every deadline at or before ``now``. Next: pull events."""
        timers = self._timers
        while (due := timers.pop_due(now)) is not None:
            key, deadline = due
            kind = key[0]
            if kind == _PUSH:
                self._push_timed_out(key[1])
            elif kind == _JOIN:
                self._join_timed_out(now, self._channels[key[1]])
            elif kind == _REJOIN:  # armed only while the socket is open; cancelled on a drop
                self._send_join(now, self._channels[key[1]])
            elif kind == _LEAVE:
                self._close_channel(self._channels[key[1]], ChannelCloseReason.LEFT)
            elif key == _HEARTBEAT:
                self._heartbeat_due(now, deadline)
            elif key == _HEARTBEAT_REPLY:
                self._abort(now, DisconnectReason.HEARTBEAT_TIMEOUT, "no heartbeat reply")
            elif key == _CONNECT:
                self._abort(now, DisconnectReason.CONNECT_TIMEOUT, "connect timed out")
            elif key == _RECONNECT:
                self._open(now)
            else:  # _CLOSE: the server never answered our close frame
                self._emit(CloseTransport())
                self._engine = None
                self._finish_close()

    # ------------------------------------------------------------------------------------
    # Connection internals

    def _socket(self, event: SocketInput) -> None:
        try:
            self._state = SOCKET_TRANSITIONS[self._state, event]
        except KeyError:
            raise UsageError(f"socket: {event.value} in state {self._state.value}") from None

    def _check_not_closed(self) -> None:
        if self._state is SocketState.CLOSED or self._state is SocketState.CLOSING:
            raise ClientClosedError("the client is closed")

    def _open(self, now: float) -> None:
        self._timers.cancel(_RECONNECT)
        self._socket(SocketInput.CONNECT)
        ep = self._endpoint
        self._emit(OpenTransport(ep.host, ep.port, ep.tls))
        self._timers.set(_CONNECT, now + self._connect_timeout)

    def _on_ws_events(self, now: float, events: list[WsEvent]) -> None:
        for ev in events:
            kind = type(ev)
            if kind is WsText or kind is WsBinary:
                self._on_message(now, ev.data)  # type: ignore[union-attr]
            elif kind is WsAccepted:
                self._on_accepted(now, ev.subprotocol)  # type: ignore[union-attr]
            elif kind is WsRejected:
                self._refused(now, ev.status_code, ev.headers, ev.body)  # type: ignore[union-attr]
                return
            elif kind is WsClosed:
                self._peer_closed(now, ev.code, ev.reason)  # type: ignore[union-attr]
                return
            else:
                assert isinstance(ev, WsFailed)
                self._engine_failed(now, ev.detail, ev.code)
                return
        engine = self._engine
        # Always true: only text, binary and accepted events get here, and none of them ends
        # the connection.
        if engine is not None:  # pragma: no branch
            self._wbuf += engine.data_to_send()

    def _on_accepted(self, now: float, subprotocol: str | None) -> None:
        self._socket(SocketInput.ACCEPTED)
        self._opened_at = now
        self._refusals = 0
        self.stats.connections += 1
        self._timers.cancel(_CONNECT)
        self._emit(Connected(subprotocol))
        hb = self._heartbeat
        if hb is not None:
            self._timers.set(_HEARTBEAT, now + hb.interval)
        for ch in list(self._channels.values()):
            state = ch.state
            # Always true today (a lost connection leaves every channel errored, or joining
            # with no join out, and closes those leaving); kept so no channel is joined twice.
            if state is ChannelState.ERRORED or (  # pragma: no branch
                state is ChannelState.JOINING and ch.join_ref is None
            ):
                self._timers.cancel((_REJOIN, ch.topic))
                ch.rejoin_attempts = 0
                self._send_join(now, ch)

    def _refused(
        self, now: float, status: int, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> None:
        retry = self._retry
        if retry is not None and retry.counts_as_refusal(status):
            self._refusals += 1
        self._emit(HandshakeRefused(status, headers, body))
        self._emit(CloseTransport())
        limit = retry.max_refusals if retry is not None else None
        self._lost(
            now,
            DisconnectReason.HANDSHAKE_REFUSED,
            detail=f"HTTP {status}",
            final=limit is not None and self._refusals >= limit,
        )

    def _peer_closed(self, now: float, code: int | None, reason: str) -> None:
        engine = self._engine
        if engine is not None:  # pragma: no branch - only an engine's events get here
            self._wbuf += engine.data_to_send()  # our reply to the server's close
        self._emit(CloseTransport())
        if self._state is SocketState.CLOSING:
            self._engine = None
            self._finish_close()
        elif code is None:
            self._lost(now, DisconnectReason.TRANSPORT_CLOSED, detail=reason)
        else:
            self._lost(now, DisconnectReason.SERVER_CLOSED, code, reason)

    def _engine_failed(self, now: float, detail: str, code: int | None) -> None:
        engine = self._engine
        if engine is not None:  # pragma: no branch - only an engine's events get here
            self._wbuf += engine.data_to_send()  # the close frame naming the failure
        self._emit(CloseTransport())
        if self._state is SocketState.CLOSING:
            self._engine = None
            self._finish_close()
        else:
            self._lost(now, DisconnectReason.PROTOCOL_ERROR, code, detail)

    def _abort(self, now: float, reason: DisconnectReason, detail: str) -> None:
        engine = self._engine
        if engine is not None:
            self._wbuf += engine.close(1000, detail)  # best effort: the peer may be gone
        self._emit(CloseTransport(1000, detail))
        self._lost(now, reason, detail=detail)

    def _lost(
        self,
        now: float,
        reason: DisconnectReason,
        code: int | None = None,
        detail: str = "",
        *,
        final: bool = False,
    ) -> None:
        """The connection (or an attempt) ended; CloseTransport, if needed, is already out."""
        self._engine = None
        self._stop_connection_timers()
        for ch in list(self._channels.values()):
            self._connection_lost_for(ch, reason)
        retry = self._retry
        opened_at, self._opened_at = self._opened_at, None
        if retry is not None and opened_at is not None and now - opened_at >= retry.stable_after:
            self._attempts = 0  # that connection proved itself: the schedule starts again
        self._attempts += 1
        if (
            final
            or retry is None
            or (code is not None and code in retry.final_close_codes)
            or retry.exhausted(self._attempts)
        ):
            self._socket(SocketInput.GIVE_UP)
            self._emit(Disconnected(reason, code, detail))
            self._emit(GaveUp(reason, self._attempts, code, detail))
            self._shutdown_channels()
            self._timers.clear()
            self._emit(Closed())
            return
        if code == SERVICE_RESTART:
            delay = retry.delay(1, self._rng)  # the server said it is coming right back
        elif code == TRY_AGAIN_LATER:
            delay = retry.jittered(retry.max_backoff, self._rng)
        else:
            delay = retry.delay(self._attempts, self._rng)
        self._socket(SocketInput.LOST)
        retry_at = now + delay
        self._timers.set(_RECONNECT, retry_at)
        self._emit(Disconnected(reason, code, detail, retry_at))

    def _connection_lost_for(self, ch: Channel, reason: DisconnectReason) -> None:
        for push in list(ch.in_flight.values()):
            self._fail_push(push, PushFailure.CONNECTION_LOST)
        ch.in_flight.clear()
        state = ch.state
        if state is ChannelState.LEAVING:
            self._close_channel(ch, ChannelCloseReason.LEFT)
            return
        self._timers.cancel((_REJOIN, ch.topic))
        if state is ChannelState.ERRORED or ch.join_ref is None:
            return  # already broken, or a first join still waiting for a connection
        ch.transition(ChannelInput.ERROR)
        ch.join_ref = None
        if ch.joined_once:
            # A rejoin attempt in flight is moot; the first join keeps its overall deadline.
            self._timers.cancel((_JOIN, ch.topic))
            self._emit(ChannelErrored(ch.topic, reason.value))

    def _stop_connection_timers(self) -> None:
        timers = self._timers
        for key in (_HEARTBEAT, _HEARTBEAT_REPLY, _CONNECT, _RECONNECT):
            timers.cancel(key)
        if self._heartbeat is not None:
            self._heartbeat.reset()

    def _shutdown_channels(self) -> None:
        for ch in list(self._channels.values()):
            self._close_channel(
                ch, ChannelCloseReason.SOCKET_CLOSED, push_reason=PushFailure.SOCKET_CLOSED
            )

    def _leave_for_close(self, ch: Channel) -> None:
        """close() leaves ``ch``: unsent pushes fail, sent ones wait for the close frame."""
        topic = ch.topic
        self._timers.cancel((_JOIN, topic))
        self._timers.cancel((_REJOIN, topic))
        while ch.buffer:
            self._fail_push(ch.buffer.popleft(), PushFailure.SOCKET_CLOSED)
        state = ch.state
        if ch.join_ref is not None and (
            state is ChannelState.JOINED or state is ChannelState.JOINING
        ):
            ref = self._next_ref()
            self._send(self._serializer.encode(ch.join_ref, ref, topic, PHX_LEAVE, {}))
            ch.transition(ChannelInput.LEAVE)

    def _finish_close(self) -> None:
        self._shutdown_channels()
        self._timers.clear()
        self._socket(SocketInput.CLOSED)
        self._emit(Disconnected(DisconnectReason.CLIENT_CLOSED, self._close_code))
        self._emit(Closed())

    def _heartbeat_due(self, now: float, deadline: float) -> None:
        hb = self._heartbeat
        assert hb is not None  # the timer is only armed with a heartbeat configured
        if hb.pending_ref is None:
            ref = self._next_ref()
            self._send(self._serializer.encode(None, ref, PHOENIX_TOPIC, HEARTBEAT, {}))
            self._timers.set(_HEARTBEAT_REPLY, hb.sent(ref, now))
        # A fixed cadence, not reset by traffic; a caller that woke up late does not get a
        # burst of catch-up heartbeats.
        next_at = deadline + hb.interval
        self._timers.set(_HEARTBEAT, next_at if next_at > now else now + hb.interval)

    # ------------------------------------------------------------------------------------
    # Inbound frames

    def _on_message(self, now: float, data: str | bytes) -> None:
        try:
            if type(data) is str:
                msg = self._serializer.decode_text(data)
            else:
                msg = self._serializer.decode_binary(data)  # type: ignore[arg-type]
        except FrameError as exc:
            self.stats.malformed_frames += 1
            self._emit(FrameDropped(str(exc), data[:256]))
            return
        ref = msg.ref
        hb = self._heartbeat
        if ref is not None and hb is not None and ref == hb.pending_ref:
            hb.acknowledge(now)
            self._timers.cancel(_HEARTBEAT_REPLY)
            return
        ch = self._channels.get(msg.topic)
        if ch is None:
            self.stats.unknown_topic_dropped += 1
            return
        join_ref = msg.join_ref
        if join_ref and join_ref != ch.join_ref:  # null or "" means "no join_ref", as in phoenix.js
            self.stats.stale_dropped += 1
            return
        event = msg.event
        state = ch.state
        if event == PHX_REPLY:
            self._on_reply(now, ch, msg)
        elif event in (PHX_ERROR, PHX_CLOSE):
            # Phoenix sends both with ref = the join_ref, which survives on vsn 1.0.0 where
            # join_ref itself is absent: an earlier join's close must not close this one.
            if (not join_ref and ref is not None and ref != ch.join_ref) or (
                self._state is SocketState.CLOSING
            ):
                self.stats.stale_dropped += 1
            elif event == PHX_ERROR:
                self._on_phx_error(now, ch, msg.payload)
            else:
                reason = (
                    ChannelCloseReason.LEFT
                    if state is ChannelState.LEAVING
                    else ChannelCloseReason.SERVER_CLOSED
                )
                self._close_channel(ch, reason, msg.payload)
        elif state is not ChannelState.JOINED and state is not ChannelState.JOINING:
            # Errored: the server's channel is gone. Leaving: the user is done with it, as
            # phoenix.js, which forgets a channel at leave().
            self.stats.stale_dropped += 1
        else:
            self.stats.messages += 1
            self._emit(MessageReceived(msg))
            presence = ch.presence
            if presence is not None:
                update = presence.handle(event, msg.payload, ch.join_ref, notify=False)
                if update is not None:
                    self._emit(
                        PresenceChanged(
                            ch.topic, update.joins, update.leaves, presence, update.synced
                        )
                    )

    def _on_reply(self, now: float, ch: Channel, msg: ChannelMessage) -> None:
        ref = msg.ref
        payload = msg.payload  # the serializer guarantees a dict with a str "status"
        status: str = payload["status"]
        response = payload.get("response")
        push = ch.in_flight.pop(ref, None) if ref is not None else None
        if push is not None:
            del self._pushes[push.ref]
            self._timers.cancel((_PUSH, push.ref))
            self._emit(ReplyReceived(ch.topic, push.ref, status, response))
            if (
                status == "error"
                and msg.join_ref is None
                and _is_unmatched(response)
                and ch.state is ChannelState.JOINED
            ):
                # The server has no channel for this topic on this socket: it is not joined,
                # whatever we thought. Rejoin instead of pushing into the void.
                self._channel_errored(now, ch, _UNMATCHED_TOPIC, response)
        elif ref is not None and ref == ch.join_ref and ch.state is ChannelState.JOINING:
            self._join_replied(now, ch, status, response)
        elif ref is not None and ref == ch.leave_ref:
            self._close_channel(ch, ChannelCloseReason.LEFT)
        else:
            self.stats.stale_dropped += 1

    def _on_phx_error(self, now: float, ch: Channel, payload: Any) -> None:
        state = ch.state
        if state is ChannelState.LEAVING:
            self._close_channel(ch, ChannelCloseReason.LEFT, payload)
        elif state is ChannelState.ERRORED:
            self.stats.stale_dropped += 1
        else:
            self._channel_errored(now, ch, PHX_ERROR, payload)

    # ------------------------------------------------------------------------------------
    # Channel internals

    def _join_frame(self, ch: Channel) -> tuple[str, str | bytes]:
        payload = ch.join_payload() if callable(ch.join_payload) else ch.join_payload
        ref = self._next_ref()
        return ref, self._encode(ref, ref, ch.topic, PHX_JOIN, {} if payload is None else payload)

    def _send_join_frame(self, ch: Channel, ref: str, frame: str | bytes) -> None:
        ch.join_ref = ref
        self._send(frame)

    def _send_join(self, now: float, ch: Channel) -> None:
        try:
            ref, frame = self._join_frame(ch)
        except Exception as exc:  # the user's payload callable failed, or its result
            self._join_failed(
                now, ch, {"reason": "join payload failed", "error": repr(exc)}, final=False
            )
            return
        ch.transition(ChannelInput.REJOIN)
        self._send_join_frame(ch, ref, frame)
        if ch.joined_once:
            self._timers.set((_JOIN, ch.topic), now + ch.timeout)

    def _join_replied(self, now: float, ch: Channel, status: str, response: Any) -> None:
        self._timers.cancel((_JOIN, ch.topic))
        if status != "ok":
            self._join_failed(now, ch, response, final=_is_unmatched(response))
            return
        ch.transition(ChannelInput.JOIN_OK)
        ch.joined_at = now
        join_ref = ch.join_ref
        assert join_ref is not None  # a reply matched it
        self._emit(Joined(ch.topic, response, join_ref, ch.joined_once))
        ch.joined_once = True
        buffer = ch.buffer
        while buffer:
            push = buffer.popleft()
            self._send(
                self._serializer.encode(join_ref, push.ref, ch.topic, push.event, push.payload)
            )
            push.sent = True
            ch.in_flight[push.ref] = push

    def _join_timed_out(self, now: float, ch: Channel) -> None:
        if ch.join_ref is not None and self._state is SocketState.OPEN:
            # Tell the server to drop the join it may still complete (phoenix.js does too).
            ref = self._next_ref()
            self._send(self._serializer.encode(ch.join_ref, ref, ch.topic, PHX_LEAVE, {}))
        self._join_failed(now, ch, None, final=False, timed_out=True)

    def _join_failed(
        self, now: float, ch: Channel, response: Any, *, final: bool, timed_out: bool = False
    ) -> None:
        """A join attempt failed. The user's first join fails for good; a rejoin retries."""
        if final or not ch.joined_once:
            self._emit(JoinFailed(ch.topic, response, timed_out))
            self._close_channel(ch, ChannelCloseReason.JOIN_FAILED, response)
            return
        if ch.state is ChannelState.JOINING:
            ch.transition(ChannelInput.JOIN_RETRY)
        ch.join_ref = None
        self._emit(JoinFailed(ch.topic, response, timed_out, self._schedule_rejoin(now, ch)))

    def _channel_errored(self, now: float, ch: Channel, reason: str, payload: Any) -> None:
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
        self._emit(ChannelErrored(ch.topic, reason, payload, self._schedule_rejoin(now, ch)))

    def _schedule_rejoin(self, now: float, ch: Channel) -> float | None:
        # Unreachable today: rejoins are only scheduled on a frame or a rejoin timer, and both
        # need the socket open. Kept as the safe answer should that change.
        if self._state is not SocketState.OPEN:  # pragma: no cover
            return None  # rejoined as soon as the socket reopens
        ch.rejoin_attempts += 1
        at = now + self._rejoin.delay(ch.rejoin_attempts, self._rng)
        self._timers.set((_REJOIN, ch.topic), at)
        return at

    def _close_channel(
        self,
        ch: Channel,
        reason: ChannelCloseReason,
        payload: Any = None,
        *,
        push_reason: PushFailure = PushFailure.CHANNEL_CLOSED,
    ) -> None:
        topic = ch.topic
        ch.transition(ChannelInput.CLOSE)
        del self._channels[topic]
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
        self._emit(ChannelClosed(topic, reason, payload))

    def _push_timed_out(self, ref: str) -> None:
        push = self._pushes.pop(ref)
        ch = self._channels[push.topic]  # a closed channel has failed all its pushes
        if push.sent:
            del ch.in_flight[ref]
        else:
            ch.buffer.remove(push)
        self._emit(PushFailed(push.topic, ref, PushFailure.TIMEOUT, push.sent))

    def _fail_push(self, push: Push, reason: PushFailure) -> None:
        del self._pushes[push.ref]
        self._timers.cancel((_PUSH, push.ref))
        self._emit(PushFailed(push.topic, push.ref, reason, push.sent))

    # ------------------------------------------------------------------------------------
    # Outbound frames

    def _next_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def _encode(
        self, join_ref: str | None, ref: str, topic: str, event: str, payload: Any
    ) -> str | bytes:
        # The serializer turns every failure to encode into a UsageError naming event and topic.
        frame = self._serializer.encode(join_ref, ref, topic, event, payload)
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

    def _encode_check(self, topic: str, event: str, payload: Any) -> None:
        self._encode(None, "0", topic, event, {} if payload is None else payload)

    def _send(self, frame: str | bytes) -> None:
        engine = self._engine
        if engine is None:
            self._emit(SendMessage(frame))
        elif type(frame) is str:
            self._wbuf += engine.send_text(frame)
        else:
            self._wbuf += engine.send_binary(frame)  # type: ignore[arg-type]


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise UsageError(f"{name} must be > 0, got {value!r}")
    return value


def _sendable_close_code(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 are reserved, 1016-2999 unassigned or for extensions.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _is_unmatched(response: Any) -> bool:
    return isinstance(response, Mapping) and response.get("reason") == _UNMATCHED_TOPIC
