#!/usr/bin/env python
"""One setting for the repository's address: ``repository.url`` in ``_config.yml``.

The launch buttons of the book read it there. Everything else that names the repository — the
chapters' Colab install cells, the package metadata (``pyproject.toml``), the citation file,
the licence notice, the book's pages and the footer — is rewritten from it by this script::

    python scripts/sync_repository_url.py            # rewrite every place from _config.yml
    python scripts/sync_repository_url.py --check    # exit 1 and list places that differ

A fork changes ``repository.url`` and runs the script once. The book's address (GitHub Pages,
``https://<owner>.github.io/<repo>``) follows from the same setting.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
FILES = [
    "pyproject.toml",
    "CITATION.cff",
    "LICENSE-BOOK",
    "CONTRIBUTING.md",
    "README.md",
    "_config.yml",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "book").glob("*.md")),
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "book").glob("*.ipynb")),
]
GITHUB = re.compile(r"https://github\.com/[\w.-]+/hfc-edu(?![\w-])")
PAGES = re.compile(r"https://[\w.-]+\.github\.io/hfc-edu(?![\w-])")
COLAB = re.compile(r"colab\.research\.google\.com/github/[\w.-]+/hfc-edu(?![\w-])")


def setting() -> tuple[str, str]:
    """``(repository URL, book URL)`` from ``_config.yml``."""
    url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    if m is None:
        raise SystemExit(
            f"repository.url in _config.yml must be https://github.com/OWNER/REPO, got {url}"
        )
    owner, name = m.groups()
    if name != "hfc-edu":
        raise SystemExit("This script expects the repository to keep the name hfc-edu.")
    return url, f"https://{owner}.github.io/{name}"


def rewrite(text: str, url: str, pages: str) -> str:
    colab = "colab.research.google.com/github/" + url.removeprefix("https://github.com/")
    return COLAB.sub(colab, PAGES.sub(pages, GITHUB.sub(url, text)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="only report places that differ")
    args = p.parse_args(argv)
    url, pages = setting()
    stale = []
    for rel in FILES:
        path = REPO / rel
        if not path.is_file():
            continue
        text = path.read_text()
        new = rewrite(text, url, pages)
        if new != text:
            stale.append(rel)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print(
            f"These files name another repository than {url}: {', '.join(stale)}. Run "
            "python scripts/sync_repository_url.py."
        )
        return 1
    print(
        f"repository {url}; book {pages}; "
        + (f"rewrote {len(stale)} file(s)" if stale and not args.check else "all places agree")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
