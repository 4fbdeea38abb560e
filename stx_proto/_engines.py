"""Choosing a WebSocket engine by name: ``"wsproto"`` (the default) or ``"websockets"``.

The websockets engine needs the optional websockets package (the ``stx-ws[fast]`` extra); its
module is imported only when it is asked for, so ``import stx_proto`` works without it.
"""

from __future__ import annotations

from collections.abc import Callable

from ._errors import UsageError
from ._websocket import WebSocketEngine, WsprotoEngine

__all__ = ["ENGINES", "EngineFactory", "resolve_engine"]

#: Makes an engine from the keywords ``host``, ``target``, ``headers``, ``subprotocols`` and
#: ``max_message_size`` (see :class:`~stx_proto._websocket.WsprotoEngine`).
EngineFactory = Callable[..., WebSocketEngine]

#: The engine names :func:`resolve_engine` knows.
ENGINES = ("wsproto", "websockets")


def resolve_engine(spec: str | EngineFactory) -> EngineFactory:
    """Return the engine factory that ``spec`` names.

    ``"wsproto"`` gives :class:`~stx_proto._websocket.WsprotoEngine`, ``"websockets"`` gives
    :class:`~stx_proto._ws_websockets.WebsocketsEngine`, and a callable is returned as it is
    (it is taken to be a factory).

    Raises:
        UsageError: ``"websockets"`` while the websockets package is not installed, or a name
            that is none of these.
    """
    if callable(spec):
        return spec
    if spec == "wsproto":
        return WsprotoEngine
    if spec == "websockets":
        try:
            from ._ws_websockets import WebsocketsEngine  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise UsageError(
                "engine='websockets' needs the websockets package: "
                f"pip install 'stx-ws[fast]' ({exc})"
            ) from exc
        return WebsocketsEngine
    choices = ", ".join(repr(name) for name in ENGINES)
    raise UsageError(f"engine must be one of {choices} or a factory, got {spec!r}")
