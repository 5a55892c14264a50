"""File-to-file jobs behind the CLI: train a model folder, evaluate it on a file, predict a file.

Each job reads and validates all of its input before it writes anything, so bad input never
leaves a half-made folder or output file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import CHECKPOINTS, abandon_run_dir, prepare_run_dir
from ..classifier import MultiLabelClassifier, check_texts
from ..config import EXPLAIN_STEPS, EXPLAIN_WORDS, TrainConfig
from ..data import Dataset, binarize, check_text, describe_unseen, iter_examples, read_dataset, split_dev
from ..distributed import barrier, process_rank
from ..errors import ConfigError, DataError
from ..export import export_onnx
from ..fileio import atomic_open, write_json
from ..label_init import sample_rows
from ..label_text import LabelText, read_label_descriptions, read_label_list
from ..metrics import evaluation_report
from ..model_io import MLBERT_FILE, read_manifest, update_thresholds
from ..predict import decide
from ..version import __version__
from .model_card import CARD_FILE, model_card
from .predictions import output_format, write_predictions

log = logging.getLogger("mlbert")

# What a previous run leaves in its folder; --overwrite removes exactly these, nothing else.
RUN_ARTIFACTS = (CHECKPOINTS, "train_log.jsonl", "metrics.json", MLBERT_FILE)
FINISHED = ("metrics.json", MLBERT_FILE)  # a run that got this far is kept unless --overwrite


def _read_labelled(path: str | Path, config: TrainConfig, split: str) -> Dataset:
    data = read_dataset(path, config.text_field, config.label_field, config.label_sep, require_labels=True)
    log.info("%s: %d examples from %s", split, len(data), path)
    return data


def read_as_trained(
    clf: MultiLabelClassifier,
    path: str | Path,
    text_field: str | None = None,
    label_field: str | None = None,
    label_sep: str | None = None,
    require_labels: bool = True,
) -> Dataset:
    """A data file read with the field settings the model was trained with, where the caller gives none."""
    c = clf.config
    return read_dataset(
        path,
        text_field or c.text_field,
        label_field or c.label_field,
        label_sep if label_sep is not None else c.label_sep,
        require_labels=require_labels,
    )


def _subset(data: Dataset, rows, source: str) -> Dataset:
    return Dataset(
        texts=[data.texts[i] for i in rows],
        labels=[data.labels[i] for i in rows],
        ids=[data.ids[i] for i in rows],
        source=source,
    )


def train_job(
    config: TrainConfig,
    train: str | Path,
    dev: str | Path | None,
    out: str | Path,
    test: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    report: bool = False,
    label_descriptions: dict[str, LabelText] | None = None,
) -> dict[str, Any]:
    """Train, tune thresholds on dev, evaluate dev and test, write the model folder and metrics.json.

    `command` is recorded in metrics.json so that every number there names what produced it.
    With `report`, also write `out/report.html` on the test split (dev when there is no test).
    """
    started = time.perf_counter()  # a --time-budget counts from here: reading the data is part of the run
    out = Path(out)
    if config.data_on_disk:  # validate the whole file in one streaming pass; it is never held in memory
        n_train = sum(1 for _ in iter_examples(train, config.text_field, config.label_field, config.label_sep))
        log.info("train: %d examples from %s (streamed to disk, --data-on-disk)", n_train, train)
        train_data = None
    else:
        train_data = _read_labelled(train, config, "train")
    if dev is not None:
        dev_data = _read_labelled(dev, config, "dev")
    elif config.dev_split > 0 and train_data is not None:  # held out here, so that the reports know its rows
        rows, dev_rows = split_dev(train_data.labels, config.dev_split, config.seed)
        dev_data = _subset(train_data, dev_rows, f"{train} (dev_split {config.dev_split:g})")
        train_data = _subset(train_data, rows, str(train))
        log.info("dev: %d examples held out of %s (--dev-split %g)", len(dev_data), train, config.dev_split)
    elif config.dev_split > 0:
        raise ConfigError("--dev-split needs the training data in memory; with --data-on-disk pass --dev FILE")
    else:
        raise ConfigError("no dev data: pass --dev FILE, or --dev-split 0.1 to hold out a share of --train")
    test_data = _read_labelled(test, config, "test") if test is not None else None
    main = process_rank() == 0
    existed = out.exists()
    if main:  # in a distributed run (accelerate launch, torchrun) only the first process writes
        prepare_run_dir(out, resume, overwrite, markers=RUN_ARTIFACTS, finished=FINISHED)
        out.mkdir(parents=True, exist_ok=True)
    barrier()
    log.info("training %s -> %s", config.model, out)
    try:
        clf = MultiLabelClassifier(config)
        # The budget's plan leaves time for the test split, scored below.
        timing = {
            "started_at": started,
            "predict_after": len(test_data) if test_data is not None else 0,
            "label_descriptions": label_descriptions,
        }
        if train_data is None:
            clf.fit_file(
                train, dev=(dev_data.texts, dev_data.labels), out_dir=out, resume=resume, progress=progress, **timing
            )
        else:
            clf.fit(
                train_data.texts,
                train_data.labels,
                dev=(dev_data.texts, dev_data.labels),
                out_dir=out,
                resume=resume,
                progress=progress,
                **timing,
            )
        if not main:
            return {"process_rank": process_rank()}
        splits = {"dev": dev_data, **({"test": test_data} if test_data is not None else {})}
        t0 = time.perf_counter()
        reports, probs = _score_splits(clf, dev_data, test_data, progress)
        clf.training_["phases"]["score_s"] = round(time.perf_counter() - t0, 1)
        metrics = {
            "mlbert_version": __version__,
            "command": command,
            "files": {"train": str(train), "dev": dev_data.source, "test": str(test) if test is not None else None},
            "n_labels": len(clf.labels_),
            **clf.training_,
            "thresholds": clf.thresholds_.to_dict(),
            "history": clf.history_,
            **reports,
        }
        t0 = time.perf_counter()
        clf.save(out)
        _write_card(out, metrics, clf.default_mode_)
        metrics["phases"]["save_s"] = round(time.perf_counter() - t0, 1)
        # The whole run as the budget counts it; what follows (the report) is outside the budget.
        metrics["wall_s"] = round(time.perf_counter() - started, 1)
        write_json(out / "metrics.json", metrics)
    except BaseException:
        if main:  # failed before its first checkpoint: leave no half-made folder
            abandon_run_dir(out, RUN_ARTIFACTS, existed)
        raise
    # The folder itself is now the best checkpoint; the resumable state is no longer needed.
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    if report:
        split, path = ("test", test) if test_data is not None else ("dev", dev_data.source)
        metrics["report"] = str(
            _write_report(
                clf,
                out,
                splits[split],
                path,
                out / "report.html",
                progress,
                probs=probs[split],
                metrics=reports[split]["metrics"],
            )
        )
        log.info("report on %s: %s", split, metrics["report"])
    return metrics


@contextlib.contextmanager
def _model_folder(out: Path, overwrite: bool):
    """A fresh model folder `out` (an earlier run there only with `overwrite`), removed again if the block fails."""
    existed = out.exists()
    prepare_run_dir(out, False, overwrite, markers=RUN_ARTIFACTS, finished=FINISHED)
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except BaseException:
        abandon_run_dir(out, RUN_ARTIFACTS, existed)
        raise


def _write_model(clf: MultiLabelClassifier, out: Path, metrics: dict[str, Any], started: float) -> dict[str, Any]:
    """The model folder, its card and metrics.json (with the whole run's wall time), in that order."""
    clf.save(out)
    _write_card(out, metrics, clf.default_mode_)
    metrics["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(out / "metrics.json", metrics)
    return metrics


def zero_shot_job(
    config: TrainConfig,
    out: str | Path,
    labels_file: str | Path | None = None,
    descriptions_file: str | Path | None = None,
    dev: str | Path | None = None,
    dev_examples: int | None = None,
    test: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    texts: str | Path | None = None,
) -> dict[str, Any]:
    """A zero-shot model folder (MultiLabelClassifier.from_labels) with metrics.json on dev and test."""
    started = time.perf_counter()
    out = Path(out)
    descriptions = read_label_descriptions(descriptions_file) if descriptions_file else {}
    if labels_file is not None:
        labels = read_label_list(labels_file)
    elif descriptions:
        labels = list(descriptions)
    else:
        raise ConfigError("zero-shot needs --labels FILE (one label a line) or --label-descriptions FILE")
    dev_data = _read_labelled(dev, config, "dev") if dev is not None else None
    if dev_data is not None and dev_examples is not None and dev_examples < len(dev_data):
        dev_data = _subset(dev_data, sample_rows(len(dev_data), config.seed, dev_examples), str(dev))
        log.info("dev: a seeded sample of %d examples", len(dev_data))
    test_data = _read_labelled(test, config, "test") if test is not None else None
    unlabelled = read_dataset(texts, config.text_field, require_labels=False).texts if texts is not None else None
    with _model_folder(out, overwrite):
        clf = MultiLabelClassifier.from_labels(
            labels,
            descriptions,
            dev=(dev_data.texts, dev_data.labels) if dev_data is not None else None,
            config=config,
            texts=unlabelled,
        )
        reports: dict[str, Any] = {}
        if dev_data is not None:
            reports["dev"] = clf.evaluate_probs(clf.dev_probs_, dev_data.labels, clf.truncated_["dev"])
        if test_data is not None:
            reports["test"] = clf.evaluate(test_data.texts, test_data.labels, progress=progress)
        metrics = {
            "mlbert_version": __version__,
            "command": command,
            "files": {
                "labels": str(labels_file) if labels_file else None,
                "dev": str(dev) if dev else None,
                "texts": str(texts) if texts else None,
                "test": str(test) if test else None,
            },
            "n_labels": len(labels),
            **clf.training_,
            "thresholds": clf.thresholds_.to_dict(),
            **reports,
        }
        return _write_model(clf, out, metrics, started)


def add_labels_job(
    model: str | Path,
    train: str | Path,
    dev: str | Path,
    out: str | Path,
    test: str | Path | None = None,
    descriptions_file: str | Path | None = None,
    old_labels: str = "keep",
    overwrite: bool = False,
    progress: bool = True,
    command: str | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Add the labels of `train` that `model` lacks (MultiLabelClassifier.add_labels) into a new folder `out`."""
    started = time.perf_counter()
    out = Path(out)
    if out.resolve() == Path(model).resolve():
        raise ConfigError(f"--out {out} is the model's own folder; write the model with added labels to a new one")
    descriptions = read_label_descriptions(descriptions_file) if descriptions_file else None
    old = MultiLabelClassifier.load(model)
    train_data = read_as_trained(old, train)
    dev_data = read_as_trained(old, dev)
    test_data = read_as_trained(old, test) if test is not None else None
    with _model_folder(out, overwrite):
        clf = old.add_labels(
            train_data.texts,
            train_data.labels,
            dev=(dev_data.texts, dev_data.labels),
            label_descriptions=descriptions,
            old_labels=old_labels,
            out_dir=out,
            progress=progress,
            **settings,
        )
        t0 = time.perf_counter()
        reports = {"test": clf.evaluate(test_data.texts, test_data.labels, progress)} if test_data else {}
        clf.training_["added_labels"]["training"]["phases"]["score_s"] = round(time.perf_counter() - t0, 1)
        metrics = {
            "mlbert_version": __version__,
            "command": command,
            "files": {"model": str(model), "train": str(train), "dev": str(dev), "test": str(test) if test else None},
            "n_labels": len(clf.labels_),
            "added_labels": clf.training_["added_labels"],
            "thresholds": clf.thresholds_.to_dict(),
            "history": clf.history_,
            **reports,
        }
        _write_model(clf, out, metrics, started)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return metrics


def evaluate_job(
    model: str | Path,
    data: str | Path,
    json_out: str | Path | None = None,
    text_field: str | None = None,
    label_field: str | None = None,
    label_sep: str | None = None,
    progress: bool = True,
    backend: str = "torch",
    calibrated: bool = True,
) -> tuple[MultiLabelClassifier, dict[str, Any]]:
    """Evaluate a model folder on a labelled file; field settings default to the ones it was trained with."""
    clf = MultiLabelClassifier.load(model, backend=backend, calibrated=calibrated)
    dataset = read_as_trained(clf, data, text_field, label_field, label_sep)
    report = {"model": str(model), "data": str(data), **clf.evaluate(dataset.texts, dataset.labels, progress)}
    if json_out is not None:
        write_json(json_out, report)
    return clf, report


def report_job(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    text_field: str | None = None,
    label_field: str | None = None,
    label_sep: str | None = None,
    progress: bool = True,
    backend: str = "torch",
    calibrated: bool = True,
    mistakes: int = 20,
    explain: bool = True,
) -> Path:
    """Write the self-contained HTML report of a model folder on a labelled file; with `explain`, each listed
    mistake highlights the words that drove its worst decision."""
    clf = MultiLabelClassifier.load(model, backend=backend, calibrated=calibrated)
    dataset = read_as_trained(clf, data, text_field, label_field, label_sep)
    return _write_report(clf, Path(model), dataset, data, Path(out), progress, mistakes, backend, explain=explain)


def _write_card(folder: Path, metrics: dict[str, Any], default_mode: str) -> None:
    with atomic_open(folder / CARD_FILE) as f:
        f.write(model_card(read_manifest(folder), metrics, default_mode))


def _score_splits(
    clf: MultiLabelClassifier, dev: Dataset, test: Dataset | None, progress: bool
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The evaluate reports of dev and test, and their probabilities (for the report)."""
    # Dev was scored once at the end of fit (its probabilities tuned the thresholds): no second pass.
    probs = {"dev": clf.dev_probs_}
    reports = {"dev": clf.evaluate_probs(clf.dev_probs_, dev.labels, clf.truncated_["dev"])}
    if test is not None:
        reports["test"], probs["test"] = clf.evaluate_with_probs(test.texts, test.labels, progress=progress)
    for name, report in reports.items():
        if report["unseen_labels"]:
            log.warning(describe_unseen(Counter(report["unseen_labels"]), name))
    return reports, probs


def _write_report(
    clf: MultiLabelClassifier,
    model: Path,
    dataset: Dataset,
    data: str | Path,
    out: Path,
    progress: bool,
    mistakes: int = 20,
    backend: str = "torch",
    probs: np.ndarray | None = None,
    metrics: dict[str, Any] | None = None,
    explain: bool = True,
) -> Path:
    """`probs`, `metrics`: the model's probabilities on `dataset`, and its metrics per threshold mode, when
    the caller already has them."""
    # Imported here: matplotlib costs every other command about 0.4 s of start-up (measured).
    from ..report import ReportInput, make_report

    if not dataset.texts:
        raise DataError(f"{data}: no examples to report on")
    if probs is None:
        probs = clf.predict_proba(dataset.texts, progress, calibrated=False)
    targets, unseen = binarize(dataset.labels, clf.labels_)
    training = getattr(clf, "training_", {}) or {}
    warnings = list(training.get("warnings", []))
    if unseen:
        warnings.append(describe_unseen(unseen, str(data)))
    log_path = model / "train_log.jsonl"
    events = (
        [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if log_path.is_file()
        else []
    )
    c = clf.config
    about = {
        "model": str(model),
        "data": str(data),
        "encoder": c.model,
        "backend": backend,
        "default thresholds": clf.default_mode_ + (" (auto)" if c.threshold_mode == "auto" else ""),
        "thresholds tuned on": _tuned_on(training.get("threshold_tuning") or {}, c.threshold_data),
        "training": (
            f"best epoch {training['best_epoch']} of {training['epochs_run']}, "
            f"{training['train_seconds']:.0f} s, {training['n_train']} examples"
            if "best_epoch" in training
            else "not recorded"
        ),
        "settings": f"max_length {c.max_length}, batch {c.batch_size}, lr {c.lr:g} / head {c.head_lr:g}, "
        f"{c.pooling} pooling, {c.loss} loss, pos_weight {c.pos_weight}, long texts: {c.long_text}",
        "mlbert version": __version__,
    }
    page = make_report(
        ReportInput(
            probs=probs,
            targets=targets,
            texts=dataset.texts,
            labels=clf.labels_,
            thresholds=clf.thresholds_,
            default_mode=clf.default_mode_,
            events=events,
            about=about,
            warnings=warnings,
            metrics=metrics,
            windows=clf.window_scores if c.long_text == "chunk" else None,
            explain=(lambda text, label: clf.explain([text], labels=[label], n_words=None)[0][label])
            if explain
            else None,
            calibration=clf.calibration_,
        ),
        n_mistakes=mistakes,
    )
    with atomic_open(out) as f:
        f.write(page)
    return out


def _tuned_on(note: dict[str, Any], default: str) -> str:
    """'train+dev' as trained, or the files `mlbert tune` pooled."""
    data = note.get("data", default)
    return ", ".join(map(str, data)) if isinstance(data, list) else str(data)


def tune_job(model: str | Path, data: list[str | Path], progress: bool = True) -> dict[str, Any]:
    """Re-tune a saved model's thresholds on labelled files (pooled) and rewrite its mlbert.json."""
    if not data:
        raise DataError("tune needs at least one --data file")
    clf = MultiLabelClassifier.load(model, calibrated=False)  # the map is fitted again (a damaged one too)
    texts, labels = [], []
    for path in data:  # read all before touching the folder
        dataset = read_as_trained(clf, path)
        texts += dataset.texts
        labels += dataset.labels
    thresholds = clf.tune_thresholds(texts, labels, progress)
    note = {"data": [str(p) for p in data], "n_examples": len(texts), "mode_choice": clf.threshold_choice_,
            "calibration_choice": clf.calibration_choice_}  # fmt: skip
    update_thresholds(Path(model), thresholds, note, clf.calibration_)
    metrics_path = Path(model) / "metrics.json"
    if metrics_path.is_file():  # the card follows the thresholds (folders saved from Python have no metrics)
        _write_card(Path(model), json.loads(metrics_path.read_text(encoding="utf-8")), clf.default_mode_)
    return {"thresholds": thresholds.to_dict(), **note}


def export_job(
    model: str | Path, quantize: str | None = None, check_data: str | Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Export to ONNX; with check_data, compare every exported path with the torch model on that file."""
    ref = MultiLabelClassifier.load(model)
    dataset = None
    if check_data is not None:  # read it first: a bad file should stop us before anything is written
        dataset = read_as_trained(ref, check_data)
    path = export_onnx(ref, model, quantize)
    lines = [f"wrote {path}" + (f" (and {Path(path).with_name('model.onnx')})" if quantize else "")]
    result: dict[str, Any] = {"path": str(path), "agreement": {}}
    if dataset is not None:
        y, _ = binarize(dataset.labels, ref.labels_)
        mode = ref.default_mode_

        def scores(clf):
            probs = clf.predict_proba(dataset.texts, progress, calibrated=False)  # on the thresholds' scale
            return probs, evaluation_report(probs, y, clf.labels_, clf.thresholds_, mode)["metrics"][mode]

        ref_probs, ref_metrics = scores(ref)
        for backend in ["onnx"] + (["onnx-int8"] if quantize else []):
            probs, metrics = scores(MultiLabelClassifier.load(model, backend=backend))
            agreement = {
                "max_abs_prob_diff": float(np.abs(probs - ref_probs).max()),
                "micro_f1_change": metrics["micro_f1"] - ref_metrics["micro_f1"],
                "macro_f1_change": metrics["macro_f1"] - ref_metrics["macro_f1"],
            }
            result["agreement"][backend] = agreement
            lines.append(
                f"{backend} vs torch on {check_data} ({len(dataset)} texts): max |Δp| "
                f"{agreement['max_abs_prob_diff']:.4f}, micro-F1 {100 * agreement['micro_f1_change']:+.2f} pt, "
                f"macro-F1 {100 * agreement['macro_f1_change']:+.2f} pt"
            )
    result["lines"] = lines
    return result


def predict_job(
    model: str | Path,
    input: str | Path | None,
    output: str | Path,
    threshold: float | None = None,
    top_k: int | None = None,
    at_least_one: bool = False,
    mode: str | None = None,
    text_field: str | None = None,
    progress: bool = True,
    backend: str = "torch",
    calibrated: bool = True,
    texts: Sequence[str] | None = None,
    fmt: str | None = None,
    include_text: bool = False,
    label_sep: str = "|",
    explain: bool = False,
    explain_words: int = EXPLAIN_WORDS,
    explain_steps: int = EXPLAIN_STEPS,
) -> int:
    """Label the texts of `input` (a data file, or `-`: standard input, one text a line) or the given `texts`,
    and write one row per text to `output` (`-`: standard output) in the format its name asks for; with
    `explain`, each JSON line also says which words drove each of its labels."""
    fmt = output_format(str(output), fmt)  # before any work: a wrong name should stop us at once
    if explain and fmt != "jsonl":
        raise ConfigError(f"--explain writes JSON lines (a list of words per label); --output {output} is {fmt}: "
                          "name it .jsonl or pass --format jsonl")  # fmt: skip
    if top_k is not None and top_k < 1:
        raise DataError(f"--top-k must be at least 1, got {top_k}")
    clf = MultiLabelClassifier.load(model, backend=backend, calibrated=calibrated)
    if texts is not None:
        ids, texts = [str(i) for i in range(len(texts))], check_texts(texts, "--text")
    elif str(input) == "-":
        lines = [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
        for i, text in enumerate(lines):
            check_text(text, f"<stdin>:{i + 1}", "the line")
        ids, texts = [str(i) for i in range(len(lines))], lines
    else:
        dataset = read_as_trained(clf, input, text_field, require_labels=False)
        ids, texts = dataset.ids, dataset.texts
    if not texts:
        raise DataError("no texts to label")
    cut = clf.thresholds_for(mode, threshold)
    probs = clf.predict_proba(texts, progress=progress)
    chosen = decide(probs, cut, clf.labels_, top_k, at_least_one)
    reasons = clf.explain_labels(texts, chosen, explain_words, explain_steps, progress) if explain else None
    write_predictions(str(output), fmt, ids, chosen, probs, clf.labels_, texts if include_text else None, label_sep,
                      reasons)  # fmt: skip
    return len(texts)
