"""A scripted Phoenix Channels server, sans-IO, for tests.

Theory of operation
-------------------

:class:`PhoenixServer` holds what one server shares between its connections: the channel
routes, the live connections, and the fault switches a test flips. Each client transport gets
its own :class:`ServerConnection` from :meth:`PhoenixServer.connect`. A connection only consumes
and produces bytes, exactly like the client core: the transport feeds what it reads to
:meth:`ServerConnection.receive_data`, writes what :meth:`ServerConnection.data_to_send`
returns, and closes the stream once :attr:`ServerConnection.closed` is true (abruptly, with no
WebSocket close, when :attr:`ServerConnection.should_drop` is true). A connection's timers are
for replies held back by :attr:`PhoenixServer.reply_delay`: :meth:`ServerConnection.next_deadline`
says when, :meth:`ServerConnection.handle_timer` releases them. A server built on this one may
add server-wide timers that outlive connections (:meth:`PhoenixServer.next_deadline`,
:meth:`PhoenixServer.handle_timer`), which ``Link`` and the loopback ``TestServer`` drive too.

The WebSocket side is wsproto in server mode. The handshake is refused the way Phoenix refuses
it (HTTP 403 for an unknown ``vsn``, a refused ``auth`` or a bad auth-token subprotocol), pings
are answered, and a close from the client is answered and ends the connection.

The channel side follows section 2.2 of ``phoenix-protocol.md`` (what ``lib/phoenix/socket.ex``
sends in each situation):

=====================================  ===================================================
client frame                           server frames
=====================================  ===================================================
heartbeat on ``phoenix``               ``[null, R, "phoenix", "phx_reply", ok {}]``
``phx_join``, route found              ``[J, R, topic, "phx_reply", {status, response}]``
``phx_join``, no route                 ``[null, R, topic, "phx_reply", error unmatched]``
``phx_join``, ``max_channels`` joined  ``[J, R, ..., error "too many channels joined"]``
``phx_join`` of a joined topic         the new join's reply, then ``[J_old, J_old,
                                       topic, "phx_close", {}]``
``phx_leave``, current or null J       ok reply, then ``[J, J, topic, "phx_close", {}]``
``phx_leave``, topic not joined        ``[J, R, topic, "phx_reply", ok {}]``
leave or other, stale (non-null) J     nothing
other event, topic not joined          ``[null, R, topic, "phx_reply", error unmatched]``
other event, current or null J         the route's ``on_push`` reply, if it gives one
=====================================  ===================================================

A handler that raises is treated as Phoenix treats a crash: a crashed join is answered
``{"reason": "join crashed"}``, a crashed push sends ``phx_error`` and ends the channel. The
exception is kept in :attr:`PhoenixServer.handler_errors` so a test can fail on it.

Client frames that do not decode (bad JSON, a wrong shape, a binary frame that is no client
push, a binary frame on vsn 1.0.0) crash the socket as they would in Phoenix: the server sends
a WebSocket close with code 1011, is closed at once (without waiting for the answer), and notes
why in :attr:`ServerConnection.errors`. A stream wsproto cannot parse ends the same way, with
the close code wsproto chose (1002, 1007...). Nothing the client sends makes a method of this
module raise.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import re
from collections.abc import Callable, Mapping
from http import HTTPStatus
from types import EllipsisType
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit

import attrs
from wsproto import WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from stx_proto._codec import JsonCodec, StdlibJsonCodec
from stx_proto._errors import FrameError, UsageError
from stx_proto._message import (
    HEARTBEAT,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    ChannelMessage,
)
from stx_proto._serializer import (
    decode_client_push_binary,
    encode_broadcast_binary,
    encode_reply_binary,
    encode_server_push_binary,
)

__all__ = [
    "AUTH_TOKEN_PREFIX",
    "AuthHandler",
    "JoinHandler",
    "LeaveHandler",
    "PhoenixServer",
    "PushHandler",
    "ServerConnection",
]

JoinHandler: TypeAlias = Callable[[str, Any, "ServerConnection"], "tuple[str, Any] | None"]
"""``(topic, payload, conn) -> (status, response)``, or None to send no reply at all."""

PushHandler: TypeAlias = Callable[[ChannelMessage, "ServerConnection"], "tuple[str, Any] | None"]
"""``(message, conn) -> (status, response)``, or None to send no reply."""

AuthHandler: TypeAlias = Callable[[Mapping[str, str], "str | None"], bool]
"""``(query_params, auth_token) -> accept?``; a refused connection gets HTTP 403."""

LeaveHandler: TypeAlias = Callable[[str, "ServerConnection"], None]
"""``(topic, conn)``: called when the client leaves a joined topic (``phx_leave``)."""

#: The subprotocol prefix that carries phoenix.js's ``authToken`` (standard base64, no padding).
AUTH_TOKEN_PREFIX = "base64url.bearer.phx."

_BINARY = (bytes, bytearray, memoryview)
_OPEN = ConnectionState.OPEN
_LOCAL_CLOSING = ConnectionState.LOCAL_CLOSING
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_CLOSED = ConnectionState.CLOSED
_CONNECTING = ConnectionState.CONNECTING

# Elixir's Version.parse: MAJOR.MINOR.PATCH with optional pre-release and build parts.
_VERSION = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?"
)
# What codec.dumps raises for an object it cannot encode.
_ENCODE_ERRORS = (TypeError, ValueError, RecursionError)

_ABSENT: Any = object()  # "topic not joined": a joined topic's join_ref may itself be None


def _vsn_is_v1(vsn: str) -> bool | None:
    """True for a ``~> 1.0.0`` vsn, False for ``~> 2.0.0``, None for anything Phoenix refuses."""
    match = _VERSION.fullmatch(vsn)
    if match is None:
        return None
    major, minor, patch, pre = int(match[1]), int(match[2]), int(match[3]), match[4]
    # "~> X.0.0" is ">= X.0.0 and < X.1.0": a pre-release of X.0.0 sorts below X.0.0.
    if major not in (1, 2) or minor != 0 or (patch == 0 and pre is not None):
        return None
    return major == 1


def _decode_token(subprotocol: str) -> str | None:
    """The auth token in a ``base64url.bearer.phx.<b64>`` subprotocol, or None if malformed."""
    encoded = subprotocol[len(AUTH_TOKEN_PREFIX) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None


@attrs.frozen(slots=True)
class _Route:
    on_join: JoinHandler | None
    on_push: PushHandler | None
    on_leave: LeaveHandler | None = None


def _default_join(topic: str, payload: Any, conn: ServerConnection) -> tuple[str, Any]:
    return "ok", {}


def _echo(msg: ChannelMessage, conn: ServerConnection) -> tuple[str, Any]:
    return "ok", msg.payload


class PhoenixServer:
    """The shared state of one scripted Phoenix server: routes, connections, fault switches.

    ``codec`` encodes and decodes JSON (the standard library by default). ``max_channels`` is
    Phoenix's ``max_channels_per_transport``. ``auth(params, auth_token)`` decides whether a
    connection is accepted (HTTP 403 if not); ``auth_token`` is the decoded phoenix.js
    ``authToken``, or None. ``path``, when given, is the only request path accepted (others
    get HTTP 404); by default any path is.

    The fault switches are plain attributes, read at the moment they matter, so flipping one
    affects new and existing connections alike:

    * ``heartbeat_replies`` (True): False stops answering heartbeats.
    * ``refuse_handshake`` (None): an HTTP status to refuse every new handshake with.
    * ``refuse_joins`` ({}): topic -> response; a join of that topic is refused with it.
    * ``reply_delay`` (0.0): seconds a reply to a push is held back (see
      :meth:`ServerConnection.next_deadline`).
    * ``close_replies`` (True): False never answers a close frame from the client (the close
      handshake is left hanging until the client gives up and closes the stream).

    Hooks for a server built on this one (the STX server is): :meth:`check_handshake` sees
    every handshake that passed the checks above (headers included) and may refuse it with
    any HTTP status; :meth:`next_deadline` and :meth:`handle_timer` are server-wide timers
    that outlive connections (transports drive them: ``Link`` on its virtual clock, the
    loopback ``TestServer`` on its loop), and :attr:`on_timers_changed`, set by the
    transport, is called (by :meth:`timers_changed`) when they may have moved.
    """

    def __init__(
        self,
        *,
        codec: JsonCodec | None = None,
        max_channels: int = 100,
        auth: AuthHandler | None = None,
        path: str | None = None,
    ) -> None:
        self.codec: JsonCodec = codec if codec is not None else StdlibJsonCodec()
        self.max_channels = max_channels
        self.auth = auth
        self.path = path
        #: Live connections (from connect() until closed), oldest first.
        self.connections: list[ServerConnection] = []
        #: Every connection ever made, live or not, oldest first.
        self.all_connections: list[ServerConnection] = []
        #: Successful joins per topic over all connections, rejoins included.
        self.join_counts: dict[str, int] = {}
        #: Exceptions raised by on_join/on_push handlers (each was handled as a crash).
        self.handler_errors: list[Exception] = []
        self.heartbeat_replies = True
        self.refuse_handshake: int | None = None
        self.refuse_joins: dict[str, Any] = {}
        self.reply_delay = 0.0
        self.close_replies = True
        #: Set by the transport that drives the server-wide timers; see timers_changed().
        self.on_timers_changed: Callable[[], None] | None = None
        self._exact_routes: dict[str, _Route] = {}
        # Prefix routes ("room:*" as "room:"), longest prefix first.
        self._prefix_routes: list[tuple[str, _Route]] = []

    def route(
        self,
        pattern: str,
        *,
        on_join: JoinHandler | None = None,
        on_push: PushHandler | None = None,
        on_leave: LeaveHandler | None = None,
    ) -> None:
        """Add a channel route, or replace the route with the same pattern.

        ``pattern`` ending in ``*`` matches every topic with that prefix (``"room:*"``; ``"*"``
        matches all); any other pattern matches one topic exactly. The most specific route
        wins, whatever the order they were added in: an exact pattern, else the longest
        prefix. So a test can add a catch-all first and special cases after.

        ``on_join`` defaults to accepting with ``{}``; ``on_push`` defaults to echoing the
        payload back as an ``ok`` reply. Pushes that ``on_join`` makes go out right after the
        join reply, as Phoenix's ``after_join`` pushes do. ``on_leave``, if given, is called
        when a client leaves a joined topic, before the leave is answered.
        """
        route = _Route(on_join, on_push, on_leave)
        if not pattern.endswith("*"):
            self._exact_routes[pattern] = route
            return
        prefix = pattern[:-1]
        routes = [(p, r) for p, r in self._prefix_routes if p != prefix]
        routes.append((prefix, route))
        routes.sort(key=lambda item: len(item[0]), reverse=True)
        self._prefix_routes = routes

    def check_handshake(self, conn: ServerConnection) -> int | None:
        """Decide on a handshake that passed the built-in checks: return an HTTP status to
        refuse it with, or None to accept it. ``conn``'s ``path``, ``params``,
        ``request_headers`` and ``auth_token`` are filled. Accepts everything; override it."""
        return None

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has server-wide work, or None (never, here)."""
        return None

    def handle_timer(self, now: float) -> None:
        """Do the server-wide work whose time has come (none, here; override it)."""

    def timers_changed(self) -> None:
        """Tell the transport that :meth:`next_deadline` may have changed."""
        if self.on_timers_changed is not None:
            self.on_timers_changed()

    def connect(self) -> ServerConnection:
        """Return a new server-side connection, for one client transport."""
        conn = ServerConnection(self)
        self.connections.append(conn)
        self.all_connections.append(conn)
        return conn

    def joined(self, topic: str) -> list[ServerConnection]:
        """The open connections on which ``topic`` is joined."""
        return [c for c in self.connections if c.open and topic in c.joined]

    def broadcast(self, topic: str, event: str, payload: Any) -> None:
        """Send a fastlane broadcast ``[null, null, topic, event, payload]`` to every connection
        joined to ``topic`` (a binary kind 2 frame when ``payload`` is bytes).

        Raises UsageError if the payload cannot be encoded.
        """
        for conn in self.joined(topic):
            conn.broadcast(topic, event, payload)

    def push(self, topic: str, event: str, payload: Any) -> None:
        """Send a channel push ``[J, null, topic, event, payload]`` on every connection joined
        to ``topic``, each with its own join_ref. Raises UsageError if it cannot be encoded."""
        for conn in self.joined(topic):
            conn.push(topic, event, payload)

    def presence_state(self, topic: str, state: Mapping[str, Any]) -> None:
        """Push ``presence_state`` (``{key: {"metas": [...]}}``) on every connection joined to
        ``topic``, with its join_ref, as Phoenix does from ``after_join``."""
        self.push(topic, "presence_state", dict(state))

    def presence_diff(
        self,
        topic: str,
        joins: Mapping[str, Any] | None = None,
        leaves: Mapping[str, Any] | None = None,
    ) -> None:
        """Broadcast ``presence_diff`` ``{"joins": ..., "leaves": ...}`` (fastlane, null
        join_ref) to every connection joined to ``topic``."""
        self.broadcast(
            topic, "presence_diff", {"joins": dict(joins or {}), "leaves": dict(leaves or {})}
        )

    def close_all(self, code: int = 1000, reason: str = "") -> None:
        """Close every live connection with a WebSocket close frame."""
        for conn in list(self.connections):
            conn.close(code, reason)

    def drop_all(self) -> None:
        """Drop every live connection abruptly (no WebSocket close)."""
        for conn in list(self.connections):
            conn.drop()

    def _find_route(self, topic: str) -> _Route | None:
        route = self._exact_routes.get(topic)
        if route is not None:
            return route
        for prefix, route in self._prefix_routes:
            if topic.startswith(prefix):
                return route
        return None


