"""The picows transport's public names (``pip install 'stx-ws[picows]'``; asyncio only).

``Socket(url, transport="picows")`` needs no import; this module is for a transport object of
your own, ``Socket(url, transport=PicowsTransport(max_message_size=...))``, and for tests.
The implementation and what it does are in :mod:`stx_anyio._picows`.
"""

from __future__ import annotations

from ._picows import HANDSHAKE_LIMIT, PicowsStream, PicowsTransport

__all__ = ["HANDSHAKE_LIMIT", "PicowsStream", "PicowsTransport"]
