"""Export a loaded classifier to ONNX (optionally int8), so that inference needs only onnxruntime.

The exported graph maps (input_ids, attention_mask) to probabilities, with batch and sequence
dimensions dynamic. The file carries the label names, the tuned thresholds and the max length in its
metadata, so it is usable on its own; inside the model folder it lives under `onnx/`, where
`MultiLabelClassifier.load(DIR, backend="onnx")` and `mlbert predict --backend onnx` find it (backends.py
runs it).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import torch

from .backends import ONNX_FILES, need_onnx, onnx_file
from .errors import ConfigError
from .quantize import onnx_int8
from .version import __version__

OPSET = 17
log = logging.getLogger("mlbert")


class _Probabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(input_ids, attention_mask))


def metadata(clf) -> dict[str, str]:
    return {
        "mlbert_version": __version__,
        "labels": json.dumps(clf.labels_),
        "thresholds": json.dumps(clf.thresholds_.to_dict()),
        # The graph's output is the raw probabilities p, on the thresholds' scale; a calibrated model shows
        # sigmoid(scale * logit(p) + shift) per label (null: raw scores).
        "calibration": json.dumps(clf.calibration_.to_dict() if getattr(clf, "calibration_", None) else None),
        "threshold_mode": clf.default_mode_,
        "max_length": str(clf.config.max_length),
    }


def export_onnx(clf, folder: str | Path, quantize: str | None = None) -> Path:
    """Write `folder/onnx/model.onnx` (and with quantize="int8" also `model.int8.onnx`) -> the file asked for.

    `clf`: the MultiLabelClassifier saved in `folder`, loaded with the torch backend."""
    need_onnx()
    if quantize not in ONNX_FILES:
        raise ConfigError(f"--quantize must be int8 or absent, got {quantize!r}")
    if getattr(clf, "backend_", "torch") != "torch":
        raise ConfigError(f"export needs the torch model; this classifier runs the {clf.backend_} backend")
    folder = Path(folder)
    props = metadata(clf)
    out = onnx_file(folder, None)
    out.parent.mkdir(exist_ok=True)
    sample = clf.tokenizer_(
        ["a short example text", "and a second, slightly longer example text here"], padding=True, return_tensors="pt"
    )
    tmp = out.with_name(f".{out.name}.tmp")
    # The tracer warns about every data-dependent branch it freezes (padding checks in transformers): true,
    # and harmless for this graph, whose inputs vary only in batch and length. Kept in the log, off the terminal.
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            _Probabilities(clf.model_.eval()),
            (sample["input_ids"], sample["attention_mask"]),
            str(tmp),
            dynamo=False,
            opset_version=OPSET,
            input_names=["input_ids", "attention_mask"],
            output_names=["probabilities"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "probabilities": {0: "batch"},
            },
        )
    for w in caught:
        log.debug("onnx export: %s: %s", w.category.__name__, w.message)
    _stamp(tmp, props)
    os.replace(tmp, out)
    if quantize == "int8":
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
