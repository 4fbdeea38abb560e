"""The sans-IO Phoenix Channels client: one connection, many channels.

Theory of operation
-------------------
Inputs are method calls that take ``now`` (seconds on the caller's monotonic clock): the
transport's news (``transport_opened``, ``receive_data``, ``transport_closed``), the clock's
(``handle_timer``) and the user's (``connect``, ``join``, ``push``, ``leave``, ``close``).
Outputs are queued and pulled one at a time with :meth:`Client.next_event`: commands for the
transport, events for the application, and last a :class:`SleepUntil` with the next deadline.

The socket moves through :data:`~._socket_state.SOCKET_TRANSITIONS`; each channel through
``_channel.TRANSITIONS``. The client keeps the connection (its life cycle, the heartbeat,
reconnects, the outbox) and routes frames and deadlines; what concerns one topic is the
channel module's :class:`~._channel.ChannelSet`. Every deadline (heartbeat, heartbeat reply,
connect, reconnect, join, rejoin, leave, push, close) lives in one keyed :class:`TimerQueue`
keyed by :class:`TimerKind`, so the next deadline is one heap peek and ``handle_timer``
handles everything that is due, in deadline order.

Invariants the tests hold: each ref is used once; every push ends in exactly one of
:class:`ReplyReceived` or :class:`PushFailed`; a frame whose non-null join_ref is not its
channel's current one is never delivered; after a reconnect every channel the user has not
left is rejoined before its buffered pushes are sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from random import Random
from typing import TYPE_CHECKING, Any, cast

from . import _checks as checks
from ._channel import UNCHANGED, ChannelSet, ChannelState
from ._codec import JsonCodec, resolve_codec
from ._engines import EngineFactory
from ._errors import ClientClosedError, StxWsError, UsageError
from ._events import (
    Closed,
    CloseTransport,
    Connected,
    Disconnected,
    DisconnectReason,
    GaveUp,
    HandshakeRefused,
    HandshakeRequest,
    MessageReceived,
    OpenTransport,
    Output,
    SendBytes,
    SleepUntil,
)
from ._handshake import Handshake
from ._heartbeat import Heartbeat
from ._keepalive import DEFAULT_PING, DefaultPing, PingSpec
from ._message import ChannelMessage, new_tuple
from ._outbox import Outbox
from ._presence import Presence
from ._retry import DEFAULT_REJOIN_POLICY, RetryPolicy
from ._serializer import make_serializer
from ._socket_state import LIVE_CONNECTION, SOCKET_TRANSITIONS, SocketInput, SocketState
from ._stats import CoreStats
from ._timers import CHANNEL_TIMERS, TimerKey, TimerKind, TimerQueue
from ._url import (
    Headers,
    Params,
    Token,
)
from ._websocket import (
    DEFAULT_MAX_MESSAGE_SIZE,
    WsAccepted,
    WsClosed,
    WsEvent,
    WsFailed,
    WsRejected,
)

if TYPE_CHECKING:
    from ._serializer import Serializer
    from ._typed import TypedSerializer

__all__ = ["Client"]

_HeaderPairs = tuple[tuple[str, str], ...]  # a response's headers

_POLICY = "a RetryPolicy, or None never to reconnect"
_CONNECT: TimerKey = (TimerKind.CONNECT, "")
_RECONNECT: TimerKey = (TimerKind.RECONNECT, "")
_CLOSE: TimerKey = (TimerKind.CLOSE, "")


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
        connect_timeout: seconds for one connection attempt, open plus handshake (10 s: a
            stalled handshake is given up and retried well before a long join times out).
        close_timeout: seconds to wait for the server's close frame after ``close()``.
        retry: the reconnect policy; None means never reconnect.
        rejoin: the policy for rejoining a channel after a join error or ``phx_error``.
        max_buffered_pushes: per channel, how many pushes may wait for the join.
        max_message_size: the largest WebSocket message accepted, and sent: a push or join
            whose frame is larger is refused with UsageError (None: no limit).
        rng: the source of jitter; inject a seeded ``random.Random`` for repeatable runs.
        channel_ping_interval: seconds between keepalive pings (a ``ping`` push, payload
            ``{}``) on every joined channel, from each join reply; None (the default) sends
            none. ``join(ping=...)`` sets a channel's own.
        channel_ping_skip: ``skip(topic)`` True for topics never to ping (a server whose
            channel crashes on an unknown event).
        engine: the WebSocket engine: ``"wsproto"`` (the default), ``"websockets"``
            (websockets' parser; ``pip install 'stx-ws[fast]'``), or an engine factory; None
            means the transport does its own WebSocket framing and hands whole messages to
            :meth:`receive_messages`.

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
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        retry: RetryPolicy | None = RetryPolicy(),  # noqa: B008 - frozen, so sharing is safe
        rejoin: RetryPolicy = DEFAULT_REJOIN_POLICY,
        max_buffered_pushes: int = 1000,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        rng: Random | None = None,
        engine: str | EngineFactory | None = "wsproto",
        channel_ping_interval: float | None = None,
        channel_ping_skip: Callable[[str], bool] | None = None,
    ) -> None:
        self._handshake = handshake = Handshake(
            url,
            params=params,
            token=auth_token,
            headers=headers,
            vsn=vsn,
            engine=engine,
            max_message_size=max_message_size,
        )
        codec = resolve_codec(json)
        # The channels keep this one (they only encode); frames are decoded by the typed
        # serializer instead once a channel has typed payloads.
        self._serializer: Serializer = (serializer := make_serializer(vsn, codec))
        self._typed: TypedSerializer | None = None
        checks.real("timeout", timeout)
        self._connect_timeout = checks.real("connect_timeout", connect_timeout)
        self._close_timeout = checks.real("close_timeout", close_timeout)
        self._retry = checks.instance("retry", retry, RetryPolicy, _POLICY, allow_none=True)
        checks.instance("rejoin", rejoin, RetryPolicy, "a RetryPolicy")
        checks.integer("max_buffered_pushes", max_buffered_pushes)
        self._rng = rng = (
            checks.instance("rng", rng, Random, "a random.Random", allow_none=True) or Random()
        )

        self._state = SocketState.IDLE
        self._attempts = 0  # consecutive failed connection attempts
        self._refusals = 0  # consecutive refused handshakes
        self._close_code: int | None = None  # the code close() sent
        self._opened_at: float | None = None  # when the current connection opened
        self._timers: TimerQueue[TimerKey] = TimerQueue()
        self._outbox = out = Outbox()
        # The outbox's queue and buffer, held here too: next_event() runs once per output.
        self._out = out.items
        self._wbuf = out.wbuf
        self.stats = stats = CoreStats()
        self._heartbeat = Heartbeat.configured(
            heartbeat_interval, heartbeat_timeout, out, self._timers, serializer
        )
        self._channels = ChannelSet(
            out,
            self._timers,
            serializer,
            codec,
            stats,
            timeout=timeout,
            rejoin=rejoin,
            rng=rng,
            max_buffered=max_buffered_pushes,
            max_size=handshake.max_size,
            is_open=lambda: self._state is SocketState.OPEN,
            ping_interval=channel_ping_interval,
            ping_skip=channel_ping_skip,
            on_typed=self._use_typed,
        )

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
        return self._handshake.vsn

    @property
    def topics(self) -> tuple[str, ...]:
        """Topics of the live channels, in join order."""
        return tuple(self._channels.live)

    @property
    def last_heartbeat_rtt(self) -> float | None:
        """Seconds between the last answered heartbeat and its reply, or None."""
        return self._heartbeat.last_rtt if self._heartbeat is not None else None

    def channel_state(self, topic: str) -> ChannelState:
        """The state of ``topic``'s channel; CLOSED when there is no live channel."""
        ch = self._channels.live.get(topic)
        return ch.state if ch is not None else ChannelState.CLOSED

    def join_ref(self, topic: str) -> str | None:
        """The join_ref of ``topic``'s current join, or None."""
        ch = self._channels.live.get(topic)
        return ch.join_ref if ch is not None else None

    def presence(self, topic: str) -> Presence | None:
        """The presence tracker of ``topic``'s channel, if it was joined with ``presence``."""
        ch = self._channels.live.get(topic)
        return ch.presence if ch is not None else None

    # ------------------------------------------------------------------------------------
    # Output

    def next_event(self) -> Output:
        """Return the next command or event; :class:`SleepUntil` when there is nothing left.

        Call it in a loop after every input, carrying out commands and handling events, until
        it returns SleepUntil; then wait for data, the deadline, or a user call.
        """
        if self._out:
            item = self._out.popleft()
            return new_tuple(MessageReceived, (item,)) if isinstance(item, ChannelMessage) else item
        if self._wbuf:
            data = bytes(self._wbuf)
            self._wbuf.clear()
            return SendBytes(data)
        return SleepUntil(self._timers.next_deadline())

    def next_events(self) -> list[Output]:
        """Return every command and event queued, in order, and forget them; [] if none.

        :meth:`next_event` for many at once (a read's hundreds of messages): the bytes
        written last come as one SendBytes at the end, and no SleepUntil is included. Carry
        them out in order, then call it again (carrying them out may queue more) until it
        returns []; then wait for data, :meth:`next_deadline`, or a user call.
        """
        return [
            new_tuple(MessageReceived, (item,)) if isinstance(item, ChannelMessage) else item
            for item in self.next_outputs()
        ]

    def next_outputs(self) -> list[Output | ChannelMessage]:
        """:meth:`next_events`, except that a message for a live channel comes as its
        :class:`ChannelMessage` itself, not wrapped in :class:`MessageReceived`.

        For a driver's per-message path (the driver kit drains with it): one object less to
        make and take apart a message. Everything else is as :meth:`next_events`, in the same
        order; next, the same.
        """
        out = self._out
        items = list(out)
        out.clear()
        if self._wbuf:
            items.append(SendBytes(bytes(self._wbuf)))
            self._wbuf.clear()
        return items

    def next_deadline(self) -> float | None:
        """The earliest deadline at which :meth:`handle_timer` must be called, or None."""
        return self._timers.next_deadline()

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
        Raises UsageError when no transport was being opened. Next: pull events.
        """
        if self._state is not SocketState.CONNECTING:
            raise UsageError(f"transport_opened() while {self._state.value}")
        if self._handshake.engine_factory is None:
            self._on_accepted(now, None)
            return
        try:
            engine = self._handshake.engine()
        except UsageError as exc:  # a params/token/headers callable gave a value that cannot work
            self.handshake_invalid(now, exc)
            return
        except Exception as exc:  # a user's params/token/headers callable failed
            self._outbox.emit(CloseTransport())
            self._lost(
                now,
                DisconnectReason.TRANSPORT_ERROR,
                detail=f"handshake: {type(exc).__name__}: {exc}",
            )
            return
        self._socket(SocketInput.OPENED)
        self._outbox.engine = engine
        self._wbuf += engine.start()

    def handshake_request(self) -> HandshakeRequest:
        """Evaluate params, token and headers and return the WebSocket upgrade to perform.

        The built-in engine calls this itself; a transport with its own WebSocket calls it
        after :class:`OpenTransport`. Raises whatever a user's callable raises, or UsageError.
        """
        return self._handshake.request()

    def receive_data(self, now: float, data: bytes) -> None:
        """Feed bytes read from the stream. Never raises on bad input from the server.

        Next: pull events. Data arriving when no stream is expected is ignored.
        """
        engine = self._outbox.engine
        if engine is None:
            return
        self._on_ws_events(now, engine.receive(data))

    def receive_messages(self, now: float, messages: Iterable[str | bytes]) -> None:
        """External WebSocket only: whole messages in the order they came (text as ``str``,
        binary as ``bytes``), a burst in one pass. Ignored unless the connection is open.

        Next: pull events. Raises UsageError when the client has its own engine.
        """
        if self._handshake.engine_factory is not None:
            raise UsageError("receive_messages() needs engine=None; use receive_data()")
        if self._state is SocketState.OPEN:
            self._channels.on_messages(now, messages, self._heartbeat, closing=False)

    def receive_message(self, now: float, data: str | bytes) -> None:
        """:meth:`receive_messages` with one message."""
        self.receive_messages(now, (data,))

    def transport_closed(
        self, now: float, error: str | None = None, *, code: int | None = None, reason: str = ""
    ) -> None:
        """The stream ended (EOF, a failure, or it could not be opened).

        ``error`` describes a failure; ``code`` and ``reason`` are for external WebSockets that
        saw a close frame. Next: pull events (a reconnect deadline, or the end).
        """
        state = self._state
        if state not in LIVE_CONNECTION and state is not SocketState.CLOSING:
            return
        engine = self._outbox.engine
        if engine is not None and error is None:
            events = engine.receive_eof()
            if state is SocketState.HANDSHAKING:
                # The stream ended before the server answered: a network failure, not a
                # protocol error, unless a refusal had started to arrive.
                events = [ev for ev in events if type(ev) is WsRejected]
            self._on_ws_events(now, events)
            if self._outbox.engine is None:  # the EOF ended the connection (close, refusal)
                return
        if state is SocketState.CLOSING:
            self._outbox.engine = None
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

    def handshake_invalid(self, now: float, error: StxWsError) -> None:
        """The handshake cannot be built: a credential callable gave a value that cannot be
        sent (a UsageError saying which, without the value), or the credentials are revoked
        (CredentialsRevokedError). Retrying cannot help: the client gives up at once, with
        ``error`` in :class:`GaveUp`. Next: pull events.

        Built-in engine: :meth:`transport_opened` calls it itself. External WebSocket: call it
        when :meth:`handshake_request` raised UsageError.
        """
        if self._state is SocketState.CONNECTING:
            self._outbox.emit(CloseTransport())
            reason = DisconnectReason.INVALID_CREDENTIALS
            self._lost(now, reason, detail=str(error), final=True, error=error)

    def handshake_refused(
        self, now: float, status_code: int, headers: _HeaderPairs = (), body: bytes = b""
    ) -> None:
        """External WebSocket only: the server answered the upgrade with ``status_code``.

        Next: pull events.
        """
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
        ping: PingSpec | DefaultPing = DEFAULT_PING,
        types: Mapping[str, Any] | None = None,
        control_frames: bool = False,
    ) -> None:
        """Join ``topic``. ``payload`` may be a callable, evaluated at each (re)join.

        The join is sent now if connected, else when the connection opens. ``timeout`` covers
        the whole first join, waiting for the connection included; each later rejoin attempt
        gets the same. ``presence`` (True, or a :class:`Presence` to use) tracks presence.
        ``ping`` is the channel's keepalive (see :mod:`stx_proto._keepalive`): a
        :class:`PingPlan`, an interval in seconds, a callable reading each join reply and
        returning either (cancel-on-disconnect's granted time is in the reply), or None; by
        default the client's ``channel_ping_interval``, unless ``channel_ping_skip`` says no.
        ``types`` (``event -> type``, needs msgspec) decodes those events' payloads straight
        into their types; one that does not fit is not delivered (:class:`PayloadInvalid`).
        ``control_frames=True`` also hands the channel's ``phx_reply``, ``phx_error`` and
        ``phx_close`` to the application as :class:`ControlReceived` events (before the core
        acts on each; none while closing).
        Next: pull events; :class:`Joined` or :class:`JoinFailed` follows.

        Raises UsageError if ``topic`` already has a live channel (leave it first), the
        payload cannot be encoded, or ``types`` cannot be used (see
        :meth:`configure_channel`); ClientClosedError after close.
        """
        self._check_not_closed()
        self._channels.join(
            now,
            topic,
            payload,
            timeout,
            presence,
            ping=ping,
            types=types,
            control_frames=bool(control_frames),
        )

    def configure_channel(
        self,
        topic: str,
        *,
        join_payload: Any = UNCHANGED,
        after_join: list[tuple[str, Any]] | None = None,
        payload_types: Mapping[str, Any] | None = None,
    ) -> None:
        """Change what ``topic``'s channel does from now on; nothing is sent now.

        ``join_payload`` (a value, or a callable evaluated at each join) is what the next
        rejoin sends (filters the channel changed). ``after_join`` lists ``(event, payload)``
        pushes sent right after each join reply, before the buffered ones (a watched set the
        server forgets at each rejoin); their replies are the client's own. ``payload_types``
        is as ``join(types=...)``. Raises UsageError, before anything changes, if ``topic`` has
        no live channel, a payload cannot be encoded, an event is reserved, msgspec is missing,
        or an event already has another type.
        """
        self._channels.configure(
            topic, join_payload=join_payload, after_join=after_join, payload_types=payload_types
        )

    def _use_typed(self, typed: TypedSerializer) -> None:
        # The first typed channel: frames are decoded by the typed serializer from now on.
        self._typed = self._serializer = typed

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
        Next: pull events.

        Raises UsageError if ``topic`` has no live channel, is leaving, ``event`` is reserved,
        or the payload cannot be encoded; ClientClosedError after close.
        """
        self._check_not_closed()
        return self._channels.push(now, topic, event, payload, timeout)

    def cancel_push(self, now: float, ref: str) -> bool:
        """Withdraw push ``ref`` if it has not been sent yet.

        Returns True when it was still waiting for its join: it will never be sent, and its
        outcome is a :class:`PushFailed` (CANCELLED). Returns False when it was already sent
        (a frame on the wire cannot be recalled: its reply or failure still comes) or has
        already ended. Next: pull events.
        """
        return self._channels.cancel_push(ref)

    def leave(self, now: float, topic: str, *, timeout: float | None = None) -> None:
        """Leave ``topic``: ``phx_leave`` if a join is out, then :class:`ChannelClosed` (LEFT).

        Unsent pushes fail with CHANNEL_CLOSED now; pushes in flight keep waiting for their
        replies until the channel closes. A no-op while already leaving. Next: pull events.
        Raises UsageError if ``topic`` has no live channel; ClientClosedError after close.
        """
        self._check_not_closed()
        self._channels.leave(now, topic, timeout)

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
        engine = self._outbox.engine
        if state is SocketState.OPEN and engine is not None:
            self._channels.leave_all_for_close()
            self._socket(SocketInput.CLOSE)
            self._close_code = code
            self._wbuf += engine.close(code, reason)
            self._timers.set(_CLOSE, now + self._close_timeout)
            return
        if state is SocketState.OPEN:  # external WebSocket: the transport closes at once
            self._channels.leave_all_for_close()
        self._channels.shut_down()
        if state in LIVE_CONNECTION:
            self._outbox.emit(CloseTransport(code, reason))
        self._outbox.engine = None
        self._timers.clear()
        self._socket(SocketInput.CLOSED)
        self._outbox.emit(Disconnected(DisconnectReason.CLIENT_CLOSED, code))
        self._outbox.emit(Closed())

    # ------------------------------------------------------------------------------------
    # Timers

    def handle_timer(self, now: float) -> None:
        """Act on every deadline at or before ``now``. Next: pull events."""
        timers = self._timers
        while (due := timers.pop_due(now)) is not None:
            (kind, name), deadline = due
            if kind in CHANNEL_TIMERS:
                self._channels.on_timer(now, deadline, kind, name)
            elif kind is TimerKind.HEARTBEAT:
                assert self._heartbeat is not None  # armed only with a heartbeat configured
                self._heartbeat.due(now, deadline)
            elif kind is TimerKind.HEARTBEAT_REPLY:
                self._abort(now, DisconnectReason.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            elif kind is TimerKind.CONNECT:
                self._abort(now, DisconnectReason.CONNECT_TIMEOUT, "connect timed out")
            elif kind is TimerKind.RECONNECT:
                self._open(now)
            else:  # CLOSE: the server never answered our close frame
                self._outbox.emit(CloseTransport())
                self._outbox.engine = None
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
        ep = self._handshake.endpoint
        self._outbox.emit(OpenTransport(ep.host, ep.port, ep.tls))
        self._timers.set(_CONNECT, now + self._connect_timeout)

    def _on_ws_events(self, now: float, events: list[WsEvent]) -> None:
        # Runs of messages go to _on_messages whole; the other events are handled in turn.
        start = 0
        for i, ev in enumerate(events):
            # Exact types first: the per-message path. A user's engine may give a subclass,
            # or a bytearray.
            if type(ev) is str or type(ev) is bytes or isinstance(ev, (str, bytes, bytearray)):
                continue
            if start < i:
                self._on_messages(now, events[start:i])
            start = i + 1
            if type(ev) is WsAccepted:
                self._on_accepted(now, ev.subprotocol)
            elif type(ev) is WsRejected:
                self._refused(now, ev.status_code, ev.headers, ev.body)
                return
            elif type(ev) is WsClosed:
                self._peer_closed(now, ev.code, ev.reason)
                return
            else:
                assert isinstance(ev, WsFailed)
                self._engine_failed(now, ev.detail, ev.code)
                return
        if start < len(events):
            self._on_messages(now, events[start:] if start else events)
        engine = self._outbox.engine
        # Always true: only text, binary and accepted events get here, and none of them ends
        # the connection.
        if engine is not None:  # pragma: no branch
            self._wbuf += engine.data_to_send()

    def _on_messages(self, now: float, messages: list[WsEvent]) -> None:
        # Only str and bytes here (_on_ws_events cuts the runs).
        closing = self._state is SocketState.CLOSING
        runs = cast("list[str | bytes]", messages)
        self._channels.on_messages(now, runs, self._heartbeat, closing=closing)

    def _on_accepted(self, now: float, subprotocol: str | None) -> None:
        self._socket(SocketInput.ACCEPTED)
        self._opened_at = now
        self._refusals = 0
        self.stats.connections += 1
        self._timers.cancel(_CONNECT)
        self._outbox.emit(Connected(subprotocol))
        if self._heartbeat is not None:
            self._heartbeat.start(now)
        self._channels.rejoin_all(now)

    def _refused(self, now: float, status: int, headers: _HeaderPairs, body: bytes) -> None:
        retry = self._retry
        if retry is not None and retry.counts_as_refusal(status):
            self._refusals += 1
        self._outbox.emit(HandshakeRefused(status, headers, body))
        self._outbox.emit(CloseTransport())
        limit = retry.max_refusals if retry is not None else None
        self._lost(
            now,
            DisconnectReason.HANDSHAKE_REFUSED,
            detail=f"HTTP {status}",
            final=limit is not None and self._refusals >= limit,
        )

    def _peer_closed(self, now: float, code: int | None, reason: str) -> None:
        self._ended_by_engine()  # our reply to the server's close
        if self._state is SocketState.CLOSING:
            self._outbox.engine = None
            self._finish_close()
        elif code is None:
            self._lost(now, DisconnectReason.TRANSPORT_CLOSED, detail=reason)
        else:
            self._lost(now, DisconnectReason.SERVER_CLOSED, code, reason)

    def _engine_failed(self, now: float, detail: str, code: int | None) -> None:
        self._ended_by_engine()  # the close frame naming the failure
        if self._state is SocketState.CLOSING:
            self._outbox.engine = None
            self._finish_close()
        else:
            self._lost(now, DisconnectReason.PROTOCOL_ERROR, code, detail)

    def _ended_by_engine(self) -> None:
        """The engine ended the connection: send what it queued last, then close the stream."""
        engine = self._outbox.engine
        if engine is not None:  # pragma: no branch - only an engine's events get here
            self._wbuf += engine.data_to_send()
        self._outbox.emit(CloseTransport())

    def _abort(self, now: float, reason: DisconnectReason, detail: str) -> None:
        engine = self._outbox.engine
        if engine is not None:
            self._wbuf += engine.close(1000, detail)  # best effort: the peer may be gone
        self._outbox.emit(CloseTransport(1000, detail))
        self._lost(now, reason, detail=detail)

    def _lost(
        self,
        now: float,
        reason: DisconnectReason,
        code: int | None = None,
        detail: str = "",
        *,
        final: bool = False,
        error: Exception | None = None,
    ) -> None:
        """The connection (or an attempt) ended; CloseTransport, if needed, is already out."""
        self._outbox.engine = None
        self._stop_connection_timers()
        self._channels.connection_lost(reason)
        retry = self._retry
        opened_at, self._opened_at = self._opened_at, None
        if retry is not None and opened_at is not None and now - opened_at >= retry.stable_after:
            self._attempts = 0  # that connection proved itself: the schedule starts again
        self._attempts += 1
        emit = self._outbox.emit
        if (
            final
            or retry is None
            or (code is not None and code in retry.final_close_codes)
            or retry.exhausted(self._attempts)
        ):
            self._socket(SocketInput.GIVE_UP)
            emit(Disconnected(reason, code, detail))
            emit(GaveUp(reason, self._attempts, code, detail, error))
            self._channels.shut_down()
            self._timers.clear()
            emit(Closed())
            return
        self._socket(SocketInput.LOST)
        retry_at = now + retry.delay_after(self._attempts, code, self._rng)
        self._timers.set(_RECONNECT, retry_at)
        emit(Disconnected(reason, code, detail, retry_at))

    def _stop_connection_timers(self) -> None:
        self._timers.cancel(_CONNECT)
        self._timers.cancel(_RECONNECT)
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def _finish_close(self) -> None:
        self._channels.shut_down()
        self._timers.clear()
        self._socket(SocketInput.CLOSED)
        self._outbox.emit(Disconnected(DisconnectReason.CLIENT_CLOSED, self._close_code))
        self._outbox.emit(Closed())

    # ------------------------------------------------------------------------------------


def _sendable_close_code(code: int) -> bool:
    # RFC 6455 7.4: 1004-1006 and 1015 are reserved, 1016-2999 unassigned or for extensions.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
