"""What the core hands back: commands for the transport, events for the application.

The caller pulls them one at a time with :meth:`stx_proto.Client.next_event` until it gets a
:class:`SleepUntil`. Every type here is a frozen value with no instance dict: slotted classes, and
for the per-message event a named tuple.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import attrs

from ._message import ChannelMessage

# --------------------------------------------------------------------------------------------
# Reasons


class DisconnectReason(str, enum.Enum):
    """Why a connection ended (or a connection attempt failed)."""

    TRANSPORT_ERROR = "transport_error"  # the stream failed or could not be opened
    TRANSPORT_CLOSED = "transport_closed"  # the stream ended without a WebSocket close
    SERVER_CLOSED = "server_closed"  # the server sent a WebSocket close frame
    HANDSHAKE_REFUSED = "handshake_refused"  # HTTP answer other than 101
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # no heartbeat reply in time
    PROTOCOL_ERROR = "protocol_error"  # broken WebSocket stream or oversized message
    CONNECT_TIMEOUT = "connect_timeout"  # open + handshake took longer than the timeout
    CLIENT_CLOSED = "client_closed"  # the user called close()
    INVALID_CREDENTIALS = "invalid_credentials"  # params, token or headers gave a bad value


class PushFailure(str, enum.Enum):
    """Why a push ended without a reply."""

    TIMEOUT = "timeout"  # no reply within the push's timeout
    BUFFER_FULL = "buffer_full"  # the channel's buffer of unsent pushes was full
    CHANNEL_CLOSED = "channel_closed"  # the channel was left, or closed by the server
    CHANNEL_ERRORED = "channel_errored"  # sent, but the channel crashed before replying
    CONNECTION_LOST = "connection_lost"  # sent, but the connection dropped before the reply
    SOCKET_CLOSED = "socket_closed"  # the user closed the client
    CANCELLED = "cancelled"  # withdrawn with cancel_push() before it was sent


class ChannelCloseReason(str, enum.Enum):
    """Why a channel is closed for good."""

    LEFT = "left"  # the user left it
    SERVER_CLOSED = "server_closed"  # the server sent phx_close
    JOIN_FAILED = "join_failed"  # its first join was refused or timed out
    SOCKET_CLOSED = "socket_closed"  # the user closed the client, or it gave up


# --------------------------------------------------------------------------------------------
# Commands: carry these out on the transport.


@attrs.frozen(slots=True)
class OpenTransport:
    """Open a stream to ``host:port`` (TLS when ``tls``), then call ``transport_opened(now)``.

    On failure, call ``transport_closed(now, error)``. The WebSocket handshake is built when
    ``transport_opened`` is called (or, with an external WebSocket, when the transport calls
    ``handshake_request()``), so credentials refreshed in between are the ones used.
    """

    host: str
    port: int
    tls: bool


@attrs.frozen(slots=True)
class HandshakeRequest:
    """The WebSocket upgrade to perform, for transports that do their own WebSocket framing."""

    url: str
    host: str  # the Host header value
    target: str  # path and query
    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # The query and the subprotocols may carry a token: never print them.
        return f"HandshakeRequest(host={self.host!r}, path={self.target.partition('?')[0]!r})"


@attrs.frozen(slots=True)
class SendBytes:
    """Write these bytes to the stream, after every earlier ``SendBytes``."""

    data: bytes


@attrs.frozen(slots=True)
class SendMessage:
    """Message mode only (``websocket=False``): send one WebSocket message (text if ``str``)."""

    data: str | bytes


@attrs.frozen(slots=True)
class CloseTransport:
    """Close the stream now. Report nothing more about it: the core has forgotten it.

    ``code`` and ``reason`` matter only in message mode, where the transport sends the close.
    """

    code: int = 1000
    reason: str = ""


@attrs.frozen(slots=True)
class SleepUntil:
    """Nothing more to do until ``deadline`` (None: no timer), new bytes, or a new call.

    At the deadline, call ``handle_timer(now)``.
    """

    deadline: float | None


# --------------------------------------------------------------------------------------------
# Events: tell the application.


@attrs.frozen(slots=True)
class Connected:
    """The WebSocket handshake succeeded; channels are being (re)joined."""

    subprotocol: str | None = None


@attrs.frozen(slots=True)
class HandshakeRefused:
    """The server answered the upgrade with an HTTP error (a bad token gives 403)."""

    status_code: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@attrs.frozen(slots=True)
class Disconnected:
    """The connection (or an attempt to make one) ended.

    ``retry_at`` is when the next attempt is due, or None when no reconnect will happen (the
    user closed the client, or a :class:`GaveUp` follows).
    """

    reason: DisconnectReason
    code: int | None = None
    detail: str = ""
    retry_at: float | None = None

    def describe(self, now: float | None = None) -> str:
        """One line for a person: what ended, and when the next attempt is (given ``now``)."""
        text = self.reason.value.replace("_", " ")
        if self.code is not None:
            text += f" (close code {self.code})"
        if self.detail:
            text += f": {self.detail}"
        if self.retry_at is None:
            return text
        if now is None:
            return f"{text}; reconnecting"
        return f"{text}; reconnecting in {max(0.0, self.retry_at - now):.1f} s"


@attrs.frozen(slots=True)
class GaveUp:
    """Reconnecting stopped for good: the attempt limit was hit or the close was final.

    ``error`` is the exception that made it final, when there is one (the UsageError of a
    credential callable that returned a value that cannot be sent).
    """

    reason: DisconnectReason
    attempts: int
    code: int | None = None
    detail: str = ""
    error: Exception | None = None


@attrs.frozen(slots=True)
class Closed:
    """The client is closed for good (after ``close()`` or :class:`GaveUp`); the last event."""


@attrs.frozen(slots=True)
class Joined:
    """A join was acknowledged.

    ``rejoin`` is True when this channel had been joined before (after a reconnect, a
    ``phx_error`` or a join timeout): messages may have been missed in between, so reconcile.
    """

    topic: str
    response: Any
    join_ref: str
    rejoin: bool = False


@attrs.frozen(slots=True)
class JoinFailed:
    """A join was refused or timed out.

    ``retry_at`` is when the core rejoins; None means the channel is closed for good (the
    user's first join failed, or the server has no route for the topic). ``response`` is the
    server's error response, or None for a timeout.
    """

    topic: str
    response: Any
    timed_out: bool = False
    retry_at: float | None = None


@attrs.frozen(slots=True)
class ChannelErrored:
    """A joined (or joining) channel broke; it rejoins at ``retry_at`` (None: when reconnected)."""

    topic: str
    reason: str
    payload: Any = None
    retry_at: float | None = None


@attrs.frozen(slots=True)
class ChannelClosed:
    """A channel is closed for good; no more events for it will come."""

    topic: str
    reason: ChannelCloseReason
    payload: Any = None


class MessageReceived(NamedTuple):
    """A server push or broadcast for a live channel.

    A named tuple, like :class:`ChannelMessage`: one is made for every message.
    """

    message: ChannelMessage


@attrs.frozen(slots=True)
class ControlReceived:
    """A control frame (``phx_reply``, ``phx_error`` or ``phx_close``) of a channel joined with
    ``control_frames=True``, emitted before the core acts on it (so a join's reply comes
    before its :class:`Joined`). The core handles the frame as it always does; this is a copy
    for the application, as the STX SDK hands control frames to handlers."""

    message: ChannelMessage


@attrs.frozen(slots=True)
class ReplyReceived:
    """The reply to a push. ``response`` is ``bytes`` for a binary reply."""

    topic: str
    ref: str
    status: str
    response: Any

    @property
    def ok(self) -> bool:
        """True when the server answered ``"ok"``."""
        return self.status == "ok"


@attrs.frozen(slots=True)
class PushFailed:
    """A push ended without a reply, for ``reason``. It was never sent unless ``sent``."""

    topic: str
    ref: str
    reason: PushFailure
    sent: bool = False


@attrs.frozen(slots=True)
class PresenceChanged:
    """Presence for ``topic`` changed; ``presence`` is the channel's up-to-date tracker.

    ``joins`` and ``leaves`` list ``(key, current, change)`` in the order phoenix.js would have
    called ``onJoin`` and ``onLeave``; ``synced`` is True when this is an ``onSync`` point.
    """

    topic: str
    joins: tuple[tuple[str, Any, Any], ...]
    leaves: tuple[tuple[str, Any, Any], ...]
    presence: Any
    synced: bool = True


@attrs.frozen(slots=True)
class ChannelPingFailed:
    """A channel's keepalive ping got no ok reply: ``reason`` is ``"timeout"`` (no reply
    within ``timeout`` seconds) or ``"error"`` (the server's ``response``). The channel stays
    joined; with cancel-on-disconnect, the server may have cancelled the orders."""

    topic: str
    reason: str
    response: Any = None
    timeout: float | None = None


@attrs.frozen(slots=True)
class PayloadInvalid:
    """A typed event's payload did not decode into its type; the message was not delivered.

    ``message`` holds the payload as the JSON codec decodes it (``bytes`` for a binary one),
    ``expected`` the type asked for, and ``error`` msgspec's error saying what did not fit.
    """

    message: ChannelMessage
    expected: Any
    error: Exception


@attrs.frozen(slots=True)
class FrameDropped:
    """A frame from the server could not be decoded and was skipped."""

    detail: str
    data: bytes | str = b""


Command = OpenTransport | SendBytes | SendMessage | CloseTransport | SleepUntil
Event = (
    Connected
    | HandshakeRefused
    | Disconnected
    | GaveUp
    | Closed
    | Joined
    | JoinFailed
    | ChannelErrored
    | ChannelClosed
    | MessageReceived
    | ControlReceived
    | ReplyReceived
    | PushFailed
    | PresenceChanged
    | ChannelPingFailed
    | FrameDropped
    | PayloadInvalid
)
Output = Command | Event
