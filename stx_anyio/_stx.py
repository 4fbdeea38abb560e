"""``STXWebSocket``: a :class:`Socket` set up for the STX exchange."""

from __future__ import annotations

import ssl

from stx_proto._driver_stx import StxPreset

from ._socket import Socket


class STXWebSocket(StxPreset[ssl.SSLContext], Socket):
    """A :class:`Socket` to the STX exchange (see ``__init__`` for the options)."""
