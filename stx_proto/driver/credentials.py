"""Credentials read late: params, token and headers given as values or (async) callables.

The connection task refreshes every credential before each connect, awaiting async sources;
the core gets sync callables that read the cached results. So the core never sees a
coroutine, evaluates credentials at its own moment (the handshake), and never calls the
user's function twice for one connect.
"""

from __future__ import annotations

import inspect
from typing import Any


class Credential:
    """A user's params, token or headers: a value, or a (sync or async) callable.

    The connection task calls :meth:`refresh` before each connect; the core gets a sync
    callable reading the cached result, so it never sees a coroutine and never calls the
    user's function a second time.
    """

    __slots__ = ("_source", "_value")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._value: Any = None

    def for_core(self) -> Any:
        """What to give the core: the value itself, or a callable returning the cached one."""
        return self._read if callable(self._source) else self._source

    def _read(self) -> Any:
        return self._value

    async def refresh(self) -> None:
        """Call the user's callable (awaiting it if async) and cache the result."""
        source = self._source
        if callable(source):
            value = source()
            if inspect.isawaitable(value):
                value = await value
            self._value = value
