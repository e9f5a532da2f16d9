"""``hfc-edu reproduce``: the papers' experiments on one task in one command, with a report.

::

    from hfc_edu.reproduce import reproduce, render_report, compare_runs
    [res] = reproduce("chest_xray")            # book profile, shipped classifier
    print(res.report)                           # hfc-edu-results/chest_xray_128_book/report.md

The stages (:data:`STAGES`) call the same library functions as the chapters; each is cached in
the results folder by its configuration, so a second or interrupted run does only what is
missing. :mod:`hfc_edu.reproduce.claims` puts each measured number beside the papers' claim.
"""

from hfc_edu.reproduce.claims import CLAIMS, judge_all
from hfc_edu.reproduce.folder import (
    FORMAT,
    ResultsFolder,
    ResultsFolderError,
    RunConfig,
    shipped_run,
    shipped_runs,
)
from hfc_edu.reproduce.pipeline import ALL_TASKS, ReproduceResult, reproduce
from hfc_edu.reproduce.report import compare_runs, render_report
from hfc_edu.reproduce.stages import STAGES, Stage, StageContext, StageOutput

__all__ = [
    "ALL_TASKS",
    "CLAIMS",
    "FORMAT",
    "STAGES",
    "ReproduceResult",
    "ResultsFolder",
    "ResultsFolderError",
    "RunConfig",
    "Stage",
    "StageContext",
    "StageOutput",
    "compare_runs",
    "judge_all",
    "render_report",
    "reproduce",
    "shipped_run",
    "shipped_runs",
]
