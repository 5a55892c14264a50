import numpy as np
import pytest

from mlbert.metrics import decision_metrics
from mlbert.thresholds import GRID, f1, f1_by_global_threshold, tune_global_threshold, tune_label_thresholds


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


def test_f1_curve_is_the_metrics_at_each_cut_off():
    rng = np.random.default_rng(2)
    y = (rng.random((150, 5)) < 0.25).astype(np.float32)
    y[:, 4] = 0  # a label no text has: left out of macro, as in metrics.py
    probs = np.clip(0.5 * y + 0.6 * rng.random((150, 5)), 0, 1).astype(np.float32)
    grid = GRID[::7]
    curve = f1_by_global_threshold(probs, y, grid)
    for k, t in enumerate(grid):
        m = decision_metrics(probs, y, float(t))
        assert curve["micro_f1"][k] == pytest.approx(m["micro_f1"], abs=1e-12)
        assert curve["macro_f1"][k] == pytest.approx(m["macro_f1"], abs=1e-12)


@pytest.mark.parametrize("average", ["micro", "macro", "weighted", "samples"])
def test_f1_from_counts_is_the_reports_f1(average):
    # choose_mode scores its candidates with thresholds.f1; the numbers must be the report's (scikit-learn):
    # a label no text has (left out of macro/weighted), texts with no label and texts given none, per-label cuts.
    rng = np.random.default_rng(5)
    y = (rng.random((200, 6)) < 0.25).astype(np.float32)
    y[:, 4] = 0
    y[:20] = 0
    probs = np.clip(0.3 * y + 0.6 * rng.random((200, 6)), 0, 1)
    probs[10:30] = 0
    for cut in (0.5, rng.uniform(0.2, 0.8, 6), 0.99):
        assert f1(probs, y, cut, average) == pytest.approx(decision_metrics(probs, y, cut)[f"{average}_f1"], abs=1e-12)
    nothing = np.zeros_like(y)
    assert f1(probs, nothing, 0.5, average) == pytest.approx(
        decision_metrics(probs, nothing, 0.5)[f"{average}_f1"], abs=1e-12
    )


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


def weak_model(seed: int = 0):
    """Scores of an undertrained model: one frequent label it half knows, 27 it does not know at all."""
    rng = np.random.default_rng(seed)
    n, n_labels = 600, 28
    y = np.zeros((n, n_labels), np.float32)
    y[np.arange(n), rng.choice(n_labels, n, p=np.r_[0.4, np.full(n_labels - 1, 0.6 / (n_labels - 1))])] = 1
    probs = (rng.random((n, n_labels)) * 0.2 + 0.1 * y[:, :1]).astype(np.float32)
    probs[:, 0] += 0.3 * y[:, 0]
    return probs, y


def test_choose_mode_refuses_per_label_thresholds_that_only_fit_their_tuning_data():
    # Issue 21: per-label thresholds gave an undertrained model 16.7 labels a text and micro-F1 0.10 while the
    # global one gave 0.28; the per-label mode shipped anyway.
    from mlbert.thresholds import choose_mode, micro_f1, tune

    probs, y = weak_model()
    tuned = tune(probs[:300], y[:300], 3)
    assert micro_f1(probs[300:], y[300:], tuned.per_label) < 0.2  # the failure, on rows it was not tuned on
    choice = choose_mode(probs, y, np.arange(300, 600), 3, seed=0)
    assert choice.mode == "global" and choice.scores["global"] > choice.scores["per_label"] + 0.3
    assert "per_label" in choice.why


def test_choose_mode_maximises_the_score_it_is_given():
    from mlbert.thresholds import choose_mode

    probs, y = weak_model()
    assert choose_mode(probs, y, np.arange(300, 600), 3, seed=0).mode == "global"  # by micro-F1

    def at_one_half(p, t, cut):  # a score only the fixed cut-off earns
        return float(np.isscalar(cut) and cut == 0.5)

    choice = choose_mode(probs, y, np.arange(300, 600), 3, seed=0, score=at_one_half, name="half")
    assert choice.mode == "fixed" and choice.scores["fixed"] == 1.0 and choice.scores["per_label"] == 0.0
    assert choice.why.startswith("best half")


def test_choose_mode_keeps_per_label_on_ties_and_with_too_little_held_out_data():
    from mlbert.thresholds import choose_mode

    y = np.eye(4, dtype=np.float32)[np.arange(200) % 4]
    probs = 0.1 + 0.8 * y  # separable: every mode scores 1.0
    assert choose_mode(probs, y, np.arange(100, 200), 3).mode == "per_label"
    choice = choose_mode(probs, y, np.arange(190, 200), 3)
    assert choice.mode == "per_label" and choice.scores == {} and "too few" in choice.why


def near_tie(seed: int):
    """A model that knows one frequent label fairly and eight rare ones (20 texts each) a little: its modes'
    micro-F1 are close (the frequent label dominates it) and their macro-F1 apart."""
    rng = np.random.default_rng(seed)
    n, rare = 600, 8
    y = np.zeros((n, 1 + rare), np.float32)
    y[:, 0] = rng.random(n) < 0.5
    for j in range(1, 1 + rare):
        y[rng.choice(n, 20, replace=False), j] = 1
    probs = np.empty_like(y)
    probs[:, 0] = np.clip(0.25 + 0.5 * y[:, 0] + rng.normal(0, 0.2, n), 0, 1)
    probs[:, 1:] = np.clip(rng.random((n, rare)) * 0.3 + 0.12 * y[:, 1:] + rng.normal(0, 0.03, (n, rare)), 0, 1)
    return probs, y


def test_choose_mode_breaks_a_tie_within_one_standard_error_by_the_other_f1():
    from functools import partial

    from mlbert.thresholds import choose_mode, f1

    micro, macro = partial(f1, average="micro"), partial(f1, average="macro")
    probs, y = near_tie(0)
    rows = np.arange(300, 600)
    by_micro = choose_mode(probs, y, rows, 3, score=micro)
    assert by_micro.mode == "global" and by_micro.tie_scores is None
    choice = choose_mode(probs, y, rows, 3, score=micro, tie_break=macro, tie_name="macro_f1")
    gap = choice.scores["global"] - choice.scores["per_label"]
    assert 0 < gap <= choice.standard_errors["per_label"]  # a tie: per_label is within one standard error
    assert choice.tie_scores["per_label"] > choice.tie_scores["global"]  # and ahead on macro-F1
    assert choice.mode == "per_label" and "within one standard error" in choice.why and "macro-F1" in choice.why
    assert choice.scores == by_micro.scores and choice.standard_errors["global"] == 0.0
    assert choose_mode(probs, y, rows, 3, score=micro, tie_break=macro, tie_name="macro_f1") == choice  # seeded

    # a gap beyond the standard error is no tie, however far ahead the other F1 is
    probs, y = near_tie(6)
    choice = choose_mode(probs, y, rows, 3, score=micro, tie_break=macro, tie_name="macro_f1")
    assert choice.tie_scores["per_label"] > choice.tie_scores["global"]
    assert choice.scores["global"] - choice.scores["per_label"] > choice.standard_errors["per_label"]
    assert choice.mode == "global" and "standard error" not in choice.why


def test_the_chosen_mode_travels_with_the_thresholds():
    from mlbert.thresholds import Thresholds

    t = Thresholds(global_=0.4, per_label=np.array([0.3, 0.6]), default="global")
    assert Thresholds.from_dict(t.to_dict()).default == "global"
    assert Thresholds.from_dict({"global": 0.4, "per_label": [0.3, 0.6]}).default is None  # folders from before
