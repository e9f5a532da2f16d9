"""The detection pipeline on a tiny classifier trained on synthetic, well-separated images."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from hfc_edu.attacks import pgd
from hfc_edu.config import get_profile
from hfc_edu.data import ImageDataset
from hfc_edu.detectors import KD, LID, ScoreLR, default_detectors
from hfc_edu.experiments.detection import (
    feature_embedding,
    metric_grid,
    overshoot_table,
    representative_layers,
    run_detection,
)
from hfc_edu.metrics import RESULT_COLUMNS
from hfc_edu.models.zoo import build_model

EPS = 8 / 256
DETECTORS = default_detectors()

#: The book profile, shrunk for a toy model: the pipeline reads every size knob from it.
TINY = dataclasses.replace(
    get_profile("book"),
    n_attack=60,
    n_fit=120,
    mc_passes=4,
    dnn_iters=3,
    dnn_widths=(4, 8),
    dnn_blocks=2,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _images(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 1 has a brighter centre than class 0; a weak signal so that small ε succeeds."""
    y = torch.randint(0, 2, (n,), generator=g)
    x = 0.4 + 0.1 * torch.rand(n, 1, 12, 12, generator=g)
    x[:, :, 4:8, 4:8] += 0.06 * (2 * y.view(-1, 1, 1, 1) - 1)
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def tiny():
    """A compact_resnet_narrow (dropout 0.3 for BU) trained for a few steps; ~95 % accuracy."""
    g = torch.Generator().manual_seed(0)
    x_tr, y_tr = _images(240, g)
    x_va, y_va = _images(20, g)
    x_te, y_te = _images(120, g)
    data = ImageDataset("tiny", ("a", "b"), x_tr, y_tr, x_va, y_va, x_te, y_te)
    torch.manual_seed(0)
    model = build_model("compact_resnet_narrow", 1, 2, 2, 12, [0.45], [0.05], dropout=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        idx = torch.randint(0, len(x_tr), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_te).argmax(1) == y_te).float().mean().item()
    assert acc > 0.85, acc
    return model, data


def _run(tiny, **kw):
    model, data = tiny
    args = dict(attacks=["FGSM", "PGD"], eps=EPS, profile=TINY, batch_size=32)
    args.update(kw)
    return run_detection(model, data, **args)


@pytest.fixture(scope="module")
def report(tiny):
    return _run(tiny)


def test_table_layout_and_metric_ranges(report):
    t = report.table
    assert list(t.columns) == RESULT_COLUMNS
    assert len(t) == 2 * len(DETECTORS) and report.skipped == []
    assert list(t["detector"].unique()) == DETECTORS
    assert t["auc"].between(0, 1).all() and t["tpr90"].between(0, 1).all()
    assert (t["tpr95"] <= t["tpr90"] + 1e-12).all()
    assert (t["auc_low"] <= t["auc"] + 1e-12).all() and (t["auc"] <= t["auc_high"] + 1e-12).all()
    assert (t["auc_high"] - t["auc_low"] > 0).any()  # a few dozen positives: wide intervals
    assert np.allclose(t["eps_256"], 8.0)
    piv = report.pivot("auc")
    assert list(piv.index) == ["FGSM", "PGD"] and list(piv.columns) == DETECTORS


def test_defaults_come_from_the_profile(report):
    """n, n_fit, steps, BU passes and the DNN's iterations, widths and layers: all TINY's."""
    assert len(report.x) == TINY.n_attack
    assert len(report.fit_features) == len(report.fit_labels) == TINY.n_fit
    assert report.detectors["BU"].passes == TINY.mc_passes
    dnn = report.run("PGD").detectors["DNN"]
    assert dnn.iters == TINY.dnn_iters and tuple(dnn.widths) == TINY.dnn_widths
    assert dnn.layer_order_ == ["layer3.0.out", "layer4.0.out"]  # the last 2 block outputs


