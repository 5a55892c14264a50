"""The file jobs behind the CLI: each split is scored once, and what they write matches a fresh evaluation."""

import pytest

from helpers import tiny_settings
from mlbert import MultiLabelClassifier, TrainConfig
from mlbert.cli.jobs import train_job


def test_train_job_scores_dev_once_and_test_once(tmp_path, tiny_encoder, demo_files, demo_splits, monkeypatch):
    scored = []
    original = MultiLabelClassifier.evaluate_with_probs

    def spy(self, texts, labels, progress=False):
        scored.append(len(texts))
        return original(self, texts, labels, progress)

    monkeypatch.setattr(MultiLabelClassifier, "evaluate_with_probs", spy)
    out = tmp_path / "run"
    metrics = train_job(
        TrainConfig(**tiny_settings(tiny_encoder, epochs=1)),
        demo_files["train"],
        demo_files["dev"],
        out,
        test=demo_files["test"],
        progress=False,
        report=True,
    )
    assert scored == [len(demo_splits["test"])]  # dev reused the probabilities fit tuned the thresholds on
    dev = demo_splits["dev"]
    fresh = MultiLabelClassifier.load(out).evaluate([r["text"] for r in dev], [r["labels"] for r in dev])
    for mode, values in fresh["metrics"].items():
        assert metrics["dev"]["metrics"][mode] == pytest.approx(values, abs=1e-6)
    assert metrics["dev"]["truncated_share"] == fresh["truncated_share"]
    # threshold_mode auto (the default): the mode chosen on held-out dev halves is the model's default everywhere
    choice = metrics["threshold_mode_choice"]
    assert choice["mode"] in ("fixed", "global", "per_label") and choice["why"]
    assert metrics["dev"]["default_mode"] == metrics["test"]["default_mode"] == choice["mode"]
    assert MultiLabelClassifier.load(out).default_mode_ == choice["mode"]
    assert (out / "report.html").is_file()
