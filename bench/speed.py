"""Speed side by side on this CPU: mlbert training and inference against the Hugging Face recipe.

    python bench/speed.py --goemotions-model runs/goemotions --reuters-model runs/reuters

Every measurement runs in a fresh subprocess (so its peak RSS is its own) on the same data and the same
packaged MiniLM:
  train/<dataset>/mlbert                  MultiLabelClassifier.fit, 1 epoch on the first --train-n texts
  train/<dataset>/hf-trainer-maxlen       transformers.Trainer, padding="max_length" (what tutorials write)
  train/<dataset>/hf-trainer-dynamic      Trainer, dynamic padding + train_sampling_strategy="group_by_length"
  infer/<dataset>/<path>/b<batch>         a trained model folder's inference paths (torch, torch-bf16,
                                          torch-int8, onnx, onnx-int8) vs transformers.pipeline
plus this CPU's fp32 and bf16 matmul peak, the time of one AdamW step (torch's CPU default, foreach,
fused), the useful FLOP/s of mlbert's training step (non-padding tokens only) as a share of that peak,
how training time scales with data size and max length, a profile of one fit, and the time from
`mlbert predict` start to its first prediction.
Results: bench/results/speed.json (one record per measurement) and markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from common import RESULTS_DIR, SHARED_DATA, machine, peak_rss_mb
from common import run_child as run_script

DATA = SHARED_DATA
RESULTS = RESULTS_DIR / "speed.json"
MAX_LENGTH = {"goemotions": 128, "reuters": 256}
PATHS = ("torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8")


def rows(dataset: str, split: str, n: int) -> tuple[list[str], list[list[str]]]:
    out = []
    with open(DATA / dataset / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return [r["text"] for r in out], [r["labels"] for r in out]


# -- child measurements -----------------------------------------------------------------------------
def fit_once(dataset: str, n: int, max_length: int, **settings):
    """One epoch of MultiLabelClassifier.fit on the first n training texts -> (classifier, texts, seconds)."""
    from mlbert import MultiLabelClassifier

    texts, labels = rows(dataset, "train", n)
    clf = MultiLabelClassifier(
        epochs=1, max_length=max_length, batch_size=32, save_steps=0, token_cache=False, **settings
    )
    started = time.perf_counter()
    clf.fit(texts, labels, progress=False)
    return clf, texts, time.perf_counter() - started


def train_mlbert(
    dataset: str, n: int, precision: str = "fp32", max_length: int | None = None, compile: bool = False
) -> dict:
    max_length = max_length or MAX_LENGTH[dataset]
    clf, texts, seconds = fit_once(dataset, n, max_length, precision=precision, compile=compile)
    tokens = sum(min(len(ids), max_length) for ids in clf.tokenizer_(texts)["input_ids"])
    return {
        "examples_per_s": n / seconds,
        "seconds": seconds,
        "tokens": tokens,
        "n_real": len(texts),
        "loop_seconds": clf.training_["train_seconds"],
    }


# Operator classes of a profile, by the operator's name (its own time, not its children's).
OP_CLASSES = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "attention": ("scaled_dot_product", "softmax", "flash_attention"),
    "dropout": ("bernoulli", "dropout"),
    "optimizer": ("adamw", "aten::_foreach", "norm"),
    "gelu, layer norm": ("gelu", "layer_norm"),
    "embedding": ("embedding", "index_select", "index_add"),
}


def op_class(name: str) -> str:
    return next((c for c, parts in OP_CLASSES.items() if any(p in name for p in parts)), "other operators")


def profile_training(dataset: str, n: int, system: str = "mlbert") -> dict:
    """Where the time of a fit goes (mlbert's, or the dynamic-padding HF Trainer's on the same texts): torch
    operators by their own CPU time, grouped into OP_CLASSES, and what is left outside them."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        if system == "mlbert":
            fit_once(dataset, n, MAX_LENGTH[dataset])
        else:
            train_hf(dataset, n, "dynamic")
    seconds = time.perf_counter() - started
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total_ops = sum(e.self_cpu_time_total for e in ops) / 1e6
    top = [{"op": e.key, "self_seconds": e.self_cpu_time_total / 1e6, "calls": e.count} for e in ops[:12]]
    classes: dict[str, float] = {}
    for e in ops:
        classes[op_class(e.key)] = classes.get(op_class(e.key), 0.0) + e.self_cpu_time_total / 1e6
    return {"seconds": seconds, "op_seconds": total_ops, "top_ops": top, "op_classes": classes,
            "system": system, "threads": torch.get_num_threads()}  # fmt: skip