class ServerConnection:
    """The server side of one client connection: WebSocket handshake, frames and channels.

    Attributes filled by the handshake: ``path``, ``params`` (the query string, last value wins),
    ``vsn`` (``"1.0.0"`` when the client sends none, as Phoenix assumes), ``auth_token`` (the
    decoded ``authToken`` subprotocol, or None), ``subprotocol`` (the one negotiated),
    ``request_headers`` (name, value pairs, names lowercase; wsproto keeps ``host`` and the
    subprotocol and extension headers apart), ``host`` and ``rejected_status`` (the HTTP status
    the handshake was refused with, or None).

    ``received`` lists every frame decoded from the client, in order, heartbeats included;
    ``joined`` maps each joined topic to its current join_ref; ``errors`` says what was wrong
    with anything the client sent that could not be used; ``close_code`` and ``close_reason``
    are those of the client's WebSocket close, if it sent one.

    The actions (``push``, ``broadcast``, ``reply``, ``send_error``, ``send_close``,
    ``send_raw``) queue frames and do nothing on a connection that is not open, as writing to a
    gone client does nothing on a real server. ``on_output``, if set, is called whenever bytes
    are queued or the connection must be closed, so a transport can wake up and write them.
    """

    def __init__(self, server: PhoenixServer) -> None:
        self.server = server
        self.on_output: Callable[[], None] | None = None
        self.path: str | None = None
        self.params: dict[str, str] = {}
        self.vsn: str | None = None
        self.auth_token: str | None = None
        self.subprotocol: str | None = None
        self.request_headers: list[tuple[str, str]] = []
        self.host: str | None = None
        self.rejected_status: int | None = None
        self.received: list[ChannelMessage] = []
        self.joined: dict[str, str | None] = {}
        self.errors: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        #: The ``now`` of the call being handled (receive_data, handle_timer, receive_eof).
        self.now = 0.0
        self._ws = WSConnection(ConnectionType.SERVER)
        self._out = bytearray()
        self._v1 = False
        self._dead = False
        self._should_drop = False
        self._fragments: list[Any] = []
        # Replies held back by reply_delay: (deadline, sequence, topic, join_ref, frame).
        self._held: list[tuple[float, int, str, str | None, str | bytes]] = []
        self._seq = 0
        # While on_join runs: its topic and join_ref, and the frames it pushed (sent after the
        # join reply, like Phoenix's after_join pushes).
        self._joining: tuple[str, str | None] | None = None
        self._deferred: list[str | bytes] | None = None

    def __repr__(self) -> str:
        state = "open" if self.open else "closed" if self.closed else "connecting/closing"
        return f"<ServerConnection {state} vsn={self.vsn!r} joined={sorted(self.joined)}>"

    # ----------------------------------------------------------------------------------------
    # State

    @property
    def open(self) -> bool:
        """True once the handshake is accepted and until either side starts closing."""
        return not self._dead and self._ws.state is _OPEN

    @property
    def closing(self) -> bool:
        """True after :meth:`close`, while the client's answering close frame is awaited."""
        return not self._dead and self._ws.state is _LOCAL_CLOSING

    @property
    def closed(self) -> bool:
        """True when nothing more will be exchanged: write ``data_to_send()``, then close."""
        return self._finished()

    @property
    def should_drop(self) -> bool:
        """True after :meth:`drop`: close the stream at once, with no WebSocket close."""
        return self._should_drop

    # ----------------------------------------------------------------------------------------
    # Transport side

    def receive_data(self, data: bytes, now: float = 0.0) -> None:
        """Feed bytes read from the client. Never raises on bad input: a broken stream closes
        the connection (see :attr:`errors`). Data after the connection closed is ignored."""
        if self.closed:
            return
        self.now = now
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._on_event(event, now)
                if self._finished():
                    break
        except RemoteProtocolError as exc:
            # Only the HTTP handshake raises, while CONNECTING; wsproto suggests the refusal.
            self.errors.append(f"bad handshake: {exc}")
            self._out += self._ws.send(exc.event_hint or RejectConnection(status_code=400))
            self._dead = True
        self._release_due(now)
        self._after_change()

    def receive_eof(self, now: float = 0.0) -> None:
        """Report that the client's stream ended (or failed); the connection is closed."""
        if not self._dead:
            self.now = now
            self._dead = True
            self._held.clear()
            self._after_change()

    def data_to_send(self) -> bytes:
        """Return (and forget) the bytes to write to the client, possibly empty."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` next has something to do (a held reply), or None."""
        return self._held[0][0] if self._held else None

    def handle_timer(self, now: float) -> None:
        """Send the held replies whose time has come."""
        self.now = now
        self._release_due(now)

    # ----------------------------------------------------------------------------------------
    # Actions for a test script

    def push(
        self, topic: str, event: str, payload: Any, *, join_ref: str | EllipsisType | None = ...
    ) -> None:
        """Send a channel push ``[J, null, topic, event, payload]``; a binary kind 0 frame
        when ``payload`` is bytes.

        ``J`` is the topic's current join_ref (None if not joined; inside ``on_join``, the
        joining one) unless ``join_ref`` is given. Raises UsageError if the payload cannot be
        encoded (bytes on vsn 1.0.0, or something the codec refuses).
        """
        if not self.open:
            return
        if join_ref is ...:
            joining = self._joining
            join_ref = joining[1] if joining and joining[0] == topic else self.joined.get(topic)
        if isinstance(payload, _BINARY):
            self._check_binary()
            self._queue(encode_server_push_binary(join_ref, topic, event, bytes(payload)))
        else:
            self._queue(self._encode(join_ref, None, topic, event, payload))

    def broadcast(self, topic: str, event: str, payload: Any) -> None:
        """Send a fastlane broadcast ``[null, null, topic, event, payload]`` on this connection
        only, joined or not (binary kind 2 when ``payload`` is bytes). Raises UsageError like
        :meth:`push`."""
        if not self.open:
            return
        if isinstance(payload, _BINARY):
            self._check_binary()
            self._queue(encode_broadcast_binary(topic, event, bytes(payload)))
        else:
            self._queue(self._encode(None, None, topic, event, payload))

    def presence_state(
        self, topic: str, state: Mapping[str, Any], *, join_ref: str | EllipsisType | None = ...
    ) -> None:
        """Push ``presence_state`` with the topic's join_ref, as Phoenix does after a join."""
        self.push(topic, "presence_state", dict(state), join_ref=join_ref)

    def reply(self, msg: ChannelMessage, status: str, response: Any) -> None:
        """Answer ``msg`` (a frame from :attr:`received`) now: for tests that hold replies.

        The reply carries ``msg``'s ref. Its join_ref is the join's own for a ``phx_join``
        (which, answered ``"ok"``, joins the topic), null for a heartbeat, and otherwise the
        topic's current join_ref. A bytes ``response`` gives a binary reply. Raises UsageError
        if the response cannot be encoded.
        """
        if not self.open:
            return
        if msg.event == PHX_JOIN:
            join_ref = msg.join_ref
        elif msg.topic == PHOENIX_TOPIC and msg.event == HEARTBEAT:
            join_ref = None
        else:
            join_ref = self.joined.get(msg.topic, msg.join_ref)
        frame = self._encode_reply(join_ref, msg.ref, msg.topic, status, response)
        if msg.event == PHX_JOIN and status == "ok":
            self._register(msg.topic, msg.join_ref)
        self._queue(frame)

    def send_error(self, topic: str, *, join_ref: str | EllipsisType | None = ...) -> None:
        """Crash the channel: send ``[J, J, topic, "phx_error", {"reason": "channel_crash"}]``
        and forget the topic. ``J`` is the current join_ref unless given; raises UsageError if
        the topic is not joined and no join_ref is given."""
        self._end_channel(topic, PHX_ERROR, {"reason": "channel_crash"}, join_ref)

    def send_close(self, topic: str, *, join_ref: str | EllipsisType | None = ...) -> None:
        """Close the channel: send ``[J, J, topic, "phx_close", {}]`` and forget the topic.
        ``J`` as in :meth:`send_error`; raises UsageError the same way."""
        self._end_channel(topic, PHX_CLOSE, {}, join_ref)

    def send_raw(self, data: str | bytes) -> None:
        """Send any text (``str``) or binary (``bytes``) WebSocket message, unchecked."""
        if self.open:
            self._queue(data)

    def send_wire(self, data: bytes) -> None:
        """Write ``data`` to the stream as it is, outside wsproto: a hand-built frame (see
        :func:`~stx_proto.testing.ws_frame`), a piece of one, or garbage. Once the bytes break
        the stream, what wsproto writes after them is nonsense to the client too: end the
        connection (:meth:`drop`) when the test is done with it."""
        if self.open:
            self._out += data
            self._wake()

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start a WebSocket close from the server (1001 is Phoenix's "disconnect" broadcast).

        The connection is :attr:`closing` until the client answers, then :attr:`closed`.
        Before the handshake completes, this drops the connection instead.
        """
        if self.open:
            self._held.clear()
            self._out += self._ws.send(CloseConnection(code=code, reason=reason))
            self._after_change()
        elif not self.closed and not self.closing:
            self.drop()

    def drop(self) -> None:
        """End the connection abruptly: pending output is discarded, :attr:`should_drop` is set
        and the transport closes the stream without a WebSocket close."""
        if self._should_drop:
            return
        self._should_drop = True
        self._dead = True
        self._out.clear()
        self._held.clear()
        self._after_change()

    # ----------------------------------------------------------------------------------------
    # WebSocket events

    def _on_event(self, event: Event, now: float) -> None:
        if isinstance(event, (TextMessage, BytesMessage)):
            if self._ws.state is not _OPEN:
                return  # the server is closing: like Phoenix, it handles nothing more
            if not event.message_finished:
                self._fragments.append(event.data)
                return
            data: Any = event.data
            if self._fragments:
                self._fragments.append(data)
                data = (
                    "".join(self._fragments) if isinstance(data, str) else b"".join(self._fragments)
                )
                self._fragments = []
            self._on_message(data, now)
        elif isinstance(event, Ping):
            if self._ws.state is _OPEN:
                self._out += self._ws.send(event.response())
        elif isinstance(event, CloseConnection):
            self._on_close(event)
        elif isinstance(event, Request):
            self._on_request(event)
        # Pong needs nothing.

    def _on_close(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state is _REMOTE_CLOSING:
            # The client started the close: answer it, and the connection is over (unless the
            # server is told not to: then it hangs until the client closes the stream).
            self.close_code, self.close_reason = event.code, event.reason
            if self.server.close_replies:
                self._out += self._ws.send(event.response())
        elif state is _CLOSED:
            # The client answered our close.
            self.close_code, self.close_reason = event.code, event.reason
        else:
            # wsproto reports a frame it cannot parse as a close while its state is unchanged.
            self.errors.append(f"broken WebSocket stream: {event.reason} ({event.code})")
            if state is _OPEN:
                self._out += self._ws.send(CloseConnection(code=event.code))
            self._dead = True
        self._held.clear()

    def _on_request(self, request: Request) -> None:
        target = urlsplit(request.target)
        self.path = target.path
        self.params = dict(parse_qsl(target.query, keep_blank_values=True))
        self.host = request.host
        self.request_headers = [
            (bytes(name).decode("latin-1").lower(), bytes(value).decode("latin-1"))
            for name, value in request.extra_headers
        ]
        offered = list(request.subprotocols)
        status = self._handshake_status(offered)
        if status is not None:
            self._reject(status)
            return
        self.subprotocol = "phoenix" if "phoenix" in offered else None
        self._out += self._ws.send(AcceptConnection(subprotocol=self.subprotocol))

    def _handshake_status(self, offered: list[str]) -> int | None:
        """The HTTP status to refuse the handshake with, or None to accept it."""
        server = self.server
        if server.refuse_handshake is not None:
            return server.refuse_handshake
        if server.path is not None and self.path != server.path:
            return 404
        self.vsn = self.params.get("vsn", "1.0.0")
        v1 = _vsn_is_v1(self.vsn)
        if v1 is None:
            self.errors.append(f"unsupported vsn {self.vsn!r}")
            return 403
        self._v1 = v1
        tokens = [p for p in offered if p.startswith(AUTH_TOKEN_PREFIX)]
        if len(tokens) > 1:
            self.errors.append("more than one auth token subprotocol")
            return 403
        if tokens:
            self.auth_token = _decode_token(tokens[0])
            if self.auth_token is None:
                self.errors.append(f"malformed auth token subprotocol {tokens[0]!r}")
                return 403
        if server.auth is not None and not server.auth(self.params, self.auth_token):
            self.errors.append("refused by auth")
            return 403
        return server.check_handshake(self)

    def _reject(self, status: int) -> None:
        try:
            body = HTTPStatus(status).phrase.encode()
        except ValueError:
            body = b"Refused"
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        self._out += self._ws.send(
            RejectConnection(status_code=status, headers=headers, has_body=True)
        )
        self._out += self._ws.send(RejectData(data=body, body_finished=True))
        self.rejected_status = status

    # ----------------------------------------------------------------------------------------
    # Phoenix frames

    def _on_message(self, data: str | bytes, now: float) -> None:
        try:
            msg = self._decode(data)
        except FrameError as exc:
            # An undecodable frame crashes a Phoenix socket process: the server sends close
            # 1011 and is gone, without waiting for the client's answer.
            self.errors.append(str(exc))
            self._out += self._ws.send(CloseConnection(code=1011, reason="internal error"))
            self._dead = True
            self._held.clear()
            return
        self.received.append(msg)
        self._dispatch(msg, now)

    def _decode(self, data: str | bytes) -> ChannelMessage:
        """Decode a client frame; raise FrameError (only) if it is not a valid message."""
        if isinstance(data, bytes):
            if self._v1:
                raise FrameError("vsn 1.0.0 has no binary frames")
            return decode_client_push_binary(data)
        try:
            obj = self.server.codec.loads(data)
        except (ValueError, RecursionError) as exc:
            raise FrameError(f"text frame is not valid JSON: {exc}") from exc
        if self._v1:
            if type(obj) is not dict:
                raise FrameError("a vsn 1.0.0 frame must be a JSON object")
            try:
                topic, event, payload, ref = obj["topic"], obj["event"], obj["payload"], obj["ref"]
            except KeyError as exc:
                raise FrameError(f"a vsn 1.0.0 frame needs the key {exc}") from None
            join_ref = obj.get("join_ref")
        else:
            # Phoenix's V2 decoder: [join_ref, ref, topic, event, payload | _].
            if type(obj) is not list or len(obj) < 5:
                raise FrameError("a vsn 2.0.0 frame must be a JSON array of 5")
            join_ref, ref, topic, event, payload = obj[:5]
        if type(topic) is not str or type(event) is not str:
            raise FrameError("topic and event must be strings")
        if not (join_ref is None or type(join_ref) is str) or not (ref is None or type(ref) is str):
            raise FrameError("join_ref and ref must be strings or null")
        return ChannelMessage(topic, event, payload, ref, join_ref)

    def _dispatch(self, msg: ChannelMessage, now: float) -> None:
        topic, event = msg.topic, msg.event
        if topic == PHOENIX_TOPIC and event == HEARTBEAT:
            if self.server.heartbeat_replies:
                self._queue(self._encode_reply(None, msg.ref, topic, "ok", {}))
            return
        current = self.joined.get(topic, _ABSENT)
        if event == PHX_JOIN:
            self._join(msg, current)
            return
        if current is _ABSENT:
            if event == PHX_LEAVE:
                self._queue(self._encode_reply(msg.join_ref, msg.ref, topic, "ok", {}))
            else:
                self._queue(self._unmatched(msg))
            return
        if msg.join_ref is not None and msg.join_ref != current:
            return  # stale join_ref: Phoenix drops it without a word
        if event == PHX_LEAVE:
            route = self.server._find_route(topic)
            if route is not None and route.on_leave is not None:
                try:
                    route.on_leave(topic, self)
                except Exception as exc:  # the leave goes ahead, as a terminating channel's
                    self.server.handler_errors.append(exc)
            del self.joined[topic]
            self._queue(self._encode_reply(current, msg.ref, topic, "ok", {}))
            self._queue(self._encode(current, current, topic, PHX_CLOSE, {}))
            return
        self._handle_push(msg, current, now)

    def _join(self, msg: ChannelMessage, old_join_ref: Any) -> None:
        topic, join_ref, server = msg.topic, msg.join_ref, self.server
        if old_join_ref is not _ABSENT:
            # Duplicate join: Phoenix shuts the old channel down before running the new join.
            del self.joined[topic]
        deferred: list[str | bytes] = []
        route = server._find_route(topic)
        if len(self.joined) >= server.max_channels:
            frame: str | bytes | None = self._encode_reply(
                join_ref, msg.ref, topic, "error", {"reason": "too many channels joined"}
            )
        elif route is None:
            frame = self._unmatched(msg)
        elif topic in server.refuse_joins:
            frame = self._encode_reply(
                join_ref, msg.ref, topic, "error", server.refuse_joins[topic]
            )
        else:
            self._joining, self._deferred = (topic, join_ref), deferred
            try:
                result = (route.on_join or _default_join)(topic, msg.payload, self)
                frame = (
                    None
                    if result is None
                    else self._encode_reply(join_ref, msg.ref, topic, *result)
                )
            except Exception as exc:
                server.handler_errors.append(exc)
                result = ("error", None)
                frame = self._encode_reply(
                    join_ref, msg.ref, topic, "error", {"reason": "join crashed"}
                )
            finally:
                self._joining = self._deferred = None
            if result is not None and result[0] == "ok":
                self._register(topic, join_ref)
            else:
                deferred.clear()  # a channel that did not join sends nothing
        if frame is not None:
            self._queue(frame)
        if old_join_ref is not _ABSENT:
            # Queued by the old channel's shutdown, so written after the new join's reply.
            self._queue(self._encode(old_join_ref, old_join_ref, topic, PHX_CLOSE, {}))
        for pushed in deferred:
            self._queue(pushed)

    def _handle_push(self, msg: ChannelMessage, join_ref: str | None, now: float) -> None:
        route = self.server._find_route(msg.topic)
        handler = route.on_push if route is not None and route.on_push is not None else _echo
        try:
            result = handler(msg, self)
            if result is None:
                return
            frame = self._encode_reply(join_ref, msg.ref, msg.topic, *result)
        except Exception as exc:
            self.server.handler_errors.append(exc)
            if self.joined.get(msg.topic, _ABSENT) == join_ref:
                self._end_channel(msg.topic, PHX_ERROR, {"reason": "channel_crash"}, join_ref)
            return
        delay = self.server.reply_delay
        if delay > 0:
            self._seq += 1
            heapq.heappush(self._held, (now + delay, self._seq, msg.topic, join_ref, frame))
        else:
            self._queue(frame)

    def _register(self, topic: str, join_ref: str | None) -> None:
        self.joined[topic] = join_ref
        self.server.join_counts[topic] = self.server.join_counts.get(topic, 0) + 1

    def _end_channel(
        self, topic: str, event: str, payload: Any, join_ref: str | EllipsisType | None
    ) -> None:
        if not self.open:
            return
        if join_ref is ...:
            if topic not in self.joined:
                raise UsageError(f"topic {topic!r} is not joined; pass join_ref to send anyway")
            join_ref = self.joined[topic]
        if self.joined.get(topic, _ABSENT) == join_ref:
            del self.joined[topic]
        self._queue(self._encode(join_ref, join_ref, topic, event, payload))

    def _release_due(self, now: float) -> None:
        held = self._held
        while held and held[0][0] <= now:
            _, _, topic, join_ref, frame = heapq.heappop(held)
            # A channel that has gone away (left, crashed, rejoined) sends no reply.
            if self.joined.get(topic, _ABSENT) == join_ref:
                self._queue(frame)

    # ----------------------------------------------------------------------------------------
    # Encoding and output

    def _unmatched(self, msg: ChannelMessage) -> str:
        return self._encode(
            None,
            msg.ref,
            msg.topic,
            PHX_REPLY,
            {"status": "error", "response": {"reason": "unmatched topic"}},
        )

    def _check_binary(self) -> None:
        if self._v1:
            raise UsageError("vsn 1.0.0 has no binary frames")

    def _encode_reply(
        self, join_ref: str | None, ref: str | None, topic: str, status: str, response: Any
    ) -> str | bytes:
        if isinstance(response, _BINARY):
            self._check_binary()
            return encode_reply_binary(join_ref, ref or "", topic, status, bytes(response))
        return self._encode(
            join_ref, ref, topic, PHX_REPLY, {"status": status, "response": response}
        )

    def _encode(
        self, join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
    ) -> str:
        obj: Any
        if self._v1:
            # V1 server frames never carry a join_ref.
            obj = {"topic": topic, "event": event, "payload": payload, "ref": ref}
        else:
            obj = [join_ref, ref, topic, event, payload]
        try:
            return self.server.codec.dumps(obj)
        except _ENCODE_ERRORS as exc:
            raise UsageError(f"cannot encode {event!r} on {topic!r} as JSON: {exc}") from exc

    def _queue(self, frame: str | bytes) -> None:
        if self._deferred is not None:
            self._deferred.append(frame)
            return
        if not self.open:
            return
        if isinstance(frame, str):
            self._out += self._ws.send(TextMessage(data=frame))
        else:
            self._out += self._ws.send(BytesMessage(data=frame))
        self._wake()

    def _finished(self) -> bool:
        return self._dead or self._ws.state is _CLOSED

    def _after_change(self) -> None:
        if self.closed and self in self.server.connections:
            self.server.connections.remove(self)
        self._wake()

    def _wake(self) -> None:
        if self.on_output is not None:
            self.on_output()
