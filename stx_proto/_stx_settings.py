"""STX socket settings: keywords, then environment, then a credentials profile, then defaults.

Pure: the environment comes in as a mapping and the credentials file as its text; reading them
(``os.environ``, ``~/.stx/credentials`` or ``$STX_CREDENTIALS``, a private-key file) is the
driver kit's (:mod:`stx_proto.driver.stx_io`).

The rules, highest precedence first (see ``STX.md``):

1. keyword arguments (``user_uid`` is an alias of ``user_id``; ``url`` is a full socket URL);
2. the environment: ``STX_WS_URL`` (a full socket URL, winning over ``STX_HOST``),
   ``STX_HOST`` (or ``STX_BASE_URL``), ``STX_REGION``, ``STX_ENV``, ``STX_KEY_ID``,
   ``STX_PRIVATE_KEY``, ``STX_TOKEN`` (the legacy JWT), ``STX_VERIFY_TLS``, ``STX_PROFILE``,
   ``STX_USER_ID`` (or ``STX_USER_UID``);
3. a profile of the credentials file (INI), chosen by ``profile=``, then ``STX_PROFILE``, then
   ``default``, with keys ``region``, ``env``, ``host`` (or ``base_url``), ``key_id``,
   ``private_key`` (or ``key_file``), ``verify_tls``;
4. defaults: region ``ontario``; env ``staging`` with a legacy token (as the legacy presets
   always had) and ``demo`` otherwise (never real money by default); TLS verification on.

An empty value counts as unset at every level, so ``STX_VERIFY_TLS=`` never turns verification
off. Two groups are decided by the highest level that names any of their fields:

* where: at that level, a full URL wins over a host, which wins over the region/env table
  (region and env are then taken field by field from every level);
* the credential kind (legacy ``token``; API key ``key_id`` + ``private_key``; OAuth
  ``access_token``; or none, for public channels): two kinds at that level is a UsageError;
  lower levels' other kinds are ignored, and the kind's own fields are taken field by field
  from every level (``key_id=`` with ``STX_PRIVATE_KEY``, say).
"""

from __future__ import annotations

import configparser
import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from ._errors import UsageError
from ._stx import StxToken, stx_env, stx_host_url, stx_url

__all__ = [
    "AccessToken",
    "StxAuthKind",
    "StxSettings",
    "is_pem",
    "parse_bool",
    "resolve_stx_settings",
]

#: An OAuth access token, or a sync or async callable returning one (called at every connect).
AccessToken = str | Callable[[], str | Awaitable[str]]

DEFAULT_PROFILE = "default"
DEFAULT_REGION = "ontario"

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# Environment variable -> field (the first of a field's variables that is set wins).
_ENVIRONMENT = (
    ("STX_WS_URL", "url"),
    ("STX_HOST", "host"),
    ("STX_BASE_URL", "host"),
    ("STX_REGION", "region"),
    ("STX_ENV", "env"),
    ("STX_KEY_ID", "key_id"),
    ("STX_PRIVATE_KEY", "private_key"),
    ("STX_TOKEN", "token"),
    ("STX_VERIFY_TLS", "verify_tls"),
    ("STX_USER_ID", "user_id"),
    ("STX_USER_UID", "user_id"),
)
# Profile key -> field (aliases after the main key, which wins when both are there).
_PROFILE_KEYS = (
    ("region", "region"),
    ("env", "env"),
    ("host", "host"),
    ("base_url", "host"),
    ("key_id", "key_id"),
    ("private_key", "private_key"),
    ("key_file", "private_key"),
    ("verify_tls", "verify_tls"),
)
_WHERE = ("url", "host", "region", "env")


class StxAuthKind(str, enum.Enum):
    """How the socket authenticates."""

    NONE = "none"  #: unsigned: public channels only
    TOKEN = "token"  #: the legacy JWT in the ``token`` query parameter
    API_KEY = "api_key"  #: the three ``X-STX-ACCESS-*`` headers, signed at every connect
    OAUTH = "oauth"  #: the ``x-stx-oauth-token`` header, fetched at every connect

    def __str__(self) -> str:
        """The value."""
        return self.value


_KIND_FIELDS: Mapping[StxAuthKind, tuple[str, ...]] = {
    StxAuthKind.TOKEN: ("token",),
    StxAuthKind.API_KEY: ("key_id", "private_key"),
    StxAuthKind.OAUTH: ("access_token",),
}


