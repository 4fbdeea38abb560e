"""Credentials read at every connect, TLS verification, and secrets kept out of sight.

Every async test runs for ``stx_anyio`` on asyncio, ``stx_anyio`` on trio, and ``stx_trio``
(the ``impl`` fixture of :mod:`.support`), against the loopback test server; none sleeps for
correctness.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Mapping

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from stx_anyio.testing import TestServer
from stx_proto import (
    Disconnected,
    DisconnectReason,
    GaveUpError,
    RetryPolicy,
)

from .support import FAST, LIMIT, Impl, make_socket

pytestmark = pytest.mark.anyio


async def test_refreshed_token_is_used_after_reconnect(impl: Impl, srv: TestServer) -> None:
    seen: list[tuple[Mapping[str, str], str | None]] = []

    def auth(params: Mapping[str, str], token: str | None) -> bool:
        seen.append((dict(params), token))
        return True

    srv.phoenix.auth = auth
    tokens = itertools.count(1)
    generations = itertools.count(1)

    async def token() -> str:
        await anyio.lowlevel.checkpoint()
        return f"jwt-{next(tokens)}"

    with anyio.fail_after(LIMIT):
        async with make_socket(
            impl, srv, auth_token=token, params=lambda: {"gen": next(generations)}
        ) as sock:
            await sock.join("room:1")
            srv.drop_all()
            await srv.wait_for_join("room:1", 2)
    assert [(p["gen"], t) for p, t in seen] == [("1", "jwt-1"), ("2", "jwt-2")]


async def test_failing_credentials_are_retried(impl: Impl, srv: TestServer) -> None:
    calls = itertools.count()

    async def token() -> str:
        if next(calls) == 0:
            raise RuntimeError("token service down")
        return "ok"

    closes: list[Disconnected] = []
    with anyio.fail_after(LIMIT):
        async with make_socket(impl, srv, auth_token=token, on_close=closes.append) as sock:
            assert (await sock.join("room:1")).joined
    assert closes[0].reason is DisconnectReason.TRANSPORT_ERROR
    assert "credentials failed" in closes[0].detail
    assert srv.phoenix.all_connections[0].auth_token == "ok"


async def test_tls_with_a_trusted_certificate(
    impl: Impl, server_ssl: ssl.SSLContext, client_ssl: ssl.SSLContext
) -> None:
    with anyio.fail_after(LIMIT):
        async with TestServer(ssl_context=server_ssl) as srv:
            srv.phoenix.route("room:*")
            assert srv.url.startswith("wss://")
            async with make_socket(impl, srv, ssl=client_ssl) as sock:
                ch = await sock.join("room:1")
                assert await ch.push("echo", {"secure": True}) == {"secure": True}
            assert srv.phoenix.all_connections[-1].close_code == 1000


async def test_tls_verifies_certificates_by_default(impl: Impl, server_ssl: ssl.SSLContext) -> None:
    with anyio.fail_after(LIMIT):
        async with TestServer(ssl_context=server_ssl) as srv:
            # Two attempts: the default context is made once and used for both.
            twice = RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.02)
            with pytest.raises(GaveUpError) as info:
                async with make_socket(impl, srv, retry=twice) as sock:
                    await sock.join("room:1")
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert "2 attempt(s)" in str(info.value)


async def test_tokens_never_reach_reprs_or_logs(
    impl: Impl, srv: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=impl.logger)
    with anyio.fail_after(LIMIT):
        sock = impl.Socket(srv.url + "?token=SECRET-1", auth_token="SECRET-2", retry=FAST)
        async with sock:
            ch = await sock.join("room:1")
            srv.phoenix.broadcast("room:1", "tick", {})
            await anext(aiter(ch))
            srv.drop_all()
            await srv.wait_for_join("room:1", 2)
            assert "SECRET" not in repr(sock) and "127.0.0.1" in repr(sock)
    assert srv.phoenix.all_connections[0].auth_token == "SECRET-2"
    assert "SECRET" not in caplog.text
    assert "message 'tick'" in caplog.text  # DEBUG logging was on


def test_credentials_over_plain_ws_to_a_remote_host_are_warned_about(
    impl: Impl, caplog: pytest.LogCaptureFixture
) -> None:
    # Constructed only: nothing connects, and the warning comes before anything is sent.
    caplog.set_level(logging.WARNING, logger=impl.logger)
    impl.Socket("ws://10.1.2.3/socket", auth_token="secret-token")
    impl.Socket("ws://exchange.example/socket", params={"token": "secret-token"})
    impl.Socket("ws://127.0.0.1:9/socket", auth_token="secret-token")  # loopback: fine
    impl.Socket("ws://localhost:9/socket", headers={"X-Key": "secret-token"})  # fine
    impl.Socket("wss://exchange.example/socket", auth_token="secret-token")  # TLS: fine
    impl.Socket("ws://10.1.2.3/socket")  # no credentials: fine
    warned = [r for r in caplog.records if getattr(r, "stx_ws_event", "") == "plain_credentials"]
    assert [r.getMessage().split(" (")[0] for r in warned] == [
        "credentials will go unencrypted to 10.1.2.3",
        "credentials will go unencrypted to exchange.example",
    ]
    assert "secret-token" not in caplog.text
