"""The papers' detection experiment as one reusable pipeline (Ma et al. 2021; Yao et al. 2021/2023).

:func:`run_detection` attacks ``n`` correctly classified test images, builds the detection set
with the protocol of :mod:`hfc_edu.protocol`, fits every detector and scores it::

    from hfc_edu.experiments.detection import run_detection
    report = run_detection(model, data, attacks=["FGSM", "BIM", "PGD", "CW-Linf"], eps=1 / 256)
    report.table                    # one row per (attack, eps, detector): auc [auc_low, auc_high], ...
    report.skipped                  # what could not be evaluated, and why
    run = report.run("PGD")         # the fitted detectors, splits and features of one attack
    new = run.evaluate(x_adv_new)   # score NEW adversarial examples of run.test_clean (e.g. HFC)

Attacks are looked up in :data:`hfc_edu.attacks.ATTACKS`, detectors in
:data:`hfc_edu.detectors.DETECTORS`; sizes (``n``, the training images that fit the density
detectors, attack steps, MC-dropout passes, the DNN detector's iterations, widths and layers) come
from the active profile (:func:`hfc_edu.config.get_profile`), so a notebook passes no knobs.

Protocol (the papers' code, with its noise bug fixed; see :mod:`hfc_edu.protocol`):

1. keep the test images the classifier gets right and draw ``n`` of them (seeded; the official
   code takes them in file order, which is biased when a test file is sorted by class);
2. attack each one **targeted to another class** (the other class for binary tasks, where this is
   the same as untargeted; a seeded random other class otherwise) with the papers' schedule
   (T = 10 sign steps of 2ε/T; FGSM one step of ε; CW-L∞ = the same loop on the CW margin, κ = 100);
3. negatives = the clean images and **genuinely noisy** copies (uniform noise in the same ε-ball;
   the official code's "noise" images equal the clean ones); positives = the **successful**
   adversarial examples only;
4. 70 % of the images train the supervised parts (``fit_on = "is_adv"``: the LR heads of LID,
   MAHA and KD+BU, DFeat, QFeat, SVM, DNN), the last 30 % evaluate every detector;
5. the parts fitted on clean data (``fit_on = "clean"``: KD, MAHA's class Gaussians, LID's
   reference batch) are fitted once on clean features of a seeded subsample of the classifier's
   **training** images and shared by all attacks; LID scores every query against the same
   reference batch of 100 (as the official code's detector training), so its scores do not
   depend on where a query sits in a batch.

Each image set goes through the classifier once: the clean, training and noisy features are
extracted once, and each attack costs one attack run plus one feature extraction. Scores follow
one sign convention, higher = more adversarial (:mod:`hfc_edu.detectors.base`).
"""

from hfc_edu.experiments.detection.embedding import feature_embedding, representative_layers
from hfc_edu.experiments.detection.pipeline import DEFAULT_ATTACKS, run_detection
from hfc_edu.experiments.detection.results import (
    DetectionReport,
    DetectionRun,
    NewAttackScores,
    NothingToScore,
    Skipped,
)
from hfc_edu.experiments.detection.tables import eps_label, metric_grid, overshoot_table

__all__ = [
    "DEFAULT_ATTACKS",
    "DetectionReport",
    "DetectionRun",
    "NewAttackScores",
    "NothingToScore",
    "Skipped",
    "eps_label",
    "feature_embedding",
    "metric_grid",
    "overshoot_table",
    "representative_layers",
    "run_detection",
]
