"""The anyio driver: the driver kit (:mod:`stx_proto.driver`) on anyio's event loop, for
asyncio (uvloop included) and trio. Only what depends on the loop is here: the runtime, the
TCP/TLS transport, the named transports (``"tcp"``, and ``"picows"`` on asyncio, in
:mod:`._picows`), and the entry point."""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream as AnyioByteStream
from anyio.abc import SocketAttribute

from stx_proto import UsageError
from stx_proto.driver import (
    ByteStream,
    Runtime,
    SocketBase,
    StreamTransport,
    StxPreset,
    Transport,
    TransportFactory,
)

__all__ = ["RUNTIME", "STXWebSocket", "Socket", "TcpTransport", "run"]

logger = logging.getLogger("stx_anyio")

RUNTIME = Runtime(
    now=anyio.current_time,
    event=anyio.Event,
    task_group=anyio.create_task_group,
    cancel_scope=anyio.CancelScope,
    semaphore=anyio.Semaphore,
    cancelled=anyio.get_cancelled_exc_class,
    checkpoint=anyio.lowlevel.checkpoint,
    logger=logger,
    wall_clock=time.time,
    real_clock=time.perf_counter,
    current_task=lambda: anyio.get_current_task().id,
)

CHUNK = 65536  # bytes per read

T = TypeVar("T")


class _Stream(ByteStream):
    __slots__ = ("_raw", "_stream")

    def __init__(self, stream: AnyioByteStream, raw: socket.socket | None = None) -> None:
        self._stream = stream
        # A plain TCP stream's socket on trio, for writes that need no wait (send_nowait).
        self._raw = raw

    async def receive(self) -> bytes:
        try:
            return await self._stream.receive(CHUNK)
        except anyio.EndOfStream:
            return b""

    async def send(self, data: bytes) -> None:
        await self._stream.send(data)

    def send_nowait(self, data: bytes) -> int:
        raw = self._raw
        if raw is None:
            return 0
        try:
            return raw.send(data)
        except BlockingIOError:
            return 0

    async def aclose(self) -> None:
        self._raw = None
        await anyio.aclose_forcefully(self._stream)


def _raw_socket(stream: AnyioByteStream) -> socket.socket | None:
    """The socket of a plain TCP stream on trio, where writing to it directly is safe: trio
    writes only when asked to, where asyncio's transport may hold bytes not yet written (and
    there, anyio's send writes at once anyway). None elsewhere."""
    trio = sys.modules.get("trio")
    if trio is None or not trio.lowlevel.in_trio_run():
        return None
    raw: socket.socket | None = stream.extra(SocketAttribute.raw_socket, None)
    return raw


def _default_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:  # asked for explicitly (STX's verify_tls=False): a test host, say
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TcpTransport(StreamTransport):
    """TCP streams, with TLS for ``wss://`` (``ssl.create_default_context()`` by default,
    made once per transport), through anyio."""

    __slots__ = ("_default_ssl", "_verify")

    def __init__(self, *, verify_tls: bool = True) -> None:
        self._default_ssl: ssl.SSLContext | None = None
        self._verify = verify_tls

    async def connect(self, host: str, port: int, tls: bool, ssl_context: Any) -> ByteStream:
        """Open a TCP (TLS when ``tls``) stream to ``host:port``."""
        if not tls:
            tcp = await anyio.connect_tcp(host, port)
            return _Stream(tcp, _raw_socket(tcp))
        if ssl_context is None:
            if self._default_ssl is None:
                self._default_ssl = _default_context(self._verify)
            ssl_context = self._default_ssl
        stream = await anyio.connect_tcp(
            host,
            port,
            ssl_context=ssl_context,
            tls_standard_compatible=False,  # a peer may close without a TLS close_notify
            tls_hostname=host,
        )
        return _Stream(stream)


def _tcp(max_message_size: int | None) -> Transport:
    """``transport="tcp"``: the default :class:`TcpTransport` (the core enforces the limit)."""
    return TcpTransport()


def _tcp_unverified(max_message_size: int | None) -> Transport:
    """``transport="tcp-unverified"``: TLS without certificate checks (STX's
    ``verify_tls=False``, for a test host); never the default."""
    return TcpTransport(verify_tls=False)


def _picows(max_message_size: int | None) -> Transport:
    """``transport="picows"``: a :class:`~._picows.PicowsTransport` (imported only now).

    Raises UsageError on trio, or when picows is not installed.
    """
    trio = sys.modules.get("trio")
    if trio is not None and trio.lowlevel.in_trio_run():
        raise UsageError("transport='picows' needs asyncio (picows is asyncio-only), not trio")
    try:
        from ._picows import PicowsTransport  # noqa: PLC0415 - lazy: an optional extra
    except ImportError as exc:
        raise UsageError(
            f"transport='picows' needs picows ({exc}): pip install 'stx-ws[picows]'"
        ) from exc
    return PicowsTransport(max_message_size)


#: The transports ``Socket(transport="name")`` accepts.
TRANSPORTS: dict[str, TransportFactory] = {
    "tcp": _tcp,
    "tcp-unverified": _tcp_unverified,
    "picows": _picows,
}


class Socket(SocketBase):
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

    runtime = RUNTIME
    default_transport = TcpTransport
    transports = TRANSPORTS

    @classmethod
    def start_loop(
        cls,
        main: Callable[[], Awaitable[T]],
        *,
        backend: str | None = None,
        backend_options: dict[str, Any] | None = None,
    ) -> T | None:
        """Run ``main()`` in a new event loop, for :meth:`run` (see the module's :func:`run`;
        the backend is asyncio unless ``backend`` says ``"trio"``). In the main thread,
        Ctrl-C (SIGINT) cancels ``main()`` and the result is None."""
        return run(
            _until_interrupted, main, backend=backend or "asyncio", backend_options=backend_options
        )


class STXWebSocket(StxPreset, Socket):
    """A :class:`Socket` to the STX exchange (see ``__init__`` for the options)."""


async def _until_interrupted(main: Callable[[], Awaitable[T]]) -> T | None:
    """``await main()``; in the main thread, SIGINT cancels it (and None is returned)."""
    if threading.current_thread() is not threading.main_thread():
        return await main()
    result: list[T] = []
    async with anyio.create_task_group() as tg:
        with anyio.open_signal_receiver(signal.SIGINT) as signals:

            async def interrupt() -> None:
                async for _ in signals:  # pragma: no branch - ends by the cancel below
                    logger.info("interrupted (SIGINT): closing")
                    tg.cancel_scope.cancel()

            tg.start_soon(interrupt)
            result.append(await main())
            tg.cancel_scope.cancel()
    return result[0] if result else None


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