def test_protocol_split_noise_and_successful_positives(report, tiny):
    model, data = tiny
    run = report.run("PGD")
    n = len(report.x)
    # the attacked images are correctly classified test images
    with torch.no_grad():
        assert (model(report.x).argmax(1) == report.y).all()
    assert torch.equal(data.x_test[report.index], report.x)
    tr, te = run.splits.train, run.splits.test
    assert len(tr.index) == 42 and len(te.index) == 18
    assert sorted(tr.index.tolist() + te.index.tolist()) == list(range(n))
    # the test part's images are the run's test images
    assert torch.equal(run.test_clean, report.x[te.index])
    assert torch.equal(run.test.x[: len(te.index)], run.test_clean)
    # noisy negatives are genuinely noisy, within the eps-ball
    noisy = run.test.x[len(te.index) : te.n_neg]
    d = (noisy - run.test_clean).abs()
    assert d.max() <= EPS + 1e-6 and (d > 0).float().mean() > 0.5
    # only successful adversarial examples are positives
    assert torch.equal(te.adv_index, te.index[run.success[te.index]])
    assert torch.equal(run.test.x[te.n_neg :], run.x_adv[te.adv_index])
    assert run.test_is_adv.tolist() == [0] * te.n_neg + [1] * te.n_pos
    rows = report.table[report.table.attack == "PGD"]
    assert (rows["n_pos"] == int(run.success[te.index].sum())).all()
    assert (rows["n_neg"] == 2 * len(te.index)).all()
    assert rows["success_rate"].iloc[0] == pytest.approx(run.success_rate)
    assert run.success_rate > 0.5
    # the attack respected the budget and targeted the other class
    assert (run.x_adv - report.x).abs().max() <= EPS + 1e-6
    assert torch.equal(run.target, 1 - report.y)


def test_two_stages_clean_parts_shared_supervised_parts_per_attack(report):
    """KD, MAHA's Gaussians and LID's reference are fitted once on training features and shared
    by every run; the logistic-regression heads and classifiers are fitted per run."""
    pen = report.fit_features.layers[-1]
    assert report.detectors["KD"].dims_ == {pen: 64}
    fgsm, pgd_run = report.run("FGSM"), report.run("PGD")
    for name in ("KD", "BU"):
        assert fgsm.detectors[name] is pgd_run.detectors[name] is report.detectors[name]
    for name in ("LID", "MAHA"):
        shared = report.detectors[name].detectors
        assert fgsm.detectors[name] is not pgd_run.detectors[name]
        assert fgsm.detectors[name].detectors is pgd_run.detectors[name].detectors is shared
        assert not report.detectors[name].is_fitted  # the head is fitted on the copies only
    lid = report.detectors["LID"].detectors
    assert len(lid.reference_[pen]) == 100  # one fixed reference batch of training features
    for name in ("DFeat", "QFeat", "SVM", "DNN"):
        assert fgsm.detectors[name] is not pgd_run.detectors[name]
        assert not report.detectors[name].is_fitted


def test_detectors_separate_strong_attacks(report):
    """At 8/256 on this toy model, the feature detectors see the attack (they can fail)."""
    auc = report.pivot("auc").loc["PGD"]
    assert max(auc["KD"], auc["MAHA"], auc["LID"]) > 0.8, auc
    assert auc["SVM"] > 0.8, auc


def test_evaluate_new_examples_matches_the_table(report):
    """Re-scoring the run's own adversarial examples reproduces its table rows."""
    run = report.run("PGD")
    te = run.splits.test
    new = run.evaluate(run.x_adv[te.index], name="again")
    assert torch.equal(new.success, run.success[te.index])
    old = report.table[report.table.attack == "PGD"].set_index("detector")
    got = new.table.set_index("detector")
    assert list(new.table.columns) == RESULT_COLUMNS + ["auc_matched", "auc_gap"]
    assert (got["attack"] == "again").all()
    np.testing.assert_allclose(got["auc_gap"], (got["auc"] - 0.5).abs())
    for d in ("KD", "LID", "MAHA", "DFeat", "QFeat", "SVM", "DNN"):
        for col in ("auc", "auc_low", "auc_high", "tpr90", "tpr95", "n_pos", "n_neg"):
            assert got.loc[d, col] == pytest.approx(old.loc[d, col], abs=1e-9), (d, col)
    # clean images are scored like the negatives: the detectors do not flag them as a group
    clean = run.evaluate(run.test_clean, success=torch.ones(len(te.index), dtype=torch.bool))
    assert clean.table.set_index("detector").loc["KD", "auc"] < 0.7
    neg, pos = new.scores["MAHA"]
    assert len(neg) == te.n_neg and len(pos) == int(new.success.sum())


def test_evaluate_without_negatives_of_a_class_leaves_the_matched_auc_out(report, caplog):
    """A small detector-test part can miss a class: the matched AUC is NaN, nothing crashes."""
    import copy

    run = copy.copy(report.run("PGD"))
    run.y = torch.zeros_like(run.y)  # every negative is of class 0; positives are of class 1
    te = run.splits.test
    with caplog.at_level("WARNING"):
        new = run.evaluate(run.x_adv[te.index], name="again")
    assert new.table["auc_matched"].isna().all() and new.table["auc"].between(0, 1).all()
    assert "class-matched AUC left out" in caplog.text


