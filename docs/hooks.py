"""MkDocs hooks (``hooks:`` in mkdocs.yml): serve the repository files that the pages link to.

The pages link to the plots in ``benchmarks/results/`` and to ``CONTRIBUTING.md`` as ``../benchmarks/results/...``
and ``../CONTRIBUTING.md``, so the links also work when the Markdown is read on its own (on GitHub, in an
editor).  MkDocs only knows the files under ``docs/``: these hooks add those repository files to the site and
point the links at them, so that ``mkdocs build --strict`` checks them like any other link.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
SERVED = ("benchmarks/results/*.png", "benchmarks/results/*/*.png", "CONTRIBUTING.md")
LINK = re.compile(r"\]\(\.\./((?:benchmarks/results/|CONTRIBUTING\.md)[^)]*)\)")


def on_files(files: Files, config) -> Files:
    for pattern in SERVED:
        for path in sorted(REPO.glob(pattern)):
            files.append(File(path.relative_to(REPO).as_posix(), str(REPO), config["site_dir"],
                              config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    if page.file.src_uri.count("/"):  # the pages that link to repository files are all top-level
        return markdown
    return LINK.sub(r"](\1)", markdown)