def train_hf(dataset: str, n: int, padding: str) -> dict:
    from hf_recipe import RecipeSettings, train_recipe
    from mlbert.data import binarize, label_vocabulary

    texts, labels = rows(dataset, "train", n)
    vocab = label_vocabulary(labels)
    y, _ = binarize(labels, vocab)
    settings = RecipeSettings(
        epochs=1, batch_size=32, max_length=MAX_LENGTH[dataset], padding=padding, group_by_length=padding == "dynamic"
    )
    started = time.perf_counter()
    train_recipe(texts, y, vocab, settings)
    seconds = time.perf_counter() - started
    return {"examples_per_s": n / seconds, "seconds": seconds}


def infer(dataset: str, model: str, path: str, batch: int, n: int) -> dict:
    from mlbert import MultiLabelClassifier
    from mlbert.data import binarize

    texts, labels = rows(dataset, "test", n)
    started = time.perf_counter()
    if path == "hf-pipeline":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

        from mlbert.encoders import quiet_transformers, resolve_encoder

        quiet_transformers()
        base = resolve_encoder("all-MiniLM-L6-v2")
        n_labels = len(json.loads((Path(model) / "mlbert.json").read_text())["labels"])
        hf = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=n_labels, problem_type="multi_label_classification"
        )
        pipe = pipeline(
            "text-classification",
            model=hf,
            tokenizer=AutoTokenizer.from_pretrained(base),
            device=-1,
            top_k=None,
            function_to_apply="sigmoid",
        )
        load_s = time.perf_counter() - started
        pipe(texts[:8], batch_size=batch, truncation=True, max_length=MAX_LENGTH[dataset])  # warm-up, untimed
        t0 = time.perf_counter()
        pipe(texts, batch_size=batch, truncation=True, max_length=MAX_LENGTH[dataset])
        seconds = time.perf_counter() - t0
        return {"examples_per_s": n / seconds, "seconds": seconds, "load_seconds": load_s}
    clf = MultiLabelClassifier.load(model, backend=path)
    clf.config = clf.config.replace(eval_batch_size=batch)
    load_s = time.perf_counter() - started
    clf.predict_proba(texts[:8])  # warm-up, untimed
    t0 = time.perf_counter()
    probs = clf.predict_proba(texts)
    seconds = time.perf_counter() - t0
    y, _ = binarize(labels, clf.labels_)
    from mlbert.metrics import compute_metrics

    m = compute_metrics(probs, y, clf.thresholds_.per_label)
    np.save(os.environ["SPEED_PROBS"], probs)
    return {
        "examples_per_s": n / seconds,
        "seconds": seconds,
        "load_seconds": load_s,
        "micro_f1": m["micro_f1"],
        "macro_f1": m["macro_f1"],
    }


def matmul_peak(dtype: str) -> dict:
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(1024, 1024, dtype=dt), torch.randn(1024, 1024, dtype=dt)
    for _ in range(3):
        a @ b
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        a @ b
        reps += 1
    seconds = time.perf_counter() - started
    return {"gflop_per_s": 2 * 1024**3 * reps / seconds / 1e9}


def optimizer_step(implementation: str) -> dict:
    """Seconds per AdamW step over the packaged MiniLM's parameters (plus a 28-label head)."""
    import torch

    from mlbert.encoders import load_encoder, resolve_encoder

    params = list(load_encoder(resolve_encoder("all-MiniLM-L6-v2")).parameters())
    params.append(torch.nn.Parameter(torch.zeros(28, 384)))
    for p in params:
        p.grad = torch.randn_like(p)
    kwargs = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[implementation]
    opt = torch.optim.AdamW(params, lr=1e-4, **kwargs)
    opt.step()
    started = time.perf_counter()
    for _ in range(10):
        opt.step()
    return {"seconds_per_step": (time.perf_counter() - started) / 10, "parameters": sum(p.numel() for p in params)}


def child(spec: dict) -> dict:
    kind = spec["kind"]
    if kind == "train-mlbert":
        result = train_mlbert(
            spec["dataset"],
            spec["n"],
            spec.get("precision", "fp32"),
            spec.get("max_length"),
            spec.get("compile", False),
        )
    elif kind == "profile":
        result = profile_training(spec["dataset"], spec["n"], spec.get("system", "mlbert"))
    elif kind == "train-hf":
        result = train_hf(spec["dataset"], spec["n"], spec["padding"])
    elif kind == "infer":
        result = infer(spec["dataset"], spec["model"], spec["path"], spec["batch"], spec["n"])
    elif kind == "optimizer":
        result = optimizer_step(spec["implementation"])
    elif kind == "matmul":
        result = matmul_peak(spec["dtype"])
    else:
        raise SystemExit(f"unknown kind {kind}")
    return {**result, "peak_rss_mb": peak_rss_mb()}


