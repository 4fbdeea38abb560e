"""Shared fixtures of the driver tests: each driver on each event loop, a loopback server,
and a trustme certificate.

Every async test runs once per :data:`~.support.IMPLS` entry (the ``impl`` fixture, which also
sets anyio's backend); tests about one package only choose their backends themselves.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trustme

from stx_anyio.testing import TestServer
from stx_proto.driver import SocketBase

from .support import IMPLS, Impl


@pytest.fixture(params=list(IMPLS.values()), ids=list(IMPLS))
def impl(request: pytest.FixtureRequest) -> Iterator[Impl]:
    """The driver (and event loop) under test; its transport is made the default of
    ``Socket(transport=...)`` for the test."""
    chosen: Impl = request.param
    if chosen.transport is None:
        yield chosen
        return
    defaults = SocketBase.__init__.__kwdefaults__
    assert defaults is not None and "transport" in defaults
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(defaults, "transport", chosen.transport)
        yield chosen


@pytest.fixture
def anyio_backend(impl: Impl) -> str | tuple[str, dict[str, Any]]:
    """The anyio backend of ``impl`` (overrides conftest's, which runs both for each test)."""
    return impl.backend


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--ws-engine`` other than wsproto, leave out the impls with a message transport
    (it does its own WebSocket: the engine does not apply, and the run would repeat)."""
    if config.getoption("ws_engine") == "wsproto":
        return
    kept: list[pytest.Item] = []
    left: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        chosen = callspec.params.get("impl") if callspec is not None else None
        (left if isinstance(chosen, Impl) and chosen.transport else kept).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept


@pytest.fixture
async def srv() -> AsyncIterator[TestServer]:
    """A test server that accepts ``room:*`` (joins answered ok, pushes echoed)."""
    async with TestServer() as server:
        server.phoenix.route("room:*")
        yield server


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1, signed by :func:`tls_ca`."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts :func:`tls_ca`."""
    ctx = ssl.create_default_context()
    tls_ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="module", autouse=True)
def ws_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine ``--ws-engine`` names, made the default of ``Socket(engine=...)``: the
    driver suite runs on each engine (the Makefile runs it again with websockets)."""
    engine: str = request.config.getoption("ws_engine")
    defaults = SocketBase.__init__.__kwdefaults__
    assert defaults is not None and "engine" in defaults
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(defaults, "engine", engine)
        yield engine
