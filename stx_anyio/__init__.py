"""stx_anyio: a Phoenix Channels client for asyncio and trio (through anyio).

A thin driver around the sans-IO core :mod:`stx_proto`: one socket, many channels, with
heartbeat, reconnect, rejoin and clean close done for you::

    from stx_anyio import Socket

    async with Socket("wss://example.com/socket", params={"token": token}) as sock:
        ch = await sock.join("room:lobby", on_message=print)
        reply = await ch.push("new_msg", {"body": "hi"})

Every exception raised derives from :class:`StxWsError`.
"""

from __future__ import annotations

from stx_proto import (
    ChannelCloseReason,
    ChannelMessage,
    Channels,
    ClientClosedError,
    ConnectionClosedError,
    Disconnected,
    DisconnectReason,
    GaveUpError,
    HandshakeRefusedError,
    JoinError,
    ProtocolError,
    PushError,
    PushFailedError,
    PushFailure,
    PushTimeout,
    QueueOverflowError,
    RetryPolicy,
    StxWsError,
    UsageError,
)
from stx_proto._bounded import Overflow
from stx_proto._driver_channel import Channel, Handler
from stx_proto._router import SocketStats

from ._dispatch import Dispatch
from ._socket import Socket, run
from ._stx import STXWebSocket

__all__ = [
    "Channel",
    "ChannelCloseReason",
    "ChannelMessage",
    "Channels",
    "ClientClosedError",
    "ConnectionClosedError",
    "DisconnectReason",
    "Disconnected",
    "Dispatch",
    "GaveUpError",
    "Handler",
    "HandshakeRefusedError",
    "JoinError",
    "Overflow",
    "ProtocolError",
    "PushError",
    "PushFailedError",
    "PushFailure",
    "PushTimeout",
    "QueueOverflowError",
    "RetryPolicy",
    "STXWebSocket",
    "Socket",
    "SocketStats",
    "StxWsError",
    "UsageError",
    "run",
]
