"""The I/O half of STX settings: read the environment, the credentials file and a key file.

Driver-kit territory (I/O allowed): it gathers what :func:`resolve_stx_settings` needs and
hands it over, so the rules themselves stay pure in :mod:`stx_proto._stx_settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .._errors import UsageError
from .._stx_settings import StxSettings, resolve_stx_settings

__all__ = ["DEFAULT_CREDENTIALS_PATH", "credentials_path", "read_stx_settings"]

#: Where the credentials file is when ``STX_CREDENTIALS`` does not say.
DEFAULT_CREDENTIALS_PATH = "~/.stx/credentials"


def credentials_path(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The credentials file's path and whether it was named explicitly (``STX_CREDENTIALS``,
    non-empty); ``~`` is expanded."""
    named = environ.get("STX_CREDENTIALS", "").strip()
    return Path(os.path.expanduser(named or DEFAULT_CREDENTIALS_PATH)), bool(named)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the {what} {path}: {type(exc).__name__}") from None


def read_stx_settings(*, environ: Mapping[str, str] | None = None, **keywords: Any) -> StxSettings:
    """Resolve an STX socket's settings from ``keywords``, the environment and the
    credentials file, and read the private key file if the key is given as a path.

    ``environ`` defaults to ``os.environ``. The credentials file is ``$STX_CREDENTIALS``, else
    ``~/.stx/credentials`` (a missing default file is no error). ``keywords`` are those of
    :func:`~stx_proto._stx_settings.resolve_stx_settings`. Returns the settings with
    ``private_key`` as PEM text (never a path).

    Raises UsageError for anything :func:`resolve_stx_settings` refuses, for a file named by
    ``STX_CREDENTIALS`` that cannot be read, and for a key file that cannot be read.
    """
    environ = os.environ if environ is None else environ
    path, named = credentials_path(environ)
    text = _read_text(path, "STX credentials file") if named or path.is_file() else None
    settings = resolve_stx_settings(
        environ=environ, credentials_text=text, credentials_source=str(path), **keywords
    )
    if settings.private_key is not None and settings.private_key_is_path:
        key_path = Path(os.path.expanduser(settings.private_key.strip()))
        pem = _read_text(key_path, "STX private key file")
        settings = attrs.evolve(settings, private_key=pem, private_key_is_path=False)
    return settings
