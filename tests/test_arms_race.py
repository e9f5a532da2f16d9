"""Chapter 10's pieces: the GMM detector, the evasion terms (each equal to its detector's score),
the floored loss, the arms-race loop and the ε explorer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfc_edu.attacks.losses import CrossEntropy, FlooredLoss
from hfc_edu.detectors import KD, MAHA, SVM, DFeat, FeatureSet, GMMScore, ScoreLR
from hfc_edu.hfc import (
    HFCLoss,
    KDLoss,
    ScoreLRTerm,
    SVMTerm,
    evasion_term,
    exact_term,
    fit_gmms_on_features,
)


@pytest.fixture(scope="module")
def feats():
    """Class features of two layers, clean (is_adv 0) and shifted 'adversarial' ones (1)."""
    g = torch.Generator().manual_seed(3)
    y = torch.arange(120) % 2
    clean = {
        "a": torch.randn(120, 3, generator=g, dtype=torch.float64) + y[:, None],
        "b": torch.randn(120, 5, generator=g, dtype=torch.float64) * 1.5 - y[:, None],
    }
    adv = {n: f[:60] + 1.2 for n, f in clean.items()}
    train = FeatureSet({n: torch.cat([clean[n][:60], adv[n]]) for n in clean},
                       pred=torch.cat([y[:60], 1 - y[:60]]))  # fmt: skip
    is_adv = torch.cat([torch.zeros(60), torch.ones(60)]).long()
    gmms = fit_gmms_on_features(clean, y, 2, "test", n_components=2)
    return clean, y, train, is_adv, gmms


def test_gmm_score_is_the_hfc_term_under_the_predicted_class(feats):
    clean, y, train, _, gmms = feats
    det = GMMScore(gmms)
    assert det.is_fitted and det.fit_on == "clean"
    cols = det.score_layers(train)
    ref = HFCLoss(gmms).layer_terms(train.pred, train.feats)
    np.testing.assert_allclose(cols, torch.stack([ref["a"], ref["b"]], 1).numpy(), rtol=1e-10)
    np.testing.assert_allclose(det.score(train), cols.sum(1))
    only_a = GMMScore(gmms, layers=["a"])
    np.testing.assert_allclose(only_a.score_layers(train)[:, 0], cols[:, 0])


def test_gmm_score_fits_its_own_mixtures(feats):
    clean, y, train, _, gmms = feats
    det = GMMScore(n_components=2).fit(FeatureSet(clean), y)
    assert list(det.dims_) == ["a", "b"]
    assert det.score_layers(train).shape == (120, 2)


def test_gmm_score_bad_input(feats):
    clean, _, _, _, gmms = feats
    with pytest.raises(ValueError, match="predicted class"):
        GMMScore(gmms).score_layers(clean)
    with pytest.raises(TypeError, match="ClassConditionalGMMs"):
        GMMScore(gmms={"a": 1})
    with pytest.raises(TypeError, match="list of layer names"):
        GMMScore(gmms, layers="a")
    with pytest.raises(RuntimeError, match="not fitted"):
        GMMScore().score_layers(FeatureSet(clean, pred=torch.zeros(120)))


def test_score_lr_term_equals_the_detector(feats):
    """softplus⁻¹ of the term is the fitted ScoreLR's log-odds, for MAHA and GMM columns."""
    clean, y, train, is_adv, gmms = feats
    det = ScoreLR([MAHA().fit(FeatureSet(clean), y), GMMScore(gmms)]).fit(train, is_adv)
    term, exact = evasion_term(det)
    assert exact and isinstance(term, ScoreLRTerm) and term.layers == ["a", "b"]
    value = term(None, train.pred, train.feats)
    np.testing.assert_allclose(
        value.numpy(), np.log1p(np.exp(det.score(train))), rtol=1e-6, atol=1e-9
    )
    x = {n: f[:4].clone().requires_grad_(True) for n, f in train.feats.items()}
    term(None, train.pred[:4], x).sum().backward()
    assert all(torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0 for v in x.values())


def test_svm_term_equals_the_svm(feats):
    _, _, train, is_adv, _ = feats
    for standardize in (False, True):
        det = SVM(standardize=standardize).fit(train, is_adv)
        term, exact = evasion_term(det)
        assert exact and isinstance(term, SVMTerm) and term.layers == ["b"]
        np.testing.assert_allclose(
            term.decision(train.feats).numpy(), det.score(train), rtol=1e-8, atol=1e-10
        )


def test_evasion_term_dispatch(feats):
    clean, y, train, is_adv, _ = feats
    kd_term, exact = evasion_term(KD().fit(FeatureSet(clean), y))
    assert exact and isinstance(kd_term, KDLoss)
    forest = DFeat().fit(train, is_adv)
    assert exact_term(forest) is None
    with pytest.raises(ValueError, match="surrogate"):
        evasion_term(forest)
    surrogate, exact = evasion_term(forest, train, is_adv)
    assert not exact and isinstance(surrogate, SVMTerm)
    with pytest.raises(TypeError, match="fitted Detector"):
        evasion_term("SVM")


def test_floored_loss(feats):
    _, _, train, _, gmms = feats
    hfc = HFCLoss(gmms)
    full = hfc(None, train.pred, train.feats)
    floored = FlooredLoss(hfc, float(full.median()))
    out = floored(None, train.pred, train.feats)
    torch.testing.assert_close(out, (full - full.median()).clamp_min(0))
    assert floored.layers == hfc.layers and floored.needs_features
    assert (CrossEntropy(True) + floored).layers == hfc.layers
    with pytest.raises(TypeError, match="Loss"):
        FlooredLoss("hfc", 1.0)


