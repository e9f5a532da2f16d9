#!/usr/bin/env python
"""Run chapters the way Colab would: a fresh environment, the install cell, no data root.

For each chapter this script

1. makes a fresh virtual environment holding only what Colab preinstalls that the book uses
   (torch, NumPy, scikit-learn, matplotlib, seaborn, pandas; no MONAI, no hfc-edu);
2. runs the chapter's own install cell command (the ``%pip install`` line of its first code
   cell), with the repository URL replaced by this checkout, and checks that torch was **not**
   reinstalled;
3. executes the chapter with that environment's kernel, from an empty working directory, with a
   fresh ``HOME`` (so a fresh user cache) and **no** ``HFC_EDU_*`` variable set.

This machine has no internet, so step 3 cannot download MedMNIST from Zenodo as Colab does:
the files the downloader would fetch are copied beforehand to where it puts them
(``<user cache>/hfc_edu/data``), from ``--data`` (default: ``../shared/data``). Everything else
(finding files, shipped classifiers, caches) runs as in Colab. The notebooks are executed, not
saved. Usage::

    python scripts/colab_check.py book/01_medical_classifiers.ipynb
    python scripts/colab_check.py            # every chapter
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COLAB_PREINSTALLED = [
    "torch==2.13.0",
    "numpy",
    "scikit-learn",
    "matplotlib",
    "seaborn",
    "pandas",
    "ipykernel",
    "ipywidgets",  # chapter 10's ε slider (Colab ships it)
    "nbclient",
    "nbformat",
]
INSTALL = re.compile(r"%pip install (?P<args>.*)")


def install_command(nb_path: Path) -> str:
    """The arguments of the ``%pip install`` line in the chapter's first code cell."""
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        m = INSTALL.search("".join(cell["source"]))
        if m is None:
            raise SystemExit(f"{nb_path.name}: the first code cell has no %pip install line.")
        return m.group("args").strip()
    raise SystemExit(f"{nb_path.name}: no code cell.")


def local_spec(args: str) -> str:
    """Replace ``hfc-edu @ git+<url>@<ref>`` by this checkout (quotes kept as in the cell)."""
    new, n = re.subn(
        r"hfc-edu(\[[^\]]*\])? @ git\+[^\"' ]+",
        lambda m: f"hfc-edu{m.group(1) or ''} @ file://{REPO}",
        args,
    )
    if n != 1:
        raise SystemExit(f"Cannot find 'hfc-edu @ git+URL' in the install command: {args}")
    return new


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def torch_stamp(py: Path) -> str:
    return run(
        [
            str(py),
            "-c",
            "import torch, os; print(torch.__version__, os.path.getmtime(torch.__file__))",
        ]
    ).strip()


def copy_data(src: Path, home: Path) -> Path:
    """Put the data files where the downloader would (``platformdirs`` user cache of HOME)."""
    dst = home / ".cache" / "hfc_edu" / "data"
    for sub in ("medmnist", "natural", "isic2017"):
        if (src / sub).is_dir():
            shutil.copytree(src / sub, dst / sub, dirs_exist_ok=True)
    return dst


def execute(
    nb_path: Path, py: Path, env: dict, cwd: Path, timeout: int
) -> tuple[float, str | None]:
    code = (
        "import sys, nbformat\n"
        "from nbclient import NotebookClient\n"
        "nb = nbformat.read(sys.argv[1], as_version=4)\n"
        "NotebookClient(nb, timeout=int(sys.argv[2]), kernel_name='python3', allow_errors=False,"
        " resources={'metadata': {'path': sys.argv[3]}}).execute()\n"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [str(py), "-c", code, str(nb_path), str(timeout), str(cwd)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    err = None if out.returncode == 0 else (out.stderr[-4000:] or out.stdout[-4000:])
    return time.perf_counter() - start, err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="chapters (default: book/*.ipynb)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--timeout", type=int, default=900)
    p.add_argument("--keep", action="store_true", help="keep the temporary environment")
    args = p.parse_args(argv)
    notebooks = [Path(x).resolve() for x in args.paths] or sorted((REPO / "book").glob("*.ipynb"))
    root = Path(tempfile.mkdtemp(prefix="colab_check_"))
    venv, home, content = root / "venv", root / "home", root / "content"
    home.mkdir()
    content.mkdir()
    print(f"environment in {root}", flush=True)
    run([sys.executable, "-m", "venv", str(venv)])
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *COLAB_PREINSTALLED])
    before = torch_stamp(py)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFC_EDU_")}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    env.pop("PYTHONPATH", None)
    installed = set()
    failures = 0
    for nb in notebooks:
        spec = local_spec(install_command(nb))
        if spec not in installed:
            t0 = time.perf_counter()
            run(
                ["/bin/sh", "-c", f"{py} -m pip install -q --disable-pip-version-check {spec}"],
                env=env,
            )
            installed.add(spec)
            print(f"install: {spec} ({time.perf_counter() - t0:.0f} s)", flush=True)
            after = torch_stamp(py)
            if after != before:
                print(
                    f"FAILED: the install cell reinstalled torch ({before} -> {after})", flush=True
                )
                failures += 1
            copy_data(args.data, home)
        seconds, err = execute(nb, py, env, content, args.timeout)
        print(f"{seconds:7.1f} s  {'ok' if err is None else 'FAILED'}  {nb.name}", flush=True)
        if err:
            failures += 1
            print(err, file=sys.stderr, flush=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
