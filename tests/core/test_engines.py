"""resolve_engine: engine names, factories, and the missing optional dependency."""

from __future__ import annotations

import sys

import pytest

from stx_proto import Client
from stx_proto._engines import ENGINES, EngineFactory, resolve_engine
from stx_proto._errors import UsageError
from stx_proto._websocket import WebSocketEngine, WsprotoEngine
from stx_proto._ws_websockets import WebsocketsEngine
from stx_proto.testing import Link, PhoenixServer


def test_names() -> None:
    assert ENGINES == ("wsproto", "websockets")
    assert resolve_engine("wsproto") is WsprotoEngine
    assert resolve_engine("websockets") is WebsocketsEngine


def test_a_factory_passes_through() -> None:
    def factory(**kwargs: object) -> WebSocketEngine:
        return WsprotoEngine(host="h", target="/")

    assert resolve_engine(factory) is factory
    assert resolve_engine(WebsocketsEngine) is WebsocketsEngine


@pytest.mark.parametrize("spec", ["", "WSPROTO", "picows", 3, None])
def test_anything_else_is_a_usage_error(spec: object) -> None:
    with pytest.raises(UsageError, match=r"'wsproto', 'websockets' or a factory, got"):
        resolve_engine(spec)  # type: ignore[arg-type]


def test_websockets_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if websockets were not installed: importing it fails, and the engine module is not
    # loaded yet.
    for name in [name for name in sys.modules if name.split(".")[0] == "websockets"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "stx_proto._ws_websockets")
    with pytest.raises(UsageError, match=r"pip install 'stx-ws\[fast\]'"):
        resolve_engine("websockets")
    assert resolve_engine("wsproto") is WsprotoEngine


def test_stx_proto_imports_without_websockets() -> None:
    import subprocess

    script = (
        "import sys; sys.modules['websockets'] = None\n"
        "import stx_proto, stx_proto._engines\n"
        "assert 'stx_proto._ws_websockets' not in sys.modules\n"
        "try:\n"
        "    stx_proto._engines.resolve_engine('websockets')\n"
        "except stx_proto.UsageError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True
    )
    assert "pip install 'stx-ws[fast]'" in result.stdout


def test_the_ws_engine_option_reaches_every_client(ws_engine: EngineFactory) -> None:
    # conftest: ``--ws-engine`` becomes the default of Client(engine=...) in tests/core.
    defaults = Client.__init__.__kwdefaults__
    assert defaults is not None
    assert defaults["engine"] is ws_engine
    link = Link(Client("ws://test/socket"), PhoenixServer())
    link.connect()
    assert link.client.is_connected
