"""stx_proto is sans-IO: no module of it imports an event loop, a socket, TLS or a clock.

Two checks. A fresh interpreter imports every stx_proto module (stx_proto.testing included);
then none of the forbidden modules may be loaded (``time`` aside: the interpreter loads it
itself), and no stx_proto module may hold a forbidden module or anything defined in one. And no
import statement in any file of stx_proto names one of them.

The websockets engine is checked apart: websockets loads ``socket`` at import (its version
module reads package metadata, which loads the email package, which imports socket) though its
sans-IO protocol never uses it. So that module may load what websockets' own sans-IO modules
load, and nothing more.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import stx_proto

FORBIDDEN = ("asyncio", "trio", "anyio", "socket", "ssl", "time")
SRC = Path(stx_proto.__file__).parent


# Modules on an optional dependency, checked apart (see the module docstring).
OPTIONAL = ("stx_proto._ws_websockets",)
WEBSOCKETS_SANS_IO = ("websockets.exceptions", "websockets.frames", "websockets.protocol")


def _all_module_names() -> list[str]:
    names = ["stx_proto"]
    for info in pkgutil.walk_packages([str(SRC)], prefix="stx_proto."):
        names.append(info.name)
    return sorted(names)


def _core_module_names() -> list[str]:
    return [name for name in _all_module_names() if name not in OPTIONAL]


def test_every_module_is_found() -> None:
    names = _all_module_names()
    assert set(OPTIONAL) <= set(names)
    assert "stx_proto._client" in names
    assert "stx_proto.testing" in names
    assert "stx_proto.testing._link" in names
    assert len(names) == len(list(SRC.rglob("*.py")))


# CPython loads ``time`` itself at startup (zipimport), and attrs loads it through threading, so
# sys.modules cannot show whether stx_proto imported it; for ``time`` the probe looks at what the
# stx_proto modules hold instead (and the static check below at every import statement).
_PROBE = """
import importlib, json, sys, types
forbidden = set(FORBIDDEN)
modules = [importlib.import_module(name) for name in NAMES]
loaded = sorted(m for m in sys.modules if m.split(".")[0] in forbidden - {"time"})
held = sorted(
    f"{mod.__name__}.{attr}"
    for mod in modules
    for attr, value in vars(mod).items()
    if (value.__name__ if isinstance(value, types.ModuleType) else
        getattr(value, "__module__", None) or "").split(".")[0] in forbidden
)
print(json.dumps({"loaded": loaded, "held": held}))
"""


def _probe(prelude: str = "", names: list[str] | None = None) -> dict[str, list[str]]:
    names = _core_module_names() if names is None else names
    script = f"FORBIDDEN = {FORBIDDEN!r}\nNAMES = {names!r}\n{prelude}\n{_PROBE}"
    # -I: a fresh, isolated interpreter (no user site, no PYTHON* variables); and no coverage
    # measurement in it (coverage's own imports would be what the probe sees).
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, env=env
    )
    found: dict[str, list[str]] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_importing_every_stx_proto_module_loads_no_io_module() -> None:
    assert _probe() == {"loaded": [], "held": []}


def test_the_websockets_engine_loads_no_io_module_beyond_what_websockets_loads() -> None:
    websockets_alone = _probe(names=list(WEBSOCKETS_SANS_IO))
    engine = _probe(names=[*WEBSOCKETS_SANS_IO, *OPTIONAL])
    assert engine["loaded"] == websockets_alone["loaded"]
    assert set(engine["loaded"]) <= {"socket"}
    # What the engine module holds is checked alone: websockets' modules hold what they like.
    assert [name for name in engine["held"] if name.startswith("stx_proto.")] == []


def test_the_probe_is_not_blind() -> None:
    # The same probe, with an I/O import planted in one stx_proto module first.
    planted = _probe(
        "import asyncio, time, stx_proto._timers as t\n"
        "t.sleep = asyncio.sleep\nt.clock = time\nt.now = time.monotonic"
    )
    assert planted["loaded"] and "asyncio" in planted["loaded"]
    assert planted["held"] == [
        "stx_proto._timers.clock",
        "stx_proto._timers.now",
        "stx_proto._timers.sleep",
    ]


def _imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Name, ast.Attribute))
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            roots.add(node.args[0].value.split(".")[0])
    return roots


def test_no_source_file_imports_an_io_module() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) >= 15
    offenders = {}
    for path in files:
        roots = _imported_roots(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        bad = sorted(roots & set(FORBIDDEN))
        if bad:
            offenders[str(path.relative_to(SRC))] = bad
    assert offenders == {}


def test_the_static_check_finds_each_kind_of_import() -> None:
    source = """
import time
import os.path, ssl as tls
from socket import socket
from asyncio.events import get_event_loop
from . import trio
from .anyio import x
importlib.import_module("anyio")
__import__("trio.lowlevel")
"""
    roots = _imported_roots(ast.parse(source))
    assert roots & set(FORBIDDEN) == {"time", "ssl", "socket", "asyncio", "anyio", "trio"}
    assert "os" in roots


# --------------------------------------------------------------------------------------------
# The sans-IO core does no I/O of any kind: outside the driver kit and testing/, no module has
# async code, logs, reads the environment or reads a clock.

_CLOCK_CALLS = {"now", "utcnow", "today", "monotonic", "perf_counter", "time", "time_ns"}


def _impurities(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.AsyncFor, ast.AsyncWith)):
            found.append(f"{line}: {type(node).__name__}")
        elif isinstance(node, ast.Import) and any(
            a.name.split(".")[0] in ("logging", "os", "datetime") for a in node.names
        ):
            found.append(f"{line}: import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in (
            "logging",
            "os",
            "datetime",
        ):
            found.append(f"{line}: from {node.module} import")
        elif isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "getLogger"):
            found.append(f"{line}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _CLOCK_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("datetime", "date", "time")
        ):
            found.append(f"{line}: {node.func.value.id}.{node.func.attr}()")
    return found


def _core_files() -> list[Path]:
    return sorted(
        p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in ("driver", "testing")
    )


def test_the_core_has_no_async_logging_environment_or_clock() -> None:
    files = _core_files()
    assert len(files) >= 15 and all("driver" not in p.parts for p in files)
    offenders = {
        str(p.relative_to(SRC)): bad
        for p in files
        if (bad := _impurities(ast.parse(p.read_text(encoding="utf-8"))))
    }
    assert offenders == {}


def test_the_impurity_check_finds_each_kind() -> None:
    source = """
import logging
import os.path
from datetime import datetime
async def f():
    await g()
    async for x in y: pass
    async with z: pass
v = os.environ["X"]
w = os.getenv("Y")
log = logging.getLogger("x")
t = time.monotonic()
d = datetime.now()
"""
    kinds = " ".join(_impurities(ast.parse(source)))
    for needle in (
        "import logging",
        "import os.path",
        "from datetime import",
        "AsyncFunctionDef",
        "Await",
        "AsyncFor",
        "AsyncWith",
        ".environ",
        ".getenv",
        ".getLogger",
        "time.monotonic()",
        "datetime.now()",
    ):
        assert needle in kinds, needle