def run_child(spec: dict, probs_path: str | None = None) -> dict:
    env = {**os.environ, "SPEED_PROBS": probs_path or os.devnull + ".npy"}
    return run_script(__file__, spec, env=env)


# -- the parent --------------------------------------------------------------------------------------
def minilm_train_flops_per_token() -> float:
    """6 x the non-embedding parameters of MiniLM-L6-H384 (forward 2, backward 4 per weight and token)."""
    h, inter, layers = 384, 1536, 6
    return 6 * layers * (4 * h * h + 2 * h * inter)


def first_prediction_seconds(model: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "one.txt", Path(tmp) / "out.jsonl"
        src.write_text("a single text to label\n")
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mlbert",
                "predict",
                "--model",
                model,
                "--input",
                str(src),
                "--output",
                str(out),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--goemotions-model", help="model folder trained on goemotions (for inference)")
    parser.add_argument("--reuters-model", help="model folder trained on reuters (for inference)")
    parser.add_argument("--train-n", type=int, default=1024, help="training texts per measurement")
    parser.add_argument("--infer-n", type=int, default=1024, help="test texts per batch-64 measurement")
    parser.add_argument("--infer-n-b1", type=int, default=128, help="test texts per batch-1 measurement")
    parser.add_argument("--datasets", default="goemotions,reuters")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated: peak, train, compile, maxlen (the padding=max_length Trainer), infer, scaling, profile",
    )
    parser.add_argument("--scale-n", default="1000,4000,16000", help="scaling: GoEmotions training-set sizes")
    parser.add_argument("--scale-lengths", default="128,256,512", help="scaling: Reuters max lengths")
    parser.add_argument("--scale-length-n", type=int, default=500, help="scaling: Reuters texts per max length")
    parser.add_argument("--profile-n", type=int, default=512, help="profile: GoEmotions texts in the profiled fit")
    parser.add_argument("--results", default=str(RESULTS), help="where the records go (JSON)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="rounds of the training rows and profiles (tables show medians)"
    )
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    skip = set(args.skip.split(","))
    records = []

    def record(r):
        records.append(r)
        print(json.dumps(r), flush=True)

    if "peak" not in skip:
        for dtype in ("fp32", "bf16"):
            record(run_child({"kind": "matmul", "dtype": dtype}))
        for implementation in ("default", "foreach", "fused"):
            record(run_child({"kind": "optimizer", "implementation": implementation}))
    for dataset in args.datasets.split(","):
        for repeat in range(args.repeats if "train" not in skip else 0):  # rounds, so a slow spell hits every row
            for precision in ("fp32", "auto"):
                record(
                    run_child(
                        {
                            "kind": "train-mlbert",
                            "dataset": dataset,
                            "n": args.train_n,
                            "precision": precision,
                            "repeat": repeat,
                        }
                    )
                )
            if "compile" not in skip:
                record(
                    run_child(
                        {
                            "kind": "train-mlbert",
                            "dataset": dataset,
                            "n": args.train_n,
                            "precision": "fp32",
                            "compile": True,
                            "repeat": repeat,
                        }
                    )
                )
            for padding in ("max_length", "dynamic") if "maxlen" not in skip else ("dynamic",):
                record(run_child({"kind": "train-hf", "dataset": dataset, "n": args.train_n, "padding": padding,
                                  "repeat": repeat}))  # fmt: skip
        model = getattr(args, f"{dataset}_model")
        if "infer" not in skip and model:
            from mlbert.backends import onnx_file
            from mlbert.classifier import MultiLabelClassifier
            from mlbert.export import export_onnx

            if not onnx_file(model, "int8").is_file():
                export_onnx(MultiLabelClassifier.load(model), model, "int8")
            with tempfile.TemporaryDirectory() as tmp:
                for batch, n in ((64, args.infer_n), (1, args.infer_n_b1)):
                    ref = None
                    for path in PATHS + ("hf-pipeline",):
                        probs_path = f"{tmp}/{path}-{batch}.npy"
                        r = run_child(
                            {"kind": "infer", "dataset": dataset, "model": model, "path": path, "batch": batch, "n": n},
                            probs_path,
                        )
                        if path != "hf-pipeline" and "error" not in r:
                            probs = np.load(probs_path)
                            ref = probs if path == "torch" else ref
                            r["max_abs_prob_diff_vs_fp32"] = float(np.abs(probs - ref).max())
                        record(r)
            record({"kind": "first-prediction", "dataset": dataset, "seconds": first_prediction_seconds(model)})

    if "scaling" not in skip:
        for n in map(int, args.scale_n.split(",")):
            record(run_child({"kind": "train-mlbert", "dataset": "goemotions", "n": n, "scaling": "size"}))
        for length in map(int, args.scale_lengths.split(",")):
            record(
                run_child(
                    {
                        "kind": "train-mlbert",
                        "dataset": "reuters",
                        "n": args.scale_length_n,
                        "max_length": length,
                        "scaling": "length",
                    }
                )
            )
    if "profile" not in skip:
        for repeat in range(args.repeats):
            for system in ("mlbert", "hf-trainer-dynamic"):
                record(run_child({"kind": "profile", "dataset": "goemotions", "n": args.profile_n, "system": system,
                                  "repeat": repeat}))  # fmt: skip

    command = shlex.join(["python", "bench/speed.py", *(argv if argv is not None else sys.argv[1:])])
    from mlbert.fileio import write_json

    meta = {"command": command, "date": date.today().isoformat(), "machine": machine()}
    write_json(args.results, {**meta, "records": records})
    print(summary(records))
    return 0


