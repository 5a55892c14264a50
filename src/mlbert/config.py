"""TrainConfig: every setting of a training run, typed, validated, saved beside the model.

Python builds it directly, the CLI builds it from flags (one flag per field, help from `metadata`),
and the model folder stores it in `mlbert.json`, so there is no second dict of settings anywhere.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from .errors import ConfigError

# Resolved to the packaged all-MiniLM-L6-v2 folder at run time (see encoders.py).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"

Pooling = Literal["cls", "mean", "max", "layers"]
Head = Literal["linear", "mlp", "label-attention", "gru"]
Precision = Literal["fp32", "bf16", "auto"]
Loss = Literal["bce", "focal", "asl"]
PosWeight = Literal["none", "auto", "sqrt"]
ThresholdData = Literal["dev", "train+dev"]
ThresholdMode = Literal["fixed", "global", "per_label"]

METRIC_CHOICES = (
    "micro_f1",
    "macro_f1",
    "samples_f1",
    "weighted_f1",
    "micro_pr_auc",
    "macro_pr_auc",
    "micro_roc_auc",
    "macro_roc_auc",
    "lrap",
    "p_at_1",
)


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Settings of one training run; the defaults are sized for the packaged MiniLM on 2 CPU cores."""

    model: str = _f(DEFAULT_ENCODER, "encoder: a local Hugging Face folder or a model id already on disk; "
                    f"'{DEFAULT_ENCODER}' is the packaged one")
    text_field: str = _f("text", "field holding the text in the data files")
    label_field: str = _f("labels", "field holding the labels in the data files")
    label_sep: str | None = _f(None, "separator of labels written as one string, e.g. '|' for 'a|b'")
    max_length: int = _f(256, "tokens kept per text (longer texts are truncated and counted)")
    batch_size: int = _f(16, "examples per optimizer micro-batch")
    eval_batch_size: int = _f(64, "examples per inference batch")
    epochs: int = _f(0, "passes over the training data; 0 (auto): as many as make about 10,000 optimizer steps, "
                     "at least 1 and at most 20 (4 on GoEmotions' 43k texts, 20 on Reuters' 7.0k)")
    lr: float = _f(1e-4, "encoder learning rate (AdamW)")
    # The head starts from random weights, so it needs a larger step than the pre-trained encoder.
    head_lr: float = _f(1e-3, "learning rate of the new classification head")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm)")
    # Warm-up stops the new head's large early gradients from wrecking pre-trained weights.
    warmup_ratio: float = _f(0.06, "share of optimizer steps spent warming the learning rate up from 0")
    grad_accum: int = _f(1, "micro-batches per optimizer step (effective batch = batch_size * grad_accum)")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping; 0 turns it off")
    dropout: float = _f(0.1, "dropout before the classification head")
    freeze_layers: int = _f(0, "keep the embeddings and the lowest N encoder layers frozen (faster steps, "
                            "less to overfit on small data)")
    precision: Precision = _f("fp32", "training arithmetic: fp32, bf16 (autocast), or auto (bf16 only where the "
                              "CPU has native bf16 and a start-up matmul check finds it faster)")
    compile: bool = _f(False, "run the training forward pass through torch.compile (dynamic shapes); off by "
                       "default: it costs a compile at start and per new shape, and did not pay off on the CPUs "
                       "measured (BENCHMARKS.md, Speed)")
    pooling: Pooling = _f("cls", "text vector: the [CLS] token state, the mean or the max of the token states, or "
                          "layers: the mean-pooled vectors of the last --pool-layers layers side by side")
    pool_layers: int = _f(4, "pooling layers: how many of the last encoder layers to combine")
    head: Head = _f("linear", "classification head: linear; mlp (dropout 0.2, Linear, ReLU, Linear); "
                    "label-attention (each label attends over the tokens); gru (bidirectional GRU over the "
                    "tokens, then the pooling)")
    lr_decay: float = _f(1.0, "layer-wise learning-rate decay: each encoder layer below the top trains at this "
                         "factor times the layer above (embeddings lowest); 1 = the same lr everywhere")
    freeze_encoder_steps: int = _f(0, "keep the encoder's weights still for the first N optimizer steps while the "
                                   "new head settles (its gradients are still computed)")
    loss: Loss = _f("bce", "training loss: bce (binary cross-entropy), focal (Lin et al. 2017) or asl "
                    "(asymmetric loss, Ridnik et al. 2021); the last two turn easy cells down")
    focal_gamma: float = _f(2.0, "focal loss: how hard easy cells are turned down (0 = bce)")
    asl_gamma_pos: float = _f(0.0, "asymmetric loss: focusing of positive cells")
    asl_gamma_neg: float = _f(4.0, "asymmetric loss: focusing of negative cells")
    asl_clip: float = _f(0.05, "asymmetric loss: probability margin under which a negative costs nothing")
    pos_weight: PosWeight = _f("none", "weight of positive targets per label: none, auto (n_neg/n_pos, capped) "
                               "or sqrt (its square root)")
    pos_weight_cap: float = _f(100.0, "upper bound of an automatic positive weight")
    seed: int = _f(42, "random seed for initialisation, shuffling and dropout")
    metric: str = _f("micro_f1", "dev metric for early stopping and picking the best epoch",
                     choices=METRIC_CHOICES)
    patience: int = _f(4, "epochs without dev improvement before stopping early; 0 never stops early")
    threshold_mode: ThresholdMode = _f("per_label", "thresholds that predict uses by default: fixed (0.5), "
                                       "global (one tuned cut-off) or per_label (tuned per label)")
    min_threshold_support: int = _f(3, "positives a label needs in the tuning data for its own threshold; "
                                    "rarer labels use the global one")
    threshold_data: ThresholdData = _f("train+dev", "predictions the thresholds are tuned on: dev alone, or train "
                                       "and dev pooled (rare labels have too few dev positives to tune on dev "
                                       "alone; costs one inference pass over the training set)")
    token_cache: bool = _f(True, "keep tokenized training and dev data between runs (in $MLBERT_CACHE_DIR or "
                           "~/.cache/mlbert/tokens), keyed by tokenizer, max length and texts")
    save_steps: int = _f(200, "optimizer steps between resumable checkpoints (and at each epoch end); 0: epochs only")
    max_steps: int = _f(0, "stop after this many optimizer steps (the epoch in progress is then scored on dev and "
                        "ends); 0: no limit, run every epoch")
    data_on_disk: bool = _f(False, "stream the training file into a memory-mapped Arrow file of token ids and "
                            "train from it, so memory does not grow with the training set (for data larger "
                            "than RAM; dev and test are still read into memory)")

    def __post_init__(self) -> None:
        for name in ("max_length", "batch_size", "eval_batch_size", "grad_accum", "pool_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}")
        for name in ("token_cache", "data_on_disk", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("epochs", "weight_decay", "max_grad_norm", "patience", "save_steps", "max_steps",
                     "freeze_encoder_steps", "min_threshold_support", "freeze_layers",
                     "focal_gamma", "asl_gamma_pos", "asl_gamma_neg"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.asl_clip < 1:
            raise ConfigError(f"asl_clip must be in [0, 1), got {self.asl_clip}")
        if self.pos_weight_cap < 1:
            raise ConfigError(f"pos_weight_cap must be at least 1, got {self.pos_weight_cap}")
        if self.metric not in METRIC_CHOICES:
            raise ConfigError(f"metric must be one of {', '.join(METRIC_CHOICES)}; got {self.metric!r}")
        for f in dataclasses.fields(self):
            choices = literal_choices(f.type)
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}; got {getattr(self, f.name)!r}")
        if self.label_sep == "":
            raise ConfigError("label_sep must not be empty; leave it unset for JSON lists of labels")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e}); a config is one JSON object of settings") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class PretrainConfig:
    """Settings of a pretraining run, saved in `pretrain.json` beside the result."""

    model: str = DEFAULT_ENCODER
    max_length: int = 128
    batch_size: int = 32
    epochs: int = 1
    max_steps: int = 0
    lr: float = 5e-5
    # The packaged MiniLM has no MLM head: a new one needs larger steps than the pretrained encoder.
    head_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    mlm_probability: float = 0.15
    whole_word_mask: bool = False
    dev_share: float = 0.05
    seed: int = 42
    save_steps: int = 200

    def __post_init__(self) -> None:
        for name in ("max_length", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0 <= self.dev_share < 1:
            raise ConfigError(f"dev_share must be in [0, 1), got {self.dev_share}")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_steps", "save_steps", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")


def literal_choices(annotation: Any) -> tuple[str, ...]:
    """The allowed values of a `Literal[...]` annotation (given as a string or a type), else ()."""
    if isinstance(annotation, str):
        annotation = {"Pooling": Pooling, "Head": Head, "Loss": Loss, "PosWeight": PosWeight,
                      "ThresholdMode": ThresholdMode}.get(annotation)
    return tuple(get_args(annotation)) if annotation is not None else ()
