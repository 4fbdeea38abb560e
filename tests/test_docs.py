"""The examples in the docs run, so the docs cannot drift from the code."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from stx_anyio import Socket

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    """Every ```python block of a Markdown file."""
    return _BLOCK.findall(path.read_text(encoding="utf-8"))


# The site's pages (docs/core/, the guides, ...) run in tests/test_site_examples.py.

README_BLOCKS = python_blocks(ROOT / "README.md")


@pytest.mark.parametrize("index", range(len(README_BLOCKS)))
def test_readme_example_runs(index: int) -> None:
    code = compile(README_BLOCKS[index], f"README.md[block {index}]", "exec")
    exec(code, {"__name__": f"readme_{index}"})


def test_the_options_table_of_the_drivers_page_lists_every_socket_option() -> None:
    # "Every option, hook and exception": a Socket option missing from the table fails here.
    params = [
        name
        for name in inspect.signature(Socket.__init__).parameters
        if name not in ("self", "unknown")
    ]
    page = (ROOT / "docs" / "drivers.md").read_text()
    section = page[page.index("## Options") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)
    assert rows == params
