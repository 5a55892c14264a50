"""Adding labels to a trained model (label_adding.py, MultiLabelClassifier.add_labels, `mlbert add-labels`): the
old labels score exactly as before and keep their thresholds and column order, the new ones learn, and the
joined folder saves, loads, exports to ONNX and serves every label."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import tiny_settings, write_jsonl
from mlbert import MultiLabelClassifier
from mlbert.config import DISTILL_EPOCHS, TrainConfig
from mlbert.data import binarize
from mlbert.encoders import load_encoder
from mlbert.errors import ConfigError, DataError
from mlbert.label_adding import joined_model, model_for_new_labels
from mlbert.model import MultiLabelModel
from mlbert.thresholds import tune_global_threshold

NEW = ("refund", "shipping", "bug")  # the labels the first model never sees


def _without_new(rows: list[dict]) -> list[dict]:
    return [{**r, "labels": [label for label in r["labels"] if label not in NEW]} for r in rows]


@pytest.fixture(scope="module")
def old_and_added(tiny_encoder, demo_splits):
    train, dev = demo_splits["train"], demo_splits["dev"]
    old_train, old_dev = _without_new(train), _without_new(dev)
    settings = tiny_settings(tiny_encoder, epochs=3)
    old = MultiLabelClassifier(**settings).fit(
        [r["text"] for r in old_train],
        [r["labels"] for r in old_train],
        dev=([r["text"] for r in old_dev], [r["labels"] for r in old_dev]),
        progress=False,
    )
    added = old.add_labels(
        [r["text"] for r in train],
        [r["labels"] for r in train],
        dev=([r["text"] for r in dev], [r["labels"] for r in dev]),
        label_descriptions={"bug": "the app crashes or does nothing"},
        progress=False,
        epochs=4,
    )
    return old, added


def test_old_labels_score_exactly_as_before(old_and_added, demo_splits):
    old, added = old_and_added
    texts = [r["text"] for r in demo_splits["test"]]
    n = len(old.labels_)
    assert added.labels_[:n] == old.labels_ and sorted(added.labels_[n:]) == sorted(NEW)
    np.testing.assert_allclose(added.predict_proba(texts)[:, :n], old.predict_proba(texts), atol=1e-6)
    np.testing.assert_array_equal(added.thresholds_.per_label[:n], old.thresholds_.per_label)
    assert added.thresholds_.global_ == old.thresholds_.global_
    assert added.label_texts_[added.labels_.index("bug")] == "the app crashes or does nothing"
    assert added.training_["added_labels"]["labels"] == added.labels_[n:]


def test_new_labels_learn(old_and_added, demo_splits):
    _, added = old_and_added
    test = demo_splits["test"]
    report = added.evaluate([r["text"] for r in test], [r["labels"] for r in test])
    f1 = {row["label"]: row["f1"] for row in report["per_label"]}
    assert all(f1[label] > 0.5 for label in NEW), f1


def test_the_joined_folder_saves_exports_and_serves(old_and_added, demo_splits, tmp_path):
    from fastapi.testclient import TestClient

    from mlbert.export import export_onnx
    from mlbert.server import ServeSettings, create_app

    _, added = old_and_added
    added.save(tmp_path / "m")
    loaded = MultiLabelClassifier.load(tmp_path / "m")
    assert loaded.labels_ == added.labels_ and loaded.label_texts_ == added.label_texts_
    export_onnx(loaded, tmp_path / "m")
    onnx = MultiLabelClassifier.load(tmp_path / "m", backend="onnx")
    texts = [r["text"] for r in demo_splits["test"][:40]]
    assert np.abs(onnx.predict_proba(texts) - added.predict_proba(texts)).max() < 1e-4
    with TestClient(create_app(loaded, ServeSettings())) as client:
        assert client.get("/v1/labels").json()["labels"] == added.labels_
        body = client.post("/v1/predict", json={"texts": texts[:10], "threshold": 0}).json()
        assert {x["label"] for x in body["predictions"][0]["labels"]} == set(added.labels_)


@pytest.fixture(scope="module")
def distilled(old_and_added, demo_splits):
    old, _ = old_and_added
    train, dev = demo_splits["train"], demo_splits["dev"]
    return old.add_labels(
        [r["text"] for r in train],
        [r["labels"] for r in train],
        dev=([r["text"] for r in dev], [r["labels"] for r in dev]),
        old_labels="distill",
        progress=False,
        epochs=4,
    )


def test_distilled_old_labels_decide_as_before_and_the_new_ones_learn(old_and_added, distilled, demo_splits):
    old, _ = old_and_added
    n = len(old.labels_)
    test = demo_splits["test"]
    texts = [r["text"] for r in test]
    assert distilled.labels_[:n] == old.labels_ and sorted(distilled.labels_[n:]) == sorted(NEW)
    assert distilled.training_["added_labels"]["old_labels"] == "distill"
    np.testing.assert_array_equal(distilled.thresholds_.per_label[:n], old.thresholds_.per_label)
    # the network itself trained (else this would be "keep" by another name) ...
    before, after = old.model_.state_dict(), distilled.model_.state_dict()
    encoder = [k for k in before if not k.startswith("classifier.") and torch.is_floating_point(before[k])]
    assert len(encoder) > 10 and any(not torch.equal(before[k], after[k]) for k in encoder)
    # ... and its old labels still take the old model's decisions on unseen texts
    was = old.predict_proba(texts) >= old.thresholds_for()
    now = distilled.predict_proba(texts)[:, :n] >= np.asarray(distilled.thresholds_for())[:n]
    assert (was == now).mean() > 0.95, (was != now).sum()
    report = distilled.evaluate(texts, [r["labels"] for r in test])
    f1 = {row["label"]: row["f1"] for row in report["per_label"]}
    assert all(f1[label] > 0.4 for label in NEW), f1  # the "keep" model's on the tiny encoder: 0.41-0.77


def test_distill_scores_dev_on_the_new_labels_without_the_old_model(old_and_added, demo_splits):
    old, _ = old_and_added
    train, dev = demo_splits["train"], demo_splits["dev"]
    scored = []  # rows the old model itself scores
    hook = old.model_.register_forward_hook(lambda module, args, out: scored.append(len(out)))
    try:
        distilled = old.add_labels([r["text"] for r in train], [r["labels"] for r in train],
                                   dev=([r["text"] for r in dev], [r["labels"] for r in dev]),
                                   old_labels="distill", progress=False, epochs=1)  # fmt: skip
    finally:
        hook.remove()
    assert sum(scored) == len(train)  # its scores of the training texts are the old labels' targets; dev: none
    n_old, n_all = len(old.labels_), len(distilled.labels_)
    assert distilled.thresholds_.per_label.shape == (n_all,)
    np.testing.assert_array_equal(distilled.thresholds_.per_label[:n_old], old.thresholds_.per_label)
    if distilled.calibration_ is not None:
        assert distilled.calibration_.scale.shape == (n_all,)
    # the evaluation's dev scores are the new labels': the same numbers from the model's new columns
    new_dev = [[x for x in r["labels"] if x in NEW] for r in dev]
    probs = distilled.predict_proba([r["text"] for r in dev], calibrated=False)[:, n_old:]
    y, _ = binarize(new_dev, distilled.labels_[n_old:])
    assert distilled.history_[-1]["dev_micro_f1"] == pytest.approx(tune_global_threshold(probs, y)[1], abs=1e-6)


def test_distill_trains_from_the_old_models_pass_over_the_training_texts(old_and_added, demo_splits, caplog):
    """The old model's lower layers are the new network's frozen ones: its pass over the training texts also fills
    the layer cache that training reads, and the weights are those of a run that computes them itself (1e-4)."""
    import logging

    old, _ = old_and_added
    train, dev = demo_splits["train"], demo_splits["dev"]

    def distill(frozen_cache: str):
        return old.add_labels([r["text"] for r in train], [r["labels"] for r in train],
                              dev=([r["text"] for r in dev], [r["labels"] for r in dev]), old_labels="distill",
                              progress=False, epochs=2, frozen_cache=frozen_cache)  # fmt: skip

    with caplog.at_level(logging.INFO, logger="mlbert"):
        shared = distill("fp32")
    assert "its lowest 1 layers' output kept for training" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlbert"):
        own = distill("off")
    assert "kept for training" not in caplog.text
    want, got = own.model_.state_dict(), shared.model_.state_dict()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=1e-4, rtol=1e-4, msg=name)


def test_dev_annotations_of_old_labels_are_not_reported_unseen(old_and_added, demo_splits, caplog):
    old, _ = old_and_added
    train, dev = demo_splits["train"], demo_splits["dev"]
    dev_labels = [r["labels"] for r in dev]  # the old labels' annotations too, as a full dev file has them
    dev_labels[0] = [*dev_labels[0], "no-such-label"]
    with caplog.at_level("WARNING", logger="mlbert"):
        old.add_labels([r["text"] for r in train], [r["labels"] for r in train],
                       dev=([r["text"] for r in dev], dev_labels), progress=False, epochs=1)  # fmt: skip
    unseen = [r.getMessage() for r in caplog.records if "never seen" in r.getMessage()]
    assert len(unseen) == 1 and "no-such-label" in unseen[0], unseen  # a label neither model knows still is
    assert not any(f" {label} (" in unseen[0] for label in old.labels_), unseen[0]


def test_keep_refuses_unfrozen_layers(old_and_added, demo_splits):
    old, _ = old_and_added
    rows = demo_splits["train"]
    with pytest.raises(ConfigError, match="freeze_layers is not a choice"):
        old.add_labels([r["text"] for r in rows], [r["labels"] for r in rows], freeze_layers=0)


def test_data_without_new_labels_is_refused(old_and_added, demo_splits):
    old, _ = old_and_added
    rows = _without_new(demo_splits["train"])
    with pytest.raises(DataError, match="no label the model lacks"):
        old.add_labels([r["text"] for r in rows], [r["labels"] for r in rows])


@pytest.mark.parametrize("head", ["linear", "mlp", "label-attention", "gru"])
def test_joining_keeps_each_heads_rows(tiny_encoder, head):
    config = TrainConfig(**tiny_settings(tiny_encoder, head=head))
    torch.manual_seed(0)
    old = MultiLabelModel.from_config(load_encoder(tiny_encoder, pretrained=True), 4, config).eval()
    new = model_for_new_labels(old, 2, config)
    assert {n for n, p in new.named_parameters() if p.requires_grad} == {
        n for n in new.state_dict() if n.startswith("classifier.") and n.split(".", 1)[1] in _rows(new)
    }
    joined = joined_model(old, new.eval(), config)
    ids = torch.randint(5, 50, (3, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        both = joined(ids, mask)
        torch.testing.assert_close(both[:, :4], old(ids, mask))
        torch.testing.assert_close(both[:, 4:], new(ids, mask))


def _rows(model) -> tuple[str, ...]:
    from mlbert.heads import per_label_names

    return per_label_names(model.classifier)


def test_the_add_labels_command(trained_dir, demo_files, tmp_path, capsys):
    from mlbert.cli import main

    rows = [json.loads(line) for line in demo_files["train"].read_text().splitlines()]
    for r in rows:
        r["labels"] = (
            [*r["labels"], "urgent"] if "asap" in r["text"].lower() or len(r["text"]) % 3 == 0 else r["labels"]
        )
    write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "added"
    argv = ["add-labels", "--model", str(trained_dir), "--train", str(tmp_path / "train.jsonl"), "--dev",
            str(tmp_path / "train.jsonl"), "--out", str(out), "--epochs", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert "1 labels added (urgent)" in capsys.readouterr().out
    manifest = json.loads((out / "mlbert.json").read_text())
    old = json.loads((trained_dir / "mlbert.json").read_text())
    assert manifest["labels"] == [*old["labels"], "urgent"]
    assert manifest["thresholds"]["per_label"][:-1] == old["thresholds"]["per_label"]
    assert main([*argv[:-1], "--quiet"]) == 2  # the folder exists: --overwrite needed
    same = ["add-labels", "--model", str(trained_dir), "--train", str(tmp_path / "train.jsonl"), "--dev",
            str(tmp_path / "train.jsonl"), "--out", str(trained_dir)]  # fmt: skip
    assert main(same) == 2
    assert "the model's own folder" in capsys.readouterr().err
    # distill, under a time budget (a setting add-labels sets itself: the flag once crashed it)
    argv = [*argv[: argv.index("--out")], "--out", str(tmp_path / "distilled"), "--old-labels", "distill",
            "--time-budget", "5m", "--test", str(tmp_path / "train.jsonl"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "distilled" / "mlbert.json").read_text())
    assert manifest["labels"] == [*old["labels"], "urgent"]
    metrics = json.loads((tmp_path / "distilled" / "metrics.json").read_text())
    assert metrics["added_labels"]["old_labels"] == "distill"
    # one epoch (DISTILL_EPOCHS) unless --epochs says otherwise; the old model trained for 4
    assert metrics["added_labels"]["training"]["epochs_run"] == DISTILL_EPOCHS == 1
    assert metrics["test"]["n_examples"] == len(rows) and metrics["added_labels"]["training"]["phases"]["score_s"] >= 0
