import json

import numpy as np
import pytest
import torch

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


def test_auto_model_loads_the_fine_tuned_encoder(trained_dir):
    from transformers import AutoModel

    from mlbert.checkpoint import load_weights

    encoder = AutoModel.from_pretrained(trained_dir, add_pooling_layer=False)
    saved = load_weights(trained_dir / "model.safetensors")
    torch.testing.assert_close(
        encoder.embeddings.word_embeddings.weight, saved["bert.embeddings.word_embeddings.weight"]
    )


def test_loading_an_unfinished_folder_says_how_to_resume(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ConfigError, match="--resume"):
        MultiLabelClassifier.load(tmp_path / "run")
    with pytest.raises(ConfigError, match="no such model folder"):
        MultiLabelClassifier.load(tmp_path / "nope")
