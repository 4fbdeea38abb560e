"""Fixtures of the driver-kit tests: the kit driven directly, on every driver's runtime."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import stx_anyio
import stx_trio
from stx_proto.driver import Runtime


@dataclass(frozen=True)
class Loop:
    """A driver's runtime, and the anyio backend that the test runs it on."""

    runtime: Runtime
    backend: str


LOOPS = {
    "anyio-asyncio": Loop(stx_anyio.Socket.runtime, "asyncio"),
    "anyio-trio": Loop(stx_anyio.Socket.runtime, "trio"),
    "trio": Loop(stx_trio.Socket.runtime, "trio"),
}


@pytest.fixture(params=list(LOOPS.values()), ids=list(LOOPS))
def loop(request: pytest.FixtureRequest) -> Loop:
    """The runtime under test."""
    chosen: Loop = request.param
    return chosen


@pytest.fixture
def anyio_backend(loop: Loop) -> str:
    """The anyio backend ``loop`` runs on."""
    return loop.backend
