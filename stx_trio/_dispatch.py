"""The dispatcher on trio: :class:`~stx_proto._driver_dispatch.DispatcherBase` with the nursery
of ``dispatch="task"``."""

from __future__ import annotations

import trio

from stx_proto._driver_dispatch import (
    DISPATCH_MODES,
    Dispatch,
    DispatcherBase,
    ErrorHandler,
    WorkItem,
)

__all__ = ["DISPATCH_MODES", "Dispatch", "Dispatcher", "ErrorHandler"]


class Dispatcher(DispatcherBase):
    """Runs handlers and hooks for one socket (see :mod:`stx_proto._driver_dispatch`)."""

    async def _run_tasks(self) -> None:
        limit = trio.Semaphore(self._max_concurrency)

        async def run_one(item: WorkItem) -> None:
            try:
                await self._run_item(item)
            finally:
                limit.release()

        async with trio.open_nursery() as nursery:
            async for item in self._work.iterate():
                await limit.acquire()
                nursery.start_soon(run_one, item)
