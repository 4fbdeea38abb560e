"""STX's current handshake authentication: API-key signatures and OAuth headers. Pure.

An API key is a key id plus an Ed25519 private key (PKCS#8 PEM). Every handshake carries
three headers made fresh for it (``X-STX-ACCESS-KEY``, ``X-STX-ACCESS-TIMESTAMP``,
``X-STX-ACCESS-SIGNATURE``); the signature covers ``timestamp + "GET" + "/socket/websocket"``
and the server refuses a timestamp more than 30 s off, so a reconnect must sign again. The
caller reads the clock and passes the time in: nothing here reads a clock, a file or the
environment.

Signing needs the ``cryptography`` package (the ``stx-ws[stx]`` extra). It is imported only when
a key is loaded, so everything else in stx-ws works without it.
"""

from __future__ import annotations

import base64
import functools
from typing import TYPE_CHECKING, Any

from ._errors import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ACCESS_KEY_HEADER",
    "ACCESS_SIGNATURE_HEADER",
    "ACCESS_TIMESTAMP_HEADER",
    "OAUTH_HEADER",
    "SIGNATURE_WINDOW_MS",
    "SIGNED_METHOD",
    "SIGNED_PATH",
    "StxPrivateKey",
    "load_private_key",
    "oauth_headers",
    "sign_request",
    "signed_message",
    "user_agent",
]

ACCESS_KEY_HEADER = "X-STX-ACCESS-KEY"
ACCESS_TIMESTAMP_HEADER = "X-STX-ACCESS-TIMESTAMP"
ACCESS_SIGNATURE_HEADER = "X-STX-ACCESS-SIGNATURE"
OAUTH_HEADER = "x-stx-oauth-token"

#: The method and path an API-key signature covers (the query string is not part of it).
SIGNED_METHOD = "GET"
SIGNED_PATH = "/socket/websocket"

#: ``USER_AGENT`` (``stx-ws/<version>``) is a module attribute computed on first use: see
#: :func:`user_agent`.

#: How far (ms) the server lets a signature's timestamp be from its own clock.
SIGNATURE_WINDOW_MS = 30_000

_INSTALL_HINT = "API-key authentication needs the cryptography package: pip install 'stx-ws[stx]'"


@functools.cache
def user_agent() -> str:
    """The ``User-Agent`` of the handshake: ``stx-ws/<version>`` (``0+unknown`` when the
    package is not installed)."""
    # Imported here: importlib.metadata loads email, which loads socket (see test_purity).
    import importlib.metadata  # noqa: PLC0415

    try:
        version = importlib.metadata.version("stx-ws")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"stx-ws/{version}"


def __getattr__(name: str) -> str:
    """``USER_AGENT``, computed on first use (see :func:`user_agent`)."""
    if name == "USER_AGENT":
        return user_agent()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _crypto() -> Any:
    """The cryptography modules used here; raises UsageError naming the extra if missing."""
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - optional (stx-ws[stx])
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415
    except ImportError:
        raise UsageError(_INSTALL_HINT) from None
    return serialization, ed25519


class StxPrivateKey:
    """A loaded Ed25519 private key. Its repr and str never show key material."""

    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        """Wrap a ``cryptography`` Ed25519 private key (use :func:`load_private_key`)."""
        self._key = key

    def __repr__(self) -> str:
        return "<StxPrivateKey Ed25519 (hidden)>"

    __str__ = __repr__

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self._key.sign(data)

    def public_key_pem(self) -> str:
        """The matching public key as PEM (SubjectPublicKeyInfo) text, for a verifier."""
        serialization, _ = _crypto()
        pem: bytes = self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")


def load_private_key(pem_text: str | bytes) -> StxPrivateKey:
    """Load an Ed25519 private key from PKCS#8 PEM text (``-----BEGIN PRIVATE KEY-----``).

    Returns a :class:`StxPrivateKey`. Raises UsageError if ``cryptography`` is not installed
    (naming the ``stx-ws[stx]`` extra), if the text is not an unencrypted PEM private key, or if
    the key is not Ed25519. The messages never contain the text itself.
    """
    serialization, ed25519 = _crypto()
    data = pem_text.encode("utf-8") if isinstance(pem_text, str) else bytes(pem_text)
    if b"-----BEGIN" not in data:
        raise UsageError("the STX private key is not PEM text (-----BEGIN PRIVATE KEY-----)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        # Only the exception's type: nothing that could quote the text.
        raise UsageError(
            f"cannot load the STX private key ({type(exc).__name__}): it must be an unencrypted "
            "PKCS#8 PEM Ed25519 key"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise UsageError(
            f"the STX private key must be Ed25519, got a {type(key).__name__.lstrip('_')}"
        )
    return StxPrivateKey(key)


def signed_message(timestamp_ms: int | str) -> bytes:
    """The bytes an API-key signature covers: UTF-8 of ``timestamp + "GET" + path``."""
    return f"{timestamp_ms}{SIGNED_METHOD}{SIGNED_PATH}".encode()


def sign_request(
    key_id: str, private_key: StxPrivateKey, timestamp_ms: int
) -> tuple[tuple[str, str], ...]:
    """The three API-key handshake headers for a connect made at ``timestamp_ms``.

    ``timestamp_ms`` is Unix time in milliseconds, read by the caller just before the connect
    (a reconnect needs a fresh one: the server allows 30 s). Returns ``((X-STX-ACCESS-KEY,
    key_id), (X-STX-ACCESS-TIMESTAMP, "<ms>"), (X-STX-ACCESS-SIGNATURE, <base64>))``, the
    signature being standard padded base64 of the Ed25519 signature of
    :func:`signed_message`. Raises UsageError for an empty key id, a timestamp that is not a
    non-negative int, or a key that is not a :class:`StxPrivateKey`.
    """
    if not isinstance(key_id, str) or not key_id:
        raise UsageError("key_id must be a non-empty str")
    if type(timestamp_ms) is not int or timestamp_ms < 0:
        raise UsageError("timestamp_ms must be a non-negative int (Unix time in ms)")
    if not isinstance(private_key, StxPrivateKey):
        raise UsageError("private_key must be a StxPrivateKey (see load_private_key)")
    signature = private_key.sign(signed_message(timestamp_ms))
    return (
        (ACCESS_KEY_HEADER, key_id),
        (ACCESS_TIMESTAMP_HEADER, str(timestamp_ms)),
        (ACCESS_SIGNATURE_HEADER, base64.b64encode(signature).decode("ascii")),
    )


def oauth_headers(token: str) -> tuple[tuple[str, str], ...]:
    """The OAuth handshake header ``((x-stx-oauth-token, token),)``.

    Raises UsageError (without the value) if ``token`` is not a non-empty str.
    """
    if not isinstance(token, str):
        raise UsageError(f"the OAuth access token must be a str, got {type(token).__name__}")
    if not token:
        raise UsageError("the OAuth access token is empty")
    return ((OAUTH_HEADER, token),)