def _hidden(value: object) -> str:
    return "None" if value is None else "'<hidden>'"


@attrs.frozen(slots=True)
class StxSettings:
    """Resolved STX socket settings. Its repr shows no key, token or key id.

    ``url`` is the socket URL (``wss://<host>/socket/websocket``; the core adds ``vsn``).
    ``region``/``env`` are those the table was read with (None when a URL or host was given).
    ``auth`` says which credentials apply; only that kind's fields are set: ``token`` (legacy
    JWT or callable), ``key_id`` and ``private_key`` (PEM text, or a path when
    ``private_key_is_path``: the kit reads it), ``access_token`` (value or callable).
    ``profile`` is the credentials-file profile read, or None if none was.
    """

    url: str
    auth: StxAuthKind = StxAuthKind.NONE
    region: str | None = None
    env: str | None = None
    verify_tls: bool = True
    user_id: str | None = None
    profile: str | None = None
    token: StxToken | None = attrs.field(default=None, repr=_hidden)
    key_id: str | None = attrs.field(default=None, repr=_hidden)
    private_key: str | None = attrs.field(default=None, repr=_hidden)
    private_key_is_path: bool = False
    access_token: AccessToken | None = attrs.field(default=None, repr=_hidden)


def is_pem(value: str) -> bool:
    """True when a ``private_key`` value is PEM text; False when it is a path to a file."""
    return "-----BEGIN" in value


def parse_bool(value: str | bool, name: str = "verify_tls") -> bool:
    """``true``/``false``, ``1``/``0``, ``yes``/``no`` (any case) as a bool; a bool as itself.

    Raises UsageError for anything else, naming ``name``.
    """
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a bool, got {type(value).__name__}")
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise UsageError(f"{name} must be true/false, 1/0 or yes/no, got {value!r}")


def _set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    level: dict[str, Any] = {}
    for variable, field in _ENVIRONMENT:
        value = environ.get(variable)
        if _set(value) and field not in level:
            level[field] = value
    return level


def _read_profile(
    text: str | None, profile: str, explicit: bool, source: str
) -> tuple[dict[str, Any], str | None]:
    """The profile's fields and name (None if not found). Raises UsageError for a file that
    does not parse, an explicitly chosen profile that is not there, or conflicting aliases."""
    parser = configparser.ConfigParser(interpolation=None)
    if text is not None:
        try:
            parser.read_string(text, source=source)
        except configparser.Error as exc:
            # Not the library's message: it quotes lines, and the file holds private keys.
            raise UsageError(
                f"cannot parse the STX credentials file {source} ({type(exc).__name__})"
            ) from None
    if not parser.has_section(profile):
        if explicit:
            raise UsageError(f"no profile [{profile}] in the STX credentials file {source}")
        return {}, None
    section = parser[profile]
    level: dict[str, Any] = {}
    for key, field in _PROFILE_KEYS:
        value = (section.get(key) or "").strip()  # a multi-line PEM starts with a newline
        if not value:
            continue
        if field in level and level[field] != value:
            raise UsageError(f"profile [{profile}] sets {field} twice, with different values")
        level[field] = value
    return level, profile


def _first(levels: list[dict[str, Any]], field: str) -> Any:
    for level in levels:
        if field in level:
            return level[field]
    return None


def _kind(levels: list[dict[str, Any]], names: tuple[str, ...]) -> StxAuthKind:
    for level, name in zip(levels, names, strict=True):
        kinds = [k for k, fields in _KIND_FIELDS.items() if any(f in level for f in fields)]
        if len(kinds) > 1:
            given = " and ".join(str(k) for k in kinds)
            raise UsageError(
                f"two kinds of STX credentials in the {name}: {given}; pass only one of "
                "token=, key_id= with private_key=, or access_token="
            )
        if kinds:
            return kinds[0]
    return StxAuthKind.NONE


