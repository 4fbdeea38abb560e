"""What the driver tests share: each driver on each event loop, and a loopback server.

Every async driver test runs for ``stx_anyio`` on asyncio, on uvloop, on asyncio with
``transport="picows"``, and on trio, and for ``stx_trio`` (the :func:`impl` fixture). The
tests orchestrate with anyio, which works under both of anyio's backends; the trio driver
runs inside anyio's trio runner, against the same anyio-based
:class:`~stx_anyio.testing.TestServer`. ``Channel``, the exceptions and the other shared names
are the very same objects in both drivers (``test_api.py``), so they are imported once. Every
test is bounded by ``anyio.fail_after`` and waits for what it checks (an event set by a hook
or handler, or the test server's ``wait_for_*``): none sleeps for correctness.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import trio

import stx_anyio
import stx_trio
from stx_anyio.testing import TestServer
from stx_proto import (
    ChannelMessage,
    RetryPolicy,
)
from stx_proto.driver import (
    Runtime,
    SocketBase,
    StxPreset,
)

FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)
LIMIT = 5.0  # seconds any one test may take


@dataclass(frozen=True)
class Impl:
    """One driver on one event loop."""

    module: ModuleType
    backend: str | tuple[str, dict[str, Any]]  # the anyio backend the test runs on
    transport: str | None = None  # the default of Socket(transport=...) in the test

    @property
    def logger(self) -> str:
        """The driver's logger name."""
        return self.module.__name__

    @property
    def runtime(self) -> Runtime:
        """The driver's runtime."""
        runtime: Runtime = self.module.Socket.runtime
        return runtime

    def cancel_scope(self) -> Any:
        """A cancel scope of the driver's kind."""
        return trio.CancelScope() if self.module is stx_trio else anyio.CancelScope()

    @property
    def Socket(self) -> type[SocketBase]:
        """The driver's Socket class."""
        socket: type[SocketBase] = self.module.Socket
        return socket

    @property
    def STXWebSocket(self) -> type[StxPreset]:
        """The driver's STXWebSocket class."""
        stx: type[StxPreset] = self.module.STXWebSocket
        return stx


IMPLS = {
    "anyio-asyncio": Impl(stx_anyio, "asyncio"),
    "anyio-trio": Impl(stx_anyio, "trio"),
    "trio": Impl(stx_trio, "trio"),
    "anyio-uvloop": Impl(stx_anyio, ("asyncio", {"use_uvloop": True})),
    "anyio-asyncio-picows": Impl(stx_anyio, "asyncio", "picows"),
}


def make_socket(impl: Impl, srv: TestServer, **options: Any) -> SocketBase:
    """A socket of ``impl`` to ``srv`` with short timeouts and fast reconnects."""
    options.setdefault("timeout", 2.0)
    options.setdefault("retry", FAST)
    return impl.Socket(srv.url, **options)


def frames(srv: TestServer, event: str) -> list[ChannelMessage]:
    """Every frame with ``event`` that any client sent to ``srv``."""
    return [m for c in srv.phoenix.all_connections for m in c.received if m.event == event]
