"""The papers' claims, each beside what a results folder measured, with a verdict.

A verdict is ``"holds"``, ``"differs"`` or ``"not comparable"``, always with the reason. Each
claim carries its provenance tag from the book's spec: ``[ABS]`` (an abstract, verbatim) or
``[RECALL]`` (recalled, not verified against the paper's text). A ``[RECALL]`` claim is never
judged as the paper's statement: its verdict is "not comparable" and the measured value is shown.

Adding a claim is one function and one :data:`CLAIMS` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hfc_edu.experiments.bypass import NEAR_CHANCE

HOLDS, DIFFERS, NOT_COMPARABLE = "holds", "differs", "not comparable"
VERDICTS = (HOLDS, DIFFERS, NOT_COMPARABLE)

Values = dict[str, dict]  # {stage: {name: value}}

#: The reason of every [RECALL] claim's verdict.
RECALLED = "recalled, not verified against the paper's text ([RECALL] in the spec)"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    measured: str
    reason: str


@dataclass(frozen=True)
class PaperClaim:
    """One claim: ``judge(values) -> Verdict`` reads the stages' headline values."""

    key: str
    paper: str
    tag: str  # "[ABS]" or "[RECALL]"
    statement: str
    stages: tuple[str, ...]
    judge: Callable[[Values], Verdict]


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


# --------------------------------------------------------------------------------- judges
def _ma_detectable(v: Values) -> Verdict:
    det = v["detection"]
    parts, worst = [], {}
    for e in ("1", "4"):
        best = {a: det.get(f"best Ma AUC {a} {e}/256") for a in ("FGSM", "BIM", "PGD", "CW-Linf")}
        known = {a: b for a, b in best.items() if b is not None}
        parts.append(f"{e}/256: " + ", ".join(f"{a} {_fmt(b)}" for a, b in best.items()))
        worst[e] = min(known.values()) if known else None
    measured = "best of KD, LID, DFeat, QFeat per attack; " + "; ".join(parts)
    if worst["1"] is None:
        return Verdict(NOT_COMPARABLE, measured, "no attack at 1/256 could be evaluated")
    if worst["1"] > 0.98:
        return Verdict(HOLDS, measured, "every attack is caught with AUC > 0.98 at 1/256")
    at4 = "" if worst["4"] is None else f"; at 4/256 the worst is {_fmt(worst['4'])}"
    return Verdict(
        DIFFERS,
        measured,
        f"at 1/256 (the papers' main budget) the weakest attack's best AUC is "
        f"{_fmt(worst['1'])}{at4}: on this model and data the examples are detectable mainly at "
        "larger budgets (chapter 5 discusses why)",
    )


def _ma_vulnerable(v: Values) -> Verdict:
    s = v["attacks"].get("success PGD 1/256")
    return Verdict(
        NOT_COMPARABLE,
        f"PGD at 1/256 fools {_fmt(s)} of correctly classified test images",
        "the claim compares medical with natural-image models; one task cannot judge it "
        "(chapter 4's stress test makes the comparison)",
    )


def _yao_outliers(v: Values) -> Verdict:
    h = v["hiding"]
    names = ("MAHA", "DFeat", "QFeat", "SVM")
    aucs = {d: h.get(f"AUC {d} PGD") for d in names}
    measured = "PGD 4/256: " + ", ".join(f"{d} {_fmt(a)}" for d, a in aucs.items())
    known = [a for a in aucs.values() if a is not None]
    if not known:
        return Verdict(NOT_COMPARABLE, measured, "no feature-space detector was evaluated")
    if min(known) >= 0.9:
        return Verdict(HOLDS, measured, "every feature-space detector has AUC >= 0.9")
    return Verdict(DIFFERS, measured, "a feature-space detector has AUC < 0.9")


def _yao_fixed_direction(v: Values) -> Verdict:
    f = v["fixed_direction"]
    lo = f.get("1st percentile cosine across iterations")
    measured = (
        f"1st percentile of the feature-gradient cosine across PGD iterations {_fmt(lo)}, "
        f"across inputs {_fmt(f.get('1st percentile cosine across inputs'))}"
    )
    if not f.get("binary"):
        return Verdict(
            NOT_COMPARABLE,
            measured,
            "the theorem is stated for binary classifiers; this task is not",
        )
    if lo is not None and lo >= 0.98:
        return Verdict(HOLDS, measured, "the gradient direction stays fixed (cosine >= 0.98)")
    return Verdict(DIFFERS, measured, "the gradient direction turns (1st percentile < 0.98)")


