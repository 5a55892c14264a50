"""Save and load the model folder: a standard Hugging Face folder plus one `mlbert.json`.

    config.json          the encoder's config + id2label/label2id + problem_type multi_label_classification
    model.safetensors    encoder (under its base-model prefix, e.g. `bert.`) and `classifier.*` head
    tokenizer files      as `tokenizer.save_pretrained` writes them
    mlbert.json          format version, mlbert version, labels, every TrainConfig setting, thresholds

`mlbert.json` is written last: a folder without it is not a finished model.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .checkpoint import load_weights, save_weights
from .config import TrainConfig
from .encoders import load_encoder, load_tokenizer
from .errors import ConfigError
from .fileio import atomic_open, read_json, write_json
from .model import MultiLabelModel
from .thresholds import Thresholds
from .version import __version__

FORMAT_VERSION = 1
MLBERT_FILE = "mlbert.json"
WEIGHTS_FILE = "model.safetensors"


def save_model_folder(
    out: Path,
    model,
    tokenizer,
    labels: list[str],
    config: TrainConfig,
    thresholds: Thresholds,
    training: dict[str, Any] | None = None,
) -> None:
    """Write the model files into `out` (other files there, like metrics.json, are left alone)."""
    out.mkdir(parents=True, exist_ok=True)
    # An old mlbert.json would make a half-rewritten folder look finished: remove it first.
    (out / MLBERT_FILE).unlink(missing_ok=True)
    hf_config = copy.deepcopy(model.encoder.config)
    hf_config.id2label = dict(enumerate(labels))
    hf_config.label2id = {name: i for i, name in enumerate(labels)}
    hf_config.problem_type = "multi_label_classification"
    with atomic_open(out / "config.json") as f:
        f.write(hf_config.to_json_string())
    save_weights({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / WEIGHTS_FILE)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tokenizer.") as tmp:
        for written in tokenizer.save_pretrained(tmp):
            src = Path(written)
            if src.is_file():
                shutil.move(str(src), out / src.name)
    write_json(
        out / MLBERT_FILE,
        {
            "format_version": FORMAT_VERSION,
            "mlbert_version": __version__,
            "labels": list(labels),
            "config": config.to_dict(),
            "thresholds": thresholds.to_dict(),
            "training": training or {},
        },
    )


def update_thresholds(folder: Path, thresholds: Thresholds, note: dict[str, Any]) -> None:
    """Replace the thresholds in a saved folder's mlbert.json (atomically), recording how they were tuned."""
    manifest = read_manifest(folder)
    if len(thresholds.per_label) != len(manifest["labels"]):
        raise ConfigError(f"{folder}: {len(thresholds.per_label)} thresholds for {len(manifest['labels'])} labels")
    manifest["thresholds"] = thresholds.to_dict()
    manifest.setdefault("training", {})["threshold_tuning"] = note
    write_json(folder / MLBERT_FILE, manifest)


def read_manifest(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such model folder; train one with `mlbert train ... --out {folder}`")
    path = folder / MLBERT_FILE
    if not path.is_file():
        raise ConfigError(
            f"{folder}: not a finished mlbert model (no {MLBERT_FILE}); if training was interrupted, "
            "rerun the same `mlbert train` command with --resume"
        )
    manifest = read_json(path)
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ConfigError(f"{path}: written by a newer mlbert (format {manifest['format_version']}); upgrade mlbert")
    return manifest


def load_model_folder(folder: Path):
    """-> (model, tokenizer, labels, config, thresholds, manifest), the model in eval mode on the CPU."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    config = TrainConfig.from_dict(manifest["config"], source=str(folder / MLBERT_FILE))
    labels = list(manifest["labels"])
    thresholds = Thresholds.from_dict(manifest["thresholds"])
    if len(thresholds.per_label) != len(labels):
        raise ConfigError(f"{folder / MLBERT_FILE}: {len(thresholds.per_label)} thresholds for {len(labels)} labels")
    model = MultiLabelModel.from_config(load_encoder(folder, pretrained=False), len(labels), config)
    weights = load_weights(folder / WEIGHTS_FILE)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ConfigError(
            f"{folder / WEIGHTS_FILE}: weights do not fit the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); the folder is damaged or from another tool"
        )
    model.eval()
    return model, load_tokenizer(folder), labels, config, thresholds, manifest
