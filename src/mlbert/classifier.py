"""MultiLabelClassifier: the scikit-learn shaped Python API that ties the modules together."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from .backends import inference_precision, resolve_backend, runtime_model
from .batching import Chunking, Encoded, encode, show_progress, take_rows
from .calibration import choose_calibration, join_calibrations
from .config import (
    AUTO_FREEZE_SHARE,
    AUTO_MAX_LENGTH,
    DECISION_METRICS,
    DISTILL_EPOCHS,
    EXPLAIN_STEPS,
    EXPLAIN_WORDS,
    TIE_BREAK_METRIC,
    ZERO_SHOT_AUTO,
    OldLabels,
    TrainConfig,
)
from .data import binarize, describe_unseen, iter_examples, label_vocabulary, lone_surrogate, split_dev
from .distributed import barrier, process_rank
from .encoders import load_encoder, load_tokenizer, resolve_encoder, token_limit
from .errors import ConfigError, DataError, NotFittedError
from .explain import WordAttribution, explain_text, text_windows, top_words
from .label_adding import distill_cache, joined_model, model_for_new_labels
from .label_init import init_head_from_labels, label_priors, sample_rows
from .label_text import LabelText, flat_texts, label_texts, unknown_labels
from .layer_cache import LayerCache
from .metrics import evaluation_report
from .model import MultiLabelModel, layer_stack
from .model_io import load_model_folder, model_calibration, save_model_folder
from .predict import decide, predict_proba, predict_proba_all
from .thresholds import Thresholds, choose_mode, f1, tune
from .token_cache import default_cache_dir, encode_cached, tokenizer_fingerprint
from .token_store import TokenStore, build_store
from .train import train_model

log = logging.getLogger("mlbert")


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    refuse_table(texts, what)
    if isinstance(texts, str):
        raise DataError(f"{what} must be a list of strings, got one string; wrap it in a list")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"{what}[{i}] is {type(t).__name__}; expected a string")
        if not t.strip():
            raise DataError(f"{what}[{i}] is empty; every text needs content")
        at = lone_surrogate(t)
        if at is not None:
            raise DataError(f"{what}[{i}] holds a lone surrogate at character {at + 1}; it is not text")
    return texts


def refuse_table(value, what: str) -> None:
    """A pandas DataFrame iterates over its column names and a datasets.Dataset over row dicts: neither is
    a list of texts, and the first gave one row for three without an error."""
    if hasattr(value, "columns") and hasattr(value, "iloc"):
        column = next(iter(value.columns), "text")
        raise DataError(
            f"{what} is a DataFrame (iterating it gives its column names, not its rows); pass one column as a "
            f"list: df[{str(column)!r}].tolist()"
        )
    if hasattr(value, "column_names") and hasattr(value, "features"):
        raise DataError(f"{what} is a datasets.Dataset (it iterates over row dicts); pass one column: ds['text']")


def _check_labels(labels: Sequence[Sequence[str]], n: int, what: str = "labels") -> list[list[str]]:
    refuse_table(labels, what)
    labels = list(labels)
    if len(labels) != n:
        raise DataError(f"{what}: {len(labels)} label lists for {n} texts; give one list per text")
    for i, row in enumerate(labels):
        if isinstance(row, str) or not isinstance(row, (list, tuple)):
            raise DataError(f"{what}[{i}] is {type(row).__name__} {row!r:.40}; expected a list of label strings")
        if not all(isinstance(x, str) for x in row):
            raise DataError(f"{what}[{i}] holds a non-string label; labels are strings")
    return [list(dict.fromkeys(row)) for row in labels]


class MultiLabelClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tunes a BERT-family encoder with a multi-label head.

    >>> clf = MultiLabelClassifier(epochs=3).fit(texts, labels, dev=(dev_texts, dev_labels))
    >>> clf.predict(["rates rise again"])        # [["interest", "money-fx"]]
    >>> clf.predict_proba(["rates rise again"])  # (1, n_labels), columns = clf.labels_

    `__init__` only stores settings; `fit` starts over each call; what was learned ends in `_`. A
    scikit-learn estimator: every TrainConfig field is a parameter (`get_params`, `set_params`, `clone`,
    grid search), `score` is micro-F1 under the default thresholds, `classes_` the label names.
    """

    def __init__(self, config: TrainConfig | None = None, **settings: Any):
        self.config = config.replace(**settings) if config is not None else TrainConfig(**settings)

    # -- scikit-learn conventions ---------------------------------------------------------------
    # The parameters are TrainConfig's fields, not __init__'s signature (which takes them as **settings
    # so that the config stays their one definition), hence get_params and set_params of our own.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {f.name: getattr(self.config, f.name) for f in dataclasses.fields(TrainConfig)}

    def set_params(self, **params: Any) -> MultiLabelClassifier:
        self.config = TrainConfig.from_dict({**self.config.to_dict(), **params}, source="set_params")
        return self

    def score(self, texts: Sequence[str], labels: Sequence[Sequence[str]], sample_weight=None) -> float:
        """Micro-F1 on labelled texts under the model's default thresholds (what `predict` returns)."""
        if sample_weight is not None:
            raise ConfigError("score takes no sample_weight; every text counts once")
        return float(self.evaluate(texts, labels)["metrics"][self.default_mode_]["micro_f1"])

    @property
    def classes_(self) -> np.ndarray:
        """The label names, in column order (scikit-learn's name for `labels_`)."""
        self._check_fitted()
        return np.asarray(self.labels_, dtype=object)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def __repr__(self) -> str:
        defaults = TrainConfig()
        changed = {k: v for k, v in self.get_params().items() if v != getattr(defaults, k)}
        return f"MultiLabelClassifier({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- learning -------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[Sequence[str]],
        dev: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        started_at: float | None = None,
        predict_after: int = 0,
        label_descriptions: Mapping[str, LabelText] | None = None,
    ) -> MultiLabelClassifier:
        """Train on (texts, labels); tune thresholds on `dev` (without dev, every threshold stays 0.5).

        Args:
            out_dir: folder for resumable checkpoints and the training log (the model is not saved
                there until `save`).
            resume: continue the interrupted run found in `out_dir`.
            started_at: with a `time_budget`, when its clock started (`time.perf_counter()`); default: now.
            predict_after: with a `time_budget`, how many texts you will still predict within it (a
                test split, say), so that the plan leaves time for them.
            label_descriptions: label -> what it means, in words, a text or a list of texts (default: the
                label's name as words); saved with the model, and where the head starts with label_init "label-text".
        """
        self._run = (started_at if started_at is not None else time.perf_counter(), predict_after)
        self._descriptions = dict(label_descriptions or {})
        self._resolve_config()
        texts = check_texts(texts)
        labels = _check_labels(labels, len(texts))
        if not texts:
            raise DataError("no training texts")
        if dev is None and self.config.dev_split > 0:
            rows, dev_rows = split_dev(labels, self.config.dev_split, self.config.seed)
            log.info(
                "dev: %d of %d training examples held out (dev_split %g)",
                len(dev_rows),
                len(texts),
                self.config.dev_split,
            )
            dev = ([texts[i] for i in dev_rows], [labels[i] for i in dev_rows])
            texts, labels = [texts[i] for i in rows], [labels[i] for i in rows]
        vocab = label_vocabulary(labels)
        train_enc = self._encode(texts, progress, cache=True)
        train_y, _ = binarize(labels, vocab)
        self._phases = {"tokenize_train_s": time.perf_counter() - self._run[0]}
        return self._fit(train_enc, train_y, vocab, dev, out_dir, resume, progress)

    def fit_file(
        self,
        path: str | Path,
        dev: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
        *,
        out_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        started_at: float | None = None,
        predict_after: int = 0,
        label_descriptions: Mapping[str, LabelText] | None = None,
    ) -> MultiLabelClassifier:
        """Train on a labelled file that need not fit in memory (`mlbert train` with --data-on-disk).

        The file streams through the tokenizer into a memory-mapped Arrow file (see token_store.py),
        kept in the token cache (or in `out_dir` with token_cache off) and reused by later runs.
        """
        self._run = (started_at if started_at is not None else time.perf_counter(), predict_after)
        self._descriptions = dict(label_descriptions or {})
        store = TokenStore(self.tokenize_file(path, out_dir, progress))  # the config resolved there
        self._phases = {"tokenize_train_s": time.perf_counter() - self._run[0]}
        vocab = store.vocabulary()
        return self._fit(store, store.targets(vocab), vocab, dev, out_dir, resume, progress)

    def tokenize_file(self, path: str | Path, out_dir: str | Path | None = None, progress: bool = True) -> Path:
        """Stream a labelled file into its memory-mapped token store (once; later calls find it) -> its path."""
        self._resolve_config()
        config = self.config
        store_path = self._store_path(Path(path), out_dir)
        if process_rank() == 0 and not store_path.is_file():
            log.info("tokenizing %s into %s", path, store_path)
            build_store(
                iter_examples(path, config.text_field, config.label_field, config.label_sep),
                self.tokenizer_,
                config.max_length,
                store_path,
                progress,
            )
        barrier()  # the other processes of a distributed run open the file the first one wrote
        return store_path

    def _store_path(self, path: Path, out_dir: str | Path | None) -> Path:
        c = self.config
        h = hashlib.sha256(tokenizer_fingerprint(self.tokenizer_))
        h.update(json.dumps([c.max_length, c.text_field, c.label_field, c.label_sep]).encode())
        with open(path, "rb") as f:  # the file's bytes: a changed file is a new store
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        name = f"{h.hexdigest()[:32]}.arrow"
        if c.token_cache:
            return default_cache_dir() / name
        if out_dir is None:
            raise ConfigError("fit_file with token_cache off needs out_dir to hold the tokenized file")
        return Path(out_dir) / "data" / name

    def _load_tokenizer(self) -> None:
        self.encoder_path_ = resolve_encoder(self.config.model)
        self.tokenizer_ = load_tokenizer(self.encoder_path_)

    def _resolve_config(self) -> None:
        """Load the tokenizer and make the config's "auto" settings what this run trains (and saves); max_length
        "auto" within what the encoder reads."""
        self._load_tokenizer()
        resolved = self.config.resolved(token_limit(self.encoder_path_, self.tokenizer_))
        self._cut_to = _cut_length(self.config, resolved.max_length)
        self.config = resolved

    def _fit(
        self,
        train_enc,
        train_y,
        vocab: list[str],
        dev,
        out_dir,
        resume: bool,
        progress: bool,
        model: MultiLabelModel | None = None,
        dev_columns: slice = slice(None),
        layer_cache: LayerCache | None = None,
    ) -> MultiLabelClassifier:
        """The training shared by fit, fit_file and add_labels: `train_enc` is an Encoded or a TokenStore,
        `train_y` a 0/1 matrix or the store's LabelRows; `model` a network to train (default: the encoder
        with a new head, as the config says). `dev_columns`: the labels (of `vocab`) that dev is annotated
        with and scored on, whose thresholds and calibration are tuned (add_labels "distill": the new ones);
        `layer_cache` the frozen layers' output for `train_enc`, filled ahead for `model` (train_model)."""
        if not vocab:
            raise DataError("the training data carry no labels at all; a classifier needs at least one label")
        config = self.config
        torch.manual_seed(config.seed)  # the head's initial weights
        if model is None:
            model = MultiLabelModel.from_config(load_encoder(self.encoder_path_, pretrained=True), len(vocab), config)
        self.labels_ = vocab
        self.label_texts_ = self._label_texts(vocab)
        if config.label_init == "label-text" and not resume:
            rows = sample_rows(len(train_enc), config.seed)
            counts = np.asarray(train_y.sum(0), dtype=np.float64)  # exact: a store's LabelRows counts its file
            self._start_from_label_texts(model, take_rows(train_enc, rows), label_priors(counts, len(train_enc)))
        self.truncated_ = {"train": train_enc.truncated_share}
        if getattr(train_enc, "starts", None) is not None:
            log.info(
                "train: %d texts read in %d windows of %d tokens, %d labels; %.1f%% reached max_chunks %d",
                len(train_enc),
                len(train_enc.input_ids),
                config.max_length,
                len(vocab),
                100 * train_enc.truncated_share,
                config.max_chunks,
            )
        else:
            log.info(
                "train: %d texts, %d labels, %.1f%% truncated at %d tokens",
                len(train_enc),
                len(vocab),
                100 * train_enc.truncated_share,
                config.max_length,
            )
        dev_data, t0 = None, time.perf_counter()
        if dev is not None:
            dev_texts = check_texts(dev[0], "dev texts")
            dev_labels = _check_labels(dev[1], len(dev_texts), "dev labels")
            dev_enc = self._encode(dev_texts, progress, cache=True)
            dev_y, unseen = binarize(dev_labels, vocab[dev_columns])
            if unseen:
                log.warning(describe_unseen(unseen, "dev"))
            self.truncated_["dev"] = dev_enc.truncated_share
            dev_data = (dev_enc, dev_y)
        else:
            log.warning("no dev data: no early stopping, and every threshold stays at 0.5")
        n_sample = min(len(train_enc), MAX_THRESHOLD_TRAIN) if config.threshold_data == "train+dev" else 0
        self._phases["tokenize_dev_s"] = time.perf_counter() - t0

        with _console_log(progress):
            result = train_model(
                model,
                config,
                (train_enc, train_y),
                dev_data,
                out_dir=Path(out_dir) if out_dir is not None else None,
                resume=resume,
                progress=progress,
                run_started=self._run[0],
                after_texts=self._run[1],
                threshold_texts=n_sample if dev is not None else 0,
                cut_to=getattr(self, "_cut_to", 0) if isinstance(train_enc, Encoded) else 0,
                dev_columns=dev_columns,
                layer_cache=layer_cache,
            )
        model.load_state_dict(result.best_state)
        model.eval()
        self.model_, self.backend_ = model, "torch"
        # "auto" -> what the run did
        self.config = self.config.replace(
            freeze_layers=result.frozen_layers, max_length=result.max_length or config.max_length
        )
        if result.max_length:
            self.truncated_ = {
                "train": train_enc.truncated_share,
                **({"dev": dev_data[0].truncated_share} if dev_data else {}),
            }
        self.history_ = result.history
        self.training_ = {
            "best_epoch": result.best_epoch,
            "best_step": result.best_step,
            "steps_run": result.steps,
            "epochs_run": max((h["epoch"] for h in result.history), default=0),
            "stopped_early": result.stopped_early,
            "train_seconds": round(result.seconds, 1),
            "n_train": len(train_enc),
            "truncated": self.truncated_,
            "warnings": result.warnings,
        }
        if result.budget.get("budget_s") or "estimate_s" in result.budget:
            self.training_["budget"] = result.budget
        for warning in result.warnings:
            log.warning(warning)
        self._phases["train_s"] = result.seconds
        t0 = time.perf_counter()
        if dev_data is not None:
            # The best evaluation's, where it scored all of dev; else shared out over the processes of a
            # distributed run (a plain predict_proba in one process).
            probs = result.dev_probs
            if probs is None:
                probs = predict_proba_all(model, dev_data[0], config.eval_batch_size)[:, dev_columns]
            targets = dev_data[1]
            self.dev_probs_ = probs  # what the job that trained reports on dev, without a second pass
            n_train_used = 0
            if config.threshold_data == "train+dev":
                limit = result.budget.get("threshold_train_texts", MAX_THRESHOLD_TRAIN)
                sample_enc, sample_y = _threshold_sample(train_enc, train_y, config.seed, limit)
                n_train_used = len(sample_enc)
                log.info(
                    "tuning thresholds on train + dev predictions (--threshold-data train+dev, %d training examples)",
                    n_train_used,
                )
                probs = np.concatenate([predict_proba_all(model, sample_enc, config.eval_batch_size, progress), probs])
                targets = np.concatenate([sample_y, targets])
            self.thresholds_ = tune(probs, targets, config.min_threshold_support)
            self._choose_mode(probs, targets, np.arange(n_train_used, len(targets)))
            self._calibrate(probs, targets, np.arange(n_train_used, len(targets)))
            self.training_["calibration_choice"] = self.calibration_choice_
            self.training_["threshold_tuning"] = {
                "data": config.threshold_data,
                "n_examples": len(targets),
                "n_train_examples": n_train_used,
            }
            self.training_["threshold_mode_choice"] = self.threshold_choice_
        else:
            self.dev_probs_ = None
            self.thresholds_ = Thresholds(global_=0.5, per_label=np.full(len(vocab[dev_columns]), 0.5))
            self.calibration_ = None
        self._phases["thresholds_s"] = time.perf_counter() - t0
        self.training_["phases"] = {k: round(v, 1) for k, v in self._phases.items()}
        return self

    def _label_texts(self, labels: list[str]) -> list[LabelText]:
        """Each label's text (its description, else its name as words); descriptions of labels the data do not
        have are reported, not used."""
        descriptions = getattr(self, "_descriptions", {})
        unknown = unknown_labels(labels, descriptions)
        if unknown:
            log.warning(
                "label descriptions for %d labels the data do not have, not used: %s",
                len(unknown),
                ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else ""),
            )
        return label_texts(labels, descriptions)

    def _start_from_label_texts(
        self, model: MultiLabelModel, sample: Encoded | None, priors: np.ndarray, contrast: bool = False
    ) -> None:
        """Set the head's per-label weights from the encoded label texts (label_init.py; `contrast` there);
        without a `sample` of texts the label texts stand in for them."""
        t0 = time.perf_counter()
        texts, owners = flat_texts(self.label_texts_)
        label_enc = encode(self.tokenizer_, texts, self.config.max_length)
        sample = label_enc if sample is None else sample
        init_head_from_labels(model, label_enc, sample, priors, self.config.eval_batch_size, contrast, owners)
        log.info(
            "head: per-label weights from the %d label texts (%d sample texts, %.1fs)",
            len(label_enc),
            len(sample),
            time.perf_counter() - t0,
        )

    def add_labels(
        self,
        texts: Sequence[str],
        labels: Sequence[Sequence[str]],
        dev: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
        *,
        label_descriptions: Mapping[str, LabelText] | None = None,
        old_labels: OldLabels = "keep",
        out_dir: str | Path | None = None,
        progress: bool = True,
        **settings: Any,
    ) -> MultiLabelClassifier:
        """A new classifier with this one's labels and the labels of (texts, labels) that it lacks.

        `old_labels` "keep" (the default) keeps what this model has learned exactly: the encoder and the head's
        shared parts stay frozen and only the new labels' rows are trained (label_adding.py), starting from
        their label texts, so every old label scores every text as before and keeps its thresholds. Fast, but
        the new labels learn on features shaped for the old ones. "distill" trains the network (all but the
        lower half of its layers) on the new data, the new labels from their annotations and the old labels
        from this model's own scores of the same texts, so the old labels keep their behaviour without their
        training data while the encoder also learns the new ones; the old labels keep their thresholds. It
        costs an inference pass over the texts and a training of the network.

        Texts that carry only old labels count as negatives of the new ones. `settings` change the training
        (epochs: this model's own with "keep", DISTILL_EPOCHS with "distill"; head_lr, time_budget, ...;
        freeze_layers with "distill"); `dev` (labelled with the new labels) picks the best epoch by the new
        labels' scores and tunes their thresholds and calibration (with "distill" the old labels are held to
        this model's scores by the loss, and dev is not scored for them: no pass of this model over dev).
        """
        self._check_fitted()
        if self.backend_ != "torch":
            raise ConfigError(f"labels are added to a torch model; this one runs the {self.backend_} backend")
        if old_labels not in get_args(OldLabels):
            raise ConfigError(f"old_labels must be one of {', '.join(get_args(OldLabels))}, got {old_labels!r}")
        texts = check_texts(texts)
        labels = _check_labels(labels, len(texts))
        if not texts:
            raise DataError("no training texts for the new labels")
        known = set(self.labels_)
        new_labels = [label for label in label_vocabulary(labels) if label not in known]
        if not new_labels:
            raise DataError(
                f"the data bring no label the model lacks (it has {len(self.labels_)}: "
                f"{', '.join(self.labels_[:8])}{', ...' if len(self.labels_) > 8 else ''}); to train further on "
                "them, train with --model pointing at this model's folder"
            )
        shared = sorted(known & {label for row in labels for label in row})
        if shared:
            log.info(
                "%d of the model's labels also appear in the new data (%s): %s",
                len(shared),
                ", ".join(shared[:8]) + (", ..." if len(shared) > 8 else ""),
                "they keep their weights and thresholds"
                if old_labels == "keep"
                else "they learn this model's scores, not these annotations",
            )
        n_layers = len(layer_stack(self.model_.encoder) or [])
        if old_labels == "keep" and settings.get("freeze_layers", n_layers) != n_layers:
            raise ConfigError("old_labels 'keep' trains only the new labels' rows: freeze_layers is not a choice there")
        fixed = {"freeze_layers": n_layers if old_labels == "keep" else int(n_layers * AUTO_FREEZE_SHARE)}
        if old_labels == "distill":  # soft targets cannot tune thresholds: the new labels' come from dev
            fixed.update(threshold_data="dev", epochs=DISTILL_EPOCHS)
        config = self.config.replace(**{**fixed, "label_init": "label-text", "time_budget": "", **settings})
        adder = MultiLabelClassifier(config.resolved())
        adder._run, adder._descriptions = (time.perf_counter(), 0), dict(label_descriptions or {})
        adder.tokenizer_, adder.encoder_path_ = self.tokenizer_, getattr(self, "encoder_path_", None)
        train_enc = adder._encode(texts, progress)
        train_y, _ = binarize(labels, new_labels)
        if dev is not None:  # dev is scored on the new labels: its annotations of old labels are not used
            dev_texts = check_texts(dev[0], "dev texts")
            dev_labels = _check_labels(dev[1], len(dev_texts), "dev labels")
            dev = (dev_texts, [[x for x in row if x not in known] for row in dev_labels])
        adder._phases = {"tokenize_train_s": time.perf_counter() - adder._run[0]}
        torch.manual_seed(adder.config.seed)
        network = model_for_new_labels(self.model_, len(new_labels), adder.config)
        n_old = len(self.labels_)
        if old_labels == "keep":
            adder._fit(train_enc, train_y, new_labels, dev, out_dir, False, progress, model=network)
            model = joined_model(self.model_, adder.model_, self.config)
        else:
            self._distill_into(adder, network, train_enc, train_y, new_labels, dev, out_dir, progress)
            model = adder.model_
        # Either way the adder tuned thresholds and calibration on the new labels' columns alone.
        new_thresholds, new_calibration = adder.thresholds_.per_label, adder.calibration_

        joined = MultiLabelClassifier(self.config)
        joined.tokenizer_, joined.backend_ = self.tokenizer_, "torch"
        joined.encoder_path_ = getattr(self, "encoder_path_", None)
        joined.model_ = model
        joined.labels_ = [*self.labels_, *new_labels]
        joined.label_texts_ = [
            *getattr(self, "label_texts_", label_texts(self.labels_)),
            *adder.label_texts_[-len(new_labels) :],
        ]
        joined.thresholds_ = Thresholds(
            global_=self.thresholds_.global_,
            per_label=np.concatenate([self.thresholds_.per_label, new_thresholds]),
            fixed=self.thresholds_.fixed,
            default=self.thresholds_.default,
        )
        joined.calibration_ = join_calibrations(
            getattr(self, "calibration_", None), n_old, new_calibration, len(new_labels)
        )
        joined.history_ = adder.history_
        joined.truncated_ = getattr(adder, "truncated_", {})
        joined.training_ = {
            **getattr(self, "training_", {}),
            "added_labels": {
                "labels": new_labels,
                "old_labels": old_labels,
                "n_train": len(texts),
                "training": {k: v for k, v in adder.training_.items() if k != "warnings"},
            },
        }
        joined.dev_probs_ = None
        return joined

    def _distill_into(self, adder, network, train_enc, new_y, new_labels, dev, out_dir, progress) -> None:
        """add_labels "distill": `adder` trains this model's network joined with `network`'s new rows (started
        from their label texts) on the texts, the old labels' targets being this model's raw scores of them."""
        t0 = time.perf_counter()
        adder.label_texts_ = adder._label_texts(new_labels)
        rows = sample_rows(len(train_enc), adder.config.seed)
        priors = label_priors(new_y.sum(0), len(train_enc))
        adder._start_from_label_texts(network, take_rows(train_enc, rows), priors)
        model = joined_model(self.model_, network, self.config)
        for p in model.parameters():
            p.requires_grad_(True)  # _fit freezes the lower layers that the config names
        cache = distill_cache(model, adder.config, train_enc)
        if cache is not None:  # the old model's lower layers are the new one's frozen ones: one pass for both
            old_scores = cache.fill_scoring(self.model_, train_enc, self.config.eval_batch_size, progress)  # raw
        else:
            old_scores = predict_proba_all(self.model_, train_enc, self.config.eval_batch_size, progress)
        targets = np.concatenate([old_scores, new_y], axis=1)
        log.info(
            "distill: the old model scored %d training texts in %.1fs%s",
            len(train_enc),
            time.perf_counter() - t0,
            f" (its lowest {cache.layers} layers' output kept for training)" if cache is not None else "",
        )
        adder.config = adder.config.replace(label_init="random")  # the rows start where they were just set
        adder._fit(train_enc, targets.astype(np.float32), [*self.labels_, *new_labels], dev, out_dir, False, progress,
                   model=model, dev_columns=slice(len(self.labels_), None), layer_cache=cache)  # fmt: skip

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[str],
        label_descriptions: Mapping[str, LabelText] | None = None,
        dev: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
        config: TrainConfig | None = None,
        texts: Sequence[str] | None = None,
        **settings: Any,
    ) -> MultiLabelClassifier:
        """A zero-shot classifier: no training texts, only the labels' names (or descriptions). A text scores
        high on a label whose text it resembles (label_init.py); thresholds are tuned on `dev` where given.

        >>> clf = MultiLabelClassifier.from_labels(["sports", "politics"], dev=(dev_texts, dev_labels))

        The similarities are centred and scaled on texts like those to classify: dev's texts, else `texts`
        (unlabelled), else (a poor stand-in) the label texts themselves. Without dev a text takes a label when
        its similarity stands about 2 deviations (SCALE and the prior 1/n_labels) above the mean text's: a
        start, not a tuned model. With dev, its label shares set the priors and it tunes the thresholds.
        Pooling and head "auto" become mean + cosine (the packaged encoder's own similarity space), and a
        text's similarity to a label counts less its mean similarity to all labels (label_init.py, contrast).
        Labels of dev texts that are not in `labels` are reported and ignored."""
        clf = cls(config, **settings)
        clf.config = clf.config.replace(
            **{k: v for k, v in ZERO_SHOT_AUTO.items() if getattr(clf.config, k) == "auto"},
            label_init="label-text",
        )
        labels = [str(label) for label in labels]
        if not labels or len(set(labels)) != len(labels) or not all(labels):
            raise DataError("a zero-shot classifier needs a list of distinct, non-empty label names")
        t0 = time.perf_counter()
        clf._descriptions = dict(label_descriptions or {})
        clf._resolve_config()
        torch.manual_seed(clf.config.seed)
        model = MultiLabelModel.from_config(load_encoder(clf.encoder_path_, pretrained=True), len(labels), clf.config)
        clf.labels_, clf.label_texts_ = labels, clf._label_texts(labels)
        if dev is not None:
            dev_texts = check_texts(dev[0], "dev texts")
            dev_labels = _check_labels(dev[1], len(dev_texts), "dev labels")
            dev_enc = clf._encode(dev_texts)
            dev_y, unseen = binarize(dev_labels, labels)
            if unseen:
                log.warning(describe_unseen(unseen, "dev"))
            rows = sample_rows(len(dev_enc), clf.config.seed)
            priors = label_priors(dev_y.sum(0), len(dev_y))
            clf.truncated_ = {"dev": dev_enc.truncated_share}
            clf._start_from_label_texts(model, take_rows(dev_enc, rows), priors, contrast=True)
        else:
            sample = None
            if texts is not None and len(texts):
                texts = check_texts(texts, "texts")
                sample = clf._encode([texts[i] for i in sample_rows(len(texts), clf.config.seed)])
            else:
                log.warning(
                    "zero-shot without dev data or texts: the label texts stand in for the texts to classify when "
                    "scaling the scores, so the default thresholds are a guess; pass dev data (or unlabelled texts)"
                )
            clf._start_from_label_texts(model, sample, np.full(len(labels), 1.0 / len(labels)), contrast=True)
            clf.truncated_ = {}
        model.eval()
        clf.model_, clf.backend_ = model, "torch"
        clf.history_ = []
        clf.training_ = {"zero_shot": True, "dev_examples": 0 if dev is None else len(dev_y), "n_train": 0}
        clf.calibration_ = None
        if dev is not None and len(dev_y):
            probs = clf.predict_proba(dev_texts)
            clf.dev_probs_ = probs
            clf.thresholds_ = tune(probs, dev_y, clf.config.min_threshold_support)
            clf._choose_mode(probs, dev_y, np.arange(len(dev_y)))
            clf._calibrate(probs, dev_y, np.arange(len(dev_y)))
            clf.training_["calibration_choice"] = clf.calibration_choice_
            clf.training_["threshold_tuning"] = {"data": "dev", "n_examples": len(dev_y), "n_train_examples": 0}
            clf.training_["threshold_mode_choice"] = clf.threshold_choice_
        else:
            clf.dev_probs_ = None
            clf.thresholds_ = Thresholds(global_=0.5, per_label=np.full(len(labels), 0.5))
        clf.training_["phases"] = {"zero_shot_s": round(time.perf_counter() - t0, 1)}
        return clf

    # -- using ----------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this classifier is not trained yet; call fit(...) or MultiLabelClassifier.load(dir)")

    def _encode(self, texts: list[str], progress: bool = False, cache: bool = False) -> Encoded:
        """Token ids (whole texts in windows with long_text chunk); training data go through the on-disk cache
        when the config allows it."""
        config = self.config
        chunking = self._chunking()
        if cache and config.token_cache:
            return encode_cached(self.tokenizer_, texts, config.max_length, default_cache_dir(), progress, chunking)
        return encode(self.tokenizer_, texts, config.max_length, progress=progress, chunking=chunking)

    def _chunking(self) -> Chunking | None:
        """How a text becomes windows (long_text chunk), or None: its first max_length tokens."""
        config = self.config
        if config.long_text != "chunk":
            return None
        return Chunking(config.chunk_stride, config.max_chunks, config.chunk_aggregation)

    def predict_proba(self, texts: Sequence[str], progress: bool = False, calibrated: bool = True) -> np.ndarray:
        """(n_texts, n_labels) probabilities; columns follow `labels_`. Calibrated (float64) where the model
        keeps a calibration map (`calibration_`) unless `calibrated` is False: then the raw sigmoid scores
        (float32), the scale `thresholds_` are on."""
        self._check_fitted()
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, len(self.labels_)), dtype=np.float32)
        raw = predict_proba(
            self.model_,
            self._encode(texts, progress),
            self.config.eval_batch_size,
            progress,
            precision=inference_precision(self.backend_),
        )
        return self.calibrate(raw) if calibrated else raw

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        """Raw probabilities -> the scores this model shows: mapped by `calibration_`, or as they are without one."""
        calibration = getattr(self, "calibration_", None)
        return probs if calibration is None else calibration.apply(probs)

    def _calibrate(self, probs: np.ndarray, targets: np.ndarray, heldout: np.ndarray) -> None:
        """Fit (or, with calibration auto, choose) the calibration map on the threshold-tuning data."""
        self.calibration_, self.calibration_choice_ = choose_calibration(
            probs, targets, heldout, self.config.calibration, self.config.seed
        )
        log.info("calibration %s -> %s: %s", self.config.calibration, self.calibration_choice_["method"],
                 self.calibration_choice_["why"])  # fmt: skip

    def window_scores(self, text: str) -> list[tuple[int, int, np.ndarray]]:
        """Chunked reading (long_text chunk): each window of `text` as (first char, end char, its raw label
        probabilities), the windows whose logits make the text's. Says which part of a long text drove a label
        (the report's mistakes). One window, the whole text, when the model truncates."""
        self._check_fitted()
        if self.config.long_text != "chunk":
            return [(0, len(text), self.predict_proba([text], calibrated=False)[0])]
        windows = text_windows(self.tokenizer_, text, self.config.max_length, self._chunking())
        ids = [row[mask.bool()].numpy() for row, mask in zip(windows.input_ids, windows.attention_mask)]
        probs = predict_proba(
            self.model_,
            Encoded(input_ids=ids, n_truncated=0, pad_id=windows.pad_id),
            self.config.eval_batch_size,
            precision=inference_precision(self.backend_),
        )
        spans = windows.window_spans()
        return [(a, b, row) for (a, b), row in zip(spans, probs)]

    def explain(
        self,
        texts: Sequence[str],
        labels: Sequence[str] | None = None,
        n_words: int | None = EXPLAIN_WORDS,
        steps: int = EXPLAIN_STEPS,
        progress: bool = False,
    ) -> list[dict[str, list[WordAttribution]]]:
        """Why each text got its labels: for each text, {label: words}, the words that raised (positive) or
        lowered (negative) that label's logit most, largest first, each with its character span in the text.

        Args:
            labels: the labels to explain in every text; by default each text's predicted labels (the default
                thresholds, as `predict`).
            n_words: words kept per label (None: every word of the text, in text order).
            steps: Integrated Gradients steps (explain.py); the cost of a (text, label) pair is `steps`
                forward and backward passes of the text.
        """
        self._check_fitted()
        texts = check_texts(texts)
        if labels is None:
            chosen = self.predict(texts)
        else:
            unknown = [name for name in labels if name not in self.labels_]
            if unknown:
                raise DataError(f"labels {unknown} are not labels of this model; it knows {self.labels_}")
            chosen = [list(labels)] * len(texts)
        return self.explain_labels(texts, chosen, n_words, steps, progress)

    def explain_labels(
        self,
        texts: Sequence[str],
        chosen: Sequence[Sequence[str]],
        n_words: int | None = EXPLAIN_WORDS,
        steps: int = EXPLAIN_STEPS,
        progress: bool = False,
    ) -> list[dict[str, list[WordAttribution]]]:
        """`explain` for labels already chosen per text (`chosen[i]` for `texts[i]`): what predict --explain
        and the server call after deciding the labels their own way."""
        from tqdm.auto import tqdm

        if n_words is not None and n_words < 1:
            raise DataError(f"n_words must be at least 1 (or None: every word), got {n_words}")
        if steps < 1:
            raise DataError(f"steps must be at least 1, got {steps}")
        model, chunking = self._explain_model(), self._chunking()
        column = {name: j for j, name in enumerate(self.labels_)}
        out = []
        for text, names in tqdm(list(zip(texts, chosen)), desc="explain", unit="text",
                                disable=not show_progress(progress), leave=False):  # fmt: skip
            words = explain_text(model, self.tokenizer_, text, [column[n] for n in names], self.config.max_length,
                                 chunking, steps)  # fmt: skip
            out.append({n: (top_words(w, n_words) if n_words else w) for n, w in zip(names, words)})
        return out

    def _explain_model(self) -> torch.nn.Module:
        """The fp32 torch model explanations differentiate: the model in use, or for the ONNX and int8 backends
        (no gradients there) the folder's torch model, loaded on first use so that plain inference does not
        pay its memory."""
        if self.backend_ in ("torch", "torch-bf16"):  # bf16 is autocast around the fp32 weights
            return self.model_
        if getattr(self, "_fp32_model", None) is None:
            self._fp32_model = load_model_folder(self.folder_)[0]
        return self._fp32_model

    def thresholds_for(self, mode: str | None = None, threshold: float | None = None) -> np.ndarray | float:
        """The cut-offs on the scores `predict_proba` shows: an explicit `threshold` wins (it applies to those
        scores), else the mode's (default: the config's) tuned cut-offs, re-expressed on the calibrated scale
        when the model is calibrated (the same label sets as the raw cut-offs on raw scores)."""
        self._check_fitted()
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise DataError(f"threshold must be in [0, 1], got {threshold}")
            return float(threshold)
        cut = self.thresholds_.for_mode(mode or self.default_mode_)
        calibration = getattr(self, "calibration_", None)
        return cut if calibration is None else calibration.cut_offs(cut)

    @property
    def default_mode_(self) -> str:
        """The threshold mode predict, serve and the reports use: the config's, or with `auto` the one chosen
        when the thresholds were tuned (per_label for folders from before `auto`, and without dev)."""
        if self.config.threshold_mode != "auto":
            return self.config.threshold_mode
        return self.thresholds_.default or "per_label"

    def _choose_mode(self, probs: np.ndarray, targets: np.ndarray, heldout: np.ndarray) -> None:
        """With threshold_mode auto, pick the default mode on held-out rows and say which and why: by the run's
        metric where the thresholds change it (config.DECISION_METRICS), else by micro-F1."""
        self.threshold_choice_ = None
        if self.config.threshold_mode != "auto":
            return
        metric = self.config.metric if self.config.metric in DECISION_METRICS else "micro_f1"
        tie_metric = TIE_BREAK_METRIC[metric]
        score, tie_break = (functools.partial(f1, average=m.removesuffix("_f1")) for m in (metric, tie_metric))
        choice = choose_mode(
            probs, targets, heldout, self.config.min_threshold_support, self.config.seed, score, metric, tie_break,
            tie_metric,
        )  # fmt: skip
        self.thresholds_.default = choice.mode
        self.threshold_choice_ = {"mode": choice.mode, "metric": metric, f"heldout_{metric}": choice.scores}
        if choice.tie_scores is not None:
            self.threshold_choice_ |= {f"heldout_{tie_metric}": choice.tie_scores,
                                       "standard_error": choice.standard_errors}  # fmt: skip
        self.threshold_choice_["why"] = choice.why
        log.info("threshold mode auto -> %s: %s", choice.mode, choice.why)

    def predict(
        self,
        texts: Sequence[str],
        threshold: float | None = None,
        top_k: int | None = None,
        at_least_one: bool = False,
        mode: str | None = None,
    ) -> list[list[str]]:
        """Label names per text, highest score first; by default under the tuned per-label thresholds."""
        if top_k is not None and top_k < 1:
            raise DataError(f"top_k must be at least 1, got {top_k}")
        probs = self.predict_proba(texts)
        return decide(probs, self.thresholds_for(mode, threshold), self.labels_, top_k, at_least_one)

    def evaluate(self, texts: Sequence[str], labels: Sequence[Sequence[str]], progress: bool = False) -> dict[str, Any]:
        """Metrics under the three threshold modes, the per-label table, and labels unknown to the model."""
        return self.evaluate_with_probs(texts, labels, progress)[0]

    def evaluate_with_probs(
        self, texts: Sequence[str], labels: Sequence[Sequence[str]], progress: bool = False
    ) -> tuple[dict[str, Any], np.ndarray]:
        """`evaluate`, plus the (n_texts, n_labels) probabilities it scored, for callers that use them
        again (the HTML report) instead of running inference a second time."""
        texts = check_texts(texts)
        labels = _check_labels(labels, len(texts))
        self._check_fitted()
        encoded = self._encode(texts, progress)
        probs = predict_proba(
            self.model_, encoded, self.config.eval_batch_size, progress, precision=inference_precision(self.backend_)
        )
        return self.evaluate_probs(probs, labels, encoded.truncated_share), probs

    def evaluate_probs(
        self, probs: np.ndarray, labels: Sequence[Sequence[str]], truncated_share: float | None = None
    ) -> dict[str, Any]:
        """`evaluate` on raw probabilities already computed for the texts of `labels` (e.g. `dev_probs_`)."""
        self._check_fitted()
        labels = _check_labels(labels, len(probs))
        y, unseen = binarize(labels, self.labels_)
        # Decisions (and so every F1) are the same on raw scores under the raw thresholds; the calibration is
        # measured on the scores predict shows, with the raw scores' beside it.
        report = evaluation_report(probs, y, self.labels_, self.thresholds_, self.default_mode_, unseen,
                                   getattr(self, "calibration_", None))  # fmt: skip
        report["truncated_share"] = truncated_share
        return report

    def tune_thresholds(
        self, texts: Sequence[str], labels: Sequence[Sequence[str]], progress: bool = False
    ) -> Thresholds:
        """Re-tune the global and per-label thresholds on labelled data and keep them (`thresholds_`).

        For a model whose thresholds came from too little data: pass train and dev pooled. The calibration
        map (config `calibration`) is fitted again on the same data.
        """
        texts = check_texts(texts)
        labels = _check_labels(labels, len(texts))
        self._check_fitted()
        if not texts:
            raise DataError("no texts to tune thresholds on")
        y, _ = binarize(labels, self.labels_)
        probs = self.predict_proba(texts, progress, calibrated=False)
        self.thresholds_ = tune(probs, y, self.config.min_threshold_support)
        self._choose_mode(probs, y, np.arange(len(y)))  # the same rule as in fit: halves of what it was given
        self._calibrate(probs, y, np.arange(len(y)))  # and the calibration map, fitted on the same data
        return self.thresholds_

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        self._check_fitted()
        if self.backend_ != "torch":
            raise ConfigError(
                f"this classifier runs the {self.backend_} backend, which cannot be saved as a model "
                "folder; load it with backend='torch' to save it"
            )
        save_model_folder(
            Path(folder),
            self.model_,
            self.tokenizer_,
            self.labels_,
            self.config,
            self.thresholds_,
            getattr(self, "training_", None),
            getattr(self, "label_texts_", None),
            getattr(self, "calibration_", None),
        )

    @classmethod
    def load(cls, folder: str | Path, backend: str = "torch", calibrated: bool = True) -> MultiLabelClassifier:
        """Load a model folder; `backend` picks the inference path (see BACKENDS): the exact torch
        model, bf16 autocast, torch dynamic int8, or the ONNX exports (`mlbert export`) on onnxruntime.
        `calibrated` False drops the folder's calibration map: raw scores and raw thresholds."""
        backend = resolve_backend(backend)
        model, tokenizer, labels, config, thresholds, manifest = load_model_folder(Path(folder))
        clf = cls(config)
        clf.calibration_ = model_calibration(manifest, Path(folder)) if calibrated else None
        clf.model_ = runtime_model(model, folder, backend, labels)
        clf.tokenizer_, clf.labels_, clf.thresholds_ = tokenizer, labels, thresholds
        clf.training_ = manifest.get("training", {})
        clf.label_texts_ = manifest.get("label_texts") or label_texts(labels)  # older folders: the names
        clf.backend_ = backend
        clf.folder_ = Path(folder)
        return clf


