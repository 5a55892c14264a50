"""TrainConfig and PretrainConfig: every setting of a run, typed, validated, saved beside the result.

Python builds them directly, the CLI builds them from flags (one flag per field, help from `metadata`,
choices from the `Literal` types), and the model folder stores TrainConfig in `mlbert.json`, so there is
no second dict of settings anywhere. The `Literal` types below are the one place that names each choice;
every other module takes its tuple of choices from here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .budget import parse_duration
from .errors import ConfigError

# Resolved to the packaged all-MiniLM-L6-v2 folder at run time (see encoders.py).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"

# auto (the default of both): chosen when training starts, by resolved(): see AUTO_CHOICES.
Pooling = Literal["auto", "cls", "mean", "max", "layers"]
Head = Literal["auto", "linear", "mlp", "cosine", "label-attention", "gru"]
Precision = Literal["fp32", "bf16", "auto"]
# How the frozen layers' output is kept between epochs (layer_cache.py): in 16 or 32 bits, or not at all.
FrozenCache = Literal["fp16", "bf16", "fp32", "off"]
# How a text longer than max_length is read: its first max_length tokens, or all of it in windows (chunking.py).
LongText = Literal["truncate", "chunk"]
ChunkAggregation = Literal["max", "mean", "lse"]
# How the head's per-label weights start: at random, or from what each label's text means (label_init.py);
# auto: see AUTO_CHOICES.
LabelInit = Literal["auto", "random", "label-text"]
Loss = Literal["bce", "focal", "asl"]
PosWeight = Literal["none", "auto", "sqrt"]
ThresholdData = Literal["dev", "train+dev"]
# What `add-labels` does with the labels a model already has (label_adding.py): keep their network exactly as it
# is and train only the new labels' rows, or distill: train the network on the new data with the old labels'
# targets taken from the old model's own scores (Li & Hoiem 2016, "Learning without Forgetting").
OldLabels = Literal["keep", "distill"]
# distill's epochs unless given: the network starts trained, the new labels' rows from their label texts, the
# old labels from soft targets; one pass kept both within the issue's bounds at 56 % of three passes' wall
# time (BENCHMARKS.md, "`distill` in one epoch").
DISTILL_EPOCHS = 1
# The map from raw scores to the scores a model shows (calibration.py): auto keeps one only where it measurably
# helps on held-out data; none keeps raw scores.
CalibrationSetting = Literal["auto", "temperature", "platt", "none"]
ThresholdMode = Literal["fixed", "global", "per_label"]
# The model's default mode: one of the modes, or auto: the one that scores best on held-out data (thresholds.py).
DefaultThresholdMode = Literal["auto", "fixed", "global", "per_label"]
Metric = Literal[
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
]
# Inference paths of a loaded model: exact fp32, bf16 autocast, torch dynamic int8, ONNX fp32 / int8;
# auto is torch-bf16 where the CPU has native bf16 and measures it faster, else torch.
Backend = Literal["torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8", "auto"]
# Explanations (explain.py; predict --explain, the server's "explain", the report): Integrated Gradients steps
# and words shown per label. 8 steps: on dev as faithful as 16 (deleting the top words), at half the cost; 4 lost a
# fifth of it on Reuters (BENCHMARKS.md "Explanations").
EXPLAIN_STEPS = 8
EXPLAIN_WORDS = 5

POOLINGS: tuple[str, ...] = tuple(p for p in get_args(Pooling) if p != "auto")  # what a model is built with
HEADS: tuple[str, ...] = tuple(h for h in get_args(Head) if h != "auto")
# What pooling and head "auto" become: layer pooling + MLP head under a time budget (few steps: it learns
# faster, BENCHMARKS.md "Time to accuracy"), else CLS + linear (as good with the full default training).
# label_init auto: label-text, with or without a budget: ahead of random in every pair measured (1 %, 10 % and
# all of Reuters and GoEmotions at the same epochs, Reuters 10 % at the full default schedule; decided on dev:
# BENCHMARKS.md "Labels with meaning", session 22). Until 2026-12-02 it was random without a budget.
AUTO_CHOICES = {
    True: {"pooling": "layers", "head": "mlp", "label_init": "label-text"},
    False: {"pooling": "cls", "head": "linear", "label_init": "label-text"},
}
# A zero-shot classifier's pooling and head "auto": the packaged sentence encoder's own similarity (mean-pooled
# vectors compared by cosine); chosen over linear on training texts, which a zero-shot model never sees
# (BENCHMARKS.md, "the zero-shot head is `cosine`").
ZERO_SHOT_AUTO = {"pooling": "mean", "head": "cosine"}
# freeze_layers "auto": under a time budget whose plan (timed with every layer training) covers fewer than
# AUTO_FREEZE_EPOCHS epochs, the embeddings and this share of the encoder's layers (3 of MiniLM's 6) are
# frozen at the end of the probe: their steps cost half as much, and their output is cached from the next
# epoch on. Else, and without a budget, none (decided on dev, BENCHMARKS.md "Time to accuracy").
AUTO_FREEZE_SHARE = 0.5
AUTO_FREEZE_EPOCHS = 2.0
# max_length "auto": AUTO_MAX_LENGTH tokens (the encoder's limit where lower); under a time budget whose plan
# (after the freezing decision) covers fewer than AUTO_SHORTEN_EPOCHS epochs, the texts are cut to half of that
# from the end of the probe, if at least AUTO_SHORTEN_SHARE of them are longer: reading every text's first half
# beats never reading some texts (decided on dev: BENCHMARKS.md "Time to accuracy", "Shorter texts when a
# budget buys under an epoch").
AUTO_MAX_LENGTH = 256
AUTO_SHORTEN_EPOCHS = 1.0
AUTO_SHORTEN_SHARE = 0.1
PRECISIONS: tuple[str, ...] = get_args(Precision)
LOSSES: tuple[str, ...] = get_args(Loss)
POS_WEIGHTS: tuple[str, ...] = get_args(PosWeight)
THRESHOLD_MODES: tuple[str, ...] = get_args(ThresholdMode)
# The metrics (of Metric) that depend on the thresholds: threshold_mode auto picks the mode by the run's metric when
# it is one of these, else by micro-F1.
DECISION_METRICS: tuple[str, ...] = ("micro_f1", "macro_f1", "samples_f1", "weighted_f1")
# Modes within one standard error of the best by that metric are a tie the held-out data cannot resolve; this other
# F1 breaks it (macro-F1: the rare labels, unless the run is judged by macro-F1 already; thresholds.choose_mode).
TIE_BREAK_METRIC = {metric: "micro_f1" if metric == "macro_f1" else "macro_f1" for metric in DECISION_METRICS}
METRIC_CHOICES: tuple[str, ...] = get_args(Metric)
BACKENDS: tuple[str, ...] = get_args(Backend)


def _f(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


class Settings:
    """What TrainConfig and PretrainConfig share: JSON in and out, and a copy with changes."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config"):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path):
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

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)


