"""Calibration, flag and conformal sets (inkapp.calibration) on generated validation/test
pairs with known miscalibration: every image's true class posterior is softmax(z); the
label is DRAWN from it (so softmax(z) is perfectly calibrated) and the "model" reports
softmax(z / T_true + bias) instead. Validation and test come from the same generator with
different seeds (exchangeable).

Finite-n tolerance for the conformal coverage check: with n_cal = n_test = 3000 the
empirical test coverage of a 95 % set has a standard deviation of about
sqrt(2 · 0.95 · 0.05 / 3000) ≈ 0.0056 (calibration draw + test draw); the test allows
0.02 (≈ 3.5 SD) below the level.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from mapie.classification import SplitConformalClassifier
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin

from inkapp.calibration import CONFORMAL_LEVEL, TARGET_ACCURACY, CalibrationError, Calibrator
from inkapp.calibration.conformal import answer_sets, conformal_quantile, min_calibration_size
from inkapp.calibration.measures import expected_calibration_error, flag_threshold, reliability_bins, risk_coverage
from inkapp.calibration.scaling import as_logits, fit_temperature
from inkapp.calibration.section import calibration_section
from inkapp.data.dataset import decode_canvases
from inkapp.inference import Predictor
from inkapp.paths import shipped_weights
from inkapp.training.ship import CALIBRATION_END, CALIBRATION_START, calibration_markdown

N = 3000
K = 4
COVERAGE_TOLERANCE = 0.02


def generated(seed: int, n: int = N, k: int = K, temperature: float = 0.4,
              bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(model probabilities n×k, labels n): labels drawn from softmax(z), the model says
    softmax(z / temperature + bias) (temperature < 1: over-confident)."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(0, k, n)
    z = rng.normal(0.0, 1.0, (n, k)) + 4.0 * np.eye(k)[centre]
    truth = softmax(z, axis=1)
    labels = np.array([rng.choice(k, p=row) for row in truth])
    model = softmax(z / temperature + (0 if bias is None else bias), axis=1)
    return model, labels


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    val_p, val_y = generated(1)
    test_p, test_y = generated(2)
    return val_p, val_y, test_p, test_y


@pytest.fixture(scope="module")
def fitted(pair) -> Calibrator:
    return Calibrator.fit(pair[0], pair[1])


def test_temperature_recovers_the_known_miscalibration(pair):
    val_p, val_y, _, _ = pair
    t = fit_temperature(as_logits(val_p), val_y)["temperature"]
    assert t == pytest.approx(1 / 0.4, rel=0.1)


def test_calibration_cuts_test_ece_by_a_clear_margin(pair, fitted):
    _, _, test_p, test_y = pair
    before = expected_calibration_error(test_p, test_y)
    after = expected_calibration_error(fitted.probabilities(test_p), test_y)
    assert before > 0.07  # the generator's over-confidence is visible
    assert after < 0.03
    assert after < before / 4


def test_vector_scaling_wins_when_miscalibration_is_per_class():
    bias = np.array([2.0, -1.0, 0.0, -1.5])
    val_p, val_y = generated(3, bias=bias)
    test_p, test_y = generated(4, bias=bias)
    cal = Calibrator.fit(val_p, val_y)
    cv = cal.fit_info["selection"]["cv_nll"]
    assert cal.method == "vector"
    assert cv["vector"] < cv["temperature"]
    assert expected_calibration_error(cal.probabilities(test_p), test_y) < 0.03


def test_conformal_sets_cover_at_the_level_with_sensible_size(pair, fitted):
    _, _, test_p, test_y = pair
    sets = fitted.answer_sets(fitted.probabilities(test_p))
    coverage = np.mean([y in s for y, s in zip(test_y, sets)])
    sizes = np.array([len(s) for s in sets])
    assert coverage >= CONFORMAL_LEVEL - COVERAGE_TOLERANCE
    assert 1.0 < sizes.mean() < 2.5  # some ambiguity is expressed, far from "every class"
    assert (sizes >= 1).all() and (sizes <= K).all()
    cal = fitted.probabilities(test_p)
    for row, s in zip(cal[:50], sets[:50]):
        assert s[0] == int(row.argmax())  # most likely first
        assert list(row[s]) == sorted(row[s], reverse=True)


def test_sets_match_mapie_split_conformal_classifier(pair, fitted):
    """The persisted quantile reproduces the library's own prediction sets (non-empty ones;
    an empty LAC set is answered with the top class, see inkapp.calibration.conformal)."""

    class GivenProbabilities(ClassifierMixin, BaseEstimator):
        """A classifier whose features ARE its class probabilities (already computed)."""

        def fit(self, X, y):
            self.classes_ = np.arange(K)
            return self

        def predict_proba(self, X):
            return np.asarray(X)

        def predict(self, X):
            return np.asarray(X).argmax(1)

    val_p, val_y, test_p, _ = pair
    cal_val, cal_test = fitted.probabilities(val_p), fitted.probabilities(test_p)
    lib = SplitConformalClassifier(GivenProbabilities().fit(cal_val, val_y), confidence_level=CONFORMAL_LEVEL,
                                   conformity_score="lac", prefit=True).conformalize(cal_val, val_y)
    _, lib_sets = lib.predict_set(cal_test)
    ours = answer_sets(cal_test, fitted.quantile)
    nonempty = lib_sets[:, :, 0].any(1)
    assert nonempty.mean() > 0.9
    for row, mask in zip(np.array(ours, dtype=object)[nonempty], lib_sets[nonempty, :, 0]):
        assert sorted(row) == list(np.nonzero(mask)[0])


def test_flag_meets_target_on_validation_and_close_on_test(pair, fitted):
    val_p, val_y, test_p, test_y = pair
    cal_val = fitted.probabilities(val_p)
    kept = ~fitted.uncertain(cal_val)
    assert fitted.threshold is not None and 0.2 < kept.mean() < 1.0
    assert (cal_val[kept].argmax(1) == val_y[kept]).mean() >= TARGET_ACCURACY
    # the rule keeps the largest confident group: one more tie-group would break the target
    assert ((cal_val.argmax(1) == val_y).mean()) < TARGET_ACCURACY
    cal_test = fitted.probabilities(test_p)
    kept_test = ~fitted.uncertain(cal_test)
    assert (cal_test[kept_test].argmax(1) == test_y[kept_test]).mean() >= TARGET_ACCURACY - COVERAGE_TOLERANCE


def test_flag_threshold_keeps_ties_together_and_reports_unmet_target():
    # confidences 0.9 (right), 0.8 twice (one right, one wrong), 0.6 (right)
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2], [0.6, 0.4]])
    y = np.array([0, 0, 1, 0])
    assert flag_threshold(probs, y, 0.7) == {"threshold": 0.6, "target": 0.7, "target_met": True,
                                             "coverage": 1.0, "accuracy": 0.75}
    # 0.8 cannot be cut between its two images: the best group meeting 0.9 is {0.9}
    assert flag_threshold(probs, y, 0.9)["threshold"] == 0.9
    # the most confident image is wrong: no group reaches 0.9 -> no threshold
    assert flag_threshold(probs, 1 - y, 0.9) == {"threshold": None, "target": 0.9, "target_met": False,
                                                 "coverage": 0.0, "accuracy": None}


def test_unmet_target_flags_everything(fitted):
    section = {**fitted.to_card(), "flag": {**fitted.to_card()["flag"], "threshold": None, "target_met": False}}
    cal = Calibrator.from_card({"classes": [f"c{i}" for i in range(K)], "calibration": section})
    assert cal.threshold is None and cal.to_card()["flag"]["target_met"] is False
    assert cal.uncertain(np.eye(K)).all()


def test_ece_and_reliability_bins_by_hand():
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    y = np.array([0, 1, 0, 0])
    bins = reliability_bins(probs, y, bins=15)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    top = bins[14]  # (14/15, 1]
    assert top["count"] == 2 and top["accuracy"] == 0.5 and top["confidence"] == pytest.approx(0.95)
    # 0.55 and 0.55 (the last row's top class) share bin (8/15, 9/15]; one right, one wrong
    mid = bins[8]
    assert mid["count"] == 2 and mid["accuracy"] == 0.5
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    coverage, risk = risk_coverage(probs, y)
    assert list(coverage) == [0.25, 0.5, 0.75, 1.0] and risk[-1] == 0.5


def test_card_round_trip(pair, fitted):
    _, _, test_p, _ = pair
    card = {"classes": [f"c{i}" for i in range(K)], "calibration": json.loads(json.dumps(fitted.to_card()))}
    back = Calibrator.from_card(card)
    assert back == fitted
    assert np.array_equal(back.probabilities(test_p), fitted.probabilities(test_p))
    assert back.answer_sets(back.probabilities(test_p)) == fitted.answer_sets(fitted.probabilities(test_p))
    assert back.to_card() == fitted.to_card()
    assert Calibrator.from_card({"classes": ["a", "b"]}) is None


def test_malformed_card_section_is_rejected(fitted):
    section = fitted.to_card()
    with pytest.raises(CalibrationError, match="malformed"):
        Calibrator.from_card({"classes": ["a", "b", "c", "d"], "calibration": {"method": "temperature"}})
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        Calibrator.from_card({"classes": ["a", "b", "c", "d"], "calibration": {**section, "method": "isotonic"}})
    vector = {**section, "method": "vector", "parameters": {"scale": [1.0, 1.0], "bias": [0.0, 0.0]}}
    with pytest.raises(CalibrationError, match="4 scales"):
        Calibrator.from_card({"classes": ["a", "b", "c", "d"], "calibration": vector})


def test_degenerate_inputs_give_clear_errors(fitted):
    with pytest.raises(CalibrationError, match="at least 2 classes"):
        Calibrator.fit(np.ones((30, 1)), np.zeros(30, dtype=int))
    with pytest.raises(CalibrationError, match="validation split is empty"):
        Calibrator.fit(np.zeros((0, 3)), np.zeros(0, dtype=int))
    p, _ = generated(6, n=60)
    with pytest.raises(CalibrationError, match="one class only"):
        Calibrator.fit(p, np.zeros(60, dtype=int))
    p, y = generated(7, n=12)
    with pytest.raises(CalibrationError, match="at least 19 calibration images"):
        conformal_quantile(p, y)
    assert min_calibration_size(0.95) == 19
    with pytest.raises(CalibrationError, match="sum to 1"):
        fitted.probabilities(np.full((2, K), 0.5))
    with pytest.raises(CalibrationError, match="fitted for 4"):
        fitted.probabilities(np.full((2, 3), 1 / 3))
    with pytest.raises(CalibrationError, match="class indices"):
        Calibrator.fit(*generated(8, n=40)[:1], np.full(40, K))


def test_section_writes_figures_and_the_readme_table(tmp_path, pair):
    val_p, val_y, test_p, test_y = pair
    section = calibration_section(val_p[:600], val_y[:600], test_p[:400], test_y[:400], old_threshold=0.9,
                                  figures=tmp_path, title="generated")
    for name in ("reliability.png", "risk_coverage.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and 5_000 < len(data) < 200_000
    t = section["test"]
    assert t["n"] == 400 and t["ece_after"] < t["ece_before"]
    assert t["old_flag"]["flagged"] == int((test_p[:400].max(1) < 0.9).sum())
    assert sum(t["sets"]["size_counts"].values()) == 400
    text = calibration_markdown({"calibration": section})
    assert text.startswith(CALIBRATION_START) and text.rstrip().endswith(CALIBRATION_END)
    assert f"{t['ece_after']:.4f}" in text and f"{t['sets']['coverage']:.1%}" in text
    assert "before: raw confidence < 0.9" in text


SHIPPED_TASKS = ("painting-subject", "painting-technique", "calligraphy-script", "calligrapher", "domain")


@pytest.mark.parametrize("task", SHIPPED_TASKS)
def test_shipped_cards_carry_a_loadable_calibration(task):
    card = json.loads((shipped_weights(task) / "card.json").read_text(encoding="utf-8"))
    cal = Calibrator.from_card(card)
    assert cal is not None and cal.level == CONFORMAL_LEVEL and cal.target_accuracy == TARGET_ACCURACY
    t = card["calibration"]["test"]
    assert t["n"] == card["metrics"]["n"] and sum(t["sets"]["size_counts"].values()) == t["n"]
    for name in ("reliability.png", "risk_coverage.png"):
        assert (shipped_weights(task) / name).read_bytes()[:4] == b"\x89PNG"
    readme = (shipped_weights(task) / "README.md").read_text(encoding="utf-8")
    assert readme.count(CALIBRATION_START) == 1 and f"{t['ece_after']:.4f}" in readme


@pytest.mark.parametrize("task", ["domain", "painting-technique"])  # the two smallest splits; temperature and vector
def test_shipped_calibration_figures_reproduce(task):
    folder = shipped_weights(task)
    split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    repo = folder.parent.parent
    if not (repo / split["test"][0]["path"]).exists():
        pytest.skip(f"the labelled images of {task} (../shared/data) are not beside the repository")
    predictor = Predictor.from_folder(folder, device="cpu")

    def score(part: str) -> tuple[np.ndarray, np.ndarray]:
        entries = split[part]
        canvases, _ = decode_canvases([str(repo / e["path"]) for e in entries], predictor.preprocessor.size,
                                      predictor.preprocessor.grayscale, progress=False)
        return (predictor.probabilities(canvases).numpy(),
                np.array([predictor.classes.index(e["label"]) for e in entries]))

    section = predictor.card["calibration"]
    shipped = Calibrator.from_card(predictor.card)
    refit = Calibrator.fit(*score("val"))
    assert refit.method == shipped.method
    assert refit.quantile == pytest.approx(shipped.quantile, abs=2e-3)
    test = shipped.evaluate(*score("test"), predictor.card["uncertainty_threshold"])
    assert test["ece_after"] == pytest.approx(section["test"]["ece_after"], abs=2e-3)
    for key in ("flagged", "errors", "errors_caught"):
        assert test["flag"][key] == section["test"]["flag"][key]
        assert test["old_flag"][key] == section["test"]["old_flag"][key]
    assert test["sets"]["size_counts"] == section["test"]["sets"]["size_counts"]


def test_review_queue_orders_by_answer_set_size_then_confidence() -> None:
    from inkapp.curation.review import pending_review

    records = [
        {"task": "t", "image_sha256": "a", "confidence": 0.40, "answer_set": ["x"]},
        {"task": "t", "image_sha256": "b", "confidence": 0.90, "answer_set": ["x", "y"]},
        {"task": "t", "image_sha256": "c", "confidence": 0.55, "answer_set": ["x", "y"]},
        {"task": "t", "image_sha256": "d", "confidence": 0.30},
        {"task": "t", "image_sha256": "e", "confidence": 0.20, "answer_set": ["x"]},
    ]
    queue = pending_review(records, [{"task": "t", "image_sha256": "e"}])
    assert [r["image_sha256"] for r in queue] == ["c", "b", "d", "a"]
