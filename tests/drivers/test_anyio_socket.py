"""What only ``stx_anyio`` has: its entry point runs on either of anyio's backends.

Everything else the driver does is tested in ``test_socket_shared.py``, for both drivers.
"""

from __future__ import annotations

from typing import Any

import pytest

from stx_anyio import Socket, run
from stx_anyio.testing import TestServer


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_run_outside_an_event_loop(backend: str) -> None:
    async def main(topic: str) -> Any:
        async with TestServer() as srv:
            srv.phoenix.route("room:*")
            async with Socket(srv.url) as sock:
                ch = await sock.join(topic)
                return await ch.push("echo", {"topic": topic})

    assert run(main, "room:1", backend=backend) == {"topic": "room:1"}
