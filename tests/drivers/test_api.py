"""Both drivers offer one API: the same names, the very same shared objects.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import stx_anyio
import stx_trio

pytestmark = pytest.mark.anyio


def _public(obj: Any) -> dict[str, str]:
    """Public attributes of a class, with the signature of the callable ones."""
    found = {}
    for name in dir(obj):
        if name.startswith("_") and name not in ("__init__", "__aenter__", "__aexit__"):
            continue
        value = getattr(obj, name)
        found[name] = str(inspect.signature(value)) if callable(value) else type(value).__name__
    return found


def test_both_drivers_offer_the_same_api() -> None:
    assert stx_anyio.__all__ == stx_trio.__all__
    own = {"Socket", "STXWebSocket", "run"}  # the rest are the very same objects
    for name in set(stx_anyio.__all__) - own:
        assert getattr(stx_anyio, name) is getattr(stx_trio, name), name
    for name in ("Socket", "STXWebSocket"):
        anyio_api = _public(getattr(stx_anyio, name))
        trio_api = _public(getattr(stx_trio, name))
        assert anyio_api.pop("run") == trio_api.pop("run").replace("'trio'", "'asyncio'")
        assert anyio_api == trio_api, name
        assert "join" in anyio_api and "messages" in anyio_api
    run_signature = str(inspect.signature(stx_trio.run))
    assert str(inspect.signature(stx_anyio.run)) == run_signature.replace("'trio'", "'asyncio'")
