"""The packaged all-MiniLM-L6-v2, for real: a few training steps, save, reload, predict."""

import numpy as np
import pytest

from mlbert import MultiLabelClassifier
from mlbert.encoders import resolve_encoder

pytestmark = pytest.mark.integration


def test_packaged_minilm_is_found_offline():
    path = resolve_encoder("all-MiniLM-L6-v2")
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()


def test_minilm_trains_saves_reloads_and_predicts(tmp_path, demo_splits):
    train, dev = demo_splits["train"][:160], demo_splits["dev"][:60]
    clf = MultiLabelClassifier(max_length=32, batch_size=16, epochs=1, save_steps=0).fit(
        [r["text"] for r in train],
        [r["labels"] for r in train],
        dev=([r["text"] for r in dev], [r["labels"] for r in dev]),
        out_dir=tmp_path / "ckpt",
        progress=False,
    )
    texts = [r["text"] for r in dev[:20]]
    before = clf.predict_proba(texts)
    clf.save(tmp_path / "model")
    again = MultiLabelClassifier.load(tmp_path / "model")
    assert np.abs(again.predict_proba(texts) - before).max() < 1e-5
    assert again.predict(texts) == clf.predict(texts)
    assert again.config.model == "all-MiniLM-L6-v2" and again.labels_ == clf.labels_
