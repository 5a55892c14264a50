import re

import numpy as np
import pytest

from helpers import tiny_settings
from mlbert import ConfigError, DataError, MultiLabelClassifier, NotFittedError, TrainConfig


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        MultiLabelClassifier().predict(["text"])


def test_init_only_stores_settings():
    clf = MultiLabelClassifier(TrainConfig(epochs=2), lr=1e-5)
    assert clf.config.epochs == 2 and clf.config.lr == 1e-5 and not hasattr(clf, "model_")


def test_fit_predict_evaluate(tiny_encoder, demo_splits):
    train, dev, test = demo_splits["train"], demo_splits["dev"], demo_splits["test"]
    clf = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=4)).fit(
        [r["text"] for r in train],
        [r["labels"] for r in train],
        dev=([r["text"] for r in dev], [r["labels"] for r in dev]),
        progress=False,
    )
    texts = [r["text"] for r in test]
    probs = clf.predict_proba(texts)
    assert probs.shape == (len(texts), len(clf.labels_))
    predicted = clf.predict(texts)
    assert len(predicted) == len(texts) and all(set(p) <= set(clf.labels_) for p in predicted)
    report = clf.evaluate(texts, [r["labels"] for r in test])
    assert set(report["metrics"]) == {"fixed", "global", "per_label"}
    # The tiny encoder learns the demo task well beyond chance.
    assert report["metrics"]["per_label"]["micro_f1"] > 0.5
    assert report["metrics"]["global"]["micro_f1"] >= report["metrics"]["fixed"]["micro_f1"] - 0.05
    assert clf.predict(texts[:3], top_k=1, threshold=0.0) == [[clf.labels_[int(np.argmax(p))]] for p in probs[:3]]


def test_thresholds_are_tuned_on_train_and_dev_pooled_or_dev_alone(tiny_encoder, demo_splits):
    train, dev = demo_splits["train"][:96], demo_splits["dev"][:40]
    args = ([r["text"] for r in train], [r["labels"] for r in train])
    dev_args = ([r["text"] for r in dev], [r["labels"] for r in dev])
    pooled = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1)).fit(*args, dev=dev_args, progress=False)
    assert pooled.training_["threshold_tuning"] == {"data": "train+dev", "n_examples": 136, "n_train_examples": 96}
    alone = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1, threshold_data="dev")).fit(
        *args, dev=dev_args, progress=False
    )
    assert alone.training_["threshold_tuning"] == {"data": "dev", "n_examples": 40, "n_train_examples": 0}
    # Re-tuning on dev alone reproduces the dev-only thresholds of the same weights.
    before = alone.thresholds_
    after = alone.tune_thresholds(*dev_args)
    assert after.global_ == before.global_ and np.array_equal(after.per_label, before.per_label)


def test_fit_without_dev_keeps_thresholds_at_one_half(tiny_encoder, demo_splits):
    rows = demo_splits["train"][:64]
    clf = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1)).fit(
        [r["text"] for r in rows], [r["labels"] for r in rows], progress=False
    )
    assert clf.thresholds_.global_ == 0.5 and (clf.thresholds_.per_label == 0.5).all()


@pytest.mark.parametrize(
    "texts, labels, pattern",
    [
        ("one string", [["a"]], "one string"),
        (["a", ""], [["x"], ["y"]], r"texts\[1\] is empty"),
        (["a", "b"], [["x"]], "1 label lists for 2 texts"),
        (["a"], ["x"], r"labels\[0\] is str"),
        (["a"], [[]], "no labels at all"),
    ],
)
def test_bad_python_input_raises_data_error(texts, labels, pattern):
    with pytest.raises(DataError, match=pattern):
        MultiLabelClassifier().fit(texts, labels)


