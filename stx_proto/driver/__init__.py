"""The driver kit: the loop-agnostic async body that every stx-ws driver shares.

Theory of operation
-------------------
The protocol is the sans-IO core's (:class:`stx_proto.Client`): it never waits, reads a
clock or touches a socket. A driver is what runs it on an event loop, and most of that does
not depend on the loop at all; it is here, so that a driver is one small file:

* :mod:`.session`: the **pump** that owns the core (feeds it bytes and ``now``, carries out
  its commands, routes its events), one task per connection, and the user's calls (join,
  push, leave, close) that wait for the core's answer.
* :mod:`.connection`: one connection: credentials, the transport's connect, a reader into
  the pump's bounded inbox and a writer from its outbox.
* :mod:`.router`: from the core's events to the waiting calls and to each channel's
  consumers; :mod:`.dispatch`: user code (handlers, hooks) in the chosen dispatch mode;
  :mod:`.queues`: every queue bounded, every loss counted.
* :mod:`.socket` and :mod:`.channel`: what the user holds (``Socket``, ``Channel``);
  :mod:`.stx`: the STX preset over them.
* :mod:`.runtime` and :mod:`.transport`: the two interfaces a driver fills in.

Writing a driver
----------------
A driver gives the kit two things, and nothing else depends on its loop:

1. a :class:`Runtime`: the loop's clock, event, task group, cancel scope, semaphore,
   cancellation exception, checkpoint and logger;
2. a default :class:`StreamTransport`: how to open a TCP (or TLS) byte stream, and in
   ``transports`` the names a user may pass as ``transport=`` (``"tcp"`` at least).

Then ``class Socket(SocketBase): runtime = RUNTIME; default_transport = TcpTransport``, an
``STXWebSocket(StxPreset, Socket)``, and a ``run`` helper. ``docs/core/`` walks through it,
with a third driver and a user-written transport that the tests run.
"""

from __future__ import annotations

from .channel import Channel, ChannelPresence
from .connection import Connection, ConnectionOwner, describe_error
from .credentials import Credential
from .dispatch import DISPATCH_MODES, Dispatch, Dispatcher, ErrorHandler, call_user
from .exports import __all__ as DRIVER_EXPORTS
from .queues import OVERFLOW_POLICIES, BoundedQueue, MessageQueue, Overflow
from .router import ChannelRoute, Handler, Pending, Router, SocketStats
from .runtime import (
    AsyncEvent,
    CancelScope,
    Runtime,
    Semaphore,
    Signal,
    TaskGroup,
    is_cancellation,
)
from .session import HookKind, Hooks, JoinOptions, Session
from .socket import HeadersSource, ParamsSource, SocketBase, TokenSource
from .stx import StxPreset, stx_params
from .transport import (
    ByteStream,
    HandshakeRejected,
    MessageStream,
    MessageTransport,
    StreamTransport,
    Transport,
    TransportFactory,
)

__all__ = [
    "DISPATCH_MODES",
    "DRIVER_EXPORTS",
    "OVERFLOW_POLICIES",
    "AsyncEvent",
    "BoundedQueue",
    "ByteStream",
    "CancelScope",
    "Channel",
    "ChannelPresence",
    "ChannelRoute",
    "Connection",
    "ConnectionOwner",
    "Credential",
    "Dispatch",
    "Dispatcher",
    "ErrorHandler",
    "Handler",
    "HandshakeRejected",
    "HeadersSource",
    "HookKind",
    "Hooks",
    "JoinOptions",
    "MessageQueue",
    "MessageStream",
    "MessageTransport",
    "Overflow",
    "ParamsSource",
    "Pending",
    "Router",
    "Runtime",
    "Semaphore",
    "Session",
    "Signal",
    "SocketBase",
    "SocketStats",
    "StreamTransport",
    "StxPreset",
    "TaskGroup",
    "TokenSource",
    "Transport",
    "TransportFactory",
    "call_user",
    "describe_error",
    "is_cancellation",
    "stx_params",
]
