"""Serve MathJax from the built book, so that its maths renders offline too.

Sphinx points pages at MathJax on a CDN; a book opened from disk without a network then shows
raw TeX. This extension copies MathJax 3 (the npm registry package ``mathjax``, fetched by
``scripts/fetch_mathjax.sh`` into ``.mathjax/``) into ``_static/mathjax`` of the HTML build
and points ``mathjax_path`` at it. Without the local copy the build warns (an error under
``-W``) and the pages keep the CDN.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
LOCAL = Path(__file__).resolve().parents[2] / ".mathjax" / "package" / "es5"


def _config_inited(app, config) -> None:
    if not (LOCAL / "tex-chtml.js").is_file():
        logger.warning(
            "MathJax is not available locally (%s): the book's maths will need a network. Run "
            "scripts/fetch_mathjax.sh first.",
            LOCAL,
        )
        return
    config.mathjax_path = "mathjax/tex-chtml.js"


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html" or not LOCAL.is_dir():
        return
    shutil.copytree(LOCAL, Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
