"""int8 quantization: the head stays fp32, the encoder's matmuls go int8, torch and ONNX follow one rule."""

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from mlbert.classifier import MultiLabelClassifier
from mlbert.quantize import kept_fp32, module_of, torch_int8


def test_module_of_maps_exported_node_names_to_torch_modules():
    assert module_of("/model/bert/encoder/layer.0/output/dense/MatMul") == "bert.encoder.layer.0.output.dense"
    assert module_of("/model/classifier/Gemm") == "classifier"


def test_the_head_and_only_the_head_stays_fp32_by_default():
    assert kept_fp32("classifier") and kept_fp32("classifier.out")
    assert not kept_fp32("bert.encoder.layer.0.output.dense") and not kept_fp32("classifier_extra")


def test_torch_int8_quantizes_the_encoder_and_keeps_the_head(trained_dir):
    model = MultiLabelClassifier.load(trained_dir).model_
    q = torch_int8(model)
    floats = {name for name, m in q.named_modules() if type(m) is nn.Linear}  # quantized ones are another class
    assert floats == {"classifier"}
    assert all(type(m) is nn.Linear for m in model.modules() if isinstance(m, nn.Linear))  # original untouched
    ids = torch.randint(5, 50, (3, 9))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(q(ids, mask)), torch.sigmoid(model(ids, mask)), atol=0.05)


def test_onnx_int8_leaves_the_head_matmul_unquantized(tmp_path, trained_dir):
    pytest.importorskip("onnxruntime")
    import onnx

    from mlbert.backends import onnx_file
    from mlbert.export import export_onnx

    folder = tmp_path / "model"
    shutil.copytree(trained_dir, folder)
    export_onnx(MultiLabelClassifier.load(folder), folder, "int8")
    nodes = onnx.load(str(onnx_file(folder, "int8"))).graph.node
    head = [n for n in nodes if module_of(n.name) == "classifier"]
    assert head and {n.op_type for n in head} & {"MatMul", "Gemm"}  # still a float matmul
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in nodes)  # the encoder is int8
    ref = MultiLabelClassifier.load(folder).predict_proba(["alpha beta", "gamma"])
    got = MultiLabelClassifier.load(folder, backend="onnx-int8").predict_proba(["alpha beta", "gamma"])
    assert np.abs(got - ref).max() < 0.05
