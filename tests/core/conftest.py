"""Shared fixtures of the core tests: a scripted server, a factory of client links, and the
WebSocket engine of every client (``pytest --ws-engine=websockets``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from random import Random
from typing import Any

import pytest

from stx_proto import Client
from stx_proto._engines import EngineFactory, resolve_engine
from stx_proto.testing import Link, PhoenixServer

URL = "ws://test/socket"

MakeLink = Callable[..., Link]


@pytest.fixture(scope="module", autouse=True)
def ws_engine(request: pytest.FixtureRequest) -> Iterator[EngineFactory]:
    """The engine ``--ws-engine`` names, made the default of ``Client(engine=...)``.

    Many tests build ``Client(...)`` themselves: replacing the keyword's default reaches them
    all (a test passing ``engine=`` explicitly keeps its own). Module scope: hypothesis refuses
    function-scoped fixtures, and the default is restored when the module's tests are done.
    """
    factory = resolve_engine(request.config.getoption("ws_engine"))
    defaults = Client.__init__.__kwdefaults__
    assert defaults is not None and "engine" in defaults
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(defaults, "engine", factory)
        yield factory


@pytest.fixture
def server() -> PhoenixServer:
    """A server that accepts every topic (joins answered ``ok {}``, pushes echoed)."""
    srv = PhoenixServer()
    srv.route("*")
    return srv


@pytest.fixture
def make_link(server: PhoenixServer, ws_engine: EngineFactory) -> MakeLink:
    """``make_link(seed=0, server=None, **client_options)``: a :class:`Link` from a new client to
    ``server`` (the fixture's unless given), with a seeded ``random.Random`` (so every retry_at
    is exact)."""

    def make(
        *, seed: int = 0, url: str = URL, server: PhoenixServer = server, **options: Any
    ) -> Link:
        options.setdefault("rng", Random(seed))
        options.setdefault("engine", ws_engine)
        return Link(Client(url, **options), server)

    return make