# --------------------------------------------------------------- on the shipped 28 px model
@pytest.fixture(scope="module")
def race(trained_cxr28):
    from hfc_edu.experiments.arms_race import arms_race
    from hfc_edu.hfc import fit_class_gmms

    t = trained_cxr28
    gmms = fit_class_gmms(t.model, t.x_train[:200], t.y_train[:200], n_components=1)

    def detectors():
        return {"MAHA": "MAHA", "SVM": "SVM", "DFeat": "DFeat", "GMM": ScoreLR(GMMScore(gmms))}

    return arms_race(t.model, t.data, 4 / 256, detectors, HFCLoss(gmms, lam=0.3), rounds=2,
                     n=40, seed=0, steps=10), gmms  # fmt: skip


def test_arms_race_table_and_answers(race):
    from hfc_edu.experiments.arms_race import working_detectors

    result, _ = race
    auc = result.table()
    assert list(auc.index.get_level_values("defence")) == [
        "D0: fitted on PGD", "D0: fitted on PGD", "D1: fitted on A1", "D1: fitted on A1"
    ]  # fmt: skip
    assert list(auc.index.get_level_values("attack")) == [
        "PGD", "A1: PGD + HFC", "A1: PGD + HFC", "A2: A1 + evasion of D1"
    ]  # fmt: skip
    assert list(auc.columns) == ["MAHA", "SVM", "DFeat", "GMM", "success"]
    assert auc.success.between(0, 1).all()
    d1 = result.rounds[1]
    assert set(d1.terms.index) == set(working_detectors(d1.run))
    assert d1.terms.get("DFeat", "surrogate") == "surrogate"
    assert d1.answer_result.x_adv.shape == d1.run.test_clean.shape
    eps = (d1.answer_result.x_adv - d1.run.test_clean).abs().max()
    assert eps <= 4 / 256 + 1e-6
    assert result.table("tpr95").shape == auc.shape


def test_evasion_loss_floor_and_bad_input(race):
    from hfc_edu.experiments.arms_race import evasion_loss, feature_attack_info

    result, gmms = race
    run = result.rounds[1].run
    term, kind = evasion_loss(run, ["GMM", "SVM", "DFeat"], floor=True)
    assert dict(kind) == {"GMM": "exact", "SVM": "exact", "DFeat": "surrogate"}
    assert "FlooredLoss" in type(term.terms[0]).__name__
    assert len(term.terms) == 2  # DFeat shares the run's own SVM
    with pytest.raises(ValueError, match="not fitted in this run"):
        evasion_loss(run, ["LID"])
    info = feature_attack_info("x", HFCLoss(gmms))
    with pytest.raises(ValueError, match="targeted"):
        info.run(run.model, run.test_clean[:2], run.test_labels[:2], eps=4 / 256)
    with pytest.raises(TypeError, match="feature Loss"):
        feature_attack_info("x", CrossEntropy(True))


def test_arms_race_bad_rounds(trained_cxr28):
    from hfc_edu.experiments.arms_race import arms_race

    t = trained_cxr28
    with pytest.raises(ValueError, match="rounds"):
        arms_race(t.model, t.data, 4 / 256, dict, CrossEntropy(True), rounds=0)
    with pytest.raises(TypeError, match="function"):
        arms_race(t.model, t.data, 4 / 256, {"KD": "KD"}, CrossEntropy(True))


def test_explorer_and_figures(race):
    import matplotlib

    matplotlib.use("Agg")
    from hfc_edu.experiments.explorer import explore_eps
    from hfc_edu.experiments.hiding import hiding_attack
    from hfc_edu.plots import eps_explorer_figure, eps_slider

    result, _ = race
    run = result.rounds[0].run

    def plain(x, y, t, e):
        return hiding_attack(run.model, x, y, t, e, steps=5)

    ex = explore_eps(run, {"PGD": plain}, [0, 2 / 256, 4 / 256], index=1)
    pct = ex.percentile["PGD"]
    assert list(pct.columns) == list(run.detectors) and pct.shape == (3, 4)
    assert ((pct >= 0) & (pct <= 1)).all().all()
    torch.testing.assert_close(ex.x_adv["PGD"][0], ex.x)  # ε = 0 is the clean image
    assert (ex.x_adv["PGD"][2] - ex.x).abs().max() <= 4 / 256 + 1e-6
    assert ex.flagged().shape == (3, 4)
    fig = eps_explorer_figure(ex, [2 / 256, 4 / 256])
    assert len(fig.axes) == 2 * 4
    with pytest.raises(ValueError, match="not in the explorer's grid"):
        eps_explorer_figure(ex, 1 / 256)
    assert type(eps_slider(ex)).__name__ == "interactive"
    with pytest.raises(ValueError, match="detector-test image"):
        explore_eps(run, {"PGD": plain}, [0], index=10_000)


def test_choose_lambda_first_stops_at_the_same_choice(race, trained_cxr28):
    from hfc_edu.attacks.targets import other_class
    from hfc_edu.experiments.hiding import choose_lambda

    _, gmms = race
    t = trained_cxr28
    x, y = t.x_test[:12], t.y_test[:12]
    args = (t.model, x, y, other_class(y, 2), 4 / 256, gmms, None)
    lam, rates = choose_lambda(*args, lams=(1.0, 0.3, 0.1))
    lam_first, rates_first = choose_lambda(*args, lams=(0.1, 1.0, 0.3), first=True)
    assert lam_first == lam
    assert len(rates_first) <= len(rates)
    for k, v in rates_first.items():
        assert v == rates[k]
