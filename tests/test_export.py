"""ONNX export and the inference backends on the tiny model: round trip, agreement, metadata, errors."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from mlbert.backends import OnnxModel, onnx_file
from mlbert.classifier import MultiLabelClassifier
from mlbert.cli import main
from mlbert.config import BACKENDS
from mlbert.errors import ConfigError
from mlbert.export import export_onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_dir):
    folder = tmp_path_factory.mktemp("export") / "model"
    shutil.copytree(trained_dir, folder)
    export_onnx(MultiLabelClassifier.load(folder), folder, "int8")
    return folder


def test_onnx_matches_torch_and_carries_labels_and_thresholds(exported, demo_splits):
    texts = [r["text"] for r in demo_splits["test"][:50]]
    ref = MultiLabelClassifier.load(exported)
    onnx = MultiLabelClassifier.load(exported, backend="onnx")
    assert np.abs(onnx.predict_proba(texts) - ref.predict_proba(texts)).max() < 1e-4
    assert onnx.predict(texts) == ref.predict(texts)
    meta = OnnxModel(onnx_file(exported)).metadata
    assert json.loads(meta["labels"]) == ref.labels_
    assert json.loads(meta["thresholds"])["per_label"] == ref.thresholds_.to_dict()["per_label"]


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in ("torch", "onnx")])  # auto included
def test_approximate_backends_stay_close(exported, demo_splits, backend):
    texts = [r["text"] for r in demo_splits["test"][:50]]
    ref = MultiLabelClassifier.load(exported).predict_proba(texts)
    got = MultiLabelClassifier.load(exported, backend=backend).predict_proba(texts)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 0.1  # an approximation, not a different model


def test_missing_export_and_unknown_backend_say_what_to_do(trained_dir):
    with pytest.raises(ConfigError, match="mlbert export"):
        MultiLabelClassifier.load(trained_dir, backend="onnx")
    with pytest.raises(ConfigError, match="backend must be one of"):
        MultiLabelClassifier.load(trained_dir, backend="tpu")


def test_a_non_torch_backend_refuses_to_save(exported, tmp_path):
    with pytest.raises(ConfigError, match="backend='torch'"):
        MultiLabelClassifier.load(exported, backend="onnx").save(tmp_path / "x")


def test_export_command_reports_agreement(tmp_path, trained_dir, demo_files, capsys):
    folder = tmp_path / "model"
    shutil.copytree(trained_dir, folder)
    assert (
        main(
            ["export", "--model", str(folder), "--quantize", "int8", "--check-data", str(demo_files["dev"]), "--quiet"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "onnx vs torch" in out and "onnx-int8 vs torch" in out
    assert onnx_file(folder).is_file() and onnx_file(folder, "int8").is_file()
    pred = tmp_path / "p.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(folder),
                "--input",
                str(demo_files["test"]),
                "--output",
                str(pred),
                "--backend",
                "onnx",
                "--quiet",
            ]
        )
        == 0
    )
    assert len(pred.read_text().splitlines()) > 0
