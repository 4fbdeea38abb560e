from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from stx_proto._codec import JsonCodec, OrjsonCodec, StdlibJsonCodec, resolve_codec
from stx_proto._errors import UsageError

CODECS = [pytest.param(StdlibJsonCodec, id="stdlib"), pytest.param(OrjsonCodec, id="orjson")]


@pytest.fixture(params=CODECS)
def codec(request: pytest.FixtureRequest) -> JsonCodec:
    factory: type[JsonCodec] = request.param
    return factory()


class TestSharedContract:
    def test_dumps_is_compact_and_keeps_non_ascii(self, codec: JsonCodec) -> None:
        text = codec.dumps(["0", None, "room:café", "π", {"foo": [1, 2.5, True], "🚀": "x"}])
        assert text == '["0",null,"room:café","π",{"foo":[1,2.5,true],"🚀":"x"}]'
        assert type(text) is str

    @pytest.mark.parametrize(
        "data", ['{"a":[1,"é"]}', '{"a":[1,"é"]}'.encode(), ' {"a" : [1, "\\u00e9"]} ']
    )
    def test_loads_str_and_utf8_bytes(self, codec: JsonCodec, data: str | bytes) -> None:
        assert codec.loads(data) == {"a": [1, "é"]}

    @pytest.mark.parametrize(
        "data", ["", "nope", "[1,", "[1] x", b"\xff\xfe", b'["\xc3"]', '{"a":1,}', "\ufeff[]"]
    )
    def test_loads_bad_input_raises_value_error(self, codec: JsonCodec, data: str | bytes) -> None:
        with pytest.raises(ValueError):
            codec.loads(data)

    def test_unencodable_object_raises_type_error(self, codec: JsonCodec) -> None:
        with pytest.raises(TypeError):
            codec.dumps({"x": object()})


class TestStdlib:
    def test_name_and_repr(self) -> None:
        assert StdlibJsonCodec.name == "stdlib"
        assert repr(StdlibJsonCodec()) == "StdlibJsonCodec()"

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_refuses_non_finite_floats(self, value: float) -> None:
        # Writing NaN/Infinity would produce text that no JSON parser on the server accepts.
        with pytest.raises(ValueError):
            StdlibJsonCodec().dumps({"x": value})

    @pytest.mark.parametrize(
        "data",
        ["[1]", "[1] ", " [1]", "\n[1]\t", '"x"', "NaN", "[1] x", "[1]]", "", " ", "[", "\ufeff[]"],
    )
    def test_loads_matches_the_json_decoder_exactly(self, data: str) -> None:
        # loads() scans with the C scanner first and falls back on the decoder's decode():
        # the value, or the error and its message, must be decode()'s (json.loads() adds
        # only a BOM check, which gives another message for the same error).
        try:
            expected: Any = json.JSONDecoder().decode(data)
        except ValueError as exc:
            with pytest.raises(type(exc)) as caught:
                StdlibJsonCodec().loads(data)
            assert str(caught.value) == str(exc)
        else:
            got = StdlibJsonCodec().loads(data)
            assert repr(got) == repr(expected)  # repr: NaN is not equal to itself

    def test_big_ints_and_non_str_keys(self) -> None:
        codec = StdlibJsonCodec()
        assert codec.dumps({1: 2**70}) == '{"1":1180591620717411303424}'
        assert codec.loads("1180591620717411303424") == 2**70


class TestOrjson:
    def test_name_and_repr(self) -> None:
        assert OrjsonCodec.name == "orjson"
        assert repr(OrjsonCodec()) == "OrjsonCodec()"

    def test_documented_limits(self) -> None:
        codec = OrjsonCodec()
        with pytest.raises(TypeError):
            codec.dumps({1: 2})
        with pytest.raises(TypeError):
            codec.dumps(2**64)
        assert codec.dumps(2**64 - 1) == "18446744073709551615"
        assert codec.dumps(float("nan")) == "null"

    def test_missing_orjson_is_a_usage_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "orjson", None)  # makes `import orjson` fail
        with pytest.raises(UsageError, match=r"pip install 'stx-ws\[orjson\]'") as info:
            OrjsonCodec()
        assert isinstance(info.value.__cause__, ImportError)
        with pytest.raises(UsageError, match="orjson"):
            resolve_codec("orjson")


class _CustomCodec:
    name = "custom"

    def dumps(self, obj: Any) -> str:
        return "[]"

    def loads(self, data: str | bytes) -> Any:
        return []


class _NotACodec:
    name = "half"
    dumps = "not callable"

    def loads(self, data: str | bytes) -> Any:
        return []


class TestResolveCodec:
    @pytest.mark.parametrize("spec", [None, "stdlib", "json"])
    def test_stdlib_specs(self, spec: str | None) -> None:
        assert type(resolve_codec(spec)) is StdlibJsonCodec

    def test_orjson_spec(self) -> None:
        assert type(resolve_codec("orjson")) is OrjsonCodec

    def test_codec_objects_pass_through(self) -> None:
        custom = _CustomCodec()
        assert resolve_codec(custom) is custom
        stdlib = StdlibJsonCodec()
        assert resolve_codec(stdlib) is stdlib

    @pytest.mark.parametrize("spec", ["simplejson", "ORJSON", ""])
    def test_unknown_name(self, spec: str) -> None:
        with pytest.raises(UsageError, match="unknown JSON codec"):
            resolve_codec(spec)

    @pytest.mark.parametrize("spec", [42, object(), _NotACodec()])
    def test_not_a_codec(self, spec: Any) -> None:
        with pytest.raises(UsageError, match=r"dumps\(\) and loads\(\)"):
            resolve_codec(spec)