def _yao_bypass(v: Values) -> Verdict:
    h = v["hiding"]
    n = h.get("detectors")
    lo, hi = NEAR_CHANCE
    rows = []
    ok_any = False
    for name, plain in (("PGD + HFC (book)", "PGD"), ("PGD + HFC (official)", "PGD")):
        near, s, s0 = (
            h.get(f"near chance {name}"),
            h.get(f"success {name}"),
            h.get(f"success {plain}"),
        )
        rows.append(f"{name}: {near} of {n} detectors in [{lo}, {hi}], success {_fmt(s)}")
        if near == n and s is not None and s0 is not None and s >= s0 - 0.05:
            ok_any = True
    measured = "; ".join(rows) + f" (plain PGD success {_fmt(h.get('success PGD'))})"
    if ok_any:
        return Verdict(HOLDS, measured, "every detector near chance, success within 5 points")
    return Verdict(
        DIFFERS,
        measured,
        "no HFC setting puts every detector in the near-chance band at full success here; "
        "chapter 7 shows which detectors still see it and why",
    )


def _recall_success(v: Values) -> Verdict:
    s = v["hiding"].get("success PGD + HFC (book)")
    return Verdict(
        NOT_COMPARABLE,
        f"PGD + HFC (book) at 4/256 succeeds on {_fmt(s)}",
        RECALLED,
    )


def _recall_dnn(v: Values) -> Verdict:
    h = v["hiding"]
    aucs = {
        k.split()[1]: val
        for k, val in h.items()
        if k.startswith("AUC ") and k.endswith(" PGD + HFC (book)")
    }
    top = max(aucs, key=lambda d: aucs[d]) if aucs else None
    return Verdict(
        NOT_COMPARABLE,
        "most resistant detector on PGD + HFC (book): "
        + ("n/a" if top is None else f"{top} ({_fmt(aucs[top])})"),
        RECALLED,
    )


#: The claims the report judges, in order.
CLAIMS: tuple[PaperClaim, ...] = (
    PaperClaim(
        "ma-detectable", "Ma et al. 2021", "[ABS]",
        "Simple detectors can achieve over 98% detection AUC against state-of-the-art attacks.",
        ("detection",), _ma_detectable,
    ),
    PaperClaim(
        "ma-vulnerable", "Ma et al. 2021", "[ABS]",
        "Medical DNN models can be more vulnerable to adversarial attacks than models for "
        "natural images.",
        ("attacks",), _ma_vulnerable,
    ),
    PaperClaim(
        "yao-fixed-direction", "Yao et al. 2021/2023", "[ABS]",
        "Conventional attacks on a binary diagnosis network optimise vulnerable features in a "
        "fixed direction.",
        ("fixed_direction",), _yao_fixed_direction,
    ),
    PaperClaim(
        "yao-outliers", "Yao et al. 2021/2023", "[ABS]",
        "Conventional medical adversarial examples are easy to detect in hierarchical feature "
        "space.",
        ("hiding",), _yao_outliers,
    ),
    PaperClaim(
        "yao-bypass", "Yao et al. 2021/2023", "[ABS]",
        "HFC hides adversarial features in the target feature distribution and bypasses an "
        "array of state-of-the-art detectors (judged as: every detector's AUC in "
        f"[{NEAR_CHANCE[0]}, {NEAR_CHANCE[1]}] with success within 5 points of plain PGD).",
        ("hiding",), _yao_bypass,
    ),
    PaperClaim(
        "yao-success", "Yao et al. (recalled)", "[RECALL]",
        "Attack success stays at about 100% with HFC.",
        ("hiding",), _recall_success,
    ),
    PaperClaim(
        "yao-dnn", "Yao et al. (recalled)", "[RECALL]",
        "The DNN detector is the most resistant to HFC.",
        ("hiding",), _recall_dnn,
    ),
)  # fmt: skip


def judge_all(values: Values) -> list[dict]:
    """One record per claim: key, paper, tag, statement, verdict, measured, reason. A claim whose
    stages were not run is "not comparable"."""
    out = []
    for c in CLAIMS:
        missing = [s for s in c.stages if not values.get(s)]
        if missing:
            v = Verdict(NOT_COMPARABLE, "n/a", f"stage(s) {missing} not run")
        else:
            v = c.judge(values)
        out.append(
            {
                "key": c.key,
                "paper": c.paper,
                "tag": c.tag,
                "statement": c.statement,
                "verdict": v.verdict,
                "measured": v.measured,
                "reason": v.reason,
            }
        )
    return out


__all__ = ["CLAIMS", "DIFFERS", "HOLDS", "NOT_COMPARABLE", "PaperClaim", "VERDICTS", "judge_all"]
