import json
import shutil

import numpy as np
import pytest
import torch

from helpers import tiny_settings
from mlbert.classifier import MultiLabelClassifier
from mlbert.errors import ConfigError
from mlbert.model_io import MLBERT_FILE


def test_model_folder_is_a_standard_hugging_face_folder(trained_dir):
    config = json.loads((trained_dir / "config.json").read_text())
    manifest = json.loads((trained_dir / MLBERT_FILE).read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"]["0"] == manifest["labels"][0] and len(config["label2id"]) == len(manifest["labels"])
    assert (trained_dir / "model.safetensors").is_file() and (trained_dir / "tokenizer.json").is_file()
    assert set(manifest) >= {"mlbert_version", "labels", "config", "thresholds", "training"}
    assert len(manifest["thresholds"]["per_label"]) == len(manifest["labels"])


def test_reloaded_model_gives_the_same_probabilities(trained_dir, tmp_path, demo_splits):
    clf = MultiLabelClassifier.load(trained_dir)
    texts = [r["text"] for r in demo_splits["test"][:40]]
    before = clf.predict_proba(texts)
    clf.save(tmp_path / "copy")
    after = MultiLabelClassifier.load(tmp_path / "copy").predict_proba(texts)
    assert np.abs(before - after).max() < 1e-5


def test_the_folder_seeds_another_run_with_its_fine_tuned_encoder(trained_dir):
    from mlbert.checkpoint import load_weights
    from mlbert.encoders import load_encoder

    encoder = load_encoder(trained_dir)  # what `mlbert train --model FOLDER` starts from
    saved = load_weights(trained_dir / "model.safetensors")
    torch.testing.assert_close(
        encoder.embeddings.word_embeddings.weight, saved["bert.embeddings.word_embeddings.weight"]
    )


def test_plain_transformers_refuses_the_folder(trained_dir, monkeypatch):
    """Issue 21: it used to load as BERT's own classifier, with a random pooler and scores up to 0.5 off."""
    import transformers.dynamic_module_utils as dynamic
    from transformers import AutoModelForSequenceClassification

    monkeypatch.setattr(dynamic, "TIME_OUT_REMOTE_CODE", 0)  # refuse without asking, as in a script
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(trained_dir)


@pytest.mark.parametrize(
    ("pooling", "head"), [("mean", "linear"), ("cls", "mlp"), ("layers", "label-attention"), ("max", "gru")]
)
def test_transformers_with_the_folders_code_gives_mlberts_scores(pooling, head, tiny_encoder, demo_splits, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [r["text"] for r in demo_splits["train"][:120]]
    labels = [r["labels"] for r in demo_splits["train"][:120]]
    settings = tiny_settings(tiny_encoder, epochs=1, pooling=pooling, head=head, pool_layers=2, dev_split=0.25)
    MultiLabelClassifier(**settings).fit(texts, labels, progress=False).save(tmp_path / "m")
    clf = MultiLabelClassifier.load(tmp_path / "m")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m", trust_remote_code=True).eval()
    batch = AutoTokenizer.from_pretrained(tmp_path / "m", trust_remote_code=True)(
        texts[:16], truncation=True, max_length=48, padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        scores = torch.sigmoid(model(**batch).logits).numpy()
    assert np.abs(scores - clf.predict_proba(texts[:16], calibrated=False)).max() < 1e-5  # raw: before any map
    assert [model.config.id2label[i] for i in range(len(clf.labels_))] == clf.labels_


def test_folders_written_before_the_transformers_class_still_load(trained_dir, tmp_path, demo_splits):
    """Their config.json is the encoder's own (model_type bert) and they carry no modeling_mlbert.py."""
    from mlbert.encoders import encoder_config

    old = tmp_path / "old"
    shutil.copytree(trained_dir, old)
    config = json.loads((old / "config.json").read_text())
    flat = {**config["encoder"], "id2label": config["id2label"], "label2id": config["label2id"]}
    (old / "config.json").write_text(json.dumps({**flat, "problem_type": "multi_label_classification"}))
    for name in ("modeling_mlbert.py", "model.py", "heads.py"):
        (old / name).unlink()
    assert encoder_config(old).model_type == "bert"
    texts = [r["text"] for r in demo_splits["test"][:20]]
    expected = MultiLabelClassifier.load(trained_dir).predict_proba(texts)
    assert np.abs(MultiLabelClassifier.load(old).predict_proba(texts) - expected).max() < 1e-6


def test_loading_an_unfinished_folder_says_how_to_resume(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="--resume"):
        MultiLabelClassifier.load(tmp_path / "run")
    with pytest.raises(ConfigError, match="no such model folder"):
        MultiLabelClassifier.load(tmp_path / "nope")
