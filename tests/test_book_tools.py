"""Tests of the book tooling: scripts/make_student_edition.py and scripts/execute_notebooks.py."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parent.parent


# The scripts are not a package: import them by name (worker processes of --jobs re-import
# execute_notebooks the same way).
sys.path.insert(0, str(REPO / "scripts"))
mse = importlib.import_module("make_student_edition")
exe = importlib.import_module("execute_notebooks")

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _executed_code(source: str, text: str = "out\n", count: int = 1):
    cell = new_code_cell(source, execution_count=count)
    cell.outputs = [new_output("stream", name="stdout", text=text)]
    return cell


def _chapter() -> nbformat.NotebookNode:
    """A chapter with a gated solution, a scaffolded exercise cell and a markdown solution."""
    cells = [
        new_markdown_cell("# Title"),
        _executed_code("x = 1\nprint(x)", "1\n", 1),
        new_markdown_cell("```{exercise-start}\n:label: ex-a\n```"),
        _executed_code(
            "def f(v):\n    ### BEGIN SOLUTION\n    w = v + 1\n    return w\n    ### END SOLUTION\n"
            "assert f(1) == 2",
            "",
            2,
        ),
        new_markdown_cell("```{exercise-end}\n```"),
        new_markdown_cell("```{solution-start} ex-a\n:class: dropdown\n```"),
        _executed_code("print('secret answer')", "secret answer\n", 3),
        new_markdown_cell("The answer is 2."),
        new_markdown_cell("```{solution-end}\n```"),
        new_markdown_cell("```{exercise}\n:label: ex-b\nWhy?\n```"),
        new_markdown_cell(
            "````{solution} ex-b\n:class: dropdown\nBecause.\n```python\nx\n```\n````"
        ),
        new_markdown_cell("Text before.\n\n:::{solution} ex-b\nHidden.\n:::\n\nText after."),
        new_markdown_cell("## Summary"),
    ]
    cells[1].metadata["tags"] = ["remove-cell"]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


# --- make_student_edition -------------------------------------------------------------------


def test_student_edition_removes_solutions_and_outputs():
    nb = mse.student_notebook(_chapter(), "ch.ipynb")
    sources = [c.source for c in nb.cells]
    text = "\n".join(sources)
    assert "secret answer" not in text and "The answer is 2." not in text
    assert "solution-start" not in text and "solution-end" not in text
    assert "Because." not in text and "Hidden." not in text
    assert "Text before." in text and "Text after." in text
    assert "{exercise-start}" in text and "{exercise-end}" in text  # exercises stay
    assert sources[0] == "# Title" and sources[-1] == "## Summary"
    assert len(nb.cells) == 8  # 13 - 4 gated - 1 markdown-only solution
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert nb.cells[1].metadata["tags"] == ["remove-cell"]  # metadata kept


def test_student_edition_stubs_code_at_same_indentation():
    nb = mse.student_notebook(_chapter())
    assert nb.cells[3].source == (
        "def f(v):\n    # YOUR CODE HERE\n    raise NotImplementedError\nassert f(1) == 2"
    )


def test_student_edition_does_not_modify_its_input():
    nb = _chapter()
    before = nbformat.writes(nb)
    mse.student_notebook(nb)
    assert nbformat.writes(nb) == before


@pytest.mark.parametrize(
    ("cells", "match"),
    [
        ([new_markdown_cell("```{solution-start} a\n```")], "never closed"),
        ([new_markdown_cell("```{solution-end}\n```")], "without a preceding"),
        (
            [new_markdown_cell("```{solution-start} a\n```") for _ in range(2)]
            + [new_markdown_cell("```{solution-end}\n```")],
            "inside the solution",
        ),
        ([new_code_cell("### BEGIN SOLUTION\nx = 1")], "never closed"),
        ([new_code_cell("x = 1\n### END SOLUTION")], "without a preceding"),
        (
            [new_code_cell("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION")],
            "inside another",
        ),
    ],
)
def test_student_edition_rejects_unbalanced_markers(cells, match):
    with pytest.raises(mse.MarkerError, match=match):
        mse.student_notebook(new_notebook(cells=cells), "bad.ipynb")


def test_student_edition_main_writes_and_checks(tmp_path, capsys):
    src = tmp_path / "book" / "01_ch.ipynb"
    src.parent.mkdir()
    nbformat.write(_chapter(), src)
    out = tmp_path / "student"
    assert mse.main([str(src), "--out", str(out), "--check"]) == 0  # folder absent: markers only
    assert mse.main([str(src), "--out", str(out)]) == 0
    written = nbformat.read(out / "01_ch.ipynb", as_version=4)
    nbformat.validate(written)
    assert "secret answer" not in nbformat.writes(written)
    assert mse.main([str(src), "--out", str(out), "--check"]) == 0
    # Edit the source: the edition is now stale and --check must say so.
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(new_markdown_cell("New text."))
    nbformat.write(nb, src)
    assert mse.main([str(src), "--out", str(out), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_student_edition_main_reports_bad_markers(tmp_path, capsys):
    src = tmp_path / "bad.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("```{solution-start} a\n```")]), src)
    assert mse.main([str(src), "--out", str(tmp_path / "o"), "--check"]) == 1
    assert "bad.ipynb, cell 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- execute_notebooks ----------------------------------------------------------------------


def test_renumber_counts_non_empty_code_cells_from_one():
    nb = new_notebook(
        cells=[
            new_code_cell("a = 1", execution_count=7),
            new_markdown_cell("text"),
            new_code_cell("   \n", execution_count=8),
            new_code_cell(
                "a",
                execution_count=9,
                outputs=[new_output("execute_result", {"text/plain": "1"}, execution_count=9)],
            ),
        ]
    )
    exe.renumber(nb)
    assert [c.get("execution_count") for c in nb.cells] == [1, None, None, 2]
    assert nb.cells[3].outputs[0]["execution_count"] == 2


def test_kernel_env_sets_book_profile_on_cpu():
    env = exe.kernel_env({"PATH": "/bin", "HFC_EDU_PROFILE": "paper", "CUDA_VISIBLE_DEVICES": "0"})
    assert env["PATH"] == "/bin"
    assert env["HFC_EDU_PROFILE"] == "book" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["TQDM_DISABLE"] == "1"


def test_execute_notebook_in_place(tmp_path):
    path = tmp_path / "tiny.ipynb"
    metadata = {"kernelspec": KERNELSPEC, "custom": {"keep": True}}
    code = 'import os\nprint(os.environ["HFC_EDU_PROFILE"], os.environ["OMP_NUM_THREADS"], os.getcwd())'
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Tiny"),
            new_code_cell(code, metadata={"tags": ["t"]}),
            new_code_cell("1 + 1"),
        ],
        metadata=metadata,
    )
    nbformat.write(nb, path)
    res = exe.execute_notebook(path, timeout=60)
    assert res.error is None and res.seconds > 0
    out = nbformat.read(path, as_version=4)
    from hfc_edu.machine import machine_fingerprint

    recorded = out.metadata.pop("hfc_edu")
    assert recorded == {"machine": machine_fingerprint()}  # the numerics fingerprint is recorded
    assert out.metadata == metadata  # the rest of the notebook metadata kept as it was
    assert out.cells[1].metadata == {"tags": ["t"]}  # no timing metadata added
    assert out.cells[1].outputs[0]["text"] == f"book 1 {tmp_path}\n"
    assert [out.cells[1].execution_count, out.cells[2].execution_count] == [1, 2]
    assert out.cells[2].outputs[0]["data"]["text/plain"] == "2"


def test_execute_notebook_failure_leaves_file_untouched(tmp_path, capsys):
    path = tmp_path / "bad.ipynb"
    nbformat.write(
        new_notebook(
            cells=[new_code_cell("raise ValueError('boom')")], metadata={"kernelspec": KERNELSPEC}
        ),
        path,
    )
    before = path.read_text()
    assert exe.main([str(path), "--timeout", "60"]) == 1
    assert path.read_text() == before
    captured = capsys.readouterr()
    assert "boom" in captured.err and "FAILED" in captured.out


def test_execute_notebooks_rejects_bad_paths(tmp_path):
    with pytest.raises(SystemExit, match="neither"):
        exe.main([str(tmp_path / "missing.ipynb")])
    with pytest.raises(SystemExit, match="no notebooks"):
        exe.main([str(tmp_path)])


def test_execute_notebooks_parallel_jobs(tmp_path, capsys):
    for i in range(2):
        nb = new_notebook(cells=[new_code_cell(f"print({i})")], metadata={"kernelspec": KERNELSPEC})
        nbformat.write(nb, tmp_path / f"nb{i}.ipynb")
    assert exe.main([str(tmp_path), "--jobs", "2", "--timeout", "60"]) == 0
    for i in range(2):
        out = nbformat.read(tmp_path / f"nb{i}.ipynb", as_version=4)
        assert out.cells[0].outputs[0]["text"] == f"{i}\n"
    assert "2/2 notebooks executed" in capsys.readouterr().out


def test_repository_url_is_one_setting():
    """Install cells, package metadata, citation and pages name the repository of _config.yml."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "sync_repository_url.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


#: Characters a code line may have: the book's code column shows about 75 without scrolling.
MAX_CODE_COLUMNS = 75


def test_notebook_code_fits_the_page_column():
    import json

    long = []
    for path in sorted((REPO / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] != "code" or "remove-cell" in cell["metadata"].get("tags", []):
                continue
            for line in "".join(cell["source"]).splitlines():
                if len(line) > MAX_CODE_COLUMNS:
                    long.append(f"{path.name} cell {i}: {len(line)} chars: {line[:40]}...")
    assert not long, "code lines wider than the page column:\n" + "\n".join(long[:20])


def test_every_stored_figure_has_alt_text():
    import json

    missing = []
    for path in sorted((REPO / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            figures = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
            alt = cell["metadata"].get("mystnb", {}).get("image", {}).get("alt", "").strip()
            if figures and not alt:
                missing.append(f"{path.name} cell {i}: {''.join(cell['source'])[:40]}...")
    assert not missing, (
        "figures without alt text (CONTRIBUTING, 'Outputs that stay stable'):\n"
        + "\n".join(missing)
    )
