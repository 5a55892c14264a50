"""Ablation of pooling x head, training-data fraction and masked-LM domain pretraining, through the CLI.

    python bench/ablation.py --dataset goemotions --fractions 0.1 --seeds 1,2,3 --epochs 1
    python bench/ablation.py --dataset goemotions --fractions 0.1 --seeds 1,2,3 --epochs 1 --mlm --mlm-steps 400
    python bench/ablation.py --jobs 8 --epochs 4 --batch-size 16 --mlm --mlm-steps 2000   # on a GPU machine
    python bench/ablation.py --summary --write-benchmarks   # the table, also into BENCHMARKS.md

Every run is `mlbert train` (and `mlbert pretrain`) as a user would type it; its numbers come from the
run's metrics.json. The training subset of a fraction is fixed (seed 0) so that seeds vary only the
training randomness. Records (one per dataset x fraction x configuration x seed) are merged into
bench/results/ablation.json; the summary gives mean and standard deviation over seeds. `--jobs N`
runs N trainings at once (each `mlbert train` is a process of its own): worth it on a GPU, whose
small MiniLM steps leave it idle most of the time, the more so under CUDA MPS (`nvidia-cuda-mps-control
-d` first), which runs the processes' kernels side by side; on 2 CPU cores it only slows each run down.
Every record names the device it trained on.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import shlex
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np

from accuracy import write_section
from common import RESULTS_DIR, ROOT, SHARED_DATA, WORK_DIR, gpu_name, machine
from mlbert.fileio import atomic_open, write_json

RESULTS = RESULTS_DIR / "ablation.json"
WORK = WORK_DIR / "ablation"
SHARED = SHARED_DATA  # --data-root changes it
GRID = {
    "cls-linear": ("cls", "linear"),
    "mean-linear": ("mean", "linear"),
    "layers-mlp": ("layers", "mlp"),
    "mean-label-attention": ("mean", "label-attention"),
    "mean-gru": ("mean", "gru"),
}
# Beyond the default grid: they split layers-mlp's gain between the layer pooling and the MLP head.
CONFIGS = {**GRID, "layers-linear": ("layers", "linear"), "cls-mlp": ("cls", "mlp")}
MAX_LENGTH = {"goemotions": 64, "reuters": 256}


def subset(dataset: str, fraction: float) -> Path:
    """The first `fraction` of a seed-0 permutation of the training split, written once."""
    path = WORK / f"{dataset}-train-{fraction:g}.jsonl"
    if not path.is_file():
        lines = (SHARED / dataset / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
        order = np.random.default_rng(0).permutation(len(lines))[: max(1, round(fraction * len(lines)))]
        with atomic_open(path) as f:  # another ablation.py process may be reading it
            f.write("".join(lines[i] for i in sorted(order)))
    return path


def mlbert(*args: str) -> None:
    cmd = [sys.executable, "-m", "mlbert", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{proc.stderr[-2000:]}")


def pretrained(dataset: str, source: str, steps: int, max_length: int) -> Path:
    """An MLM-adapted MiniLM: on all texts of the dataset (train + dev + test, labels unused) or train only."""
    out = WORK / f"{dataset}-mlm-{source}-{steps}"
    if not (out / "pretrain.json").is_file():
        files = ["train.jsonl"] + (["dev.jsonl", "test.jsonl"] if source == "all" else [])
        texts = [arg for f in files for arg in ("--text", str(SHARED / dataset / f))]
        mlbert(
            "pretrain",
            *texts,
            "--out",
            str(out),
            "--max-steps",
            str(steps),
            "--max-length",
            str(max_length),
            "--quiet",
            "--overwrite",
        )
    return out


def run(dataset: str, fraction: float, name: str, seed: int, args, model: str | None = None) -> dict:
    pooling, head = CONFIGS[name.split("+")[0]]
    out = WORK / f"{dataset}-{fraction:g}-{name}-s{seed}"
    data = SHARED / dataset
    argv = [
        "train",
        "--train",
        str(subset(dataset, fraction)),
        "--dev",
        str(data / "dev.jsonl"),
        "--test",
        str(data / "test.jsonl"),
        "--out",
        str(out),
        "--seed",
        str(seed),
        "--pooling",
        pooling,
        "--head",
        head,
        "--epochs",
        str(args.epochs),
        "--max-length",
        str(args.max_length or MAX_LENGTH[dataset]),
        "--batch-size",
        str(args.batch_size),
        "--quiet",
        "--overwrite",
    ] + (["--model", str(model)] if model else [])
    if not (out / "metrics.json").is_file() or args.rerun:
        mlbert(*argv)
    m = json.loads((out / "metrics.json").read_text())
    best = next(h for h in m["history"] if h["epoch"] == m["best_epoch"])
    test = m["test"]["metrics"][m["test"]["default_mode"]]
    return {
        "dataset": dataset,
        "fraction": fraction,
        "config": name,
        "seed": seed,
        "n_train": m["n_train"],
        "dev_micro_f1": best["dev_micro_f1"],
        "dev_macro_f1": best["dev_macro_f1"],
        "test_micro_f1": test["micro_f1"],
        "test_macro_f1": test["macro_f1"],
        "train_seconds": m["train_seconds"],
        "command": shlex.join(["mlbert", *argv]),
    }


def summary(records: list[dict]) -> str:
    lines = [
        "| dataset | fraction | configuration | seeds | dev micro-F1 | dev macro-F1 | test micro-F1 | test macro-F1 "
        "| train s | ran on |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(r["dataset"], r["fraction"], r["config"]) for r in records},
        key=lambda k: (k[0], k[1], list(CONFIGS).index(k[2].split("+")[0]), k[2]),
    )
    for key in keys:
        rows = [r for r in records if (r["dataset"], r["fraction"], r["config"]) == key]

        def ms(field: str) -> str:
            v = np.array([r[field] for r in rows])  # noqa: B023 - called within this iteration
            return f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}"

        lines.append(
            f"| {key[0]} | {key[1]:g} | {key[2]} | {len(rows)} | {ms('dev_micro_f1')} | {ms('dev_macro_f1')} | "
            f"{ms('test_micro_f1')} | {ms('test_macro_f1')} | {np.mean([r['train_seconds'] for r in rows]):.0f} | "
            f"{', '.join(sorted({short_device(r.get('device', 'cpu')) for r in rows}))} |"
        )
    return "\n".join(lines)


def short_device(device: str) -> str:
    """'cuda: NVIDIA H100 80GB HBM3' -> 'H100'; 'cpu' stays."""
    return (
        next((w for w in device.split() if w[:1] in "HAL" and w[1:].isdigit()), device) if "cuda" in device else device
    )


def merge(record: dict) -> None:
    """Put one record into ablation.json, replacing an older one of the same run.

    Under an exclusive lock: several ablation.py processes (one per slice of the grid) may share a GPU
    machine, and an unlocked read-modify-write would drop the records of whichever wrote first."""
    key = ("dataset", "fraction", "config", "seed")
    with open(RESULTS.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(RESULTS.read_text())["records"] if RESULTS.is_file() else []
        records = [r for r in old if tuple(r[k] for k in key) != tuple(record[k] for k in key)] + [record]
        write_json(RESULTS, {"records": records})


def device_name() -> str:
    gpu = gpu_name()
    return f"cuda: {gpu}" if gpu else "cpu"


def main(argv: list[str] | None = None) -> int:
    global SHARED
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", action="append", default=None, help="dataset in ../shared/data (repeatable)")
    parser.add_argument("--fractions", default="0.1,1", help="training-data fractions (comma-separated)")
    parser.add_argument(
        "--configs",
        default=",".join(GRID),
        help=f"pooling-head configurations, of "
        f"{', '.join(CONFIGS)} ('' for none: with --mlm, only the pretrained runs)",
    )
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, help="default: 64 for goemotions, 256 for reuters")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--mlm", action="store_true", help="also: cls-linear after MLM pretraining on all texts and on train texts only"
    )
    parser.add_argument("--mlm-steps", type=int, default=400, help="pretraining steps (batch 32)")
    parser.add_argument(
        "--mlm-sources", default="all,train", help="texts to pretrain on: all (train + dev + test) and/or train"
    )
    parser.add_argument(
        "--summary", action="store_true", help="print the table of bench/results/ablation.json and exit (runs nothing)"
    )
    parser.add_argument(
        "--write-benchmarks",
        action="store_true",
        help="with --summary: also put the table into BENCHMARKS.md (between its ablation markers)",
    )
    parser.add_argument("--rerun", action="store_true", help="retrain runs that already have metrics.json")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once (default 1)")
    parser.add_argument("--data-root", default=str(SHARED), help="folder holding the datasets (default ../shared/data)")
    args = parser.parse_args(argv)
    if args.summary:
        table = summary(json.loads(RESULTS.read_text())["records"])
        if args.write_benchmarks:
            write_section(ROOT / "BENCHMARKS.md", "ablation", table)
        print(table)
        return 0
    SHARED = Path(args.data_root)
    WORK.mkdir(parents=True, exist_ok=True)
    datasets = []
    for dataset in args.dataset or ["goemotions", "reuters"]:
        if (SHARED / dataset).is_dir():
            datasets.append(dataset)
        else:
            print(f"skipping {dataset}: {SHARED / dataset} is missing")
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    tasks = []  # (dataset, fraction, config name, seed, model folder or None)
    for dataset in datasets:
        for fraction in fractions:
            subset(dataset, fraction)  # written here, once, before any run reads it
            tasks += [
                (dataset, fraction, name, seed, None) for name in args.configs.split(",") if name for seed in seeds
            ]
    command = shlex.join(["python", "bench/ablation.py", *(argv if argv is not None else sys.argv[1:])])
    meta = {"date": date.today().isoformat(), "machine": machine(), "device": device_name()}
    lock = threading.Lock()

    def one(task) -> dict:
        dataset, fraction, name, seed, model = task
        if isinstance(model, Future):  # an MLM encoder, pretrained by an earlier task of the same pool
            model = model.result()
        record = {**meta, "bench_command": command, **run(dataset, fraction, name, seed, args, model)}
        with lock:  # merged as each run ends, so a run cut short keeps what finished
            merge(record)
        print(
            json.dumps(
                {k: record[k] for k in ("dataset", "fraction", "config", "seed", "dev_macro_f1", "test_macro_f1")}
            ),
            flush=True,
        )
        return record

    # The pool starts tasks in the order given, so a run that waits for its pretrained encoder only
    # ever waits for a task that is already running or done.
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        if args.mlm:
            for dataset in datasets:
                for source in args.mlm_sources.split(","):
                    model = pool.submit(
                        pretrained, dataset, source, args.mlm_steps, args.max_length or MAX_LENGTH[dataset]
                    )
                    tasks += [
                        (dataset, fraction, f"cls-linear+mlm-{source}-{args.mlm_steps}", seed, model)
                        for fraction in fractions
                        for seed in seeds
                    ]
        list(pool.map(one, tasks))
    records = json.loads(RESULTS.read_text())["records"]
    print(summary(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