def test_threshold_tuning_samples_a_training_set_past_the_cap(tiny_encoder, demo_splits, monkeypatch):
    import mlbert.classifier as classifier

    monkeypatch.setattr(classifier, "MAX_THRESHOLD_TRAIN", 50)
    train, dev = demo_splits["train"][:96], demo_splits["dev"][:40]
    clf = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1)).fit(
        [r["text"] for r in train],
        [r["labels"] for r in train],
        dev=([r["text"] for r in dev], [r["labels"] for r in dev]),
        progress=False,
    )
    assert clf.training_["threshold_tuning"] == {"data": "train+dev", "n_examples": 90, "n_train_examples": 50}


def test_fit_keeps_the_dev_probabilities_it_tuned_on(tiny_encoder, demo_splits):
    train, dev = demo_splits["train"], demo_splits["dev"]
    dev_texts, dev_labels = [r["text"] for r in dev], [r["labels"] for r in dev]
    clf = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1)).fit(
        [r["text"] for r in train], [r["labels"] for r in train], dev=(dev_texts, dev_labels), progress=False
    )
    np.testing.assert_allclose(clf.dev_probs_, clf.predict_proba(dev_texts, calibrated=False), atol=1e-6)
    from_probs = clf.evaluate_probs(clf.dev_probs_, dev_labels, clf.truncated_["dev"])
    fresh = clf.evaluate(dev_texts, dev_labels)
    for mode, values in fresh["metrics"].items():
        assert from_probs["metrics"][mode] == pytest.approx(values)
    assert from_probs["per_label"] == fresh["per_label"]


def test_threshold_mode_auto_picks_the_mode_by_the_runs_f1(tiny_encoder, demo_splits):
    from mlbert.data import binarize
    from mlbert.metrics import decision_metrics
    from mlbert.thresholds import choose_mode

    train, dev = demo_splits["train"], demo_splits["dev"]
    dev_texts, dev_labels = [r["text"] for r in dev], [r["labels"] for r in dev]
    settings = tiny_settings(tiny_encoder, epochs=1, metric="macro_f1", threshold_data="dev")
    clf = MultiLabelClassifier(**settings).fit(
        [r["text"] for r in train], [r["labels"] for r in train], dev=(dev_texts, dev_labels), progress=False
    )
    y, _ = binarize(dev_labels, clf.labels_)
    rows, support, seed = np.arange(len(y)), clf.config.min_threshold_support, clf.config.seed
    macro = choose_mode(clf.dev_probs_, y, rows, support, seed, lambda p, t, c: decision_metrics(p, t, c)["macro_f1"],
                        "macro_f1", lambda p, t, c: decision_metrics(p, t, c)["micro_f1"], "micro_f1")  # fmt: skip
    assert clf.training_["threshold_mode_choice"] == {
        "mode": macro.mode, "metric": "macro_f1", "heldout_macro_f1": macro.scores,
        "heldout_micro_f1": macro.tie_scores, "standard_error": macro.standard_errors, "why": macro.why,
    }  # fmt: skip
    assert "macro-F1" in macro.why and macro.scores != choose_mode(clf.dev_probs_, y, rows, support, seed).scores
    assert clf.thresholds_.default == macro.mode
    # a metric the thresholds do not change (a ranking metric): micro-F1 decides, as it always did by default
    clf.config = clf.config.replace(metric="lrap")
    clf._choose_mode(clf.dev_probs_, y, rows)
    assert clf.threshold_choice_["metric"] == "micro_f1" and "heldout_micro_f1" in clf.threshold_choice_


class FakeFrame:
    """What matters of a pandas DataFrame here: iterating it gives its column names."""

    columns = ("body",)

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(self.columns)

    def __len__(self):
        return self.n

    iloc = None  # a DataFrame's row indexer; its presence is what marks a table


class FakeHFDataset:
    """What matters of a datasets.Dataset: iterating it gives one dict per row."""

    column_names = ("text", "labels")
    features = None

    def __iter__(self):
        return iter([{"text": "a", "labels": []}])


