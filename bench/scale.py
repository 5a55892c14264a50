"""Scaling beyond memory and beyond one process: peak RSS and tokenization throughput as the training
set grows 100x, with the training data memory-mapped (--data-on-disk) and, for contrast, held in
memory; and the speed-up of 2 processes (torchrun, gloo) over 1 on this machine.

    python bench/scale.py                                   # 10k, 100k, 1M synthetic tickets + 2-process run
    python bench/scale.py --sizes 10000,100000 --no-dist    # quicker

Every measurement runs in a fresh subprocess (peak RSS is its own VmHWM). Training runs a fixed
number of optimizer steps (--max-steps), so what grows with the data is the data's footprint, not
the work. Writes bench/results/scale.json; the synthetic data and runs go to runs/scale/.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from common import QUICK_TRAIN_FLAGS, RESULTS_DIR, SHARED_DATA, WORK_DIR, free_port, machine, peak_rss_mb
from common import run_child as run_script
from mlbert.fileio import write_json

RESULTS = RESULTS_DIR / "scale.json"
WORK = WORK_DIR / "scale"
SHARED = SHARED_DATA
TRAIN_FLAGS = QUICK_TRAIN_FLAGS


def write_data(n: int) -> Path:
    """n synthetic support tickets (the demo generator) as one JSONL training file, written once."""
    import random

    from mlbert.demo_data import make_ticket

    path = WORK / f"train-{n}.jsonl"
    if path.is_file():
        return path
    rng = random.Random(n)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"s{i}", **make_ticket(rng)}) + "\n")
    tmp.replace(path)
    return path


def dev_file() -> Path:
    from mlbert.demo_data import make_dataset

    path = WORK / "dev.jsonl"
    if not path.is_file():
        path.write_text("".join(json.dumps(r) + "\n" for r in make_dataset(2000, seed=99)["dev"]), encoding="utf-8")
    return path


# -- children: one measurement each, in a fresh process -----------------------------------------------


def child(spec: dict) -> dict:
    os.environ["MLBERT_CACHE_DIR"] = str(WORK / "cache")
    if spec["kind"] == "tokenize":
        from mlbert.classifier import MultiLabelClassifier
        from mlbert.config import TrainConfig
        from mlbert.token_store import TokenStore

        clf = MultiLabelClassifier(TrainConfig(max_length=64))
        clf._load_tokenizer()
        started = time.perf_counter()
        store_path = clf.tokenize_file(spec["train"], progress=False)
        seconds = time.perf_counter() - started
        store = TokenStore(store_path)
        return {
            "seconds": seconds,
            "examples_per_s": len(store) / seconds,
            "n": len(store),
            "store_mb": store_path.stat().st_size / 2**20,
            "peak_rss_mb": peak_rss_mb(),
        }
    if spec["kind"] == "train":
        from mlbert.cli import main

        started = time.perf_counter()
        if main(spec["argv"]) != 0:
            raise SystemExit("training failed")
        return {"seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}
    raise SystemExit(f"unknown kind {spec['kind']}")


def run_child(spec: dict) -> dict:
    return run_script(__file__, spec, timeout=7200)


# -- the parent --------------------------------------------------------------------------------------


def memory_records(sizes: list[int], steps: int, in_memory_max: int) -> list[dict]:
    dev = dev_file()
    records = []
    for n in sizes:
        train = write_data(n)
        rec = run_child({"kind": "tokenize", "n_requested": n, "train": str(train)})
        print(
            f"tokenize {n}: {rec.get('examples_per_s', 0):.0f} ex/s, peak RSS {rec.get('peak_rss_mb', 0):.0f} MB "
            f"{rec.get('error', '')}",
            flush=True,
        )
        records.append(rec)
        modes = [("disk", ["--data-on-disk"])] + ([("memory", ["--no-token-cache"])] if n <= in_memory_max else [])
        for mode, extra in modes:
            argv = [
                "train",
                "--train",
                str(train),
                "--dev",
                str(dev),
                "--out",
                str(WORK / f"run-{mode}-{n}"),
                *TRAIN_FLAGS,
                "--max-steps",
                str(steps),
                *extra,
            ]
            rec = run_child({"kind": "train", "mode": mode, "n_requested": n, "argv": argv})
            print(
                f"train {mode} {n}: {rec.get('seconds', 0):.0f} s, peak RSS {rec.get('peak_rss_mb', 0):.0f} MB "
                f"{rec.get('error', '')}",
                flush=True,
            )
            records.append(rec)
    return records


def dist_records(n: int) -> list[dict]:
    """1 process x 2 threads vs 2 processes x 1 thread (torchrun, gloo), the same global batch of 16."""
    source = SHARED / "goemotions"
    if not source.is_dir():
        print(f"skipping the 2-process run: {source} is missing")
        return []
    train, dev = WORK / f"goe-train-{n}.jsonl", WORK / "goe-dev-1000.jsonl"
    train.write_text("".join((source / "train.jsonl").open().readlines()[:n]))
    dev.write_text("".join((source / "dev.jsonl").open().readlines()[:1000]))
    records = []
    for procs in (1, 2):
        out = WORK / f"goe-{procs}proc"
        flags = [
            "--train",
            str(train),
            "--dev",
            str(dev),
            "--out",
            str(out),
            *[f if f != "16" else str(16 // procs) for f in TRAIN_FLAGS],
        ]  # the same global batch
        if procs == 1:
            cmd = [sys.executable, "-m", "mlbert", "train", *flags]
            env = dict(os.environ)
        else:
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "--master_addr",
                "127.0.0.1",
                "--master_port",
                str(free_port()),
                "-m",
                "mlbert",
                "train",
                *flags,
            ]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            records.append({"kind": "dist", "processes": procs, "error": proc.stderr[-1500:]})
            continue
        metrics = json.loads((out / "metrics.json").read_text())
        epoch = metrics["history"][0]
        records.append(
            {
                "kind": "dist",
                "processes": procs,
                "n": n,
                "global_batch": 16,
                "wall_seconds": wall,
                "epoch_seconds": epoch["seconds"],
                "examples_per_s": epoch["train_examples_per_s"],
                "dev_micro_f1": metrics["dev"]["metrics"]["per_label"]["micro_f1"],
                "dev_macro_f1": metrics["dev"]["metrics"]["per_label"]["macro_f1"],
                "command": shlex.join(["OMP_NUM_THREADS=1"] * (procs == 2) + cmd[:1] + cmd[1:]),
            }
        )
        print(
            f"{procs} process(es): {epoch['train_examples_per_s']:.1f} ex/s, epoch {epoch['seconds']:.0f} s", flush=True
        )
    return records


def summary(records: list[dict]) -> str:
    lines = [
        "| examples | tokenize ex/s | store MB | peak RSS tokenizing MB | peak RSS training, on disk MB "
        "| peak RSS training, in memory MB |",
        "|---|---|---|---|---|---|",
    ]
    for n in sorted({r["n_requested"] for r in records if "n_requested" in r}):
        tok = next((r for r in records if r["kind"] == "tokenize" and r["n_requested"] == n), {})
        disk = next((r for r in records if r.get("mode") == "disk" and r["n_requested"] == n), {})
        mem = next((r for r in records if r.get("mode") == "memory" and r["n_requested"] == n), {})

        def f(r, key, fmt="{:.0f}"):
            return fmt.format(r[key]) if key in r else ("error" if "error" in r else "not run")

        lines.append(
            f"| {n:,} | {f(tok, 'examples_per_s')} | {f(tok, 'store_mb', '{:.1f}')} | "
            f"{f(tok, 'peak_rss_mb')} | {f(disk, 'peak_rss_mb')} | {f(mem, 'peak_rss_mb')} |"
        )
    dist = [r for r in records if r["kind"] == "dist" and "error" not in r]
    if len(dist) == 2:
        one, two = sorted(dist, key=lambda r: r["processes"])
        lines += [
            "",
            "| processes | train examples/s | epoch s | dev micro-F1 | dev macro-F1 |",
            "|---|---|---|---|---|",
        ]
        for r in (one, two):
            lines.append(
                f"| {r['processes']} | {r['examples_per_s']:.1f} | {r['epoch_seconds']:.0f} | "
                f"{r['dev_micro_f1']:.4f} | {r['dev_macro_f1']:.4f} |"
            )
        lines.append(f"\n2 processes / 1 process: {two['examples_per_s'] / one['examples_per_s']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="training set sizes (comma-separated)")
    parser.add_argument("--max-steps", type=int, default=30, help="optimizer steps per training run")
    parser.add_argument(
        "--in-memory-max",
        type=int,
        default=1_000_000,
        help="largest size also trained with the data in memory, for contrast",
    )
    parser.add_argument("--dist-n", type=int, default=4000, help="GoEmotions training examples for the 2-process run")
    parser.add_argument("--no-dist", action="store_true", help="skip the 2-process run")
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the memory runs and keep those already in bench/results/scale.json",
    )
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "bench/scale.py", *(argv if argv is not None else sys.argv[1:])])
    meta = {"command": command, "date": date.today().isoformat(), "machine": machine()}
    if args.no_memory:  # keep the earlier memory records, each with the command and date that made it
        old = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"records": []}
        records = [{**{k: old.get(k) for k in ("command", "date")}, **r} for r in old["records"] if r["kind"] != "dist"]
    else:
        records = [
            {**meta, **r}
            for r in memory_records([int(x) for x in args.sizes.split(",")], args.max_steps, args.in_memory_max)
        ]
    if not args.no_dist:
        records += [{**meta, **r} for r in dist_records(args.dist_n)]
    write_json(RESULTS, {**meta, "records": records})
    print(summary(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
