"""The STX preset's token source, as the kit turns it into the socket's params."""

from __future__ import annotations

import pytest

from stx_proto import UsageError
from stx_proto.driver import stx_params

pytestmark = pytest.mark.anyio


async def test_callable_tokens_are_called_at_every_connect() -> None:
    assert stx_params("jwt") == {"token": "jwt"}
    tokens = iter(["one", "two"])
    params = stx_params(lambda: next(tokens))
    assert callable(params)
    assert await params() == {"token": "one"}
    assert await params() == {"token": "two"}

    async def refresh() -> str:
        return "fresh"

    fresh = stx_params(refresh)
    assert callable(fresh)
    assert await fresh() == {"token": "fresh"}
    empty = stx_params(lambda: "")
    assert callable(empty)
    with pytest.raises(UsageError, match="non-empty str"):
        await empty()


@pytest.fixture
def anyio_backend() -> str:
    """Plain coroutines: asyncio is enough."""
    return "asyncio"
