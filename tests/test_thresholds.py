import numpy as np

from mlbert.thresholds import GRID, tune_global_threshold, tune_label_thresholds


def _micro_f1(probs, y, t):
    pred = probs >= t
    tp = (pred & (y > 0)).sum()
    return 2 * tp / (pred.sum() + (y > 0).sum())


def test_global_threshold_maximises_micro_f1_over_the_grid():
    rng = np.random.default_rng(1)
    y = (rng.random((300, 5)) < 0.2).astype(np.float32)
    probs = np.clip(0.35 * y + 0.4 * rng.random((300, 5)), 0, 1)
    t, f1 = tune_global_threshold(probs, y)
    assert f1 == max(_micro_f1(probs, y, g) for g in GRID)
    assert abs(_micro_f1(probs, y, t) - f1) < 1e-12
    assert f1 > _micro_f1(probs, y, 0.5)  # under-confident model: 0.5 is too high


def test_separable_label_gets_a_threshold_inside_the_gap():
    probs = np.array([[0.05], [0.1], [0.15], [0.3], [0.35]])
    y = np.array([[0], [0], [0], [1], [1]], dtype=np.float32)
    t = tune_label_thresholds(probs, y, fallback=0.5, min_support=1)[0]
    assert 0.15 < t <= 0.3  # middle of the best plateau (0.16 .. 0.30)


def test_rare_labels_fall_back_to_the_global_threshold():
    probs = np.array([[0.2, 0.9], [0.1, 0.8], [0.3, 0.1], [0.05, 0.2]])
    y = np.array([[1, 1], [0, 1], [0, 0], [0, 0]], dtype=np.float32)
    out = tune_label_thresholds(probs, y, fallback=0.42, min_support=2)
    assert out[0] == 0.42 and out[1] != 0.42
