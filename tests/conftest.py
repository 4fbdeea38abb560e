"""Options of the whole test suite."""

from __future__ import annotations

import pytest

from stx_proto._engines import ENGINES


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--ws-engine``: the WebSocket engine of every client the core and driver
    tests make."""
    parser.addoption(
        "--ws-engine",
        choices=ENGINES,
        default="wsproto",
        help="the WebSocket engine of tests/core and tests/drivers (default: wsproto)",
    )
