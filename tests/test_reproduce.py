"""`hfc-edu reproduce` end to end at the smoke size: every file, the verdicts, resume, bad input."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from hfc_edu.cli import main
from hfc_edu.reproduce import (
    CLAIMS,
    STAGES,
    ResultsFolderError,
    compare_runs,
    judge_all,
    render_report,
    reproduce,
    shipped_run,
    shipped_runs,
)
from hfc_edu.reproduce import folder as folder_module
from hfc_edu.reproduce.claims import DIFFERS, HOLDS, NOT_COMPARABLE, VERDICTS
from tests.conftest import requires_data

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
ship_run = importlib.import_module("ship_run")

SMOKE = dict(size=28, profile="smoke", device="cpu", quiet=True)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "chest"
    [res] = reproduce("chest_xray", out=out, **SMOKE)
    return res


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*.csv")} | {
        str(p): p.stat().st_mtime_ns for p in root.rglob("stage.json")
    }


@requires_data
def test_every_stage_ran_and_wrote_its_files(smoke_run):
    root = smoke_run.folder
    assert smoke_run.ran == STAGES.names() and smoke_run.cached == []
    for name in ("run.json", "results.json", "report.md", "report.html"):
        assert (root / name).stat().st_size > 0, name
    for stage in STAGES:
        rec = json.loads((root / stage / "stage.json").read_text())
        assert rec["tables"] and rec["values"] and rec["seconds"] >= 0, stage
        for table in rec["tables"]:
            df = pd.read_csv(root / stage / f"{table}.csv")
            assert len(df) > 0, (stage, table)
    figures = sorted(p.name for p in (root / "figures").glob("*.png"))
    assert figures == ["bypass_auc.png", "detection_auc.png", "success_vs_eps.png"]
    run = json.loads((root / "run.json").read_text())
    assert run["config"]["profile"]["name"] == "smoke" and run["config"]["size"] == 28
    assert set(run["stages"]) == set(STAGES.names())
    assert {"torch", "numpy", "hfc_edu"} <= set(run["versions"])
    assert run["config"]["profile"]["gmm_backend"] == "torch"  # the paper profile's GMM fit
    hiding = pd.read_csv(root / "hiding" / "bypass.csv")
    assert {"PGD", "PGD + HFC (official)", "PGD + HFC (book)"} <= set(hiding.attack)
    assert hiding.auc.between(0, 1).all()


@requires_data
def test_report_has_one_verdict_line_per_claim(smoke_run):
    md = (smoke_run.folder / "report.md").read_text()
    html = (smoke_run.folder / "report.html").read_text()
    results = json.loads((smoke_run.folder / "results.json").read_text())
    assert [c["key"] for c in results["claims"]] == [c.key for c in CLAIMS]
    for claim in results["claims"]:
        assert claim["verdict"] in VERDICTS
        assert f"Verdict {claim['key']}: {claim['verdict']}." in md
        assert claim["reason"] and claim["measured"]
        if claim["tag"] == "[RECALL]":
            assert claim["verdict"] == NOT_COMPARABLE
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "figures/" in html


@requires_data
def test_second_run_does_no_work_and_force_redoes_one_stage(smoke_run):
    root = smoke_run.folder
    before = _mtimes(root)
    [again] = reproduce("chest_xray", out=root, **SMOKE)
    assert again.ran == [] and again.cached == STAGES.names()
    assert _mtimes(root) == before
    [forced] = reproduce("chest_xray", out=root, force=["fixed_direction"], **SMOKE)
    assert forced.ran == ["fixed_direction"]
    after = _mtimes(root)
    assert (
        after[str(root / "fixed_direction" / "stage.json")]
        > before[str(root / "fixed_direction" / "stage.json")]
    )
    assert after[str(root / "hiding" / "stage.json")] == before[str(root / "hiding" / "stage.json")]


@requires_data
def test_a_subset_of_stages_runs_only_those_and_reports_what_is_there(tmp_path):
    out = tmp_path / "subset"
    [res] = reproduce("chest_xray", out=out, stages=["fixed_direction", "classifier"], **SMOKE)
    assert res.ran == ["classifier", "fixed_direction"]  # the pipeline's order
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["classifier", "fixed_direction"]
    text = res.report.read_text()
    assert "Fixed-direction check" in text and "Hiding from fixed detectors" not in text
    [more] = reproduce("chest_xray", out=out, stages=["classifier", "attacks"], **SMOKE)
    assert more.ran == ["attacks"] and more.cached == ["classifier"]


@requires_data
def test_another_architecture_is_its_own_configuration(tmp_path, smoke_run):
    out = tmp_path / "narrow"
    [res] = reproduce(
        "chest_xray", out=out, stages=["classifier"], arch="compact_resnet_narrow", **SMOKE
    )
    row = pd.read_csv(out / "classifier" / "classifier.csv").iloc[0]
    assert row.arch == "compact_resnet_narrow" and row.weights == "shipped"
    assert "compact_resnet_narrow" in res.report.read_text()
    with pytest.raises(ResultsFolderError, match="another configuration"):
        reproduce("chest_xray", out=smoke_run.folder, arch="compact_resnet_narrow", **SMOKE)


@requires_data
def test_another_configuration_is_refused_and_nothing_is_overwritten(smoke_run):
    root = smoke_run.folder
    run_before = (root / "run.json").read_text()
    with pytest.raises(ResultsFolderError, match="another configuration.*--force all"):
        reproduce("chest_xray", out=root, seed=1, **SMOKE)
    assert (root / "run.json").read_text() == run_before


@requires_data
def test_a_folder_that_is_not_results_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ResultsFolderError, match="not empty"):
        reproduce("chest_xray", out=tmp_path, **SMOKE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@requires_data
def test_report_refuses_an_older_format(smoke_run, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    run = json.loads((smoke_run.folder / "run.json").read_text())
    run["format"] = 0
    (old / "run.json").write_text(json.dumps(run))
    with pytest.raises(ResultsFolderError, match="format 0"):
        render_report(old)
    with pytest.raises(ResultsFolderError, match="no hfc-edu results"):
        render_report(tmp_path / "empty")


@requires_data
def test_report_says_when_another_version_computed_the_results(smoke_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(smoke_run.folder, copy)
    run = json.loads((copy / "run.json").read_text())
    run["versions"]["hfc_edu"] = "0.0.1"
    (copy / "run.json").write_text(json.dumps(run))
    md, _ = render_report(copy)
    assert "computed by hfc-edu 0.0.1" in md.read_text()
    assert "computed by hfc-edu" not in (smoke_run.folder / "report.md").read_text()


@requires_data
def test_compare_puts_two_runs_side_by_side(smoke_run):
    text = compare_runs(smoke_run.folder, smoke_run.folder)
    assert "## Verdicts" in text and "## Headline values" in text
    for c in CLAIMS:
        assert c.key in text
    assert "| hiding | lambda |" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "no_such_task"], "Unknown task 'no_such_task'"),
        (["--profile", "huge"], "Unknown profile 'huge'"),
        (["--force", "attackz"], "Unknown stage(s) ['attackz']"),
        (["--task", "all", "--size", "28"], "--size applies to one task"),
        (["--size", "100"], "not 100"),
        (["--stage", "detectoin"], "Unknown stage(s) ['detectoin']"),
        (["--arch", "vgg16"], "Unknown architecture 'vgg16'"),
        (["--stage", "attacks", "--force", "hiding"], "--force ['hiding'] names stage(s)"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys, tmp_path):
    assert main(["reproduce", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hfc-edu: error:") and message in err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------- the verdicts' logic
def _values(near: int, success: float, plain: float = 1.0) -> dict:
    hiding = {"detectors": 8, "success PGD": plain}
    for name in ("PGD + HFC (book)", "PGD + HFC (official)"):
        hiding[f"near chance {name}"] = near
        hiding[f"success {name}"] = success
    return {"hiding": hiding}


@pytest.mark.parametrize(
    "near, success, verdict",
    [(8, 0.97, HOLDS), (8, 0.9, DIFFERS), (7, 1.0, DIFFERS)],
)
def test_bypass_verdict_needs_every_detector_near_chance_at_full_success(near, success, verdict):
    [claim] = [c for c in CLAIMS if c.key == "yao-bypass"]
    assert claim.judge(_values(near, success)).verdict == verdict


def test_claims_of_stages_not_run_are_not_comparable():
    for claim in judge_all({}):
        assert claim["verdict"] == NOT_COMPARABLE and "not run" in claim["reason"]


@requires_data
def test_a_shipped_run_holds_the_tables_and_configuration_and_nothing_else(
    smoke_run, tmp_path, monkeypatch
):
    monkeypatch.setattr(folder_module, "RUNS_DIR", tmp_path / "runs")
    assert shipped_runs() == []
    assert ship_run.main([str(smoke_run.folder), "--name", "smoke"]) == 0
    assert shipped_runs() == ["smoke"]
    shipped = shipped_run("smoke")
    assert shipped.read_run() == json.loads((smoke_run.folder / "run.json").read_text())
    src = folder_module.ResultsFolder(smoke_run.folder)
    pd.testing.assert_frame_equal(shipped.table("hiding", "bypass"), src.table("hiding", "bypass"))
    assert shipped.values("hiding") == src.values("hiding")
    assert {p.suffix for p in shipped.root.rglob("*") if p.is_file()} == {".json", ".csv"}
    with pytest.raises(ResultsFolderError, match="No shipped run 'nope'.*'smoke'"):
        shipped_run("nope")


def test_every_shipped_run_is_a_book_profile_run_with_its_tables():
    names = shipped_runs()
    assert names, "the package ships the capacity runs chapter 8 reads"
    for name in names:
        folder = shipped_run(name)
        config = folder.read_run()["config"]
        assert config["profile"]["name"] == "book", name
        for stage in folder.read_run()["stages"]:
            for table in folder.stage_record(stage)["tables"]:
                assert len(folder.table(stage, table)), (name, stage, table)