@contextlib.contextmanager
def _console_log(progress: bool):
    """Per-epoch lines on stderr during a fit with progress on, when the caller has set up no logging (a
    notebook, a script): otherwise Python users see a progress bar and never the dev scores."""
    logger = logging.getLogger("mlbert")
    if not progress or logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mlbert: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# With threshold_data train+dev, at most this many training examples join dev for tuning: the
# probabilities of a larger training set would cost memory that grows with it (n x labels floats).
MAX_THRESHOLD_TRAIN = 100_000


def _cut_length(config: TrainConfig, max_length: int) -> int:
    """max_length "auto" (resolved to `max_length`) under a time budget, texts read whole-or-truncated: the length
    a run may cut its texts to (half of AUTO_MAX_LENGTH, where that is shorter), else 0."""
    if config.max_length != "auto" or not config.time_budget or config.long_text != "truncate":
        return 0
    return AUTO_MAX_LENGTH // 2 if max_length > AUTO_MAX_LENGTH // 2 else 0


def _threshold_sample(train_enc, train_y, seed: int, limit: int = MAX_THRESHOLD_TRAIN) -> tuple[Encoded, np.ndarray]:
    """All training examples when there are at most `limit` (a time budget may lower it), else a seeded
    random sample."""
    n = len(train_enc)
    if n <= limit and isinstance(train_y, np.ndarray):
        return train_enc, train_y
    rows = np.arange(n) if n <= limit else np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))
    return take_rows(train_enc, rows), np.asarray(train_y[rows], dtype=np.float32)