@dataclass
class TrainConfig(Settings):
    """Settings of one training run; the defaults are sized for the packaged MiniLM on 2 CPU cores."""

    model: str = _f(
        DEFAULT_ENCODER,
        f"encoder: a local Hugging Face folder or a model id already on disk; '{DEFAULT_ENCODER}' is the packaged one",
    )
    text_field: str = _f("text", "field holding the text in the data files")
    label_field: str = _f("labels", "field holding the labels in the data files")
    label_sep: str | None = _f(None, "separator of labels written as one string, e.g. '|' for 'a|b'")
    max_length: int | Literal["auto"] = _f(
        "auto",
        "tokens kept per text (longer texts are truncated and counted); with --long-text chunk, per window; "
        "auto: 256 (the encoder's limit where lower), halved to 128 from the first steps when a --time-budget "
        "buys less than one epoch and at least a tenth of the texts are longer than 128",
    )
    long_text: LongText = _f(
        "truncate",
        "texts longer than max_length: truncate (read the first max_length tokens) or chunk (read all of it in "
        "windows of max_length tokens, each scored, their logits combined per text)",
    )
    chunk_stride: int = _f(32, "chunk: tokens that neighbouring windows share, so no phrase is cut unseen")
    max_chunks: int = _f(
        16, "chunk: at most this many windows a text (a memory bound; the log says how many texts reached it)"
    )
    chunk_aggregation: ChunkAggregation = _f(
        "max",
        "chunk: how a text's window logits combine: max, mean, or lse (log-mean-exp, a soft maximum)",
    )
    batch_size: int = _f(16, "examples per optimizer micro-batch")
    eval_batch_size: int = _f(64, "examples per inference batch")
    epochs: int = _f(
        0,
        "passes over the training data; 0 (auto): as many as make about 10,000 optimizer steps, "
        "at least 1 and at most 20 (4 on GoEmotions' 43k texts, 20 on Reuters' 7.0k)",
    )
    lr: float = _f(1e-4, "encoder learning rate (AdamW)")
    # The head starts from random weights, so it needs a larger step than the pre-trained encoder.
    head_lr: float = _f(1e-3, "learning rate of the new classification head")
    weight_decay: float = _f(0.01, "AdamW weight decay (not applied to biases and LayerNorm)")
    # Warm-up stops the new head's large early gradients from wrecking pre-trained weights.
    warmup_ratio: float = _f(0.06, "share of optimizer steps spent warming the learning rate up from 0")
    grad_accum: int = _f(1, "micro-batches per optimizer step (effective batch = batch_size * grad_accum)")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping; 0 turns it off")
    dropout: float = _f(0.1, "dropout before the classification head")
    freeze_layers: int | Literal["auto"] = _f(
        "auto",
        "keep the embeddings and the lowest N encoder layers frozen, without dropout (faster steps, less to "
        "overfit on small data); auto: half of the encoder's layers when a --time-budget buys fewer than 2 "
        "epochs (decided after the first steps), else 0",
    )
    frozen_cache: FrozenCache = _f(
        "fp16",
        "with --freeze-layers: compute the frozen layers' output once per training text and reuse it in later "
        "epochs, kept in memory in fp16, bf16 or fp32 (off: recompute every step)",
    )
    precision: Precision = _f(
        "fp32",
        "training arithmetic: fp32, bf16 (autocast), or auto (bf16 only where the "
        "CPU has native bf16 and a start-up matmul check finds it faster)",
    )
    compile: bool = _f(
        False,
        "run the training forward pass through torch.compile (dynamic shapes); off by "
        "default: it costs a compile at start and per new shape, and did not pay off on the CPUs "
        "measured (BENCHMARKS.md, Speed)",
    )
    pooling: Pooling = _f(
        "auto",
        "text vector: the [CLS] token state, the mean or the max of the token states, or "
        "layers: the mean-pooled vectors of the last --pool-layers layers side by side; auto: layers "
        "with a --time-budget, else cls",
    )
    pool_layers: int = _f(4, "pooling layers: how many of the last encoder layers to combine")
    head: Head = _f(
        "auto",
        "classification head: linear; mlp (dropout 0.2, Linear, ReLU, Linear); cosine (linear over the "
        "centred vector at unit length, the sentence encoder's similarity space; zero-shot's default); "
        "label-attention (each label attends over the tokens); gru (bidirectional GRU over the "
        "tokens, then the pooling); auto: mlp with a --time-budget, else linear",
    )
    label_init: LabelInit = _f(
        "auto",
        "how the head's per-label weights start: random, or label-text (each label scores texts like its name, "
        "or its --label-descriptions text, before training; see README 'Labels with meaning'); auto: label-text "
        "(random before 2026-12-02 when no --time-budget was set)",
    )
    lr_decay: float = _f(
        1.0,
        "layer-wise learning-rate decay: each encoder layer below the top trains at this "
        "factor times the layer above (embeddings lowest); 1 = the same lr everywhere",
    )
    freeze_encoder_steps: int = _f(
        0,
        "keep the encoder's weights still for the first N optimizer steps while the "
        "new head settles (its gradients are still computed)",
    )
    loss: Loss = _f(
        "bce",
        "training loss: bce (binary cross-entropy), focal (Lin et al. 2017) or asl "
        "(asymmetric loss, Ridnik et al. 2021); the last two turn easy cells down",
    )
    focal_gamma: float = _f(2.0, "focal loss: how hard easy cells are turned down (0 = bce)")
    asl_gamma_pos: float = _f(0.0, "asymmetric loss: focusing of positive cells")
    asl_gamma_neg: float = _f(4.0, "asymmetric loss: focusing of negative cells")
    asl_clip: float = _f(0.05, "asymmetric loss: probability margin under which a negative costs nothing")
    pos_weight: PosWeight = _f(
        "none", "weight of positive targets per label: none, auto (n_neg/n_pos, capped) or sqrt (its square root)"
    )
    pos_weight_cap: float = _f(100.0, "upper bound of an automatic positive weight")
    seed: int = _f(42, "random seed for initialisation, shuffling and dropout")
    metric: Metric = _f(
        "micro_f1",
        "dev metric for early stopping and picking the best epoch; an F1 here is also what threshold_mode auto "
        "maximises",
    )
    patience: int = _f(4, "epochs without dev improvement before stopping early; 0 never stops early")
    threshold_mode: DefaultThresholdMode = _f(
        "auto",
        "thresholds that predict and serve use by default: fixed (0.5), global (one tuned cut-off), per_label "
        "(tuned per label), or auto: the one of these that scores best on the halves of dev it was not tuned on, "
        "by `metric` if it is an F1 (micro, macro, samples, weighted), else by micro-F1; modes within one "
        "standard error of the best (a tie those halves cannot resolve) are told apart by macro-F1 (by "
        "micro-F1 when `metric` is macro-F1); chosen when the thresholds are tuned (the summary says which and why)",
    )
    min_threshold_support: int = _f(
        3, "positives a label needs in the tuning data for its own threshold; rarer labels use the global one"
    )
    dev_split: float = _f(
        0.0,
        "without dev data: hold out this share of the training data as dev (seeded; a text goes to dev only "
        "if each of its labels keeps a training example); 0: none (a Python fit without dev then keeps every "
        "threshold at 0.5)",
    )
    threshold_data: ThresholdData = _f(
        "train+dev",
        "predictions the thresholds are tuned on: dev alone, or train "
        "and dev pooled (rare labels have too few dev positives to tune on dev "
        "alone; costs one inference pass over the training set)",
    )
    calibration: CalibrationSetting = _f(
        "auto",
        "per-label map from raw sigmoid scores to calibrated probabilities, fitted on the threshold-tuning data "
        "and used by predict, evaluate, the report, ONNX and serve (decisions stay the same: the thresholds are "
        "re-expressed on the calibrated scale): temperature, platt, none (raw scores), or auto: the map with "
        "the lowest expected calibration error on the halves of dev it was not fitted on, if it beats raw "
        "scores there by a tenth, else none (README 'Calibrated scores')",
    )
    token_cache: bool = _f(
        True,
        "keep tokenized training and dev data between runs (in $MLBERT_CACHE_DIR or "
        "~/.cache/mlbert/tokens), keyed by tokenizer, max length and texts",
    )
    save_steps: int = _f(200, "optimizer steps between resumable checkpoints (and at each epoch end); 0: epochs only")
    time_budget: str = _f(
        "",
        "wall-clock time for the whole `mlbert train` run (reading and tokenizing the data, training, dev "
        "scoring, thresholds, saving): 90s, 20m, 1h or 1h30m (in Python also a number of seconds). The run "
        "measures its own speed over its first steps, plans its optimizer steps so that the learning rate "
        "decays to 0 at the end of the budget, scores dev several times on the way and keeps the best; "
        "empty: no budget",
    )
    eval_steps: int = _f(
        0, "score dev every N optimizer steps (and at the last); 0: at each epoch's end (a --time-budget run plans it)"
    )
    max_steps: int = _f(
        0,
        "stop after this many optimizer steps (the epoch in progress is then scored on dev and "
        "ends); 0: no limit, run every epoch",
    )
    data_on_disk: bool = _f(
        False,
        "stream the training file into a memory-mapped Arrow file of token ids and "
        "train from it, so memory does not grow with the training set (for data larger "
        "than RAM; dev and test are still read into memory)",
    )

    def resolved(self, positions: int | None = None) -> TrainConfig:
        """This config with pooling, head, label_init and max_length "auto" made concrete (AUTO_CHOICES,
        AUTO_MAX_LENGTH, or the encoder's `positions` where it reads fewer tokens): what a model is built with
        and saved with, so a loaded model never sees "auto".
        freeze_layers "auto" becomes 0 without a budget; under one the run decides it after its first steps
        (train.py), and the classifier saves the number; so with max_length, which such a run may halve."""
        choice = AUTO_CHOICES[bool(self.time_budget)]
        changes = {k: v for k, v in choice.items() if getattr(self, k) == "auto"}
        if self.max_length == "auto":  # a budgeted run may still halve it (TrainResult.max_length)
            changes["max_length"] = min(AUTO_MAX_LENGTH, positions or AUTO_MAX_LENGTH)
        if self.freeze_layers == "auto" and not self.time_budget:
            changes["freeze_layers"] = 0
        return self.replace(**changes) if changes else self

    def __post_init__(self) -> None:
        if isinstance(self.time_budget, (int, float)) and not isinstance(self.time_budget, bool):
            self.time_budget = f"{self.time_budget:g}s" if self.time_budget else ""
        check_types(self)
        if self.time_budget:
            parse_duration(self.time_budget)  # a bad value fails here, not after the data are read
        for name in ("batch_size", "eval_batch_size", "grad_accum", "pool_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        max_length = AUTO_MAX_LENGTH if self.max_length == "auto" else self.max_length
        if max_length < 8:
            raise ConfigError(f"max_length must be at least 8 tokens, got {self.max_length}")
        if self.chunk_stride < 0 or (self.long_text == "chunk" and self.chunk_stride > max_length // 2):
            raise ConfigError(
                f"chunk_stride must be between 0 and half of max_length ({max_length // 2}), got {self.chunk_stride}"
            )
        if self.max_chunks < 1:
            raise ConfigError(f"max_chunks must be at least 1, got {self.max_chunks}")
        if self.long_text == "chunk" and self.data_on_disk:
            raise ConfigError("long_text chunk does not work with data_on_disk yet; use one or the other")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.dev_split < 1:
            raise ConfigError(f"dev_split must be in [0, 1), got {self.dev_split}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in (
            *(["freeze_layers"] if self.freeze_layers != "auto" else []),
            "epochs",
            "weight_decay",
            "max_grad_norm",
            "patience",
            "save_steps",
            "max_steps",
            "eval_steps",
            "freeze_encoder_steps",
            "min_threshold_support",
            "focal_gamma",
            "asl_gamma_pos",
            "asl_gamma_neg",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 < self.lr_decay <= 1:
            raise ConfigError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 <= self.asl_clip < 1:
            raise ConfigError(f"asl_clip must be in [0, 1), got {self.asl_clip}")
        if self.pos_weight_cap < 1:
            raise ConfigError(f"pos_weight_cap must be at least 1, got {self.pos_weight_cap}")
        if self.label_sep == "":
            raise ConfigError("label_sep must not be empty; leave it unset for JSON lists of labels")


@dataclass
class PretrainConfig(Settings):
    """Settings of a pretraining run (`mlbert pretrain`), saved in `pretrain.json` beside the result."""

    model: str = _f(
        DEFAULT_ENCODER,
        "encoder to start from: a local Hugging Face folder or a model id already on "
        f"disk; '{DEFAULT_ENCODER}' is the packaged one",
    )
    max_length: int = _f(128, "tokens kept per text")
    batch_size: int = _f(32, "texts per step")
    epochs: int = _f(1, "passes over the texts")
    max_steps: int = _f(0, "stop after this many steps; 0: no limit")
    lr: float = _f(5e-5, "AdamW learning rate of the encoder")
    # The packaged MiniLM has no MLM head: a new one needs larger steps than the pretrained encoder.
    head_lr: float = _f(1e-3, "learning rate of the MLM head")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    warmup_ratio: float = _f(0.06, "share of steps spent warming the learning rate up from 0")
    mlm_probability: float = _f(0.15, "share of tokens chosen for prediction")
    whole_word_mask: bool = _f(False, "mask whole words, not single word pieces")
    dev_share: float = _f(0.05, "share of the texts held out for perplexity when no --dev is given (at most 2,000)")
    seed: int = _f(42, "random seed")
    save_steps: int = _f(200, "steps between resumable checkpoints")

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("max_length", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.mlm_probability < 1:
            raise ConfigError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if not 0 <= self.dev_share < 1:
            raise ConfigError(f"dev_share must be in [0, 1), got {self.dev_share}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("max_steps", "save_steps", "weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Each field's resolved annotation (the module uses postponed annotations, so `Field.type` is a string)."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def literal_choices(annotation: Any) -> tuple[str, ...]:
    """The allowed values of a `Literal[...]` annotation, else ()."""
    return tuple(get_args(annotation)) if get_origin(annotation) is Literal else ()


def base_type(annotation: Any) -> Any:
    """bool, int, float or str for a plain, optional or "auto"-able annotation (`int | Literal["auto"]`); str
    for a Literal of strings."""
    if literal_choices(annotation):
        return str
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None) and not takes_auto(a)]
        return base_type(args[0]) if len(args) == 1 else Any
    return annotation


def takes_auto(annotation: Any) -> bool:
    """Whether a field's annotation accepts "auto" beside its values: Literal["auto"] or a union with it."""
    if get_origin(annotation) in (Union, types.UnionType):
        return any(takes_auto(a) for a in get_args(annotation))
    return literal_choices(annotation) == ("auto",)


def field_choices(cls: type) -> dict[str, tuple[str, ...]]:
    """{field name: its allowed values} for every Literal-typed field of a settings class."""
    return {name: choices for name, t in field_types(cls).items() if (choices := literal_choices(t))}


def check_types(settings: Any) -> None:
    """Refuse a value outside its field's Literal choices, or of the wrong kind (a JSON config can hold
    "3" for 3 or 1 for true); int is accepted where a float is expected."""
    for name, annotation in field_types(type(settings)).items():
        value = getattr(settings, name)
        choices = literal_choices(annotation)
        if choices:
            if value not in choices:
                raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
            continue
        kind = base_type(annotation)
        optional = value is None and type(None) in get_args(annotation)
        if optional or kind is Any or (value == "auto" and takes_auto(annotation)):
            continue
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            what = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(kind, kind)
            raise ConfigError(f"{name} must be {what}, got {value!r}")
