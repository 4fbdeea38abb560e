"""Checks of the options a user gives: a wrong type or value is a UsageError at once.

Each check names the option and what was expected, and never echoes a value that may be a
secret (a token, a header value, a query parameter): only its type, or what is wrong with it.
"""

from __future__ import annotations

import math
from typing import Any

from ._errors import UsageError


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def real(name: str, value: Any, *, positive: bool = True, allow_none: bool = False) -> Any:
    """``value`` if it is a finite number (> 0 when ``positive``, else >= 0), or None when
    ``allow_none``. Raises UsageError naming ``name`` otherwise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        expected = "a number" + (" or None" if allow_none else "")
        raise UsageError(f"{name} must be {expected}, got {_kind(value)}")
    bound = "> 0" if positive else ">= 0"
    if value <= 0 if positive else value < 0:
        raise UsageError(f"{name} must be {bound}, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def integer(name: str, value: Any, *, minimum: int = 0, allow_none: bool = False) -> Any:
    """``value`` if it is an int >= ``minimum`` (or None when ``allow_none``); UsageError if not."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        expected = "an int" + (" or None" if allow_none else "")
        raise UsageError(f"{name} must be {expected}, got {_kind(value)}")
    if value < minimum:
        raise UsageError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def instance(name: str, value: Any, cls: type, what: str, *, allow_none: bool = False) -> Any:
    """``value`` if it is a ``cls`` (or None when ``allow_none``); UsageError saying ``what``
    was expected otherwise."""
    if (value is None and allow_none) or isinstance(value, cls):
        return value
    raise UsageError(f"{name} must be {what}, got {_kind(value)}")


def callable_or_none(name: str, value: Any) -> Any:
    """``value`` if it is callable or None; UsageError otherwise."""
    if value is None or callable(value):
        return value
    raise UsageError(f"{name} must be a callable or None, got {_kind(value)}")


def name_text(what: str, value: Any) -> str:
    """A topic or an event name: a non-empty str. Raises UsageError naming ``what``."""
    if not isinstance(value, str) or not value:
        shown = repr(value) if isinstance(value, str) else _kind(value)
        raise UsageError(f"{what} must be a non-empty str, got {shown}")
    return value
