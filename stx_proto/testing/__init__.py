"""Test helpers for Phoenix clients, public so users can test their own bots the same way.

- :class:`VirtualClock`: time that moves only when the test moves it.
- :class:`PhoenixServer` / :class:`ServerConnection`: a scripted, sans-IO Phoenix server
  (routes, replies, broadcasts, presence, and faults), speaking the server side over wsproto.
- :class:`Link`: a :class:`stx_proto.Client` and a PhoenixServer joined in memory.
"""

from ._clock import VirtualClock
from ._link import Link
from ._server import PhoenixServer, ServerConnection

__all__ = ["Link", "PhoenixServer", "ServerConnection", "VirtualClock"]
