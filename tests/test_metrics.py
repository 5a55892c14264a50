import numpy as np
import pytest
from sklearn import metrics as skm

from mlbert.metrics import (
    METRIC_ORDER,
    apply_thresholds,
    compute_metrics,
    decision_metrics,
    label_ranking_average_precision,
    metrics_by_mode,
    per_label_table,
    precision_at_k,
    ranking_metrics,
)
from mlbert.thresholds import Thresholds


@pytest.fixture
def random_case():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 6)) < 0.3).astype(np.float32)
    probs = np.clip(0.6 * y + 0.5 * rng.random((200, 6)), 0, 1).astype(np.float32)
    return probs, y


def test_matches_scikit_learn_on_random_data(random_case):
    probs, y = random_case
    m = compute_metrics(probs, y, 0.5)
    pred = (probs >= 0.5).astype(int)
    assert m["micro_f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert m["samples_f1"] == pytest.approx(skm.f1_score(y, pred, average="samples", zero_division=1))
    assert m["micro_precision"] == pytest.approx(skm.precision_score(y, pred, average="micro"))
    assert m["macro_recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["micro_roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, average="micro"))
    assert m["macro_roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, average="macro"))
    assert m["macro_pr_auc"] == pytest.approx(skm.average_precision_score(y, probs, average="macro"))
    assert m["hamming_loss"] == pytest.approx(skm.hamming_loss(y, pred))
    assert m["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["lrap"] == pytest.approx(skm.label_ranking_average_precision_score(y, probs))


@pytest.mark.parametrize("levels", [0, 3, 11])
def test_lrap_matches_scikit_learn_with_ties_and_all_true_texts(levels):
    rng = np.random.default_rng(levels)
    y = (rng.random((300, 9)) < 0.3).astype(np.int8)
    y[:5] = 1  # every label true: scores 1
    y[5:10] = 0  # no label true: left out
    probs = rng.random((300, 9))
    if levels:  # few distinct scores: many ties, which share the lowest rank
        probs = np.round(probs * levels) / levels
    has = y.sum(axis=1) > 0
    expected = skm.label_ranking_average_precision_score(y[has], probs[has])
    assert label_ranking_average_precision(probs, y) == pytest.approx(expected, abs=1e-12)
    assert label_ranking_average_precision(probs, y, block=20) == pytest.approx(expected, abs=1e-12)  # 2 rows a block
    assert np.isnan(label_ranking_average_precision(probs, np.zeros_like(y)))


def test_compute_metrics_is_the_decision_and_ranking_metrics_in_the_documented_order(random_case):
    probs, y = random_case
    decision, ranking = decision_metrics(probs, y, 0.4), ranking_metrics(probs, y)
    assert not set(decision) & set(ranking)
    assert set(decision) | set(ranking) == set(METRIC_ORDER)
    m = compute_metrics(probs, y, 0.4)
    assert list(m) == list(METRIC_ORDER)
    assert m == {**decision, **ranking}
    thresholds = Thresholds(global_=0.4, per_label=np.full(6, 0.3), fixed=0.5)
    for mode, by_mode in metrics_by_mode(probs, y, thresholds).items():
        assert by_mode == compute_metrics(probs, y, thresholds.for_mode(mode))


def test_hand_worked_case():
    y = np.array([[1, 0, 0], [0, 1, 1]], dtype=np.float32)
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.4]], dtype=np.float32)
    m = compute_metrics(probs, y, 0.5)
    # predicted: {0, 1} and {1}: tp=2, fp=1, fn=1 -> micro P = R = F1 = 2/3
    assert m["micro_f1"] == pytest.approx(2 / 3)
    # per label F1: label0 1.0, label1 2/3 (tp1 fp1), label2 0 -> macro 5/9
    assert m["macro_f1"] == pytest.approx(5 / 9)
    # top-1 labels: 0 (true), 1 (true) -> P@1 = 1; top-3 holds all 3 labels: (1 + 2) / 6
    assert m["p_at_1"] == 1.0 and m["p_at_3"] == pytest.approx(0.5)
    assert m["subset_accuracy"] == 0.0 and m["hamming_loss"] == pytest.approx(2 / 6)


def test_labels_with_one_class_are_skipped_for_roc_auc_and_counted():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]], dtype=np.float32)
    probs = np.array([[0.8, 0.1, 0.9], [0.3, 0.2, 0.8], [0.7, 0.1, 0.7]], dtype=np.float32)
    m = compute_metrics(probs, y)
    assert m["roc_auc_labels_skipped"] == 2 and m["macro_roc_auc"] == 1.0
    # macro-F1 only over labels present in the split (label 1 never occurs)
    assert m["n_labels_evaluated"] == 2 and m["macro_f1"] == pytest.approx(1.0)


