"""Save and load the model folder: a standard Hugging Face folder plus one `mlbert.json`.

    config.json          model_type "mlbert": the encoder's config under `encoder`, the head's settings,
                         id2label/label2id, problem_type multi_label_classification, auto_map
    modeling_mlbert.py, model.py, heads.py
                         the transformers class that auto_map names (trust_remote_code=True only)
    model.safetensors    encoder (under its base-model prefix, e.g. `bert.`) and `classifier.*` head
    tokenizer files      as `tokenizer.save_pretrained` writes them
    mlbert.json          format version, mlbert version, labels (and what each means in words:
                         label_texts, a text or a list of texts each, absent from folders written before
                         2026-12-01), every TrainConfig
                         setting, thresholds (on raw scores), calibration (the per-label map to the scores
                         the model shows; absent: raw scores, as in folders written before 2026-12-02)

`mlbert.json` is written last: a folder without it is not a finished model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from .calibration import Calibration
from .checkpoint import load_weights, save_weights
from .config import TrainConfig
from .encoders import MLBERT_MODEL_TYPE, load_encoder, load_tokenizer
from .errors import ConfigError
from .fileio import atomic_open, read_json, write_json
from .label_text import LabelText, is_label_text
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
    label_texts: list[LabelText] | None = None,
    calibration: Calibration | None = None,
) -> None:
    """Write the model files into `out` (other files there, like metrics.json, are left alone)."""
    out.mkdir(parents=True, exist_ok=True)
    # An old mlbert.json would make a half-rewritten folder look finished: remove it first.
    (out / MLBERT_FILE).unlink(missing_ok=True)
    write_json(out / "config.json", transformers_config(model.encoder.config, labels, config))
    for name in REMOTE_CODE:
        with atomic_open(out / name) as f:
            f.write((Path(__file__).parent / name).read_text(encoding="utf-8"))
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
            **({"label_texts": list(label_texts)} if label_texts is not None else {}),
            "config": config.to_dict(),
            "thresholds": thresholds.to_dict(),
            **({"calibration": calibration.to_dict()} if calibration is not None else {}),
            "training": training or {},
        },
    )


# The transformers class for this folder (see modeling_mlbert.py) and the mlbert modules it imports.
REMOTE_CODE = ("modeling_mlbert.py", "model.py", "heads.py")


def transformers_config(encoder_config, labels: list[str], config: TrainConfig) -> dict[str, Any]:
    """config.json: loads in transformers only with trust_remote_code=True, and then with mlbert's scores.

    Its model_type is not the encoder's, so `AutoModelForSequenceClassification` can no longer build BERT's
    own classifier from it (a random pooler, and scores up to 0.5 off: it used to, with only a warning).
    """
    return {
        "model_type": MLBERT_MODEL_TYPE,
        "architectures": ["MlbertForMultiLabelClassification"],
        "auto_map": {
            "AutoConfig": "modeling_mlbert.MlbertConfig",
            "AutoModelForSequenceClassification": "modeling_mlbert.MlbertForMultiLabelClassification",
        },
        "encoder": encoder_config.to_dict(),
        "pooling": config.pooling,
        "head": config.head,
        "pool_layers": config.pool_layers,
        "dropout": config.dropout,
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        "problem_type": "multi_label_classification",
        "mlbert_version": __version__,
    }


def update_thresholds(
    folder: Path, thresholds: Thresholds, note: dict[str, Any], calibration: Calibration | None = None
) -> None:
    """Replace the thresholds and the calibration map in a saved folder's mlbert.json (atomically), recording
    how they were tuned."""
    manifest = read_manifest(folder)
    if len(thresholds.per_label) != len(manifest["labels"]):
        raise ConfigError(f"{folder}: {len(thresholds.per_label)} thresholds for {len(manifest['labels'])} labels")
    manifest["thresholds"] = thresholds.to_dict()
    manifest.pop("calibration", None)
    if calibration is not None:
        manifest["calibration"] = calibration.to_dict()
    manifest.setdefault("training", {})["threshold_tuning"] = note
    write_json(folder / MLBERT_FILE, manifest)


# What a finished folder holds besides mlbert.json; the tokenizer files are those save_pretrained writes
# for a fast tokenizer (without them transformers would build an empty vocabulary and load silently).
REQUIRED_FILES = ("config.json", WEIGHTS_FILE, "tokenizer.json", "tokenizer_config.json")
DAMAGED = "the model folder is damaged; copy it again from where it was trained, or train it again"


def read_manifest(folder: Path) -> dict[str, Any]:
    """mlbert.json, checked field by field: every mistake names the file, what is wrong and what to do."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such model folder; train one with `mlbert train ... --out {folder}`")
    path = folder / MLBERT_FILE
    if not path.is_file():
        raise ConfigError(
            f"{folder}: not a finished mlbert model (no {MLBERT_FILE}); if training was interrupted, "
            "rerun the same `mlbert train` command with --resume"
        )
    try:
        manifest = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); {DAMAGED}") from None
    if not isinstance(manifest, dict):
        raise ConfigError(f"{path}: a JSON {type(manifest).__name__}, not an object; {DAMAGED}")
    version = manifest.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(f"{path}: format_version is {version!r}, not a whole number; {DAMAGED}")
    if version > FORMAT_VERSION:
        raise ConfigError(f"{path}: written by a newer mlbert (format {version}); upgrade mlbert")
    for key, kind in (("labels", list), ("config", dict), ("thresholds", dict)):
        if key not in manifest:
            raise ConfigError(f"{path}: no {key!r}; {DAMAGED}")
        if not isinstance(manifest[key], kind):
            raise ConfigError(
                f"{path}: {key!r} is {type(manifest[key]).__name__} {manifest[key]!r:.40}, not a JSON "
                f"{'list' if kind is list else 'object'}; {DAMAGED}"
            )
    labels = manifest["labels"]
    if not labels or not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: 'labels' must be a list of distinct, non-empty label names; {DAMAGED}")
    texts = manifest.get("label_texts")
    if texts is not None and (
        not isinstance(texts, list) or len(texts) != len(labels) or not all(is_label_text(t) for t in texts)
    ):
        raise ConfigError(
            f"{path}: 'label_texts' must be a list with one entry per label, a non-empty text or list of them; "
            f"{DAMAGED}"
        )
    return manifest


