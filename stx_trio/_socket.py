"""The socket on trio: :class:`~stx_proto._driver_socket.SocketBase` with trio's nurseries,
cancel scopes and streams. It imports no anyio.

How the socket works (the pump, one task per connection, the dispatcher) is described in
:mod:`stx_proto._driver_socket`, which holds everything that does not depend on the event
loop; this module adds what does.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, TypeVar

import trio

from stx_proto import OpenTransport, UsageError
from stx_proto._driver_socket import CHUNK, ConnectionBase, SocketBase
from stx_proto._driver_support import Runtime

from ._dispatch import Dispatcher

logger = logging.getLogger("stx_trio")


def _cancelled() -> type[BaseException]:
    return trio.Cancelled


RUNTIME = Runtime(
    now=trio.current_time,
    event=trio.Event,
    cancelled=_cancelled,
    checkpoint=trio.lowlevel.checkpoint,
    logger=logger,
)

T = TypeVar("T")


async def _receive(stream: trio.abc.Stream) -> bytes:
    # bytes() of a bytes object is that object: no copy (the type allows a bytearray).
    return bytes(await stream.receive_some(CHUNK))


class _Connection(ConnectionBase[trio.abc.Stream]):
    __slots__ = ()

    async def _connect(self, command: OpenTransport) -> trio.abc.Stream:
        tcp = await trio.open_tcp_stream(command.host, command.port)
        if not command.tls:
            return tcp
        # https_compatible: a peer may close without a TLS close_notify (as anyio's
        # tls_standard_compatible=False allows).
        stream = trio.SSLStream(
            tcp, self._sock._tls_context(), server_hostname=command.host, https_compatible=True
        )
        try:
            await stream.do_handshake()
        except BaseException:
            await self._aclose(stream)
            raise
        return stream

    async def _serve(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write, stream.send_all)
            await self._read(partial(_receive, stream))
            if not self.closing:
                nursery.cancel_scope.cancel()

    async def _aclose(self, stream: trio.abc.Stream) -> None:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


class Socket(SocketBase[ssl.SSLContext]):
    """A Phoenix Channels socket on trio; use ``async with``.

    ::

        async with Socket("wss://example.com/socket", params={"token": "..."}) as sock:
            ch = await sock.join("room:lobby", {"since": 0}, on_message=handler)
            reply = await ch.push("new_msg", {"body": "hi"})
            async for msg in ch: ...

    The same API as ``stx_anyio.Socket``, on trio's own primitives. Leaving the block sends
    ``phx_leave`` for each channel and closes with 1000 (as does :meth:`close`); messages
    already received are handled first (for up to ``close_timeout``). A block cancelled from
    outside aborts the connection instead. The options are described at ``__init__``.
    """

    _runtime = RUNTIME
    _dispatcher_class = Dispatcher
    _nursery: trio.Nursery
    _nursery_manager: AbstractAsyncContextManager[trio.Nursery]

    @classmethod
    def run(
        cls,
        main: Callable[..., Awaitable[T]],
        *args: Any,
        backend: str = "trio",
        backend_options: dict[str, Any] | None = None,
    ) -> T:
        """Run ``main(*args)`` with ``trio.run`` and return its result (see :func:`run`)."""
        return run(main, *args, backend=backend, backend_options=backend_options)

    async def _open_tasks(self) -> None:
        manager = trio.open_nursery()
        self._nursery = await manager.__aenter__()
        self._nursery_manager = manager

    def _spawn(self, fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> None:
        self._nursery.start_soon(fn, *args)

    def _cancel_block(self) -> None:
        self._nursery.cancel_scope.cancel()

    async def _close_tasks(self) -> None:
        self._nursery.cancel_scope.cancel()
        # Not the body's exception: a nursery would wrap it in an ExceptionGroup.
        await self._nursery_manager.__aexit__(None, None, None)

    async def _sleep(self, deadline: float | None) -> None:
        if deadline is None:
            await self._wakeup.wait()
        else:
            with trio.move_on_at(deadline):
                await self._wakeup.wait()

    async def _wait_handlers(self) -> bool:
        with trio.move_on_after(self._close_timeout) as scope:
            await self._dispatcher.done.wait()
        return not scope.cancelled_caught

    def _start_connection(self, command: OpenTransport) -> _Connection:
        conn = _Connection(self, trio.CancelScope())
        self._nursery.start_soon(conn.run, command)
        return conn

    def _default_tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context()


def run(
    main: Callable[..., Awaitable[T]],
    *args: Any,
    backend: str = "trio",
    backend_options: dict[str, Any] | None = None,
) -> T:
    """Run ``main(*args)`` with ``trio.run`` and return its result.

    For programs that are not already inside an event loop. ``backend`` must be ``"trio"``
    (it is there so that code written for ``stx_anyio.run`` works unchanged);
    ``backend_options`` are passed to ``trio.run`` as keyword arguments.

    Raises:
        UsageError: ``backend`` is not ``"trio"``.
    """
    if backend != "trio":
        raise UsageError(f"stx_trio runs on trio only, not on {backend!r}: use stx_anyio")
    return trio.run(main, *args, **(backend_options or {}))
