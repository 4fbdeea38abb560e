"""The connection's states, what can happen to it, and the table of its transitions."""

from __future__ import annotations

import enum


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

#: States with a connection (or an attempt) under way.
LIVE_CONNECTION = frozenset({SocketState.CONNECTING, SocketState.HANDSHAKING, SocketState.OPEN})