def _medians(rows: list[dict]) -> list[dict]:
    """One row per measured configuration (the rows of --repeats rounds merged): the median examples/s with
    its seconds, min and max, and the number of rounds."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        key = json.dumps({k: v for k, v in r.items() if k in ("kind", "dataset", "precision", "compile", "padding")})
        groups.setdefault(key, []).append(r)
    out = []
    for group in groups.values():
        speeds = [r["examples_per_s"] for r in group]
        middle = sorted(group, key=lambda r: r["examples_per_s"])[(len(group) - 1) // 2]
        out.append({**middle, "examples_per_s": float(np.median(speeds)), "min_examples_per_s": min(speeds),
                    "max_examples_per_s": max(speeds), "rounds": len(group)})  # fmt: skip
    return out


def _median_profiles(rows: list[dict]) -> list[dict]:
    """One profile per system, each number the median over its rounds."""
    out = []
    for system in dict.fromkeys(r["system"] for r in rows):
        group = [r for r in rows if r["system"] == system]
        classes = {c for r in group for c in r["op_classes"]}
        out.append(
            {
                "system": system,
                "rounds": len(group),
                "seconds": float(np.median([r["seconds"] for r in group])),
                "op_seconds": float(np.median([r["op_seconds"] for r in group])),
                "op_classes": {c: float(np.median([r["op_classes"].get(c, 0.0) for r in group])) for c in classes},
            }
        )
    return out


def summary(records: list[dict]) -> str:
    lines = []
    peak = {r["dtype"]: r["gflop_per_s"] for r in records if r["kind"] == "matmul" and "error" not in r}
    if peak:
        lines.append("matmul peak (1024², 3 s): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items()))
    steps = [r for r in records if r["kind"] == "optimizer" and "error" not in r]
    if steps:
        lines.append(
            "AdamW step over MiniLM's parameters ("
            + f"{steps[0]['parameters'] / 1e6:.1f} M): "
            + ", ".join(f"{r['implementation']} {1000 * r['seconds_per_step']:.0f} ms" for r in steps)
        )
    train = _medians([r for r in records if r["kind"].startswith("train") and "error" not in r and "scaling" not in r])
    if train:
        lines += [
            "",
            "| dataset | system | examples/s | seconds | peak RSS MB | vs mlbert fp32 |",
            "|---|---|---|---|---|---|",
        ]
        for r in train:
            name = (
                f"mlbert --precision {r.get('precision', 'fp32')}" + (" --compile" if r.get("compile") else "")
                if r["kind"] == "train-mlbert"
                else f"hf-trainer-{r['padding']}"
            )
            ours = next(
                x
                for x in train
                if x["kind"] == "train-mlbert"
                and x["dataset"] == r["dataset"]
                and x.get("precision", "fp32") == "fp32"
                and not x.get("compile")
            )
            spread = f" ({r['min_examples_per_s']:.1f}–{r['max_examples_per_s']:.1f})" if r["rounds"] > 1 else ""
            lines.append(
                f"| {r['dataset']} | {name} | {r['examples_per_s']:.1f}{spread} | {r['seconds']:.0f} | "
                f"{r['peak_rss_mb']:.0f} | {ours['examples_per_s'] / r['examples_per_s']:.2f}x |"
            )
            if (
                r["kind"] == "train-mlbert"
                and r.get("precision", "fp32") == "fp32"
                and not r.get("compile")
                and "fp32" in peak
            ):
                useful = r["tokens"] * minilm_train_flops_per_token() / r["seconds"] / 1e9
                loop = r["tokens"] * minilm_train_flops_per_token() / r["loop_seconds"] / 1e9
                lines.append(
                    f"| {r['dataset']} | mlbert fp32 useful FLOP/s | whole fit {useful:.1f} GFLOP/s = "
                    f"{100 * useful / peak['fp32']:.0f}% of fp32 peak; training loop alone "
                    f"({r['loop_seconds']:.0f} s) {loop:.1f} GFLOP/s = {100 * loop / peak['fp32']:.0f}% | | | |"
                )
    infer = [r for r in records if r["kind"] == "infer"]
    if infer:
        lines += [
            "",
            "| dataset | batch | path | examples/s | vs hf-pipeline | max abs Δp vs fp32 | micro-F1 | "
            "macro-F1 | peak RSS MB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in infer:
            if "error" in r:
                lines.append(f"| {r['dataset']} | {r['batch']} | {r['path']} | error | | | | | |")
                continue
            hf = next(
                (
                    x
                    for x in infer
                    if x["path"] == "hf-pipeline"
                    and x["dataset"] == r["dataset"]
                    and x["batch"] == r["batch"]
                    and "error" not in x
                ),
                None,
            )
            ratio = f"{r['examples_per_s'] / hf['examples_per_s']:.2f}x" if hf else ""
            diff = f"{r['max_abs_prob_diff_vs_fp32']:.4f}" if "max_abs_prob_diff_vs_fp32" in r else ""
            f1 = f"{r['micro_f1']:.4f} | {r['macro_f1']:.4f}" if "micro_f1" in r else " | "
            lines.append(
                f"| {r['dataset']} | {r['batch']} | {r['path']} | {r['examples_per_s']:.1f} | {ratio} | "
                f"{diff} | {f1} | {r['peak_rss_mb']:.0f} |"
            )
    scaling = [r for r in records if "scaling" in r and "error" not in r]
    if scaling:
        lines += [
            "",
            "| scaling | dataset | texts | max length | seconds | examples/s | non-padding tokens/s | "
            "seconds per 1,000 texts |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in scaling:
            n = r["n_real"]
            lines.append(
                f"| {r['scaling']} | {r['dataset']} | {n} | {r.get('max_length') or MAX_LENGTH[r['dataset']]}"
                f" | {r['seconds']:.0f} | {r['examples_per_s']:.1f} | {r['tokens'] / r['seconds']:.0f} | "
                f"{1000 * r['seconds'] / n:.0f} |"
            )
    profiles = _median_profiles([r for r in records if r["kind"] == "profile" and "op_classes" in r])
    if len(profiles) > 1:
        names = [r["system"] for r in profiles]
        rounds = profiles[0]["rounds"]
        lines += ["", "Where a profiled fit's time goes, side by side (seconds, the median of "
                  f"{rounds} round{'s' if rounds > 1 else ''}; operators by their own time):", "",
                  "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]  # fmt: skip
        for c in [*OP_CLASSES, "other operators"]:
            lines.append(f"| {c} | " + " | ".join(f"{r['op_classes'].get(c, 0.0):.2f}" for r in profiles) + " |")
        lines.append("| all operators | " + " | ".join(f"{r['op_seconds']:.2f}" for r in profiles) + " |")
        lines.append(
            "| outside operators | " + " | ".join(f"{r['seconds'] - r['op_seconds']:.2f}" for r in profiles) + " |"
        )
        lines.append("| wall | " + " | ".join(f"{r['seconds']:.2f}" for r in profiles) + " |")
    for r in records:
        if (
            r["kind"] == "profile"
            and "error" not in r
            and r.get("system", "mlbert") == "mlbert"
            and not r.get("repeat")
        ):
            lines += [
                "",
                f"Profile of one fp32 fit ({r['dataset']}, {r['n']} texts, {r['threads']} threads): "
                f"{r['seconds']:.1f} s wall, {r['op_seconds']:.1f} s inside torch operators "
                f"({100 * r['op_seconds'] / r['seconds']:.0f} %; the rest is Python, tokenization, model "
                "loading and waiting)",
                "",
                "| operator | self seconds | share of wall | calls |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| `{op['op']}` | {op['self_seconds']:.2f} | {100 * op['self_seconds'] / r['seconds']:.1f} % | "
                f"{op['calls']} |"
                for op in r["top_ops"]
            ]
    for r in records:
        if r["kind"] == "first-prediction":
            lines.append(
                f"\n`mlbert predict` start to first prediction ({r['dataset']} model, one text): {r['seconds']:.1f} s"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
