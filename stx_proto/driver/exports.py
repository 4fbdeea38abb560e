"""The names every driver package exports besides its own ``Socket``, ``STXWebSocket`` and
``run``: a driver's ``__init__`` star-imports this module, so the list is written once."""

from __future__ import annotations

from .._channel import ChannelState
from .._errors import (
    ClientClosedError,
    ConnectionClosedError,
    CredentialsRevokedError,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    ProtocolError,
    PushError,
    PushFailedError,
    PushTimeout,
    QueueOverflowError,
    StxWsError,
    UsageError,
)
from .._events import (
    ChannelClosed,
    ChannelCloseReason,
    ChannelErrored,
    Disconnected,
    DisconnectReason,
    PushFailure,
)
from .._message import ChannelMessage
from .._retry import RetryPolicy
from .._socket_state import SocketState
from .._stx import Channels
from .channel import Channel, ChannelPresence
from .dispatch import Dispatch
from .queues import Overflow
from .router import Handler, SocketStats
from .transport import MessageTransport, StreamTransport

__all__ = [
    "Channel",
    "ChannelCloseReason",
    "ChannelClosed",
    "ChannelErrored",
    "ChannelMessage",
    "ChannelPresence",
    "ChannelState",
    "Channels",
    "ClientClosedError",
    "ConnectionClosedError",
    "CredentialsRevokedError",
    "DisconnectReason",
    "Disconnected",
    "Dispatch",
    "GaveUpError",
    "Handler",
    "HandshakeRefusedError",
    "JoinError",
    "MessageTransport",
    "Overflow",
    "ProtocolError",
    "PushError",
    "PushFailedError",
    "PushFailure",
    "PushTimeout",
    "QueueOverflowError",
    "RetryPolicy",
    "SocketState",
    "SocketStats",
    "StreamTransport",
    "StxWsError",
    "UsageError",
]