def test_bypass_table_keeps_an_attack_that_never_succeeded_as_a_row(report, caplog):
    from hfc_edu.experiments.bypass import bypass_table

    run = report.run("PGD")
    clean = run.test_clean  # unattacked: classified as the true class, never the target
    with caplog.at_level("WARNING"):
        table = bypass_table(run, {"PGD": run.x_adv[run.splits.test.index], "none": clean})
    none = table[table.attack == "none"]
    assert len(none) == len(run.detectors) and (none.success_rate == 0).all()
    assert none.auc.isna().all() and table[table.attack == "PGD"].auc.notna().all()
    assert "none: no example succeeded" in caplog.text


def test_hfc_style_reuse_targets_and_subset(report):
    run = report.run("PGD")
    assert torch.equal(run.test_targets, 1 - run.test_labels)
    x_new = pgd(
        run.model, run.test_clean, run.test_targets, eps=EPS, targeted=True, y_true=run.test_labels
    ).x_adv
    new = run.evaluate(x_new, detectors=["KD", "SVM"], name="PGD-again")
    assert list(new.table["detector"]) == ["KD", "SVM"]


def test_deterministic_and_eps_list(tiny, report):
    again = _run(tiny, attacks=["PGD"], eps=[4 / 256, EPS], detectors=("KD", "BU", "LID"))
    a = again.table[np.isclose(again.table.eps, EPS)].reset_index(drop=True)
    b = report.table[
        (report.table.attack == "PGD") & report.table.detector.isin(["KD", "BU", "LID"])
    ]
    np.testing.assert_allclose(a["auc"], b["auc"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(a["auc_low"], b["auc_low"].to_numpy(), atol=1e-12)
    assert set(again.table["eps_256"]) == {4.0, 8.0}
    assert again.run("PGD", 4 / 256).eps == 4 / 256
    with pytest.raises(KeyError, match="several eps"):
        again.run("PGD")
    with pytest.raises(ValueError, match="pass eps"):
        again.pivot()


def test_detector_instances_set_their_own_knobs(tiny):
    """``{label: name or instance}``: registry entries next to detectors built by hand."""
    kd_h2 = KD(bandwidth=2.0)
    own_ref = LID(k=5, batch_size=30, fixed_reference=True)
    rep = _run(
        tiny,
        attacks="PGD",
        detectors={"KD": "KD", "KD-h2": kd_h2, "LID-k5": ScoreLR(own_ref)},
    )
    assert list(rep.table["detector"]) == ["KD", "KD-h2", "LID-k5"]
    assert rep.detectors["KD-h2"] is kd_h2 and kd_h2.bandwidths_ == {"layer4.0.out": 2.0}
    assert own_ref.k_ == 5 and len(own_ref.reference_["stem"]) == 30
    scores = rep.run("PGD").scores
    assert not np.allclose(scores["KD"][0], scores["KD-h2"][0])


def test_grid_and_overshoot(report):
    grid = metric_grid(report.table, "tpr90")
    assert list(grid.index) == ["FGSM 8/256", "PGD 8/256"] and list(grid.columns) == DETECTORS
    assert grid.loc["PGD 8/256", "KD"] == report.pivot("tpr90").loc["PGD", "KD"]
    ov = overshoot_table(report)
    assert list(ov["attack"]) == ["FGSM", "PGD"]
    assert ov["target_confidence"].between(0.5, 1).all() and (ov["feature_shift"] > 0).all()
    with pytest.raises(ValueError, match="Unknown metric"):
        metric_grid(report.table, "f1")


def test_embedding_and_layers(report):
    run = report.run("PGD")
    layers = representative_layers(run.test.layers)
    assert layers[0] == "stem" and layers[-1] == run.test.layers[-1] and len(layers) == 3
    emb, groups = feature_embedding(run, layers[1])
    assert emb.shape == (len(run.test), 2)
    assert groups.count("clean") == groups.count("noisy") == len(run.splits.test.index)
    assert groups.count("adversarial") == run.splits.test.n_pos
    with pytest.raises(ValueError, match="Unknown layer"):
        feature_embedding(run, "nope")
    with pytest.raises(ValueError, match="method"):
        feature_embedding(run, layers[0], method="umap")


def test_bad_input(tiny, report):
    model, data = tiny
    with pytest.raises(ValueError, match="Unknown detector"):
        run_detection(model, data, detectors=["KD", "Gaussian"])
    with pytest.raises(ValueError, match="1/256"):
        run_detection(model, data, eps=4)
    with pytest.raises(ValueError, match="Unknown attack"):
        run_detection(model, data, attacks=["DeepFool"])
    with pytest.raises(ValueError, match="Unknown attack 'CW'.*CW-Linf"):
        run_detection(model, data, attacks=["CW"])
    with pytest.raises(TypeError, match="ImageDataset"):
        run_detection(model, (data.x_test, data.y_test))
    with pytest.raises(ValueError, match="order"):
        run_detection(model, data, order="sorted")
    with pytest.raises(ValueError, match="n_fit"):
        run_detection(model, data, n_fit=1)
    with pytest.raises(TypeError, match="Detector instance"):
        run_detection(model, data, detectors={"KD": 1.0})
    with pytest.raises(KeyError, match="No run"):
        report.run("CW-Linf")
    run = report.run("PGD")
    with pytest.raises(ValueError, match="aligned"):
        run.evaluate(run.test_clean[:3])
    with pytest.raises(ValueError, match="not fitted"):
        _run(tiny, attacks=["PGD"], detectors=("KD",)).run("PGD").evaluate(
            run.test_clean, detectors=["SVM"]
        )


def test_partial_results_instead_of_a_late_crash(tiny, caplog):
    """An attack that never succeeds and a detector that cannot be fitted are skipped, said
    (a warning and report.skipped) and the rest is evaluated; the old code raised RuntimeError
    only after all the fitted work when no attack succeeded."""
    from hfc_edu.attacks import AttackInfo
    from hfc_edu.attacks.result import AttackResult

    def identity(model, x, y, *, eps, targeted, y_true=None):
        with torch.no_grad():
            logits = model(x)
        zero = torch.zeros(len(x))
        return AttackResult(x.clone(), logits.argmax(1) == y, zero, zero, zero, logits, None, 0)

    never = AttackInfo("Identity", identity, iterative=False)
    with caplog.at_level(logging.WARNING):
        rep = _run(tiny, attacks=[never, "PGD"], detectors={"KD": "KD", "LID": LID(k=500)})
    assert set(rep.table["attack"]) == {"PGD"} and list(rep.table["detector"]) == ["KD"]
    reasons = {(s.attack, s.detector): s.reason for s in rep.skipped}
    assert set(reasons) == {(None, "LID"), ("Identity", None)}
    assert "k=500" in reasons[(None, "LID")]
    assert "too few successful attacks" in reasons[("Identity", None)]
    assert "Identity at eps=0.03125 skipped" in caplog.text
    with pytest.raises(KeyError, match="too few successful"):
        rep.run("Identity")
    # nothing evaluable at all: an empty table and the reasons, no exception
    none = _run(tiny, attacks=[never], detectors=("KD",))
    assert none.table.empty and list(none.table.columns) == RESULT_COLUMNS
    assert [s.attack for s in none.skipped] == ["Identity"]


def test_class_matched_auc_and_stand_ins(report, tiny):
    """Clean images of the target class are the floor of hiding; matching removes class mix."""
    from hfc_edu.experiments.bypass import (
        STAND_IN,
        bypass_table,
        near_chance,
        shift_along_attack,
        stand_ins,
    )

    model, data = tiny
    run = report.run("PGD")
    x_si = stand_ins(report, run, data, seed=0)
    assert x_si.shape == run.test_clean.shape
    # each stand-in is a correctly classified, unattacked test image of the target class
    rows = [(data.x_test == xi).flatten(1).all(1).nonzero().flatten() for xi in x_si]
    pos = torch.stack([r[0] for r in rows])
    assert torch.equal(data.y_test[pos], run.test_targets)
    assert not torch.isin(pos, report.index).any()
    again = stand_ins(report, run, data, seed=0)
    assert torch.equal(again, x_si)
    table = bypass_table(run, {"PGD-again": run.x_adv[run.splits.test.index]}, stand_in=x_si)
    assert list(table["attack"].unique()) == [STAND_IN, "PGD-again"]
    assert table["auc_matched"].between(0, 1).all()
    assert near_chance(0.5) and near_chance(0.4) and not near_chance(0.39)
    with pytest.raises(ValueError, match="empty"):
        bypass_table(run, {})
    groups = {STAND_IN: x_si, "PGD": run.x_adv[run.splits.test.index]}
    shift = shift_along_attack(model, groups, STAND_IN, "PGD")
    assert abs(shift[STAND_IN]) < 1.0 < shift["PGD"]  # PGD moves along its own direction
    with pytest.raises(ValueError, match="not one of the groups"):
        shift_along_attack(model, groups, STAND_IN, "HFC")
