"""The socket on anyio: :class:`~stx_proto._driver_socket.SocketBase` with anyio's task
groups, cancel scopes and streams.

How the socket works (the pump, one task per connection, the dispatcher) is described in
:mod:`stx_proto._driver_socket`, which holds everything that does not depend on the event
loop; this module adds what does.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, TaskGroup

from stx_proto import OpenTransport
from stx_proto._driver_socket import CHUNK, ConnectionBase, SocketBase
from stx_proto._driver_support import Runtime

from ._dispatch import Dispatcher

logger = logging.getLogger("stx_anyio")

RUNTIME = Runtime(
    now=anyio.current_time,
    event=anyio.Event,
    cancelled=anyio.get_cancelled_exc_class,
    checkpoint=anyio.lowlevel.checkpoint,
    logger=logger,
)

T = TypeVar("T")


async def _receive(stream: ByteStream) -> bytes:
    try:
        return await stream.receive(CHUNK)
    except anyio.EndOfStream:
        return b""


class _Connection(ConnectionBase[ByteStream]):
    __slots__ = ()

    async def _connect(self, command: OpenTransport) -> ByteStream:
        if command.tls:
            return await anyio.connect_tcp(
                command.host,
                command.port,
                ssl_context=self._sock._tls_context(),
                tls_standard_compatible=False,
                tls_hostname=command.host,
            )
        return await anyio.connect_tcp(command.host, command.port)

    async def _serve(self, stream: ByteStream) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write, stream.send)
            await self._read(partial(_receive, stream))
            if not self.closing:
                tg.cancel_scope.cancel()

    async def _aclose(self, stream: ByteStream) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)


class Socket(SocketBase[ssl.SSLContext]):
    """A Phoenix Channels socket on asyncio or trio (through anyio); use ``async with``.

    ::

        async with Socket("wss://example.com/socket", params={"token": "..."}) as sock:
            ch = await sock.join("room:lobby", {"since": 0}, on_message=handler)
            reply = await ch.push("new_msg", {"body": "hi"})
            async for msg in ch: ...

    Leaving the block sends ``phx_leave`` for each channel and closes with 1000 (as does
    :meth:`close`); messages already received are handled first (for up to
    ``close_timeout``). A block cancelled from outside aborts the connection instead. The
    options are described at ``__init__``.
    """

    _runtime = RUNTIME
    _dispatcher_class = Dispatcher
    _tg: TaskGroup

    @classmethod
    def run(
        cls,
        main: Callable[..., Awaitable[T]],
        *args: Any,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
    ) -> T:
        """Run ``main(*args)`` in a new event loop and return its result (see :func:`run`)."""
        return run(main, *args, backend=backend, backend_options=backend_options)

    async def _open_tasks(self) -> None:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        self._tg.start_soon(fn, *args)

    def _cancel_block(self) -> None:
        self._tg.cancel_scope.cancel()

    async def _close_tasks(self) -> None:
        self._tg.cancel_scope.cancel()
        # Not the body's exception: a task group would wrap it in an ExceptionGroup.
        await self._tg.__aexit__(None, None, None)

    async def _sleep(self, deadline: float | None) -> None:
        if deadline is None:
            await self._wakeup.wait()
        else:
            with anyio.CancelScope(deadline=deadline):
                await self._wakeup.wait()

    async def _wait_handlers(self) -> bool:
        with anyio.move_on_after(self._close_timeout) as scope:
            await self._dispatcher.done.wait()
        return not scope.cancelled_caught

    def _start_connection(self, command: OpenTransport) -> _Connection:
        conn = _Connection(self, anyio.CancelScope())
        self._tg.start_soon(conn.run, command)
        return conn

    def _default_tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context()


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
) -> T:
    """Run ``main(*args)`` in a new event loop (``anyio.run``) and return its result.

    For programs that are not already inside an event loop. ``backend`` is ``"asyncio"``
    (``backend_options={"use_uvloop": True}`` for uvloop) or ``"trio"``.
    """
    return anyio.run(main, *args, backend=backend, backend_options=backend_options)
