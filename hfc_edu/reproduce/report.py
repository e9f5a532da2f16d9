"""The report of a results folder (Markdown and HTML from the same blocks), and two runs side by
side (``hfc-edu compare``)."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from hfc_edu.reproduce.claims import judge_all
from hfc_edu.reproduce.folder import ResultsFolder, write_json, write_text
from hfc_edu.reproduce.stages import STAGES, STAND_IN

#: Tables each stage's section shows whole (stage -> table names; default: all of them).
_SHOWN = {"attacks": [], "detection": [], "hiding": ["lambda_choice"]}
#: Wide views: stage -> (table, index, columns, values, caption).
_PIVOTS = {
    "attacks": (
        "success_vs_eps", ["attack"], "eps_256", "success_rate",
        "Success rate (columns: ε in 1/256) on correctly classified test images.",
    ),
    "detection": (
        "detection", ["attack", "eps_256"], "detector", "auc",
        "AUC per detector (detection.csv also holds 95% CIs and TPR at 90% TNR).",
    ),
    "hiding": (
        "bypass", ["attack"], "detector", "auc",
        "AUC of the detectors fitted on PGD and kept fixed (bypass.csv also holds CIs, TPRs "
        "and class-matched AUCs; adaptive.csv the adaptive baselines).",
    ),
}  # fmt: skip


# ------------------------------------------------------------------------- blocks -> text
def _md_table(df: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "" if pd.isna(v) else f"{v:.3f}"
        return str(v).replace("|", "\\|")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, na_rep="")


def _render(blocks: list[tuple[str, object]], fmt: str) -> str:
    out = []
    for kind, body in blocks:
        if fmt == "md":
            if kind == "h1":
                out.append(f"# {body}")
            elif kind == "h2":
                out.append(f"## {body}")
            elif kind == "p":
                out.append(str(body))
            elif kind == "table":
                out.append(_md_table(body))
            elif kind == "figure":
                out.append(f"![{Path(body).stem}]({body})")
        else:
            if kind in ("h1", "h2"):
                out.append(f"<{kind}>{html.escape(str(body))}</{kind}>")
            elif kind == "p":
                out.append(f"<p>{html.escape(str(body))}</p>")
            elif kind == "table":
                out.append(f'<div class="wide">{_html_table(body)}</div>')
            elif kind == "figure":
                out.append(f'<img src="{html.escape(str(body))}" alt="{Path(body).stem}">')
    if fmt == "md":
        return "\n\n".join(out) + "\n"
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.45}table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}"
        "th,td{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:left}"
        "img{max-width:100%}.wide{overflow-x:auto}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>hfc-edu reproduce</title><style>{style}</style></head><body>\n"
        + "\n".join(out)
        + "\n</body></html>\n"
    )


# -------------------------------------------------------------------------------- report
def collect(folder: ResultsFolder) -> tuple[dict, dict, list[dict]]:
    """``(run, values, claims)`` of a results folder (its format is checked)."""
    run = folder.read_run()
    values = {name: folder.values(name) for name in STAGES}
    return run, values, judge_all(values)


def render_report(root: Path | str) -> tuple[Path, Path]:
    """Write ``results.json``, ``report.md`` and ``report.html`` of the results folder ``root``
    from its tables and values; returns the two report paths."""
    folder = ResultsFolder(root)
    run, values, claims = collect(folder)
    write_json(folder.root / "results.json", {"run": run, "values": values, "claims": claims})
    cfg = run["config"]
    blocks: list[tuple[str, object]] = [
        (
            "h1",
            f"hfc-edu reproduce: {cfg['task']} {cfg['size']} px ({cfg['profile']['name']} profile)",
        ),
        (
            "p",
            f"Seed {cfg['seed']}, device {cfg['device']}; "
            + ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items())
            + ". Verdicts compare the measured numbers with the papers' claims; a claim tagged "
            "[RECALL] is recalled, not verified against the paper's text, and is never judged.",
        ),
        *_version_note(run),
        ("h2", "The papers' claims"),
        (
            "table",
            pd.DataFrame(claims)[["paper", "tag", "statement", "measured", "verdict", "reason"]],
        ),
    ]
    for line in claims:
        blocks.append(("p", f"Verdict {line['key']}: {line['verdict']}."))
    timing = pd.DataFrame(
        [
            {"stage": name, "seconds": rec.get("seconds"), "ran": rec.get("ran")}
            for name, rec in run.get("stages", {}).items()
        ]
    )
    if len(timing):
        blocks += [("h2", "Time per stage"), ("table", timing)]
    for name, stage in STAGES.items():
        rec = folder.stage_record(name)
        if rec is None:
            continue
        blocks.append(("h2", stage.title))
        if name in _PIVOTS:
            table, index, columns, metric, caption = _PIVOTS[name]
            df = folder.table(name, table)
            wide = df.pivot_table(index=index, columns=columns, values=metric, sort=False)
            wide = wide[list(pd.unique(df[columns]))]
            if columns == "detector":
                wide["success"] = df.groupby(index, sort=False).success_rate.first()
                wide.loc[wide.index == STAND_IN, "success"] = float("nan")  # not an attack
            wide.columns = [f"{c:g}" if isinstance(c, float) else str(c) for c in wide.columns]
            blocks += [("p", caption), ("table", wide.reset_index())]
        for t in _SHOWN.get(name, rec.get("tables", [])):
            blocks.append(("table", folder.table(name, t)))
        for fig in sorted((folder.root / "figures").glob(f"{name}*.png")):
            blocks.append(("figure", f"figures/{fig.name}"))
    md, htm = folder.root / "report.md", folder.root / "report.html"
    write_text(md, _render(blocks, "md"))
    write_text(htm, _render(blocks, "html"))
    return md, htm


def compare_runs(first: Path | str, second: Path | str) -> str:
    """Markdown: the claims' verdicts and every headline value of two results folders side by
    side (two machines, two profiles, a new detector)."""
    a, b = ResultsFolder(first), ResultsFolder(second)
    (run_a, val_a, cl_a), (run_b, val_b, cl_b) = collect(a), collect(b)
    la, lb = f"A: {first}", f"B: {second}"
    claims = pd.DataFrame(
        {
            "claim": [c["key"] for c in cl_a],
            la: [c["verdict"] for c in cl_a],
            lb: [c["verdict"] for c in cl_b],
        }
    )
    rows = []
    for stage in STAGES:
        keys = list(dict.fromkeys([*val_a.get(stage, {}), *val_b.get(stage, {})]))
        for k in keys:
            va, vb = val_a.get(stage, {}).get(k), val_b.get(stage, {}).get(k)
            diff = vb - va if _num(va) and _num(vb) else None
            rows.append({"stage": stage, "value": k, la: va, lb: vb, "B - A": diff})
    values = pd.DataFrame(rows)
    blocks: list[tuple[str, object]] = [
        ("h1", "hfc-edu compare"),
        ("p", f"A: {_label(run_a)}. B: {_label(run_b)}."),
        ("h2", "Verdicts"),
        ("table", claims),
        ("h2", "Headline values"),
        ("table", values),
    ]
    return _render(blocks, "md")


def _version_note(run: dict) -> list[tuple[str, object]]:
    """A paragraph when the results were computed by another hfc-edu version than this one."""
    from hfc_edu import __version__

    old = run.get("versions", {}).get("hfc_edu")
    if old in (None, __version__):
        return []
    return [
        (
            "p",
            f"Note: these results were computed by hfc-edu {old}; this report was rendered by "
            f"hfc-edu {__version__}. Run `hfc-edu reproduce` again to recompute them (every "
            "stage's cache key holds the version, so all stages rerun).",
        )
    ]


def _num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _label(run: dict) -> str:
    c = run["config"]
    v = run.get("versions", {})
    return (
        f"{c['task']} {c['size']} px, {c['profile']['name']} profile, {c['device']}, seed "
        f"{c['seed']}, hfc_edu {v.get('hfc_edu', '?')}, torch {v.get('torch', '?')}"
    )


__all__ = ["collect", "compare_runs", "render_report"]
