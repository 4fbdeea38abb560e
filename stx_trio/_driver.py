"""The trio driver: the driver kit (:mod:`stx_proto.driver`) on trio's own primitives (it
imports no anyio). Only what depends on the loop is here: the runtime, the TCP/TLS
transport, and the entry point."""

from __future__ import annotations

import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

try:
    import trio
except ImportError as exc:  # pragma: no cover - tested in a fresh interpreter without trio
    raise ImportError("stx_trio needs trio: pip install 'stx-ws[trio]'") from exc

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

logger = logging.getLogger("stx_trio")


def _cancelled() -> type[BaseException]:
    return trio.Cancelled


def _check_loop() -> None:
    if not trio.lowlevel.in_trio_run():
        raise UsageError(
            "stx_trio runs on trio only, and this is not a trio run (asyncio?): use stx_anyio, "
            "which runs on asyncio and trio"
        )


RUNTIME = Runtime(
    now=trio.current_time,
    event=trio.Event,
    task_group=trio.open_nursery,
    cancel_scope=trio.CancelScope,
    semaphore=trio.Semaphore,
    cancelled=_cancelled,
    checkpoint=trio.lowlevel.checkpoint,
    logger=logger,
    wall_clock=time.time,
    real_clock=time.perf_counter,
    check_loop=_check_loop,
    current_task=trio.lowlevel.current_task,
)

CHUNK = 65536  # bytes per read

T = TypeVar("T")


class _Stream(ByteStream):
    __slots__ = ("_raw", "_stream")

    def __init__(self, stream: trio.abc.Stream, raw: socket.socket | None = None) -> None:
        self._stream = stream
        # A plain TCP stream's socket, for writes that need no wait (see send_nowait).
        self._raw = raw

    async def receive(self) -> bytes:
        # bytes() of a bytes object is that object: no copy (the type allows a bytearray).
        return bytes(await self._stream.receive_some(CHUNK))

    async def send(self, data: bytes) -> None:
        await self._stream.send_all(data)

    def send_nowait(self, data: bytes) -> int:
        raw = self._raw
        if raw is None:
            return 0
        try:
            return raw.send(data)
        except BlockingIOError:
            return 0

    async def aclose(self) -> None:
        raw = self._raw
        if raw is not None:
            self._raw = None
            raw.close()
        await trio.aclose_forcefully(self._stream)


def _raw_socket(stream: trio.SocketStream) -> socket.socket | None:
    """A standard socket on a duplicate of ``stream``'s descriptor (trio's socket objects
    only send asynchronously), or None where that is not possible. The duplicate shares the
    connection and its non-blocking mode; it is closed with the stream."""
    sock = stream.socket
    try:
        return socket.fromfd(sock.fileno(), sock.family, sock.type)
    except (OSError, AttributeError):  # pragma: no cover - a platform without fromfd
        return None


def _default_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:  # asked for explicitly (STX's verify_tls=False): a test host, say
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TcpTransport(StreamTransport):
    """TCP streams, with TLS for ``wss://`` (``ssl.create_default_context()`` by default,
    made once per transport), on trio."""

    __slots__ = ("_default_ssl", "_verify")

    def __init__(self, *, verify_tls: bool = True) -> None:
        self._default_ssl: ssl.SSLContext | None = None
        self._verify = verify_tls

    async def connect(self, host: str, port: int, tls: bool, ssl_context: Any) -> ByteStream:
        """Open a TCP (TLS when ``tls``) stream to ``host:port``."""
        tcp = await trio.open_tcp_stream(host, port)
        if not tls:
            return _Stream(tcp, _raw_socket(tcp))
        if ssl_context is None:
            if self._default_ssl is None:
                self._default_ssl = _default_context(self._verify)
            ssl_context = self._default_ssl
        # https_compatible: a peer may close without a TLS close_notify (as anyio's
        # tls_standard_compatible=False allows).
        stream = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=True)
        try:
            await stream.do_handshake()
        except BaseException:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
            raise
        return _Stream(stream)


def _tcp(max_message_size: int | None) -> Transport:
    """``transport="tcp"``: the default :class:`TcpTransport` (the core enforces the limit)."""
    return TcpTransport()


def _tcp_unverified(max_message_size: int | None) -> Transport:
    """``transport="tcp-unverified"``: TLS without certificate checks (STX's
    ``verify_tls=False``, for a test host); never the default."""
    return TcpTransport(verify_tls=False)


#: The transports ``Socket(transport="name")`` accepts (picows is asyncio-only).
TRANSPORTS: dict[str, TransportFactory] = {"tcp": _tcp, "tcp-unverified": _tcp_unverified}


class Socket(SocketBase):
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
        """Run ``main()`` with ``trio.run``, for :meth:`run` (see the module's :func:`run`).
        In the main thread, Ctrl-C (SIGINT) cancels ``main()`` and the result is None.

        Raises UsageError for a ``backend`` other than ``"trio"``.
        """
        return run(
            _until_interrupted, main, backend=backend or "trio", backend_options=backend_options
        )


class STXWebSocket(StxPreset, Socket):
    """A :class:`Socket` to the STX exchange (see ``__init__`` for the options)."""


async def _until_interrupted(main: Callable[[], Awaitable[T]]) -> T | None:
    """``await main()``; in the main thread, SIGINT cancels it (and None is returned)."""
    if threading.current_thread() is not threading.main_thread():
        return await main()
    result: list[T] = []
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT) as signals:

            async def interrupt() -> None:
                async for _ in signals:  # pragma: no branch - ends by the cancel below
                    logger.info("interrupted (SIGINT): closing")
                    nursery.cancel_scope.cancel()

            nursery.start_soon(interrupt)
            result.append(await main())
            nursery.cancel_scope.cancel()
    return result[0] if result else None


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
