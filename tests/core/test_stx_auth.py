"""STX API-key signing and OAuth headers: the pure half of the current API's handshake."""

from __future__ import annotations

import base64
import importlib.metadata
import sys

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from stx_proto import UsageError
from stx_proto import _stx_auth as auth
from stx_proto._stx_auth import (
    StxPrivateKey,
    load_private_key,
    oauth_headers,
    sign_request,
    signed_message,
    user_agent,
)

# The Ed25519 key whose 32-byte seed is 00 01 02 ... 1f, as PKCS#8 PEM.
FIXED_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n"
    "-----END PRIVATE KEY-----\n"
)
# Ed25519 is deterministic: this is the signature of b"1700000000000GET/socket/websocket".
FIXED_SIGNATURE = (
    "bSVGy263LqwZiguXd5Ldt1C5ZfxTn2a8NalnD2vvkSNBHnhkKF8HDCo/u8GCRb28lBB9oYuJIeodq0NzEeuMDw=="
)


def _public(pem: str) -> ed25519.Ed25519PublicKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.public_key()


def test_the_signed_message_is_timestamp_method_and_path() -> None:
    assert signed_message(1700000000000) == b"1700000000000GET/socket/websocket"
    assert signed_message("42") == b"42GET/socket/websocket"


def test_known_vector() -> None:
    headers = sign_request("key-1", load_private_key(FIXED_PEM), 1_700_000_000_000)
    assert headers == (
        ("X-STX-ACCESS-KEY", "key-1"),
        ("X-STX-ACCESS-TIMESTAMP", "1700000000000"),
        ("X-STX-ACCESS-SIGNATURE", FIXED_SIGNATURE),
    )
    # Standard, padded base64 of 64 bytes.
    assert len(base64.b64decode(FIXED_SIGNATURE, validate=True)) == 64
    assert FIXED_SIGNATURE.endswith("==")


def test_the_signature_verifies_with_the_public_key_and_only_for_its_message() -> None:
    generated = ed25519.Ed25519PrivateKey.generate()
    pem = generated.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    headers = dict(sign_request("k", load_private_key(pem), 123))
    signature = base64.b64decode(headers["X-STX-ACCESS-SIGNATURE"])
    generated.public_key().verify(signature, b"123GET/socket/websocket")
    with pytest.raises(InvalidSignature):
        generated.public_key().verify(signature, b"124GET/socket/websocket")
    with pytest.raises(InvalidSignature):
        _public(FIXED_PEM).verify(signature, b"123GET/socket/websocket")


def test_each_timestamp_gets_its_own_signature() -> None:
    key = load_private_key(FIXED_PEM)
    one = dict(sign_request("k", key, 1))["X-STX-ACCESS-SIGNATURE"]
    two = dict(sign_request("k", key, 2))["X-STX-ACCESS-SIGNATURE"]
    assert one != two


def test_the_key_never_shows() -> None:
    key = load_private_key(FIXED_PEM.encode())  # bytes work too
    body = FIXED_PEM.splitlines()[1]
    assert repr(key) == str(key) == "<StxPrivateKey Ed25519 (hidden)>"
    assert body not in repr(key)
    assert key.public_key_pem().startswith("-----BEGIN PUBLIC KEY-----")
    _public(FIXED_PEM).verify(key.sign(b"x"), b"x")


def test_load_refuses_what_is_not_an_ed25519_pkcs8_pem_without_quoting_it() -> None:
    body = FIXED_PEM.splitlines()[1]
    with pytest.raises(UsageError, match="not PEM text") as not_pem:
        load_private_key(body)
    assert body not in str(not_pem.value)
    broken = FIXED_PEM.replace(body, body[:20] + "!!" + body[22:])
    with pytest.raises(UsageError, match="cannot load the STX private key") as bad:
        load_private_key(broken)
    assert body[:20] not in str(bad.value)
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(UsageError, match="must be Ed25519, got a ECPrivateKey"):
        load_private_key(ec_pem)


def test_without_cryptography_api_keys_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives", None)
    with pytest.raises(UsageError, match=r"pip install 'stx-ws\[stx\]'"):
        load_private_key(FIXED_PEM)


@pytest.mark.parametrize(
    ("key_id", "stamp", "match"),
    [
        ("", 1, "key_id"),
        (7, 1, "key_id"),
        ("k", -1, "timestamp_ms"),
        ("k", 1.5, "timestamp_ms"),
        ("k", True, "timestamp_ms"),
    ],
)
def test_sign_request_checks_its_arguments(key_id: object, stamp: object, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        sign_request(key_id, load_private_key(FIXED_PEM), stamp)  # type: ignore[arg-type]


def test_sign_request_needs_a_loaded_key() -> None:
    with pytest.raises(UsageError, match="load_private_key"):
        sign_request("k", FIXED_PEM, 1)  # type: ignore[arg-type]


def test_oauth_headers() -> None:
    assert oauth_headers("tok") == (("x-stx-oauth-token", "tok"),)
    with pytest.raises(UsageError, match="empty"):
        oauth_headers("")
    with pytest.raises(UsageError, match="must be a str, got int"):
        oauth_headers(5)  # type: ignore[arg-type]


def test_user_agent_names_the_package_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    version = importlib.metadata.version("stx-ws")
    assert auth.USER_AGENT == user_agent() == f"stx-ws/{version}"

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    user_agent.cache_clear()
    monkeypatch.setattr(importlib.metadata, "version", missing)
    try:
        assert user_agent() == "stx-ws/0+unknown"
    finally:
        user_agent.cache_clear()


def test_unknown_module_attributes_still_raise() -> None:
    with pytest.raises(AttributeError, match="NOPE"):
        _ = auth.NOPE


def test_private_key_type_is_exported() -> None:
    assert isinstance(load_private_key(FIXED_PEM), StxPrivateKey)
