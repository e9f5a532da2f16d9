"""pytest configuration for nbval runs on the book's notebooks.

A conftest.py under tests/ is not loaded when pytest collects book/, so this file lives here.
Run the notebooks with (see CONTRIBUTING.md):

    pytest book/ --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
        --nbval-cell-timeout=300 -n 2 --dist loadscope
"""

from __future__ import annotations

# Outputs that are never compared: rich HTML reprs (pandas tables repeat the text/plain output and
# carry generated ids), JavaScript, and stderr (library warnings depend on versions).
SKIP_COMPARE = ("text/html", "application/javascript", "stderr")


def pytest_collectstart(collector):
    if getattr(collector, "path", None) is not None and collector.path.suffix == ".ipynb":
        collector.skip_compare += SKIP_COMPARE
