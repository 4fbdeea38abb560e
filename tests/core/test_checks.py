"""Option checks (stx_proto._checks and the credential checks of _url): wrong types and
values are UsageErrors that name the option and never echo a value that may be secret."""

from __future__ import annotations

from typing import Any

import pytest

from stx_proto import Client, UsageError
from stx_proto._checks import callable_or_none, instance, integer, name_text, real
from stx_proto._url import check_headers, check_params, check_token


def test_real_numbers() -> None:
    assert real("t", 1.5) == 1.5
    assert real("t", None, allow_none=True) is None
    assert real("t", 0, positive=False) == 0
    for bad, match in (
        (True, "t must be a number, got bool"),
        ("1", "t must be a number, got str"),
        (0, r"t must be > 0, got 0"),
        (float("inf"), "t must be finite and > 0"),
        (-1, "t must be > 0"),
    ):
        with pytest.raises(UsageError, match=match):
            real("t", bad)
    with pytest.raises(UsageError, match="t must be >= 0, got -1"):
        real("t", -1, positive=False)
    with pytest.raises(UsageError, match="a number or None, got str"):
        real("t", "x", allow_none=True)


def test_integers_instances_and_callables() -> None:
    assert integer("n", 3) == 3
    assert integer("n", None, allow_none=True) is None
    for bad, match in ((True, "an int, got bool"), (1.0, "an int, got float"), (-2, ">= 0")):
        with pytest.raises(UsageError, match=match):
            integer("n", bad)
    assert instance("x", 1, int, "an int") == 1
    with pytest.raises(UsageError, match="x must be an int, got str"):
        instance("x", "1", int, "an int")
    assert callable_or_none("f", None) is None and callable_or_none("f", print) is print
    with pytest.raises(UsageError, match="f must be a callable or None, got int"):
        callable_or_none("f", 1)
    assert name_text("topic", "a") == "a"
    for not_a_name in ("", 1, None):
        with pytest.raises(UsageError, match="topic must be a non-empty str"):
            name_text("topic", not_a_name)


def test_params() -> None:
    assert check_params({"a": "1", "n": {"b": 2, "c": True}}) == {
        "a": "1",
        "n": {"b": 2, "c": True},
    }
    assert check_params(None) == {}
    with pytest.raises(UsageError, match="params: keys must be non-empty str, got int"):
        check_params({1: "x"})
    with pytest.raises(UsageError, match=r"params\['n'\]\['b'\] must be a str"):
        check_params({"n": {"b": [1]}})


def test_tokens_and_headers_never_echo_the_value() -> None:
    secret = "hunter2-secret"
    for bad in (f"{secret}\n", f"a\x00{secret}", f"{secret}\x7f"):
        with pytest.raises(UsageError) as info:
            check_token(bad)
        assert secret not in str(info.value)
        with pytest.raises(UsageError) as info:
            check_headers({"X-Key": bad})
        assert secret not in str(info.value)
    assert check_headers([("X-A", "1"), ("X-A", "2")]) == (("X-A", "1"), ("X-A", "2"))
    for bad_headers, match in (
        (5, "headers must be a mapping or"),
        (b"x", "headers must be a mapping or"),
        ([("a", "b", "c")], "pair of str"),
        ([["a", "b"]], "pair of str"),
        ({"": "v"}, "'' is not a valid header name"),
        ({("x",): "v"}, "tuple is not a valid header name"),
        ({"Sec-WebSocket-Version": "13"}, "set by the WebSocket handshake"),
    ):
        with pytest.raises(UsageError, match=match):
            check_headers(bad_headers)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"params": "a=b"}, "params must be a mapping, got str"),
        ({"auth_token": 7}, "auth token must be a str, got int"),
        ({"headers": {"X": "a\nb"}}, "control character"),
        ({"retry": 3}, "retry must be a RetryPolicy"),
        ({"heartbeat_interval": None, "heartbeat_timeout": "5"}, "heartbeat_timeout must be"),
        ({"rng": object()}, "rng must be a random.Random"),
    ],
)
def test_the_client_checks_its_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Client("ws://h/socket", **options)
    with pytest.raises(UsageError, match="url must be a str, got bytes"):
        Client(b"ws://h/socket")  # type: ignore[arg-type]
