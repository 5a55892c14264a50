import numpy as np

from mlbert.diagnostics import collapse_warning, score_separation


def test_scores_at_the_prior_are_reported_as_collapse():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 10)) < 0.1).astype(np.float32)
    prior = np.broadcast_to(y.mean(axis=0), y.shape) + rng.normal(0, 0.002, y.shape)
    assert score_separation(prior, y) < 0.01
    message = collapse_warning(prior, y, macro_f1=0.02)
    assert message is not None and "--lr" in message


def test_a_model_that_separates_labels_is_not_collapsed():
    rng = np.random.default_rng(0)
    y = (rng.random((500, 10)) < 0.1).astype(np.float32)
    good = np.clip(0.5 * y + 0.3 * rng.random(y.shape), 0, 1)
    assert score_separation(good, y) > 0.3
    assert collapse_warning(good, y, macro_f1=0.02) is None  # low F1 alone is not collapse
