"""stx_anyio: a Phoenix Channels client for asyncio and trio (through anyio).

A thin driver around the sans-IO core :mod:`stx_proto`: one socket, many channels, with
heartbeat, reconnect, rejoin and clean close done for you::

    from stx_anyio import Socket

    async with Socket("wss://example.com/socket", params={"token": token}) as sock:
        ch = await sock.join("room:lobby", on_message=print)
        reply = await ch.push("new_msg", {"body": "hi"})

Every exception raised derives from :class:`StxWsError`. Besides ``Socket``,
``STXWebSocket`` and ``run``, this package exports the names every driver shares (the driver
kit's ``DRIVER_EXPORTS``): the very same objects in every driver.
"""

from __future__ import annotations

from stx_proto.driver import exports as _exports
from stx_proto.driver.exports import *  # noqa: F403 - the shared names, listed once there

from ._driver import Socket, STXWebSocket, run

__all__ = ["STXWebSocket", "Socket", "run"]
__all__ += _exports.__all__
