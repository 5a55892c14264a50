"""`mlbert` subcommands: for each, one function that builds its parser and one that handles it.

Every TrainConfig field is a `train` flag and every PretrainConfig field a `pretrain` flag (flags.py);
`train --config run.json` fills settings first and explicit flags win. User errors print one line and
exit with code 2. Each handler imports its job where it runs: the jobs pull in torch, transformers and
scikit-learn (about 2 s), FastAPI (0.35 s) or matplotlib (0.4 s), and `mlbert --help` needs none of them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import get_args

from ..config import (
    DISTILL_EPOCHS,
    EXPLAIN_STEPS,
    EXPLAIN_WORDS,
    ZERO_SHOT_AUTO,
    OldLabels,
    PretrainConfig,
    TrainConfig,
    field_types,
)
from ..distributed import process_rank
from ..errors import ConfigError, MlbertError
from ..label_text import read_label_descriptions
from ..version import __version__
from .display import metrics_table, per_label_lines
from .flags import (
    add_backend_flag,
    add_descriptions_flag,
    add_field_flags,
    add_mode_flag,
    add_model_flag,
    add_settings_flags,
    common_parent,
    setting_type,
    settings_from_args,
)
from .predictions import FORMATS

log = logging.getLogger("mlbert")

EPILOG = "Docs, data formats and metric definitions: README.md. Exit codes: 0 ok, 1 bug, 2 bad input or settings."

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


# -- train --------------------------------------------------------------------------------------------
def add_train(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[parent],
        help="fine-tune an encoder on labelled files and write a model folder",
        description="Fine-tune an encoder with a multi-label head. Tunes thresholds on --dev, "
        "evaluates dev and --test, and writes DIR: the model folder, metrics.json and "
        "train_log.jsonl. Interrupted? Run the same command again with --resume.",
        epilog=EPILOG,
    )
    p.add_argument("--train", required=True, metavar="FILE", help="training data (.jsonl, .csv, .tsv, .parquet)")
    p.add_argument(
        "--dev",
        metavar="FILE",
        help="dev data: early stopping and threshold tuning (or --dev-split to hold out a share)",
    )
    p.add_argument("--test", metavar="FILE", help="test data, evaluated once at the end")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the model, metrics and checkpoints")
    p.add_argument("--config", metavar="JSON", help="settings file; explicit flags override it")
    add_descriptions_flag(p)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument(
        "--report",
        action="store_true",
        help="also write DIR/report.html (see `mlbert report`) on --test, or on --dev without --test",
    )
    add_settings_flags(p, TrainConfig, "training settings (also settable in --config JSON)")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import train_job

    config = settings_from_args(TrainConfig, args, args.config)
    descriptions = read_label_descriptions(args.label_descriptions) if args.label_descriptions else None
    metrics = train_job(
        config,
        args.train,
        args.dev,
        args.out,
        test=args.test,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
        command=shlex.join(["mlbert", *argv]),
        report=args.report,
        label_descriptions=descriptions,
    )
    if process_rank() != 0:
        return
    for split in ("dev", "test"):
        if split in metrics:
            print(metrics_table(metrics[split], title=split))
            print()
    choice = metrics.get("threshold_mode_choice")
    if choice:
        print(f"default thresholds: {choice['mode']} (threshold_mode auto: {choice['why']})")
    budget = metrics.get("budget", {})
    if budget.get("budget_s"):
        print(
            f"time budget {budget['budget_s']:.0f}s: whole run {metrics['wall_s']:.0f}s; {budget['steps_done']} of "
            f"{budget['planned_steps']} planned steps, best at step {metrics['best_step']}"
        )
    print(
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, {metrics['train_seconds']:.0f}s "
        f"training; model, metrics.json and train_log.jsonl in {args.out}"
    )
    if "report" in metrics:
        print(f"report: {metrics['report']}")


# -- zero-shot ----------------------------------------------------------------------------------------
def add_zero_shot(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "zero-shot",
        parents=[parent],
        help="a model folder from label names (or descriptions) alone, no training texts",
        description="Build a classifier without training texts: each label scores a text by how much the "
        "text resembles the label's name (or its description), as the encoder sees them. With --dev "
        "(labelled texts) the thresholds are tuned on them; without, a text takes a label when it stands out "
        "about 2 deviations (README 'Zero-shot'). Writes the same model folder as train: predict, evaluate, "
        "export, serve and train --model all take it.",
        epilog=EPILOG,
    )
    p.add_argument("--labels", metavar="FILE", help="label names, one a line (default: the --label-descriptions keys)")
    add_descriptions_flag(p)
    p.add_argument("--dev", metavar="FILE", help="labelled texts to tune thresholds on (and to centre the scores)")
    p.add_argument(
        "--dev-examples", type=int, metavar="N", help="use a seeded sample of N dev texts (default: all of them)"
    )
    p.add_argument(
        "--texts",
        metavar="FILE",
        help="without --dev: unlabelled texts like those to classify (any data file; labels ignored), to scale "
        "the scores on",
    )
    p.add_argument("--test", metavar="FILE", help="labelled texts to evaluate on")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the model and metrics.json")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier model in --out")
    group = p.add_argument_group("settings")
    for name in ("model", "max_length", "pooling", "head", "long_text", "eval_batch_size", "seed"):
        default = ZERO_SHOT_DEFAULTS.get(name, getattr(TrainConfig, name))
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            type=setting_type(field_types(TrainConfig)[name]),
            help=f"as in `mlbert train` (default: {default})",
        )
    p.set_defaults(handler=run_zero_shot)


ZERO_SHOT_DEFAULTS = {k: f"auto: {v}" for k, v in ZERO_SHOT_AUTO.items()}


def run_zero_shot(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import zero_shot_job

    if args.dev_examples is not None and args.dev_examples < 1:
        raise ConfigError(f"--dev-examples must be at least 1, got {args.dev_examples}")
    settings = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    metrics = zero_shot_job(
        TrainConfig(**settings),
        args.out,
        labels_file=args.labels,
        descriptions_file=args.label_descriptions,
        dev=args.dev,
        dev_examples=args.dev_examples,
        test=args.test,
        overwrite=args.overwrite,
        progress=not args.quiet,
        command=shlex.join(["mlbert", *argv]),
        texts=args.texts,
    )
    for split in ("dev", "test"):
        if split in metrics:
            print(metrics_table(metrics[split], title=split))
            print()
    print(f"zero-shot model for {metrics['n_labels']} labels in {args.out} ({metrics['dev_examples']} dev examples)")


# -- add-labels ---------------------------------------------------------------------------------------
# The settings of `mlbert train` that add-labels takes too (freeze_layers: with --old-labels distill only).
ADD_LABELS_HELP = {
    "freeze_layers": "distill: the encoder layers kept frozen from the bottom (default: half of them; keep: all)",
    "epochs": f"as in `mlbert train` (default: the model's own epochs with keep, {DISTILL_EPOCHS} with distill)",
}
ADD_LABELS_SETTINGS = (
    ("epochs", int),
    ("head_lr", float),
    ("batch_size", int),
    ("time_budget", str),
    ("seed", int),
    ("freeze_layers", int),
)


def add_add_labels(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "add-labels",
        parents=[parent],
        help="add labels to a trained model without retraining it",
        description="Write a new model folder with the labels of --model and the labels of --train that it "
        "lacks, the new labels starting from their label texts. With --old-labels keep (the default) the "
        "trained model's encoder and head stay exactly as they are (its labels score every text as before, "
        "thresholds included) and only the new labels' own weights are trained: fast. With --old-labels "
        "distill the network trains on the new data too, the old labels learning the old model's own scores of "
        "those texts: slower (a training run), new labels closer to a model trained on all labels, old labels "
        "close to before (README 'Adding labels' has the numbers). Texts carrying only old labels count as "
        "negatives of the new ones.",
        epilog=EPILOG,
    )
    add_model_flag(p)
    p.add_argument("--train", required=True, metavar="FILE", help="texts labelled with the new labels")
    p.add_argument("--dev", required=True, metavar="FILE", help="dev texts with the new labels: best epoch, thresholds")
    p.add_argument("--test", metavar="FILE", help="test data (old and new labels), evaluated once at the end")
    p.add_argument("--out", required=True, metavar="DIR", help="the new model folder (not --model itself)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier model in --out")
    add_descriptions_flag(p)
    p.add_argument(
        "--old-labels",
        choices=get_args(OldLabels),
        default="keep",
        help="keep: the model's network unchanged, only the new labels' weights train; distill: the network "
        "trains on the new data, the old labels learning the old model's scores (default: keep)",
    )
    group = p.add_argument_group("training of the new labels' weights")
    for name, kind in ADD_LABELS_SETTINGS:
        group.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=argparse.SUPPRESS,
            help=ADD_LABELS_HELP.get(name, f"as in `mlbert train` (default: the model's own {name})"),
        )
    p.set_defaults(handler=run_add_labels)


def run_add_labels(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import add_labels_job

    settings = {k: v for k, v in vars(args).items() if k in dict(ADD_LABELS_SETTINGS)}
    metrics = add_labels_job(
        args.model,
        args.train,
        args.dev,
        args.out,
        test=args.test,
        descriptions_file=args.label_descriptions,
        old_labels=args.old_labels,
        overwrite=args.overwrite,
        progress=not args.quiet,
        command=shlex.join(["mlbert", *argv]),
        **settings,
    )
    if "test" in metrics:
        print(metrics_table(metrics["test"], title="test"))
        print()
    added = metrics["added_labels"]
    print(
        f"{len(added['labels'])} labels added ({', '.join(added['labels'][:8])}"
        f"{', ...' if len(added['labels']) > 8 else ''}); {metrics['n_labels']} labels in {args.out}"
    )


# -- evaluate -----------------------------------------------------------------------------------------
def add_evaluate(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=[parent],
        help="score a model folder on a labelled file",
        description="Print metrics under the three threshold modes (0.5, tuned global, tuned "
        "per-label) and the worst labels; --json writes everything, per-label table included.",
        epilog=EPILOG,
    )
    add_model_flag(p)
    p.add_argument("--data", required=True, metavar="FILE", help="labelled data file")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON here")
    p.add_argument("--worst", type=int, default=10, metavar="N", help="show the N worst labels by F1 (default 10)")
    add_backend_flag(p)
    add_field_flags(p, labels=True)
    p.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import evaluate_job

    _, report = evaluate_job(
        args.model,
        args.data,
        args.json,
        args.text_field,
        args.label_field,
        args.label_sep,
        progress=not args.quiet,
        backend=args.backend,
        calibrated=args.calibrated,
    )
    print(metrics_table(report, title=str(args.data)))
    if args.worst > 0:
        print(f"\nworst {args.worst} labels by F1 (default thresholds):")
        print(per_label_lines(report["per_label"], limit=args.worst, worst_first=True))
    if args.json:
        print(f"\nfull report: {args.json}")


# -- pretrain -----------------------------------------------------------------------------------------
def add_pretrain(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "pretrain",
        parents=[parent],
        help="continue masked-LM training of an encoder on unlabelled in-domain text",
        description="Adapt an encoder to your domain before fine-tuning: masked-language-model "
        "training on your own texts (15% of tokens chosen; 80% [MASK], 10% random, 10% kept). "
        "Prints dev perplexity before and after; writes a model folder for `mlbert train --model DIR`. "
        "The packaged MiniLM has no MLM head: a new one is initialised (tied to the word embeddings).",
        epilog=EPILOG,
    )
    p.add_argument(
        "--text",
        required=True,
        action="append",
        metavar="FILE",
        help="unlabelled texts: .txt (one a line), .jsonl, .csv, .tsv or .parquet (repeatable)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the adapted encoder")
    p.add_argument("--dev", metavar="FILE", help="texts for perplexity (default: a held-out 5%%, at most 2,000)")
    p.add_argument("--text-field", default="text", metavar="NAME", help="text field of structured files (text)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier pretraining run in --out")
    add_settings_flags(p, PretrainConfig, "pretraining settings")
    p.set_defaults(handler=run_pretrain)


def run_pretrain(args: argparse.Namespace, argv: list[str]) -> None:
    from ..pretrain import pretrain, read_texts

    config = settings_from_args(PretrainConfig, args)
    texts = read_texts(args.text, args.text_field)
    dev = read_texts([args.dev], args.text_field) if args.dev else None
    summary = pretrain(
        texts, args.out, config, dev, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet
    )
    ppl = (
        f"dev perplexity {summary['perplexity_before']:.2f} -> {summary['perplexity_after']:.2f}, "
        if summary["perplexity_before"] is not None
        else ""
    )
    print(
        f"{ppl}{summary['steps']} steps in {summary['seconds']:.0f}s; "
        f"fine-tune with: mlbert train --model {args.out} ..."
    )


# -- report -------------------------------------------------------------------------------------------
def add_report(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[parent],
        help="write a self-contained HTML page on how good a model is, label by label",
        description="One HTML file with no outside references (open it from disk, offline): headline "
        "metrics under the three threshold modes, training curves, a sortable per-label table, F1 "
        "against support, precision-recall curves, F1 against the global threshold, label "
        "co-occurrence, label cardinality and the most confident mistakes.",
        epilog=EPILOG,
    )
    add_model_flag(p)
    p.add_argument("--data", required=True, metavar="FILE", help="labelled data file (usually the test split)")
    p.add_argument("--out", required=True, metavar="HTML", help="where to write the page, e.g. report.html")
    p.add_argument(
        "--mistakes", type=int, default=20, metavar="N", help="how many confident mistakes to list (default 20)"
    )
    p.add_argument("--no-explain", action="store_true",
                   help="do not highlight the words behind each mistake (saves up to seconds a mistake)")  # fmt: skip
    add_backend_flag(p)
    add_field_flags(p, labels=True)
    p.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import report_job

    if args.mistakes < 0:
        raise ConfigError(f"--mistakes must be 0 or more, got {args.mistakes}")
    path = report_job(
        args.model,
        args.data,
        args.out,
        args.text_field,
        args.label_field,
        args.label_sep,
        progress=not args.quiet,
        backend=args.backend,
        calibrated=args.calibrated,
        mistakes=args.mistakes,
        explain=not args.no_explain,
    )
    print(f"wrote {path}: open it in a browser (works offline)")


# -- tune ---------------------------------------------------------------------------------------------
def add_tune(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tune",
        parents=[parent],
        help="re-tune a model folder's thresholds on labelled files",
        description="Recompute the global and per-label thresholds of a trained model from its "
        "predictions on labelled files (pooled) and rewrite them in the folder's mlbert.json; with threshold_mode "
        "auto, also choose the default mode again on held-out halves of those files. "
        "Models trained with --threshold-data dev can move to train+dev this way without retraining.",
        epilog=EPILOG,
    )
    add_model_flag(p)
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="FILE",
        help="labelled file (repeatable: pass train and dev to pool them)",
    )
    p.set_defaults(handler=run_tune)


def run_tune(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import tune_job

    result = tune_job(args.model, args.data, progress=not args.quiet)
    print(
        f"thresholds re-tuned on {result['n_examples']} examples: global {result['thresholds']['global']}; "
        f"written to {Path(args.model) / 'mlbert.json'}"
    )
    if result["mode_choice"]:
        print(
            f"default thresholds: {result['mode_choice']['mode']} (threshold_mode auto: {result['mode_choice']['why']})"
        )


# -- predict ------------------------------------------------------------------------------------------
def add_predict(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "predict",
        parents=[parent],
        help="label the texts of a file, of standard input, or given on the command line",
        description="Write one row per text: its id, the labels that pass the model's default thresholds "
        "(unless --threshold or --mode says otherwise), highest score first, and a score per label. The format "
        'follows --output\'s extension: .jsonl ({"id", "labels", "scores"} per line), .csv / .tsv '
        "(columns id, labels joined by --label-sep, score:LABEL), .parquet (labels as a list); or --format. "
        "'-' reads standard input (one text a line) or writes standard output (JSON lines by default).",
        epilog="examples: mlbert predict --model runs/demo/model --text 'I was charged twice'\n"
        "          mlbert predict --model runs/demo/model --input tickets.csv --output labels.csv\n"
        "          cat tickets.txt | mlbert predict --model runs/demo/model --input - --output -",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_flag(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input",
        metavar="FILE",
        help="texts (.jsonl, .csv, .tsv, .parquet, or .txt with one text a line; - for standard input, one text "
        "a line); labels in it are ignored",
    )
    source.add_argument("--text", action="append", metavar="TEXT", help="a text to label (repeatable)")
    p.add_argument("--output", metavar="FILE", help="where the predictions go; - for standard output (the default "
                   "with --text)")  # fmt: skip
    p.add_argument("--format", choices=FORMATS, help="output format (default: from --output's extension)")
    p.add_argument("--include-text", action="store_true", help="also write each text beside its labels")
    p.add_argument("--threshold", type=float, metavar="T", help="one cut-off for every label instead of the tuned ones")
    add_mode_flag(p)
    p.add_argument("--top-k", type=int, metavar="K", help="at most K labels per text (with --threshold 0: exactly K)")
    p.add_argument("--at-least-one", action="store_true", help="give the best label when none passes its threshold")
    add_backend_flag(p)
    add_field_flags(p, labels=False)
    p.add_argument("--label-sep", default="|", metavar="SEP", help="joins the labels in CSV and TSV output (default |)")
    p.add_argument(
        "--explain",
        action="store_true",
        help='JSON lines gain "explanations": for each chosen label, the words that raised (+) or lowered (-) its '
        "score most, with character spans (Integrated Gradients; costs about --explain-steps x 3 forward passes "
        "per text and label: README 'Explanations')",
    )
    p.add_argument("--explain-words", type=int, default=EXPLAIN_WORDS, metavar="N",
                   help=f"words per explained label (default {EXPLAIN_WORDS})")  # fmt: skip
    p.add_argument("--explain-steps", type=int, default=EXPLAIN_STEPS, metavar="N",
                   help=f"Integrated Gradients steps: more exact, slower (default {EXPLAIN_STEPS})")  # fmt: skip
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import predict_job

    output = args.output if args.output is not None else ("-" if args.text else None)
    if output is None:
        raise ConfigError("--output is needed with --input: a file (.jsonl, .csv, .tsv, .parquet) or - for stdout")
    n = predict_job(
        args.model,
        args.input,
        output,
        threshold=args.threshold,
        top_k=args.top_k,
        at_least_one=args.at_least_one,
        mode=args.mode,
        text_field=args.text_field,
        progress=not args.quiet and output != "-",
        backend=args.backend,
        calibrated=args.calibrated,
        texts=args.text,
        fmt=args.format,
        include_text=args.include_text,
        label_sep=args.label_sep,
        explain=args.explain,
        explain_words=args.explain_words,
        explain_steps=args.explain_steps,
    )
    if output != "-":
        log.info("wrote %d predictions to %s", n, output)


# -- demo ---------------------------------------------------------------------------------------------
def add_demo(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[parent],
        help="generate a dataset, train the packaged MiniLM, evaluate, predict",
        description="The end-to-end tour that `make demo` runs: writes a synthetic support-ticket "
        "dataset, fine-tunes the packaged all-MiniLM-L6-v2 on it, prints metrics and predictions.",
        epilog=EPILOG,
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="where data and model go (default runs/demo)")
    p.add_argument("--examples", type=int, default=2400, metavar="N", help="dataset size (default 2400)")
    p.add_argument("--epochs", type=int, default=3, metavar="N", help="training epochs (default 3)")
    p.add_argument("--model", default=TrainConfig.model, metavar="NAME_OR_PATH", help="encoder to fine-tune")
    p.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace, argv: list[str]) -> None:
    from . import demo

    demo.run_demo(
        Path(args.out), n_examples=args.examples, epochs=args.epochs, model=args.model, progress=not args.quiet
    )


# -- serve --------------------------------------------------------------------------------------------
def add_serve(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[parent],
        help="serve a model folder over HTTP (FastAPI + uvicorn)",
        description="A REST server for a trained model: POST /v1/predict, GET /v1/labels, /healthz, "
        "/readyz, /metrics (Prometheus). Concurrent requests are micro-batched. Binds to loopback "
        "unless --host says otherwise; SIGTERM or Ctrl-C lets in-flight requests finish.",
        epilog="example: mlbert serve --model runs/demo/model --port 8000\n"
        "         curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' "
        '-d \'{"texts": ["I was charged twice"]}\'',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_flag(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-batch", type=int, default=64, metavar="N", help="texts per model batch (default 64)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        metavar="MS",
        help="how long a batch waits for more requests (default 5)",
    )
    p.add_argument("--no-batching", action="store_true", help="run every request alone (for comparison)")
    p.add_argument(
        "--max-texts", type=int, default=256, metavar="N", help="texts per request; more is 422 (default 256)"
    )
    p.add_argument(
        "--max-chars", type=int, default=20_000, metavar="N", help="characters per text; more is 422 (default 20000)"
    )
    p.add_argument("--max-body-mb", type=float, default=8.0, metavar="MB", help="request body limit (default 8)")
    p.add_argument("--max-explain-texts", type=int, default=8, metavar="N",
                   help='texts per request with "explain": true; more is 422 (default 8)')  # fmt: skip
    p.add_argument("--max-explain-labels", type=int, default=3, metavar="N",
                   help="labels explained per text, the highest-scoring first (default 3)")  # fmt: skip
    p.add_argument(
        "--api-key-env", metavar="VAR", help="require header X-API-Key equal to this environment variable's value"
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from this origin (repeatable; none by default)",
    )
    add_backend_flag(p)
    p.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace, argv: list[str]) -> None:
    from ..server import ServeSettings, serve

    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ConfigError(
                f"--api-key-env {args.api_key_env}: that environment variable is empty or unset; "
                f"export {args.api_key_env}=<secret> first"
            )
    settings = ServeSettings(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        batching=not args.no_batching,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        api_key=api_key,
        cors_origins=tuple(args.cors_origin),
        max_explain_texts=args.max_explain_texts,
        max_explain_labels=args.max_explain_labels,
    )
    # --quiet here keeps warnings: a server should still say when something goes wrong.
    serve(
        args.model,
        args.host,
        args.port,
        settings,
        log_level="warning" if args.quiet else "info",
        backend=args.backend,
        calibrated=args.calibrated,
    )


# -- export -------------------------------------------------------------------------------------------
def add_export(sub: Subparsers, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export",
        parents=[parent],
        help="export a model folder to ONNX (optionally int8) for onnxruntime",
        description="Writes DIR/onnx/model.onnx (and with --quantize int8 also model.int8.onnx): "
        "(input_ids, attention_mask) -> probabilities, with the labels and tuned thresholds in the "
        "file's metadata. Use it with --backend onnx / onnx-int8 in predict, evaluate and serve. "
        "With --check-data, reports how far the export's probabilities and F1 are from the torch "
        "model's on that labelled file.",
        epilog=EPILOG,
    )
    add_model_flag(p)
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--quantize", choices=("int8",), help="also write a dynamically int8-quantized copy")
    p.add_argument("--check-data", metavar="FILE", help="labelled file to measure agreement with the torch model")
    p.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace, argv: list[str]) -> None:
    from .jobs import export_job

    for line in export_job(args.model, args.quantize, args.check_data, progress=not args.quiet)["lines"]:
        print(line)


# -- the program --------------------------------------------------------------------------------------
COMMANDS: tuple[Callable[[Subparsers, argparse.ArgumentParser], None], ...] = (
    add_train,
    add_zero_shot,
    add_add_labels,
    add_evaluate,
    add_pretrain,
    add_report,
    add_tune,
    add_predict,
    add_demo,
    add_serve,
    add_export,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbert", description="Multi-label text classification by fine-tuning BERT-family encoders.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"mlbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = common_parent()
    for add in COMMANDS:
        add(sub, parent)
    return parser


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mlbert: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `docker stop`, `kill`) during a long job: handled like Ctrl-C."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _interrupted(args: argparse.Namespace) -> str:
    """What to do after an interrupted command: resume only where there is a checkpoint to resume from."""
    if args.command not in ("train", "pretrain"):
        return "mlbert: interrupted"
    from ..checkpoint import CHECKPOINTS, has_checkpoint  # imported here: it loads torch, which --help skips

    if has_checkpoint(Path(args.out)):
        return (f"mlbert: interrupted; run the same command again with --resume to continue from the last "
                f"checkpoint ({Path(args.out) / CHECKPOINTS})")  # fmt: skip
    return "mlbert: interrupted before the first checkpoint, so there is nothing to resume; run the same command again"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if process_rank() != 0:  # distributed run: the main process alone reports
        args.quiet = True
    _setup_logging(args.quiet)
    previous = None
    if args.command in ("train", "pretrain") and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.handler(args, argv)
        return 0
    except MlbertError as e:
        print(f"mlbert: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine's, not ours: a full disk, a read-only mount, a path that cannot be made
        where = f"{e.filename}: " if e.filename else ""
        print(
            f"mlbert: error: {where}{e.strerror or e}; check that the path exists, is writable and has room",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt as e:
        print(_interrupted(args), file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