@pytest.mark.parametrize("table, fix", [(FakeFrame(3), "df['body'].tolist()"), (FakeHFDataset(), "ds['text']")])
def test_a_table_is_refused_naming_the_column_to_pass(table, fix):
    # Issue 21: clf.predict_proba(df[["body"]]) on 3 rows returned 1 row (the column name was read as a text).
    clf = MultiLabelClassifier()
    with pytest.raises(DataError, match=re.escape(fix)):
        clf.fit(table, [[]] * 3)


def test_a_real_dataframe_is_refused_too():
    pandas = pytest.importorskip("pandas")  # not a dependency; checked where it is installed
    with pytest.raises(DataError, match="DataFrame"):
        MultiLabelClassifier().fit(pandas.DataFrame({"body": ["a", "b", "c"]}), [[]] * 3)


# -- scikit-learn conventions (issue 21) -------------------------------------------------------------------
def test_settings_are_estimator_parameters_and_clone_works():
    from sklearn.base import clone, is_classifier

    clf = MultiLabelClassifier(epochs=2, lr=5e-5)
    assert clf.get_params()["epochs"] == 2 and set(clf.get_params()) >= {"head", "pooling", "threshold_mode"}
    assert clf.set_params(epochs=3) is clf and clf.config.epochs == 3
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params() and not hasattr(copy, "model_")
    assert is_classifier(clf) and repr(copy) == "MultiLabelClassifier(epochs=3, lr=5e-05)"
    with pytest.raises(ConfigError, match="learning_rate"):
        clf.set_params(learning_rate=1e-4)


def test_the_estimator_checks_that_apply_to_text_input_pass():
    # Most of sklearn's checks feed numeric arrays, which a text classifier cannot take; check_set_params sets
    # nonsense values and expects them taken until fit, where mlbert refuses a wrong setting at once.
    from sklearn.utils.estimator_checks import (
        check_get_params_invariance,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
    )

    for check in (check_get_params_invariance, check_no_attributes_set_in_init, check_parameters_default_constructible):
        check("MultiLabelClassifier", MultiLabelClassifier())


def test_grid_search_over_a_setting(tiny_encoder, demo_splits):
    from sklearn.model_selection import GridSearchCV, KFold

    rows = demo_splits["train"][:80]
    texts, labels = [r["text"] for r in rows], [r["labels"] for r in rows]
    search = GridSearchCV(
        MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1, threshold_data="dev")),
        {"head_lr": [0.1, 0.03]},
        cv=KFold(2),  # sklearn's stratified default does not take label lists
        refit=False,
    )
    search.fit(texts, labels)
    assert search.best_params_["head_lr"] in (0.1, 0.03) and 0.0 <= search.best_score_ <= 1.0
    fitted = MultiLabelClassifier(**tiny_settings(tiny_encoder, epochs=1)).fit(texts, labels, progress=False)
    assert list(fitted.classes_) == fitted.labels_ and fitted.score(texts, labels) == pytest.approx(
        fitted.evaluate(texts, labels)["metrics"][fitted.default_mode_]["micro_f1"]
    )


def test_max_length_auto_is_clamped_to_the_encoders_positions(tiny_encoder, demo_splits):
    # The tiny BERT has 128 positions: "auto" (256) would fail at the first batch of long texts.
    from mlbert.classifier import _cut_length

    train = demo_splits["train"][:40]
    long_texts = [" ".join([r["text"]] * 30) for r in train]  # far past 128 tokens
    clf = MultiLabelClassifier(**{**tiny_settings(tiny_encoder, epochs=1), "max_length": "auto"})
    clf.fit(long_texts, [r["labels"] for r in train], progress=False)
    assert clf.config.max_length == 128
    assert clf.predict_proba(long_texts[:2]).shape == (2, len(clf.labels_))
    # under a budget no cut to 128 is planned where the texts are read at 128 already
    assert _cut_length(TrainConfig(time_budget="5m"), 128) == 0
    assert _cut_length(TrainConfig(time_budget="5m"), 256) == 128
