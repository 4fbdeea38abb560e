"""The house rules, checked on the source: layers, imports, private names.

* No module imports in a circle (module-level imports of the three packages; imports under
  ``if TYPE_CHECKING:`` do not run and are left out).
* The drivers, the command, the benchmarks and ``tests/drivers`` import only public modules of
  the other packages (``stx_proto._client`` is private; ``stx_proto.driver.session`` is not).
* The driver kit and the drivers reach into no other object's private attributes (ruff's
  SLF001 on exactly those files).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stx_proto", "stx_anyio", "stx_trio")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run: everything but what sits under ``if TYPE_CHECKING:``."""

    def walk(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node
            elif isinstance(node, ast.If):
                test = node.test
                if not (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, (ast.Try, ast.With, ast.FunctionDef, ast.AsyncFunctionDef)):
                for field in ("body", "handlers", "orelse", "finalbody"):
                    for child in getattr(node, field, []):
                        inner = child.body if isinstance(child, ast.ExceptHandler) else [child]
                        yield from walk(inner)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body)

    yield from walk(tree.body)


def _imported_modules(path: Path, *, functions: bool = True) -> set[str]:
    """The modules ``path`` imports (absolute names; ``from pkg import name`` gives ``pkg``
    and, when ``pkg.name`` is a module, that module too)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = _runtime_imports(tree)
    found: set[str] = set()
    for node in nodes:
        if not functions and node.col_offset > 0:
            continue  # an import inside a function runs only when it is called
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        found.add(target)
        for alias in node.names:
            candidate = f"{target}.{alias.name}"
            parts = candidate.split(".")
            if (ROOT.joinpath(*parts).with_suffix(".py")).exists() or (
                ROOT.joinpath(*parts) / "__init__.py"
            ).exists():
                found.add(candidate)
    return found


def test_no_module_imports_in_a_circle() -> None:
    files = _sources(*PACKAGES)
    names = {_module_name(p) for p in files}
    graph = {
        _module_name(p): {m for m in _imported_modules(p, functions=False) if m in names}
        for p in files
    }
    # A package's __init__ runs before its submodules: importing a.b also runs a.
    for name in list(graph):
        parent = name.rpartition(".")[0]
        graph[name].discard(parent) if parent and name in graph.get(parent, set()) else None
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert len(graph) >= 40
    assert cycles == []


def _private_imports(path: Path) -> list[str]:
    own = _module_name(path).split(".")[0]
    bad = []
    for module in _imported_modules(path):
        parts = module.split(".")
        if parts[0] in PACKAGES and parts[0] != own and any(p.startswith("_") for p in parts):
            bad.append(module)
        elif parts[0] not in PACKAGES and own not in PACKAGES and module.startswith("stx_"):
            bad.append(module)  # pragma: no cover - only a failing check gets here
    return bad


def test_drivers_command_benchmarks_and_driver_tests_import_only_public_modules() -> None:
    files = _sources("stx_anyio", "stx_trio", "benchmarks", "tests/drivers")
    assert any(p.name == "_cli.py" for p in files)
    offenders = {str(p.relative_to(ROOT)): _private_imports(p) for p in files}
    assert {path: bad for path, bad in offenders.items() if bad} == {}


def test_the_private_import_check_is_not_blind(tmp_path: Path) -> None:
    probe = ROOT / "stx_anyio" / "_probe_for_test.py"
    probe.write_text("from stx_proto._client import Client\nfrom stx_proto.driver import X\n")
    try:
        assert _private_imports(probe) == ["stx_proto._client"]
    finally:
        probe.unlink()


def test_the_kit_and_the_drivers_touch_no_private_attribute_of_another_object() -> None:
    paths = ["stx_proto/driver", "stx_anyio", "stx_trio"]
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "SLF001", "--no-cache", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    assert "All checks passed" in result.stdout


def test_few_type_ignores_each_with_its_reason() -> None:
    ignores = [
        (str(path.relative_to(ROOT)), line)
        for path in _sources(*PACKAGES)
        for line in path.read_text(encoding="utf-8").splitlines()
        if "# type: ignore" in line
    ]
    assert len(ignores) <= 5, ignores
    # The reason follows on the same line, as a comment of its own.
    assert all(line.split("# type: ignore", 1)[1].count("#") == 1 for _, line in ignores), ignores


def test_the_client_stays_small() -> None:
    # The connection's logic only: what concerns one topic is the channel module's.
    path = ROOT / "stx_proto" / "_client.py"
    source = path.read_text(encoding="utf-8")
    (client,) = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]
    assert client.end_lineno is not None
    assert client.end_lineno - client.lineno + 1 <= 700
    assert len(source.splitlines()) <= 800
