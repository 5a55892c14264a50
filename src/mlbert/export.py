"""Export a model folder to ONNX (optionally int8), so that inference needs only onnxruntime.

The exported graph maps (input_ids, attention_mask) to probabilities, with batch and sequence
dimensions dynamic. The file carries the label names, the tuned thresholds and the max length in its
metadata, so it is usable on its own; inside the model folder it lives under `onnx/`, where
`MultiLabelClassifier.load(DIR, backend="onnx")` and `mlbert predict --backend onnx` find it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError

ONNX_DIR = "onnx"
FILES = {None: "model.onnx", "int8": "model.int8.onnx"}
OPSET = 17


def onnx_file(folder: str | Path, quantize: str | None = None) -> Path:
    return Path(folder) / ONNX_DIR / FILES[quantize]


class _Probabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(input_ids, attention_mask))


def _need_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export and inference need onnx and onnxruntime: pip install 'mlbert[onnx]'") from None


def metadata(clf) -> dict[str, str]:
    from . import __version__

    return {"mlbert_version": __version__, "labels": json.dumps(clf.labels_),
            "thresholds": json.dumps(clf.thresholds_.to_dict()), "threshold_mode": clf.config.threshold_mode,
            "max_length": str(clf.config.max_length)}


def export_onnx(folder: str | Path, quantize: str | None = None, clf=None) -> Path:
    """Write `folder/onnx/model.onnx` (and with quantize="int8" also `model.int8.onnx`) -> the file asked for.

    `clf`: the folder already loaded with the torch backend, if the caller has it."""
    from .classifier import MultiLabelClassifier

    _need_onnx()
    if quantize not in FILES:
        raise ConfigError(f"--quantize must be int8 or absent, got {quantize!r}")
    folder = Path(folder)
    clf = clf if clf is not None else MultiLabelClassifier.load(folder)
    props = metadata(clf)
    out = onnx_file(folder, None)
    out.parent.mkdir(exist_ok=True)
    sample = clf.tokenizer_(["a short example text", "and a second, slightly longer example text here"],
                            padding=True, return_tensors="pt")
    tmp = out.with_name(f".{out.name}.tmp")
    with torch.no_grad():
        torch.onnx.export(_Probabilities(clf.model_.eval()), (sample["input_ids"], sample["attention_mask"]),
                          str(tmp), dynamo=False, opset_version=OPSET, input_names=["input_ids", "attention_mask"],
                          output_names=["probabilities"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"},
                                        "probabilities": {0: "batch"}})
    _stamp(tmp, props)
    os.replace(tmp, out)
    if quantize == "int8":
        from .quantize import onnx_int8

        target = onnx_file(folder, "int8")
        tmp8 = target.with_name(f".{target.name}.tmp")
        onnx_int8(out, tmp8)
        _stamp(tmp8, props)
        os.replace(tmp8, target)
        return target
    return out


def _stamp(path: Path, props: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


class OnnxModel:
    """An exported model run by onnxruntime: (input_ids, attention_mask) arrays -> probabilities."""

    def __init__(self, path: str | Path, threads: int | None = None):
        _need_onnx()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no exported model; run `mlbert export --model {path.parent.parent} "
                              f"--format onnx{' --quantize int8' if 'int8' in path.name else ''}` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.path = path

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["probabilities"], {"input_ids": input_ids.astype(np.int64),
                                                    "attention_mask": attention_mask.astype(np.int64)})[0]
