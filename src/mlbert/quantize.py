"""Dynamic int8 quantization of a model, for torch and for an exported ONNX graph, by one rule.

Two choices keep int8 close to fp32 (BENCHMARKS.md, "int8 rules"): weights are quantized per output
channel (one scale per row, not one for the whole matrix: per-tensor scales cost 2 points of macro-F1 on
GoEmotions, per-channel 0.3), and the layers matched by KEEP_FP32 stay fp32 — by default the
classification head, whose logits go straight into the sigmoid (keeping it costs no measurable speed).
Everything else (the encoder's attention and feed-forward matmuls, where the time is) runs in int8.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

# Module-name patterns (torch dotted names) that stay fp32.
KEEP_FP32: tuple[str, ...] = (r"^classifier(\.|$)",)


def module_of(node_name: str, wrapper: str = "model") -> str:
    """The model's module an exported ONNX node came from: `/model/bert/encoder/layer.0/output/dense/MatMul`
    -> `bert.encoder.layer.0.output.dense`. The exporter scopes node names by module path, starting at the
    export wrapper (export.py's, which holds the model as `model`)."""
    return node_name.strip("/").rpartition("/")[0].replace("/", ".").removeprefix(f"{wrapper}.")


def kept_fp32(name: str, keep: tuple[str, ...] = KEEP_FP32) -> bool:
    return any(re.search(p, name) for p in keep)


def torch_int8(model: nn.Module, keep: tuple[str, ...] = KEEP_FP32, per_channel: bool = True) -> nn.Module:
    """-> a copy of `model` whose Linear layers (except `keep`) run dynamic int8 matmuls."""
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not kept_fp32(name, keep)
    }
    return quantize_dynamic(model, qconfig_spec=spec, dtype=torch.qint8, inplace=False)


def onnx_int8(
    source: str | Path, target: str | Path, keep: tuple[str, ...] = KEEP_FP32, per_channel: bool = True
) -> None:
    """Write an int8 copy of the ONNX graph `source` to `target`."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    excluded = [
        node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and kept_fp32(module_of(node.name), keep)
    ]
    # onnxruntime first splits each Gemm into `<name>_MatMul` + `<name>_Add`, then applies the exclusions.
    excluded += [f"{node.name}_MatMul" for node in graph.node if node.op_type == "Gemm" and node.name in excluded]
    # onnxruntime's quantizer reports through the root logger ("WARNING:root: ... pre-processing"): keep it
    # out of the terminal; `mlbert export --check-data` measures the result against the torch model.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=excluded
        )
    finally:
        root.setLevel(level)
