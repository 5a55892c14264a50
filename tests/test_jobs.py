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


def test_the_model_folder_carries_a_card_that_tune_keeps_current(tmp_path, trained_dir, demo_files):
    # Issue 21: a model card in the Hugging Face format (front matter, labels, data, metrics per mode, settings,
    # the command, use and limits), brought up to date by `mlbert tune`.
    import json
    import shutil

    from mlbert.cli.jobs import tune_job

    folder = tmp_path / "model"
    shutil.copytree(trained_dir, folder)
    card = (folder / "README.md").read_text()
    manifest = json.loads((folder / "mlbert.json").read_text())
    assert card.startswith('---\nlibrary_name: "mlbert"') and "pipeline_tag" in card
    for section in ("## Labels", "## Data", "## Metrics", "## Settings", "## How it was made", "## Intended use"):
        assert section in card
    assert all(f"`{label}`" in card for label in manifest["labels"]) and "| micro_f1 |" in card
    tune_job(folder, [demo_files["dev"]], progress=False)
    assert "re-tuned since" in (folder / "README.md").read_text()
