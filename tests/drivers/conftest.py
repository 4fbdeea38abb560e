"""Shared fixtures of the driver tests: both anyio backends, and a trustme certificate.

``test_socket_shared.py`` overrides ``anyio_backend`` with its ``impl`` fixture (each driver on
its event loops); the other driver tests run once per anyio backend.
"""

from __future__ import annotations

import ssl

import pytest
import trustme


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every anyio test runs on asyncio and on trio."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1, signed by :func:`tls_ca`."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_ssl(tls_ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts :func:`tls_ca`."""
    ctx = ssl.create_default_context()
    tls_ca.configure_trust(ctx)
    return ctx
