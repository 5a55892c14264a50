"""The inference paths of a loaded model (config.Backend): the torch module as trained, under bf16
autocast or dynamic int8, or an ONNX export (`mlbert export`) run by onnxruntime.

Every path is a callable that `predict.predict_proba` knows how to batch: a torch module returning
logits, or an `OnnxModel` returning probabilities.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from .config import BACKENDS
from .errors import ConfigError
from .precision import resolve_precision
from .quantize import torch_int8

log = logging.getLogger("mlbert")

ONNX_DIR = "onnx"
ONNX_FILES = {None: "model.onnx", "int8": "model.int8.onnx"}


def onnx_file(folder: str | Path, quantize: str | None = None) -> Path:
    """Where a model folder keeps its ONNX export (`quantize`: None or "int8")."""
    return Path(folder) / ONNX_DIR / ONNX_FILES[quantize]


def need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export and inference need onnx and onnxruntime: pip install 'mlbert[onnx]'") from None


class OnnxModel:
    """An exported model run by onnxruntime: (input_ids, attention_mask) arrays -> probabilities."""

    def __init__(self, path: str | Path, threads: int | None = None):
        need_onnx()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"{path}: no exported model; run `mlbert export --model {path.parent.parent} "
                f"--format onnx{' --quantize int8' if 'int8' in path.name else ''}` first"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.path = path

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(
            ["probabilities"],
            {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)},
        )[0]


def resolve_backend(backend: str) -> str:
    """Check the name; `auto` becomes torch-bf16 where the CPU has native bf16 and measures it faster, else torch."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    chosen, why = resolve_precision("auto")
    backend = "torch-bf16" if chosen == "bf16" else "torch"
    log.info("backend auto -> %s (%s)", backend, why)
    return backend


def runtime_model(model: torch.nn.Module, folder: str | Path, backend: str, labels: list[str]):
    """The callable that runs `backend` (already resolved) for the torch `model` loaded from `folder`."""
    if backend == "torch-int8":
        return torch_int8(model)
    if backend.startswith("onnx"):
        onnx = OnnxModel(onnx_file(folder, "int8" if backend == "onnx-int8" else None))
        if json.loads(onnx.metadata.get("labels", "[]")) != labels:
            raise ConfigError(f"{onnx.path}: exported for other labels than {folder}; export it again")
        return onnx
    return model


def inference_precision(backend: str) -> str:
    """The autocast precision predict_proba runs a torch backend under."""
    return "bf16" if backend == "torch-bf16" else "fp32"
