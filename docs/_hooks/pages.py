"""Pages that other parts of the project produce, and that the site must build without.

A MkDocs hook (``hooks:`` in mkdocs.yml). ``docs/benchmarks.md`` is written by ``make bench``
(the figures of this machine): when it is missing, the site gets a page in its place that says
how to produce it, and no figure at all. And the reference pages lose the Sphinx role names
that their docstrings carry.
"""

from __future__ import annotations

import re
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

BENCHMARKS = "benchmarks.md"

PLACEHOLDER = """# Benchmarks

This build of the site has no benchmark figures: `docs/benchmarks.md` is written by the
benchmarks themselves, on the machine that runs them, and it was not there when the site was
built. To produce it, run

```sh
make bench
```

in a clone of the repository, then build the site again (`make docs`). The figures depend on
the machine: compare the lines of one run with each other, not with another machine's.
"""


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """MkDocs hook: add the placeholder benchmarks page when docs/benchmarks.md is missing."""
    if files.get_file_from_path(BENCHMARKS) is None:
        files.append(File.generated(config, BENCHMARKS, content=PLACEHOLDER))
    return files


# The docstrings are written for Sphinx: ":class:`Socket`", and "::" before a code block.
# mkdocstrings renders them as Markdown, so the role's name would show in front of its code.
_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj|const):(?=<code>)")


def on_page_content(html: str, page: Page, **kwargs: Any) -> str:
    """MkDocs hook: on the reference pages, drop the Sphinx role names before inline code,
    and the second colon of a "::" that introduced a code block."""
    if not page.file.src_uri.startswith("reference/"):
        return html
    return _ROLE.sub("", html).replace("::</p>", ":</p>").replace("<p>:</p>", "")
