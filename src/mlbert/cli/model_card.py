"""The model card: `README.md` in the model folder, in the Hugging Face card format (YAML front matter,
then Markdown), written by `mlbert train` and brought up to date by `mlbert tune`."""

from __future__ import annotations

import json
from typing import Any

from ..config import THRESHOLD_MODES

CARD_FILE = "README.md"
SHOWN = ("micro_f1", "macro_f1", "samples_f1", "jaccard", "micro_precision", "micro_recall", "macro_roc_auc",
         "p_at_1", "mean_labels_predicted")  # fmt: skip


def _table(report: dict[str, Any], default_mode: str) -> list[str]:
    modes = [m for m in THRESHOLD_MODES if m in report.get("metrics", {})]
    head = [m + (" (default)" if m == default_mode else "") for m in modes]
    lines = ["| metric | " + " | ".join(head) + " |", "|---|" + "---|" * len(modes)]
    for name in SHOWN:
        values = [report["metrics"][m].get(name) for m in modes]
        lines.append(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in values) + " |")
    return lines


def model_card(manifest: dict[str, Any], metrics: dict[str, Any], default_mode: str) -> str:
    """The card's text from the folder's mlbert.json (`manifest`) and metrics.json (`metrics`)."""
    config, labels = manifest["config"], manifest["labels"]
    tuning = manifest.get("training", {}).get("threshold_tuning") or {}
    front = {"library_name": "mlbert", "pipeline_tag": "text-classification",
             "tags": ["mlbert", "multi-label-classification"], "base_model": config["model"]}  # fmt: skip
    lines = ["---", *(f"{k}: {json.dumps(v)}" for k, v in front.items()), "---", "",
             f"# A multi-label text classifier ({len(labels)} labels)", "",
             f"Fine-tuned by [mlbert](https://pypi.org/project/mlbert/) {manifest.get('mlbert_version', '')} from "
             f"`{config['model']}`: each text gets any number of the labels below, those whose score reaches their "
             f"threshold (`{default_mode}` thresholds by default).", ""]  # fmt: skip
    lines += ["## Labels", "", ", ".join(f"`{label}`" for label in labels), ""]
    files = metrics.get("files", {})
    lines += ["## Data", "", f"- train: `{files.get('train')}` ({metrics.get('n_train', '?')} texts)",
              f"- dev: `{files.get('dev')}`", f"- test: `{files.get('test')}`" if files.get("test") else "- test: none",
              ""]  # fmt: skip
    lines += ["## Metrics", ""]
    for split in ("test", "dev"):
        if split in metrics:
            lines += [f"On {split} ({metrics[split]['n_examples']} texts), under each threshold mode:", "",
                      *_table(metrics[split], default_mode), ""]  # fmt: skip
    if isinstance(tuning.get("data"), list):
        lines += [f"The thresholds were re-tuned since (`mlbert tune` on {', '.join(map(str, tuning['data']))}); "
                  "the numbers above are from training: run `mlbert evaluate` for current ones.", ""]  # fmt: skip
    choice = manifest.get("training", {}).get("threshold_mode_choice") or tuning.get("mode_choice")
    if choice:
        lines += [f"Default thresholds: `{choice['mode']}` ({choice['why']}).", ""]
    lines += ["## Settings", "", "```json", json.dumps(config, indent=2), "```", ""]
    lines += ["## How it was made", "", f"```\n{metrics.get('command') or '(not recorded)'}\n```", ""]
    lines += ["## Use", "", "```bash", "mlbert predict --model THIS_FOLDER --text 'a text to label'", "```", "",
              "In Python: `MultiLabelClassifier.load(folder)`. Outside mlbert: `mlbert export` writes an ONNX file "
              "with the labels and thresholds in its metadata; or, in transformers, "
              "`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` runs this "
              "folder's `modeling_mlbert.py` and gives mlbert's raw scores as `sigmoid(logits)` (the thresholds on "
              "them, and the calibration map if the model has one, are in `mlbert.json`). Without "
              "`trust_remote_code=True` transformers refuses the folder.", ""]  # fmt: skip
    lines += ["## Intended use and limits", "",
              "For texts like the training data: same language, domain and length. Texts longer than "
              f"{config['max_length']} tokens are cut there. Labels with few training examples are predicted "
              "less reliably (see the per-label table in metrics.json, or `mlbert report`). " + _scores_line(manifest),
              ""]  # fmt: skip
    return "\n".join(lines)


def _scores_line(manifest: dict[str, Any]) -> str:
    method = (manifest.get("calibration") or {}).get("method")
    if method is None:
        return ("The scores are the raw sigmoid scores (no calibration map was kept: see `calibration_choice` in "
                "metrics.json); compare them with the thresholds.")  # fmt: skip
    return (f"The scores predict and serve show are calibrated per label ({method} scaling, fitted on the "
            "threshold-tuning data), and the thresholds they show are re-expressed on that scale: the label sets "
            "are those of the raw scores; `--no-calibration` shows the raw ones.")  # fmt: skip
