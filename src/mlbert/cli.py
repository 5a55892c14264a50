"""`mlbert` command line: flags -> TrainConfig / job arguments -> the Python API. No logic of its own.

Every TrainConfig field is a `train` flag (`warmup_ratio` is `--warmup-ratio`); `--config run.json`
fills settings first and explicit flags win. User errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import PretrainConfig, TrainConfig, literal_choices
from .distributed import process_rank
from .errors import ConfigError, MlbertError

log = logging.getLogger("mlbert")

EPILOG = "Docs, data formats and metric definitions: README.md. Exit codes: 0 ok, 1 bug, 2 bad input or settings."


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training settings (also settable in --config JSON)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if str(f.type) == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=f"{help_text} (default: {'on' if f.default else 'off'})")
            continue
        kind = {"int": int, "float": float}.get(str(f.type), str)
        choices = literal_choices(f.type) or f.metadata.get("choices")
        group.add_argument(flag, dest=f.name, type=kind, choices=choices, default=argparse.SUPPRESS,
                           metavar=None if choices else f.name.split("_")[-1].upper(),
                           help=f"{help_text} (default: {f.default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbert", description="Multi-label text classification by fine-tuning BERT-family encoders.",
        epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"mlbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="fine-tune an encoder on labelled files and write a model folder",
                       description="Fine-tune an encoder with a multi-label head. Tunes thresholds on --dev, "
                       "evaluates dev and --test, and writes DIR: the model folder, metrics.json and "
                       "train_log.jsonl. Interrupted? Run the same command again with --resume.", epilog=EPILOG)
    p.add_argument("--train", required=True, metavar="FILE", help="training data (.jsonl, .csv, .tsv, .parquet)")
    p.add_argument("--dev", required=True, metavar="FILE", help="dev data: early stopping and threshold tuning")
    p.add_argument("--test", metavar="FILE", help="test data, evaluated once at the end")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the model, metrics and checkpoints")
    p.add_argument("--config", metavar="JSON", help="settings file; explicit flags override it")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--report", action="store_true",
                   help="also write DIR/report.html (see `mlbert report`) on --test, or on --dev without --test")
    _add_config_flags(p)

    p = sub.add_parser("evaluate", help="score a model folder on a labelled file",
                       description="Print metrics under the three threshold modes (0.5, tuned global, tuned "
                       "per-label) and the worst labels; --json writes everything, per-label table included.",
                       epilog=EPILOG)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")
    p.add_argument("--data", required=True, metavar="FILE", help="labelled data file")
    p.add_argument("--json", metavar="OUT", help="write the full report as JSON here")
    p.add_argument("--worst", type=int, default=10, metavar="N", help="show the N worst labels by F1 (default 10)")
    _add_backend_flag(p)
    _add_field_flags(p, labels=True)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("pretrain", help="continue masked-LM training of an encoder on unlabelled in-domain text",
                       description="Adapt an encoder to your domain before fine-tuning: masked-language-model "
                       "training on your own texts (15%% of tokens chosen; 80%% [MASK], 10%% random, 10%% kept). "
                       "Prints dev perplexity before and after; writes a model folder for `mlbert train --model DIR`. "
                       "The packaged MiniLM has no MLM head: a new one is initialised (tied to the word embeddings).",
                       epilog=EPILOG)
    p.add_argument("--text", required=True, action="append", metavar="FILE",
                   help="unlabelled texts: .txt (one a line), .jsonl, .csv, .tsv or .parquet (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the adapted encoder")
    p.add_argument("--dev", metavar="FILE", help="texts for perplexity (default: a held-out 5%%, at most 2,000)")
    p.add_argument("--text-field", default="text", metavar="NAME", help="text field of structured files (text)")
    defaults = PretrainConfig()
    for name, kind, help_text in (
            ("model", str, "encoder to start from (default: the packaged all-MiniLM-L6-v2)"),
            ("max_length", int, f"tokens kept per text (default {defaults.max_length})"),
            ("batch_size", int, f"texts per step (default {defaults.batch_size})"),
            ("epochs", int, f"passes over the texts (default {defaults.epochs})"),
            ("max_steps", int, "stop after this many steps (default 0: no limit)"),
            ("lr", float, f"AdamW learning rate of the encoder (default {defaults.lr})"),
            ("head_lr", float, f"learning rate of the MLM head (default {defaults.head_lr})"),
            ("mlm_probability", float, f"share of tokens chosen for prediction (default {defaults.mlm_probability})"),
            ("seed", int, f"random seed (default {defaults.seed})"),
            ("save_steps", int, f"steps between resumable checkpoints (default {defaults.save_steps})")):
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=getattr(defaults, name),
                       help=help_text)
    p.add_argument("--whole-word-mask", action="store_true", help="mask whole words, not single word pieces")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier pretraining run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("report", help="write a self-contained HTML page on how good a model is, label by label",
                       description="One HTML file with no outside references (open it from disk, offline): headline "
                       "metrics under the three threshold modes, training curves, a sortable per-label table, F1 "
                       "against support, precision-recall curves, F1 against the global threshold, label "
                       "co-occurrence, label cardinality and the most confident mistakes.", epilog=EPILOG)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")
    p.add_argument("--data", required=True, metavar="FILE", help="labelled data file (usually the test split)")
    p.add_argument("--out", required=True, metavar="HTML", help="where to write the page, e.g. report.html")
    p.add_argument("--mistakes", type=int, default=20, metavar="N", help="how many confident mistakes to list "
                   "(default 20)")
    _add_backend_flag(p)
    _add_field_flags(p, labels=True)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("tune", help="re-tune a model folder's thresholds on labelled files",
                       description="Recompute the global and per-label thresholds of a trained model from its "
                       "predictions on labelled files (pooled) and rewrite them in the folder's mlbert.json. "
                       "Models trained with --threshold-data dev can move to train+dev this way without retraining.",
                       epilog=EPILOG)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")
    p.add_argument("--data", required=True, action="append", metavar="FILE",
                   help="labelled file (repeatable: pass train and dev to pool them)")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("predict", help="label the texts of a file",
                       description="Write one JSON line per input text: {\"id\", \"labels\", \"scores\"}. Labels "
                       "pass the model's tuned thresholds unless --threshold or --mode says otherwise.", epilog=EPILOG)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")
    p.add_argument("--input", required=True, metavar="FILE", help="texts (.jsonl, .csv, .tsv, .parquet, or .txt "
                   "with one text a line); labels in it are ignored")
    p.add_argument("--output", required=True, metavar="FILE", help="JSONL predictions")
    p.add_argument("--threshold", type=float, metavar="T", help="one cut-off for every label instead of the tuned ones")
    p.add_argument("--mode", choices=("fixed", "global", "per_label"), help="which saved thresholds to use "
                   "(default: the model's threshold_mode)")
    p.add_argument("--top-k", type=int, metavar="K", help="at most K labels per text (with --threshold 0: exactly K)")
    p.add_argument("--at-least-one", action="store_true", help="give the best label when none passes its threshold")
    _add_backend_flag(p)
    _add_field_flags(p, labels=False)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("demo", help="generate a dataset, train the packaged MiniLM, evaluate, predict",
                       description="The end-to-end tour that `make demo` runs: writes a synthetic support-ticket "
                       "dataset, fine-tunes the packaged all-MiniLM-L6-v2 on it, prints metrics and predictions.",
                       epilog=EPILOG)
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="where data and model go (default runs/demo)")
    p.add_argument("--examples", type=int, default=2400, metavar="N", help="dataset size (default 2400)")
    p.add_argument("--epochs", type=int, default=3, metavar="N", help="training epochs (default 3)")
    p.add_argument("--model", default=TrainConfig.model, metavar="NAME_OR_PATH", help="encoder to fine-tune")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    p = sub.add_parser("serve", help="serve a model folder over HTTP (FastAPI + uvicorn)",
                       description="A REST server for a trained model: POST /v1/predict, GET /v1/labels, /healthz, "
                       "/readyz, /metrics (Prometheus). Concurrent requests are micro-batched. Binds to loopback "
                       "unless --host says otherwise; SIGTERM or Ctrl-C lets in-flight requests finish.",
                       epilog="example: mlbert serve --model runs/demo/model --port 8000\n"
                       "         curl -s localhost:8000/v1/predict -H 'Content-Type: application/json' "
                       "-d '{\"texts\": [\"I was charged twice\"]}'", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-batch", type=int, default=64, metavar="N", help="texts per model batch (default 64)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                   help="how long a batch waits for more requests (default 5)")
    p.add_argument("--no-batching", action="store_true", help="run every request alone (for comparison)")
    p.add_argument("--max-texts", type=int, default=256, metavar="N", help="texts per request; more is 422 (default 256)")
    p.add_argument("--max-chars", type=int, default=20_000, metavar="N",
                   help="characters per text; more is 422 (default 20000)")
    p.add_argument("--max-body-mb", type=float, default=8.0, metavar="MB", help="request body limit (default 8)")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="require header X-API-Key equal to this environment variable's value")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; none by default)")
    _add_backend_flag(p)
    p.add_argument("--quiet", action="store_true", help="log warnings only")

    p = sub.add_parser("export", help="export a model folder to ONNX (optionally int8) for onnxruntime",
                       description="Writes DIR/onnx/model.onnx (and with --quantize int8 also model.int8.onnx): "
                       "(input_ids, attention_mask) -> probabilities, with the labels and tuned thresholds in the "
                       "file's metadata. Use it with --backend onnx / onnx-int8 in predict, evaluate and serve. "
                       "With --check-data, reports how far the export's probabilities and F1 are from the torch "
                       "model's on that labelled file.", epilog=EPILOG)
    p.add_argument("--model", required=True, metavar="DIR", help="model folder written by mlbert train")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--quantize", choices=("int8",), help="also write a dynamically int8-quantized copy")
    p.add_argument("--check-data", metavar="FILE", help="labelled file to measure agreement with the torch model")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _add_backend_flag(p: argparse.ArgumentParser) -> None:
    from .classifier import BACKENDS

    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="inference path: torch (exact fp32), torch-bf16 (fast only on CPUs with native bf16), "
                   "torch-int8 (dynamic quantization), onnx / onnx-int8 (after mlbert export), auto (torch-bf16 where "
                   "the CPU has native bf16 and measures it faster, else torch); default torch")


def _add_field_flags(p: argparse.ArgumentParser, labels: bool) -> None:
    p.add_argument("--text-field", metavar="NAME", help="text field (default: the one the model was trained with)")
    if labels:
        p.add_argument("--label-field", metavar="NAME", help="labels field (default: as trained)")
        p.add_argument("--label-sep", metavar="SEP", help="separator of labels written as one string (default: as trained)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = TrainConfig.from_json(args.config).to_dict() if args.config else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig.from_dict(values)


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mlbert: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from .display import metrics_table, per_label_lines

    progress = not args.quiet
    if args.command == "train":
        from .jobs import train_job

        config = config_from_args(args)
        metrics = train_job(config, args.train, args.dev, args.out, test=args.test, resume=args.resume,
                            overwrite=args.overwrite, progress=progress, command=shlex.join(["mlbert", *argv]),
                            report=args.report)
        if process_rank() != 0:
            return 0
        for split in ("dev", "test"):
            if split in metrics:
                print(metrics_table(metrics[split], title=split))
                print()
        print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, {metrics['train_seconds']:.0f}s "
              f"training; model, metrics.json and train_log.jsonl in {args.out}")
        if "report" in metrics:
            print(f"report: {metrics['report']}")
    elif args.command == "evaluate":
        from .jobs import evaluate_job

        _, report = evaluate_job(args.model, args.data, args.json, args.text_field, args.label_field,
                                 args.label_sep, progress=progress, backend=args.backend)
        print(metrics_table(report, title=str(args.data)))
        if args.worst > 0:
            print(f"\nworst {args.worst} labels by F1 (default thresholds):")
            print(per_label_lines(report["per_label"], limit=args.worst, worst_first=True))
        if args.json:
            print(f"\nfull report: {args.json}")
    elif args.command == "pretrain":
        from .pretrain import pretrain, read_texts

        config = PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
                                   if hasattr(args, f.name)})
        texts = read_texts(args.text, args.text_field)
        dev = read_texts([args.dev], args.text_field) if args.dev else None
        summary = pretrain(texts, args.out, config, dev, resume=args.resume, overwrite=args.overwrite,
                           progress=progress)
        ppl = (f"dev perplexity {summary['perplexity_before']:.2f} -> {summary['perplexity_after']:.2f}, "
               if summary["perplexity_before"] is not None else "")
        print(f"{ppl}{summary['steps']} steps in {summary['seconds']:.0f}s; "
              f"fine-tune with: mlbert train --model {args.out} ...")
    elif args.command == "report":
        from .jobs import report_job

        if args.mistakes < 0:
            raise ConfigError(f"--mistakes must be 0 or more, got {args.mistakes}")
        path = report_job(args.model, args.data, args.out, args.text_field, args.label_field, args.label_sep,
                          progress=progress, backend=args.backend, mistakes=args.mistakes)
        print(f"wrote {path}: open it in a browser (works offline)")
    elif args.command == "tune":
        from .jobs import tune_job

        result = tune_job(args.model, args.data, progress=progress)
        print(f"thresholds re-tuned on {result['n_examples']} examples: global {result['thresholds']['global']}; "
              f"written to {Path(args.model) / 'mlbert.json'}")
    elif args.command == "predict":
        from .jobs import predict_job

        n = predict_job(args.model, args.input, args.output, threshold=args.threshold, top_k=args.top_k,
                        at_least_one=args.at_least_one, mode=args.mode, text_field=args.text_field,
                        progress=progress, backend=args.backend)
        log.info("wrote %d predictions to %s", n, args.output)
    elif args.command == "serve":
        from .server import ServeSettings, serve

        api_key = None
        if args.api_key_env:
            api_key = os.environ.get(args.api_key_env)
            if not api_key:
                raise ConfigError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset; "
                                  f"export {args.api_key_env}=<secret> first")
        settings = ServeSettings(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, batching=not args.no_batching,
                                 max_texts=args.max_texts, max_chars=args.max_chars,
                                 max_body_bytes=int(args.max_body_mb * 1024 * 1024), api_key=api_key,
                                 cors_origins=tuple(args.cors_origin))
        serve(args.model, args.host, args.port, settings, log_level="warning" if args.quiet else "info",
              backend=args.backend)
    elif args.command == "export":
        from .jobs import export_job

        result = export_job(args.model, args.quantize, args.check_data, progress=progress)
        for line in result["lines"]:
            print(line)
    elif args.command == "demo":
        from .demo import run_demo

        run_demo(Path(args.out), n_examples=args.examples, epochs=args.epochs, model=args.model, progress=progress)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if process_rank() != 0:  # distributed run: the main process alone reports
        args.quiet = True
    _setup_logging(args.quiet)
    try:
        return run(args, argv)
    except MlbertError as e:
        print(f"mlbert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlbert: interrupted; run the same command again with --resume to continue from the last checkpoint",
              file=sys.stderr)
        return 130
