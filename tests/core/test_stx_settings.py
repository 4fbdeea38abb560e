"""STX settings: precedence (keywords, environment, profile, defaults), aliases, kinds, I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stx_proto import UsageError
from stx_proto._stx_settings import StxAuthKind, is_pem, parse_bool, resolve_stx_settings
from stx_proto.driver.stx_io import credentials_path, read_stx_settings

PEM = "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n-----END PRIVATE KEY-----"

PROFILES = """
[default]
region = us
env = demo
key_id = profile-key
private_key = /keys/default.pem

[ontario]
region = ontario
env = prod
key_id = on-key
key_file = /keys/on.pem
verify_tls = no

[local]
base_url = http://localhost:4000
key_id = local-key
private_key =
    -----BEGIN PRIVATE KEY-----
    MC4CAQAw
    -----END PRIVATE KEY-----

[empty]
"""

DEMO_CA = "wss://demo.stxapp.ca/socket/websocket"
DEMO_US = "wss://demo.stxapp.io/socket/websocket"
PROD_CA = "wss://api.on.stxapp.ca/socket/websocket"
STAGING = "wss://api-staging.on.sportsxapp.com/socket/websocket"


def resolve(
    keywords: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    profiles: str | None = None,
) -> Any:
    return resolve_stx_settings(
        environ=environ or {}, credentials_text=profiles, **(keywords or {})
    )


# (keywords, environment, profiles) -> (url, auth, key_id, verify_tls, profile)
PRECEDENCE = [
    pytest.param({}, {}, None, (DEMO_CA, "none", None, True, None), id="defaults"),
    pytest.param({"token": "jwt"}, {}, None, (STAGING, "token", None, True, None), id="legacy"),
    pytest.param(
        {}, {}, PROFILES, (DEMO_US, "api_key", "profile-key", True, "default"), id="profile"
    ),
    pytest.param(
        {},
        {"STX_PROFILE": "ontario"},
        PROFILES,
        (PROD_CA, "api_key", "on-key", False, "ontario"),
        id="STX_PROFILE-and-aliases",
    ),
    pytest.param(
        {"profile": "local"},
        {"STX_PROFILE": "ontario"},
        PROFILES,
        ("ws://localhost:4000/socket/websocket", "api_key", "local-key", True, "local"),
        id="profile-keyword-over-STX_PROFILE",
    ),
    pytest.param(
        {},
        {"STX_KEY_ID": "env-key", "STX_REGION": "ontario", "STX_ENV": "live"},
        PROFILES,
        (PROD_CA, "api_key", "env-key", True, "default"),
        id="environment-over-profile",
    ),
    pytest.param(
        {"key_id": "kw-key", "env": "demo"},
        {"STX_KEY_ID": "env-key", "STX_ENV": "production", "STX_VERIFY_TLS": "false"},
        PROFILES,
        (DEMO_US, "api_key", "kw-key", False, "default"),
        id="keywords-over-environment",
    ),
    pytest.param(
        {},
        {"STX_KEY_ID": "", "STX_ENV": "", "STX_VERIFY_TLS": "", "STX_PROFILE": ""},
        PROFILES,
        (DEMO_US, "api_key", "profile-key", True, "default"),
        id="empty-variables-are-unset",
    ),
    pytest.param(
        {},
        {"STX_WS_URL": "ws://127.0.0.1:9/socket", "STX_HOST": "h:1"},
        None,
        ("ws://127.0.0.1:9/socket", "none", None, True, None),
        id="STX_WS_URL-over-STX_HOST",
    ),
    pytest.param(
        {},
        {"STX_BASE_URL": "https://b.example", "STX_REGION": "us"},
        None,
        ("wss://b.example/socket/websocket", "none", None, True, None),
        id="STX_BASE_URL-over-table",
    ),
    pytest.param(
        {},
        {"STX_HOST": "h.example", "STX_BASE_URL": "b.example"},
        None,
        ("wss://h.example/socket/websocket", "none", None, True, None),
        id="STX_HOST-over-STX_BASE_URL",
    ),
    pytest.param(
        {"region": "ontario", "env": "prod"},
        {"STX_HOST": "h.example"},
        None,
        (PROD_CA, "none", None, True, None),
        id="keyword-table-over-environment-host",
    ),
    pytest.param(
        {"host": "localhost:4000"},
        {"STX_WS_URL": "ws://x/socket"},
        None,
        ("wss://localhost:4000/socket/websocket", "none", None, True, None),
        id="keyword-host-over-STX_WS_URL",
    ),
    pytest.param(
        {"url": "ws://u/socket", "host": "h"},
        {},
        None,
        ("ws://u/socket", "none", None, True, None),
        id="keyword-url-over-host",
    ),
    pytest.param(
        {"token": "jwt"},
        {"STX_KEY_ID": "k", "STX_PRIVATE_KEY": PEM},
        PROFILES,
        (DEMO_US, "token", None, True, "default"),
        id="higher-level-kind-wins",
    ),
    pytest.param(
        {"verify_tls": True},
        {"STX_VERIFY_TLS": "0"},
        None,
        (DEMO_CA, "none", None, True, None),
        id="verify_tls-keyword",
    ),
    pytest.param(
        {},
        {"STX_REGION": "us"},
        "[default]\nenv = demo\nverify_tls = 0\n",
        (DEMO_US, "none", None, False, "default"),
        id="fields-merge-across-levels",
    ),
]


@pytest.mark.parametrize(("keywords", "environ", "profiles", "expected"), PRECEDENCE)
def test_precedence(
    keywords: dict[str, Any],
    environ: dict[str, str],
    profiles: str | None,
    expected: tuple[Any, ...],
) -> None:
    s = resolve(keywords, environ, profiles)
    assert (s.url, str(s.auth), s.key_id, s.verify_tls, s.profile) == expected


def test_private_key_pem_or_path_and_fields_across_levels() -> None:
    s = resolve({}, {}, PROFILES)
    assert (s.private_key, s.private_key_is_path) == ("/keys/default.pem", True)
    s = resolve({"profile": "local"}, {}, PROFILES)
    assert (s.private_key, s.private_key_is_path) == (PEM, False)
    # key_id from a keyword, private_key from the environment.
    s = resolve({"key_id": "k"}, {"STX_PRIVATE_KEY": PEM}, None)
    assert (s.auth, s.key_id, s.private_key) == (StxAuthKind.API_KEY, "k", PEM)
    assert is_pem(PEM) and not is_pem("~/key.pem")


def test_region_and_env_are_reported_normalised() -> None:
    s = resolve({"region": "Ontario", "env": "LIVE"})
    assert (s.region, s.env, s.url) == ("ontario", "production", PROD_CA)
    assert resolve({"host": "h"}).region is None


def test_us_production_is_refused() -> None:
    with pytest.raises(UsageError, match="no US production host"):
        resolve({"region": "us", "env": "prod"})


def test_user_id_and_its_alias() -> None:
    assert resolve({"user_id": "u"}).user_id == "u"
    assert resolve({"user_uid": "u"}).user_id == "u"
    assert resolve({"user_id": "u", "user_uid": "u"}).user_id == "u"
    assert resolve({}).user_id is None
    with pytest.raises(UsageError, match="user_uid"):
        resolve({"user_id": "u", "user_uid": "v"})


def test_oauth_and_legacy_tokens_keep_callables() -> None:
    def fetch() -> str:
        return "t"

    s = resolve({"access_token": fetch})
    assert (s.auth, s.access_token) == (StxAuthKind.OAUTH, fetch)
    assert resolve({"access_token": "t"}).access_token == "t"
    s = resolve({}, {"STX_TOKEN": "jwt"})
    assert (s.auth, s.token, s.url) == (StxAuthKind.TOKEN, "jwt", STAGING)
    assert resolve({"token": fetch}).token is fetch


@pytest.mark.parametrize(
    ("keywords", "environ", "match"),
    [
        ({"token": "j", "access_token": "a"}, {}, "two kinds .* keyword arguments"),
        ({"key_id": "k", "private_key": PEM, "token": "j"}, {}, "token and api_key"),
        ({}, {"STX_TOKEN": "j", "STX_KEY_ID": "k"}, "in the environment"),
        ({"key_id": "k"}, {}, "private_key is missing"),
        ({}, {"STX_PRIVATE_KEY": PEM}, "key_id is missing"),
        ({"key_id": 5, "private_key": PEM}, {}, "key_id must be a str"),
        ({"key_id": "k", "private_key": b"x"}, {}, "PEM text or a path"),
        ({"token": 42}, {}, "token must be a str or a callable, got int"),
        ({"access_token": 42}, {}, "access_token must be a str or a callable, got int"),
        ({"verify_tls": "maybe"}, {}, "verify_tls must be"),
        ({}, {"STX_VERIFY_TLS": "off"}, "verify_tls must be true/false"),
        ({"verify_tls": 1}, {}, "must be a bool, got int"),
        ({"host": "ftp://x"}, {}, "scheme"),
    ],
)
def test_refusals(keywords: dict[str, Any], environ: dict[str, str], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        resolve(keywords, environ)


def test_secrets_never_show_in_the_repr() -> None:
    s = resolve({"key_id": "the-key-id", "private_key": PEM})
    text = repr(s)
    assert "the-key-id" not in text and "MC4C" not in text
    assert "key_id='<hidden>'" in text and "token=None" in text
    assert "sekrit" not in repr(resolve({"access_token": "sekrit"}))
    assert "jwt-value" not in repr(resolve({"token": "jwt-value"}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), (" false ", False), ("0", False), ("No", False)],
)
def test_parse_bool(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected
    assert parse_bool(expected) is expected


def test_profile_errors_quote_no_secret() -> None:
    with pytest.raises(UsageError, match=r"no profile \[nope\]"):
        resolve({"profile": "nope"}, {}, PROFILES)
    with pytest.raises(UsageError, match=r"no profile \[nope\]"):
        resolve({}, {"STX_PROFILE": "nope"}, None)
    secret = "MC4CAQAwBQYDK2VwBCIEI"
    with pytest.raises(UsageError, match="cannot parse") as broken:
        resolve({}, {}, f"no section header\n{secret}\n")
    assert secret not in str(broken.value)
    both = "[default]\nprivate_key = /a.pem\nkey_file = /b.pem\n"
    with pytest.raises(UsageError, match="private_key twice"):
        resolve({}, {}, both)
    same = "[default]\nkey_id = k\nprivate_key = /a.pem\nkey_file = /a.pem\n"
    assert resolve({}, {}, same).private_key == "/a.pem"
    # The default profile may be missing, and an empty one is fine.
    assert resolve({}, {}, "[other]\nkey_id = k\n").profile is None
    assert resolve({"profile": "empty"}, {}, PROFILES).auth is StxAuthKind.NONE


# ------------------------------------------------------------------------------------------
# The driver kit's I/O half


def test_credentials_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert credentials_path({}) == (tmp_path / ".stx" / "credentials", False)
    assert credentials_path({"STX_CREDENTIALS": " "}) == (tmp_path / ".stx" / "credentials", False)
    assert credentials_path({"STX_CREDENTIALS": "~/c.ini"}) == (tmp_path / "c.ini", True)


def test_read_stx_settings_reads_the_file_and_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "key.pem").write_text(PEM)
    (tmp_path / ".stx").mkdir()
    (tmp_path / ".stx" / "credentials").write_text(
        "[default]\nkey_id = k\nkey_file = ~/key.pem\nenv = demo\nregion = us\n"
    )
    s = read_stx_settings(environ={})
    assert (s.key_id, s.private_key, s.private_key_is_path, s.url) == ("k", PEM, False, DEMO_US)
    # os.environ by default (HOME is all it has of ours here).
    for name in ("STX_CREDENTIALS", "STX_PROFILE", "STX_KEY_ID", "STX_TOKEN", "STX_WS_URL"):
        monkeypatch.delenv(name, raising=False)
    assert read_stx_settings().key_id == "k"
    # Keywords still come first, and PEM text needs no file.
    s = read_stx_settings(environ={}, key_id="k2", private_key=PEM)
    assert (s.key_id, s.private_key) == ("k2", PEM)


def test_read_stx_settings_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_stx_settings(environ={}).auth is StxAuthKind.NONE
    with pytest.raises(UsageError, match="cannot read the STX credentials file"):
        read_stx_settings(environ={"STX_CREDENTIALS": str(tmp_path / "missing")})
    with pytest.raises(UsageError, match="cannot read the STX private key file"):
        read_stx_settings(environ={}, key_id="k", private_key=str(tmp_path / "nokey.pem"))


def test_stx_credentials_points_elsewhere(tmp_path: Path) -> None:
    other = tmp_path / "creds.ini"
    other.write_text("[bot]\nhost = localhost:4000\n")
    s = read_stx_settings(environ={"STX_CREDENTIALS": str(other), "STX_PROFILE": "bot"})
    assert (s.url, s.profile) == ("wss://localhost:4000/socket/websocket", "bot")


def test_stx_ws_url_points_at_a_test_server_whatever_region_and_env_the_code_names() -> None:
    env = {"STX_WS_URL": "ws://127.0.0.1:9/socket"}
    named = resolve_stx_settings(region="ontario", env="staging", token="t", environ=env)
    assert named.url == "ws://127.0.0.1:9/socket"
    explicit = resolve_stx_settings(url="ws://127.0.0.1:8/socket", token="t", environ=env)
    assert explicit.url == "ws://127.0.0.1:8/socket"  # a URL given in the code still wins
