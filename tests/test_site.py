"""The documentation site builds with warnings as errors, its reference names every public
name, and its state diagrams are drawn from the core's transition tables.

The build runs once per test session (about five seconds), as ``mkdocs build --strict`` in a
process of its own, into a temporary directory: a broken link, a page missing from the nav, or
a reference entry that no longer resolves fails the suite.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from stx_proto._channel import TRANSITIONS
from stx_proto._socket_state import SOCKET_TRANSITIONS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [
    "stx_proto",
    "stx_proto.driver",
    "stx_proto.testing",
    "stx_anyio",
    "stx_anyio.testing",
    "stx_trio",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out


def hook(name: str) -> ModuleType:
    """A module of docs/_hooks (they are not a package: MkDocs loads them by path)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "_hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("package", PACKAGES)
def test_the_reference_names_every_public_name(site: Path, package: str) -> None:
    page = (site / "reference" / package / "index.html").read_text("utf-8")
    anchors = set(re.findall(r'id="([\w.]+)"', page))
    public = importlib.import_module(package).__all__
    missing = [name for name in public if f"{package}.{name}" not in anchors]
    assert not missing, f"{package}: not in the reference: {missing}"


def test_every_page_of_the_nav_was_built(site: Path) -> None:
    config = (ROOT / "mkdocs.yml").read_text("utf-8")
    pages = re.findall(r"^\s+- (?:[^:\n]+: )?([\w./-]+\.md)$", config, re.M)
    assert len(pages) >= 25
    for page in pages:
        built = site / page.removesuffix(".md").removesuffix("index") / "index.html"
        assert built.exists(), page


@pytest.mark.parametrize(
    ("name", "table"), [("socket", SOCKET_TRANSITIONS), ("channel", TRANSITIONS)]
)
def test_the_state_diagrams_are_drawn_from_the_tables(
    site: Path, name: str, table: dict[tuple[object, object], object]
) -> None:
    diagrams = hook("diagrams")
    svg = diagrams.render(table, name)
    arrows = diagrams.edges(table)
    assert svg.count('class="edge"') == len(arrows)  # one arrow per (state, next state)
    for (state, event), target in table.items():
        assert f">{state.value}<" in svg  # type: ignore[attr-defined]  # enum members
        assert f">{target.value}<" in svg  # type: ignore[attr-defined]  # enum members
        (label,) = [lab for (s, t), lab in arrows.items() if (s, t) == (state, target)]
        assert event.value in label  # type: ignore[attr-defined]  # enum members
    page = (site / "core" / "index.html").read_text("utf-8")
    assert diagrams.render(table, diagrams.DIAGRAMS[name][1]) in page


def test_a_missing_benchmarks_page_becomes_a_page_that_says_how_to_make_it(site: Path) -> None:
    page = (site / "benchmarks" / "index.html").read_text("utf-8")
    if (ROOT / "docs" / "benchmarks.md").exists():
        assert "no benchmark figures" not in page
    else:
        text = re.sub(r"<[^>]+>", "", page.split("<article", 1)[1].split("</article>", 1)[0])
        assert "no benchmark figures" in text
        assert "make bench" in text
        assert not re.search(r"\d", text)  # not one figure