def resolve_stx_settings(
    *,
    region: str | None = None,
    env: str | None = None,
    host: str | None = None,
    url: str | None = None,
    token: StxToken | None = None,
    key_id: str | None = None,
    private_key: str | None = None,
    access_token: AccessToken | None = None,
    user_id: str | None = None,
    user_uid: str | None = None,
    profile: str | None = None,
    verify_tls: bool | None = None,
    environ: Mapping[str, str] | None = None,
    credentials_text: str | None = None,
    credentials_source: str = "~/.stx/credentials",
) -> StxSettings:
    """Resolve an STX socket's settings (see the module docstring for the rules).

    The keywords are the socket's; ``environ`` is the environment (a mapping), and
    ``credentials_text`` the credentials file's text (None if there is no file), named
    ``credentials_source`` in messages. Returns :class:`StxSettings`.

    Raises UsageError for two kinds of credentials at once, a key id without a private key
    (or the reverse), ``user_id`` and ``user_uid`` that differ, a ``verify_tls`` that is not a
    boolean, an unknown region/env (or us/production), a bad host, an explicitly chosen
    profile that is not in the file, or a file that does not parse. No message quotes a
    secret.
    """
    environ = environ if environ is not None else {}
    keywords = {
        name: value
        for name, value in (
            ("region", region),
            ("env", env),
            ("host", host),
            ("url", url),
            ("token", token),
            ("key_id", key_id),
            ("private_key", private_key),
            ("access_token", access_token),
            ("verify_tls", verify_tls),
        )
        if _set(value)
    }
    profile_name = profile if _set(profile) else environ.get("STX_PROFILE")
    explicit = _set(profile_name)
    chosen = str(profile_name).strip() if explicit else DEFAULT_PROFILE
    from_profile, used_profile = _read_profile(
        credentials_text, chosen, explicit, credentials_source
    )
    levels = [keywords, _from_environment(environ), from_profile]
    names = ("keyword arguments", "environment", f"profile [{chosen}]")

    kind = _kind(levels, names)
    credentials = {f: _first(levels, f) for f in _KIND_FIELDS.get(kind, ())}
    if kind is StxAuthKind.API_KEY:
        missing = [f for f in ("key_id", "private_key") if credentials[f] is None]
        if missing:
            raise UsageError(
                f"an STX API key needs both key_id and private_key; {missing[0]} is missing"
            )
        if not isinstance(credentials["key_id"], str):
            raise UsageError("key_id must be a str")
        if not isinstance(credentials["private_key"], str):
            raise UsageError("private_key must be PEM text or a path (a str)")
    if kind is StxAuthKind.TOKEN and not (
        isinstance(credentials["token"], str) or callable(credentials["token"])
    ):
        raise UsageError(
            f"token must be a str or a callable, got {type(credentials['token']).__name__}"
        )
    if kind is StxAuthKind.OAUTH and not (
        isinstance(credentials["access_token"], str) or callable(credentials["access_token"])
    ):
        raise UsageError(
            "access_token must be a str or a callable, got "
            f"{type(credentials['access_token']).__name__}"
        )

    if _set(user_id) and _set(user_uid) and user_id != user_uid:
        raise UsageError("user_id and user_uid (its alias) differ: pass only user_id")
    uid = user_id if _set(user_id) else user_uid if _set(user_uid) else _first(levels, "user_id")

    where = next((level for level in levels if any(f in level for f in _WHERE)), {})
    if "url" in levels[1] and not ("url" in keywords or "host" in keywords):
        # STX_WS_URL, a full socket URL, points a bot at a test server whatever region and
        # env the code names (the legacy SDK's override, which the README's examples use).
        where = levels[1]
    table_region = table_env = None
    if "url" in where:
        socket_url = str(where["url"]).strip()
    elif "host" in where:
        socket_url = stx_host_url(str(where["host"]))
    else:
        table_region = str(_first(levels, "region") or DEFAULT_REGION).strip().lower()
        default_env = "staging" if kind is StxAuthKind.TOKEN else "demo"
        table_env = stx_env(str(_first(levels, "env") or default_env))
        socket_url = stx_url(table_region, table_env)

    tls = _first(levels, "verify_tls")
    private = credentials.get("private_key")
    return StxSettings(
        url=socket_url,
        auth=kind,
        region=table_region,
        env=table_env,
        verify_tls=True if tls is None else parse_bool(tls),
        user_id=uid,
        profile=used_profile,
        token=credentials.get("token"),
        key_id=credentials.get("key_id"),
        private_key=private,
        private_key_is_path=private is not None and not is_pem(private),
        access_token=credentials.get("access_token"),
    )