def test_example_with_no_labels_predicted_empty_scores_one_in_samples_f1():
    y = np.array([[0, 0], [1, 0]], dtype=np.float32)
    probs = np.array([[0.1, 0.2], [0.9, 0.1]], dtype=np.float32)
    assert compute_metrics(probs, y)["samples_f1"] == 1.0


def test_per_label_thresholds_apply_per_column_and_table_reports_them():
    probs = np.array([[0.3, 0.3]], dtype=np.float32)
    assert apply_thresholds(probs, np.array([0.2, 0.4])).tolist() == [[1, 0]]
    y = np.array([[1, 1], [0, 0]], dtype=np.float32)
    rows = per_label_table(np.array([[0.3, 0.3], [0.1, 0.1]], dtype=np.float32), y, np.array([0.2, 0.4]), ["a", "b"])
    assert [r["f1"] for r in rows] == [1.0, 0.0] and [r["threshold"] for r in rows] == [0.2, 0.4]
    assert rows[0]["support"] == 1 and rows[0]["roc_auc"] == 1.0


def test_precision_at_k_handles_k_above_label_count():
    y = np.array([[1, 0]], dtype=np.float32)
    assert precision_at_k(np.array([[0.2, 0.9]]), y, 1) == 0.0
    assert precision_at_k(np.array([[0.2, 0.9]]), y, 5) == 0.5


def test_jaccard_is_the_per_text_overlap_and_an_empty_text_scores_one(random_case):
    # Issue 21: multi-label accuracy, the headline figure of emotion and tagging benchmarks.
    y = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.7, 0.4], [0.1, 0.1, 0.1], [0.1, 0.1, 0.9]], dtype=np.float32)
    # |true & pred| / |true | pred| per text: 1/2, 1/2, (nothing to find, nothing claimed) 1, 0/3
    assert compute_metrics(probs, y, 0.5)["jaccard"] == pytest.approx((0.5 + 0.5 + 1 + 0) / 4)
    probs, y = random_case
    pred = (probs >= 0.5).astype(int)
    assert compute_metrics(probs, y, 0.5)["jaccard"] == pytest.approx(
        skm.jaccard_score(y, pred, average="samples", zero_division=1)
    )


def test_a_model_of_one_label_has_every_metric():
    """scikit-learn reads one column as binary data; the metrics must equal those with an empty label beside it."""
    rng = np.random.default_rng(0)
    y = (rng.random((50, 1)) < 0.3).astype(float)
    probs = np.clip(0.6 * y + 0.5 * rng.random((50, 1)), 0, 1)
    one = compute_metrics(probs, y)
    two = compute_metrics(np.concatenate([probs, np.zeros_like(probs)], 1), np.concatenate([y, np.zeros_like(y)], 1))
    assert one["n_labels"] == 1
    for key in ("micro_f1", "macro_f1", "samples_f1", "jaccard", "subset_accuracy", "micro_roc_auc"):
        assert one[key] == pytest.approx(two[key]), key


def test_calibration_metrics_by_hand():
    from mlbert.metrics import calibration_metrics

    probs = np.array([[0.05, 0.95], [0.05, 0.95], [0.55, 0.35], [0.55, 0.35]])
    targets = np.array([[0, 1], [0, 1], [1, 0], [0, 0]])
    got = calibration_metrics(probs, targets, bins=10)
    # cells by bin: 0.05 x2 (rate 0), 0.95 x2 (rate 1), 0.55 x2 (rate 0.5), 0.35 x2 (rate 0): |gap| x share
    assert got["ece"] == pytest.approx((2 * 0.05 + 2 * 0.05 + 2 * 0.05 + 2 * 0.35) / 8)
    # label 0: bins 0.05 (gap .05, 2 cells), 0.55 (gap .05, 2 cells); label 1: 0.95 (.05, 2), 0.35 (.35, 2)
    assert got["ece_label_mean"] == pytest.approx(((0.1 + 0.1) / 4 + (0.1 + 0.7) / 4) / 2)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(targets.ravel(), probs.ravel()))
    assert got["reliability"]["count"][0] == 2 and sum(got["reliability"]["count"]) == 8
    assert got["reliability"]["positive_rate"][5] == pytest.approx(0.5)


def test_calibrated_scores_have_a_small_error_and_overconfident_ones_a_large_one():
    from mlbert.metrics import calibration_metrics

    rng = np.random.default_rng(1)
    probs = rng.random((4000, 4))
    targets = (rng.random(probs.shape) < probs).astype(np.int8)
    honest, overconfident = calibration_metrics(probs, targets), calibration_metrics(probs.round(), targets)
    assert honest["ece"] < 0.02 and overconfident["ece"] > 0.2
    assert honest["brier"] < overconfident["brier"]
