#!/usr/bin/env python
"""Re-execute the book's notebooks in place, on CPU, in the book profile.

The stored outputs of ``book/*.ipynb`` are what the book renders and what nbval compares
against, so they must always come from this script (never from a GPU or Colab run)::

    python scripts/execute_notebooks.py                       # every book/*.ipynb
    python scripts/execute_notebooks.py book/02_attacks.ipynb --jobs 2

Each notebook runs in a fresh ``python3`` kernel of the current interpreter, with its own
directory as the working directory (``book/`` for the book) and this environment::

    HFC_EDU_PROFILE=book OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TQDM_DISABLE=1 CUDA_VISIBLE_DEVICES=""

The notebook's metadata and cell metadata are kept, timing metadata is not recorded, and the
execution counts run 1, 2, 3, ... over the non-empty code cells. The machine's numerics
fingerprint (:func:`hfc_edu.machine.machine_fingerprint`) is recorded in the notebook's metadata
(``hfc_edu.machine``): the tests compare stored outputs byte for byte only on a machine with the
same fingerprint (see the root ``conftest.py``). A notebook whose execution fails is left
untouched and the script exits with status 1.

To execute without saving and collect the claims' values (another seed, other CPU kernels), use
``scripts/measure_claims.py``.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"

#: Environment of every kernel, on top of the caller's environment.
BOOK_ENV: dict[str, str] = {
    "HFC_EDU_PROFILE": "book",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TQDM_DISABLE": "1",
    "CUDA_VISIBLE_DEVICES": "",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # silences a debugger warning on stderr
}

#: Kernel name written in the book's notebooks; it is always served by the current interpreter.
KERNEL_NAME = "python3"


@dataclass
class Result:
    """Outcome of executing one notebook."""

    path: Path
    seconds: float
    error: str | None = None


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ``base`` (default ``os.environ``) updated with :data:`BOOK_ENV`."""
    env = dict(os.environ if base is None else base)
    env.update(BOOK_ENV)
    return env


def renumber(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Set execution counts 1, 2, ... on non-empty code cells (and their execute_result outputs).

    Empty code cells get ``None`` and no outputs. Returns ``nb`` (modified in place).
    """
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if not cell.source.strip():
            cell.execution_count = None
            cell.outputs = []
            continue
        count += 1
        cell.execution_count = count
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
    return nb


def _current_env_kernel_manager():
    """A KernelManager whose ``python3`` kernel is ipykernel running on ``sys.executable``."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class _CurrentEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):  # every name maps to this interpreter
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )

    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=_CurrentEnvSpecs())


def execute_notebook(
    path: str | Path, timeout: int = 600, env: dict[str, str] | None = None, write: bool = True
) -> Result:
    """Execute the notebook at ``path`` and overwrite it with the new outputs.

    ``timeout`` is per cell (seconds). ``env`` is the kernel's environment (default:
    :func:`kernel_env`). On failure, or with ``write=False``, the file is not written;
    ``Result.error`` holds the failure's message.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    metadata = copy.deepcopy(nb.metadata)
    client = NotebookClient(
        nb,
        km=_current_env_kernel_manager(),
        timeout=timeout,
        allow_errors=False,
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        # cleanup_kc: shut the kernel down afterwards (nbclient only does so for its own km).
        client.execute(
            cleanup_kc=True, env=kernel_env() if env is None else env, cwd=str(path.parent)
        )
    except (CellExecutionError, CellTimeoutError) as exc:
        return Result(path, time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # kernel died or did not start: report it, keep the file
        return Result(path, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - start
    if not write:
        return Result(path, seconds)
    from hfc_edu.machine import machine_fingerprint

    metadata.setdefault("hfc_edu", {})["machine"] = machine_fingerprint()
    nb.metadata = metadata  # nbclient rewrites language_info; keep the file's metadata
    renumber(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return Result(path, seconds)


def _expand(paths: list[str]) -> list[Path]:
    """Notebook paths from files and directories; defaults to ``book/*.ipynb``."""
    if not paths:
        paths = [str(BOOK)]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.ipynb")))
        elif p.suffix == ".ipynb" and p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"error: {p} is neither a .ipynb file nor a directory.")
    if not out:
        raise SystemExit("error: no notebooks found.")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="notebooks or folders (default: book/)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="notebooks run in parallel")
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    notebooks = _expand(args.paths)
    start = time.perf_counter()
    if args.jobs == 1:
        results = []
        for nb in notebooks:
            res = execute_notebook(nb, timeout=args.timeout)
            _report(res)
            results.append(res)
    else:
        # "spawn": forking a process that already talked to a kernel (zmq threads) can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(execute_notebook, nb, args.timeout) for nb in notebooks]
            results = []
            for fut in futures:
                res = fut.result()
                _report(res)
                results.append(res)

    failed = [r for r in results if r.error]
    total = time.perf_counter() - start
    print(f"{len(results) - len(failed)}/{len(results)} notebooks executed in {total:.1f} s")
    if failed:
        print("FAILED: " + ", ".join(_rel(r.path) for r in failed), file=sys.stderr)
        return 1
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _report(res: Result) -> None:
    status = "ok" if res.error is None else "FAILED"
    print(f"{res.seconds:7.1f} s  {status:6}  {_rel(res.path)}", flush=True)
    if res.error:
        print(res.error, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
