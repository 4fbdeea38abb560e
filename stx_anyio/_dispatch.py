"""The dispatcher on anyio: :class:`~stx_proto._driver_dispatch.DispatcherBase` with the task
group of ``dispatch="task"``."""

from __future__ import annotations

import anyio

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
        limit = anyio.Semaphore(self._max_concurrency)

        async def run_one(item: WorkItem) -> None:
            try:
                await self._run_item(item)
            finally:
                limit.release()

        async with anyio.create_task_group() as tg:
            async for item in self._work.iterate():
                await limit.acquire()
                tg.start_soon(run_one, item)
