"""Shared fixtures of the core tests: a scripted server and a factory of client links."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import Any

import pytest

from stx_proto import Client
from stx_proto.testing import Link, PhoenixServer

URL = "ws://test/socket"

MakeLink = Callable[..., Link]


@pytest.fixture
def server() -> PhoenixServer:
    """A server that accepts every topic (joins answered ``ok {}``, pushes echoed)."""
    srv = PhoenixServer()
    srv.route("*")
    return srv


@pytest.fixture
def make_link(server: PhoenixServer) -> MakeLink:
    """``make_link(seed=0, server=None, **client_options)``: a :class:`Link` from a new client to
    ``server`` (the fixture's unless given), with a seeded ``random.Random`` (so every retry_at
    is exact)."""

    def make(
        *, seed: int = 0, url: str = URL, server: PhoenixServer = server, **options: Any
    ) -> Link:
        options.setdefault("rng", Random(seed))
        return Link(Client(url, **options), server)

    return make