def _thresholds(manifest: dict[str, Any], path: Path) -> Thresholds:
    values = manifest["thresholds"]
    per_label = values.get("per_label")
    numbers = [values.get("global"), values.get("fixed", 0.5), *(per_label if isinstance(per_label, list) else [None])]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in numbers):
        raise ConfigError(
            f"{path}: 'thresholds' must hold numbers in [0, 1] (global, per_label[]); {DAMAGED}, or re-tune them "
            "with `mlbert tune`"
        )
    if len(per_label) != len(manifest["labels"]):
        raise ConfigError(
            f"{path}: {len(per_label)} per-label thresholds for {len(manifest['labels'])} labels; {DAMAGED}"
        )
    return Thresholds.from_dict(values)


def model_calibration(manifest: dict[str, Any], folder: Path) -> Calibration | None:
    """The folder's calibration map, or None (raw scores) for a folder without one."""
    values = manifest.get("calibration")
    if values is None:
        return None
    try:
        if not isinstance(values, dict):
            raise ValueError(f"it is {type(values).__name__}, not a JSON object")
        return Calibration.from_dict(values, len(manifest["labels"]))
    except ValueError as e:
        raise ConfigError(
            f"{folder / MLBERT_FILE}: 'calibration' is not a usable map ({e}); {DAMAGED}, or fit it again with "
            "`mlbert tune`, or load it with --no-calibration"
        ) from None


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        if any((folder / name).exists() for name in PICKLED_WEIGHTS):
            raise ConfigError(
                f"{folder}: holds pickled weights ({', '.join(n for n in PICKLED_WEIGHTS if (folder / n).exists())}) "
                f"and no {WEIGHTS_FILE}; mlbert reads safetensors only and never unpickles a file"
            )
        raise ConfigError(f"{path}: missing; {DAMAGED}")
    try:
        return load_weights(path)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types (and OSError) on a bad file
        raise ConfigError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e}); {DAMAGED}") from None


PICKLED_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth")


def check_model_folder(folder: Path) -> tuple[dict[str, Any], TrainConfig, list[str], Thresholds]:
    """Everything about a model folder that can be checked without building the model -> (manifest, config,
    labels, thresholds). One message style: which file, what is wrong, what to do."""
    manifest = read_manifest(folder)
    path = folder / MLBERT_FILE
    try:
        config = TrainConfig.from_dict(manifest["config"], source="'config'")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}; {DAMAGED}") from None
    thresholds = _thresholds(manifest, path)
    for name in REQUIRED_FILES:
        if name != WEIGHTS_FILE and not (folder / name).is_file():
            raise ConfigError(f"{folder / name}: missing; {DAMAGED}")
    try:
        read_json(folder / "config.json")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{folder / 'config.json'}: not valid JSON ({e}); {DAMAGED}") from None
    return manifest, config, list(manifest["labels"]), thresholds


def load_model_folder(folder: Path):
    """-> (model, tokenizer, labels, config, thresholds, manifest), the model in eval mode on the CPU."""
    folder = Path(folder)
    manifest, config, labels, thresholds = check_model_folder(folder)
    weights = _weights(folder)
    try:
        encoder = load_encoder(folder, pretrained=False)
        model = MultiLabelModel.from_config(encoder, len(labels), config)
    except (ValueError, TypeError, KeyError, OSError) as e:
        raise ConfigError(f"{folder / 'config.json'}: cannot build the encoder from it ({e}); {DAMAGED}") from None
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as e:  # a tensor of the wrong shape: config.json or the weights were changed
        first = str(e).strip().splitlines()[-1].strip()
        raise ConfigError(
            f"{folder / WEIGHTS_FILE}: weights do not fit config.json and mlbert.json ({first}); {DAMAGED}"
        ) from None
    if missing or unexpected:
        raise ConfigError(
            f"{folder / WEIGHTS_FILE}: weights do not fit the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}); the folder is damaged or from another tool"
        )
    model.eval()
    try:
        tokenizer = load_tokenizer(folder)
    except (ValueError, OSError) as e:
        raise ConfigError(f"{folder}: cannot load the tokenizer ({e}); {DAMAGED}") from None
    return model, tokenizer, labels, config, thresholds, manifest
