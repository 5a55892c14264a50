"""Per-label calibration maps (calibration.py): they recover known distortions, lower the calibration error,
keep decisions under mapped thresholds, and leave a label without both classes alone."""

from __future__ import annotations

import numpy as np
import pytest

from mlbert.calibration import apply, fit, fit_affine, logits_of, map_thresholds
from mlbert.metrics import apply_thresholds, calibration_metrics


def _overconfident(n: int = 6000, temperature: float = 2.0, seed: int = 0):
    """Scores sigmoid(z) whose truth follows sigmoid(z / T): overconfident by T."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, size=(n, 3)) - 1
    truth = 1 / (1 + np.exp(-z / temperature))
    return 1 / (1 + np.exp(-z)), (rng.random(z.shape) < truth).astype(np.int8)


def test_temperature_finds_the_distortion_and_lowers_the_error():
    probs, y = _overconfident()
    fitted = fit_affine(probs, y, "temperature")
    np.testing.assert_allclose(1 / fitted["scale"], 2.0, rtol=0.15)
    assert (fitted["shift"] == 0).all()
    before, after = calibration_metrics(probs, y), calibration_metrics(apply(probs, fitted, "temperature"), y)
    assert after["ece"] < before["ece"] / 2 and after["brier"] < before["brier"]


def test_platt_finds_scale_and_shift():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, size=(8000, 2))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-(0.5 * z + 1.0)))).astype(np.int8)
    fitted = fit_affine(1 / (1 + np.exp(-z)), y, "platt")
    np.testing.assert_allclose(fitted["scale"], 0.5, rtol=0.15)
    np.testing.assert_allclose(fitted["shift"], 1.0, atol=0.15)


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_mapped_thresholds_decide_as_before(method):
    probs, y = _overconfident(seed=2)
    fitted = fit(probs, y, method)
    calibrated = apply(probs, fitted, method)
    for cut in (0.5, np.array([0.1, 0.4, 0.8])):
        raw = apply_thresholds(probs, cut)
        np.testing.assert_array_equal(apply_thresholds(calibrated, map_thresholds(cut, fitted, 3)), raw)


def test_a_label_without_both_classes_keeps_its_scores():
    probs, y = _overconfident(seed=3)
    y[:, 1] = 0
    for method in ("temperature", "platt", "isotonic"):
        calibrated = apply(probs, fit(probs, y, method), method)
        np.testing.assert_allclose(calibrated[:, 1], probs[:, 1], atol=1e-9)


def test_isotonic_is_monotone_per_label():
    probs, y = _overconfident(seed=4)
    calibrated = apply(probs, fit(probs, y, "isotonic"), "isotonic")
    for j in range(probs.shape[1]):
        order = np.argsort(probs[:, j])
        assert (np.diff(calibrated[order, j]) >= -1e-12).all()
    assert calibration_metrics(calibrated, y)["ece"] < calibration_metrics(probs, y)["ece"]


def test_logits_survive_scores_of_exactly_0_and_1():
    assert np.isfinite(logits_of(np.array([[0.0, 1.0, 0.5]]))).all()
