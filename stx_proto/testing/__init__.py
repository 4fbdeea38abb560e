"""Test helpers for Phoenix clients, public so users can test their own bots the same way.

- :class:`VirtualClock`: time that moves only when the test moves it.
- :class:`PhoenixServer` / :class:`ServerConnection`: a scripted, sans-IO Phoenix server
  (routes, replies, broadcasts, presence, and faults), speaking the server side over wsproto.
- :class:`StxServer`: a PhoenixServer that behaves as STX's current API (handshake
  authentication with 401s, channels, filters, watches, channel pings, cancel-on-disconnect).
- :class:`Link`: a :class:`stx_proto.Client` and a PhoenixServer joined in memory.
- :func:`ws_frame` and :func:`close_payload`: hand-built WebSocket frames, valid or not, for
  tests that play a hostile server.
"""

from ._clock import VirtualClock
from ._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    close_payload,
    ws_frame,
)
from ._link import Link
from ._server import PhoenixServer, ServerConnection
from ._stx_server import Cancellation, StxChannelState, StxServer

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONTINUATION",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Cancellation",
    "Link",
    "PhoenixServer",
    "ServerConnection",
    "StxChannelState",
    "StxServer",
    "VirtualClock",
    "close_payload",
    "ws_frame",
]
