"""Threads on a small machine: one `mlbert train` alone, two side by side, and one beside a loaded
`mlbert serve`, with the thread settings as they come and as mlbert now sets them.

    python bench/threads.py                 # about 10 minutes on 2 cores; run it with nothing else running

Each training is the same small run (600 GoEmotions texts, 1 epoch, max length 64, batch 16); what is
reported is its epoch's training seconds (history[0].seconds in metrics.json) and the run's wall time.
Settings compared, each applied to every process in the scenario:
  - `as-was`: mlbert before it chose threads (MLBERT_THREADS=off): the OpenMP runtime's defaults,
    busy-waiting (spinning) threads, one per core;
  - `omp1`: OMP_NUM_THREADS=1, the usual advice;
  - `passive`: threads that sleep at once when they wait (OMP_WAIT_POLICY=PASSIVE);
  - `spin-10k`, `spin-100k`: GNU OpenMP's busy-wait shortened from 300,000 rounds (GOMP_SPINCOUNT);
  - `default`: what mlbert does now (threads.py): one thread per CPU it may use and GOMP_SPINCOUNT=10000,
    unless the environment says otherwise.
Writes bench/results/threads.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

from common import QUICK_TRAIN_FLAGS, RESULTS_DIR, SHARED_DATA, WORK_DIR, machine, start_server
from mlbert.fileio import write_json

RESULTS = RESULTS_DIR / "threads.json"
WORK = WORK_DIR / "threads"
SETTINGS = {
    "as-was": {"MLBERT_THREADS": "off"},
    "omp1": {"MLBERT_THREADS": "off", "OMP_NUM_THREADS": "1"},
    "passive": {"MLBERT_THREADS": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "spin-10k": {"MLBERT_THREADS": "off", "GOMP_SPINCOUNT": "10000"},
    "spin-100k": {"MLBERT_THREADS": "off", "GOMP_SPINCOUNT": "100000"},
    "default": {},
}
TRAIN_FLAGS = [*QUICK_TRAIN_FLAGS, "--no-token-cache"]


def data() -> tuple[Path, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    source = SHARED_DATA / "goemotions"
    train, dev = WORK / "train-600.jsonl", WORK / "dev-200.jsonl"
    with open(source / "train.jsonl", encoding="utf-8") as f:
        train.write_text("".join(line for _, line in zip(range(600), f)))
    with open(source / "dev.jsonl", encoding="utf-8") as f:
        dev.write_text("".join(line for _, line in zip(range(200), f)))
    return train, dev


def env_for(setting: str) -> dict[str, str]:
    drop = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MLBERT_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **SETTINGS[setting]}


def start_training(name: str, setting: str, train: Path, dev: Path) -> tuple[subprocess.Popen, Path, list[str]]:
    out = WORK / name
    cmd = [
        sys.executable,
        "-m",
        "mlbert",
        "train",
        "--train",
        str(train),
        "--dev",
        str(dev),
        "--out",
        str(out),
        *TRAIN_FLAGS,
    ]
    return subprocess.Popen(cmd, env=env_for(setting), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out, cmd


def finish(proc: subprocess.Popen, out: Path, started: float) -> dict:
    _, err = proc.communicate(timeout=3600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": err.decode()[-800:]}
    metrics = json.loads((out / "metrics.json").read_text())
    return {"train_seconds": metrics["history"][0]["seconds"], "wall_s": round(wall, 1)}


def trainings(n: int, setting: str, train: Path, dev: Path) -> list[dict]:
    started = time.perf_counter()
    runs = [start_training(f"{setting}-{n}-{i}", setting, train, dev) for i in range(n)]
    return [finish(proc, out, started) for proc, out, _ in runs]


def beside_server(setting: str, model: Path, train: Path, dev: Path) -> dict:
    """One training while `mlbert serve` (same thread setting) answers a client that never pauses."""
    import httpx

    server, base = start_server(str(model), env=env_for(setting), timeout=120)
    stop, answered = threading.Event(), [0]
    texts = [json.loads(line)["text"] for line in dev.read_text().splitlines()[:8]]

    def load() -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                client.post(f"{base}/v1/predict", json={"texts": texts})
                answered[0] += 1

    client = threading.Thread(target=load, daemon=True)
    client.start()
    time.sleep(3)
    record = trainings(1, setting, train, dev)[0]
    stop.set()
    client.join(timeout=60)
    server.terminate()
    server.wait(timeout=60)
    return {**record, "requests_answered": answered[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default=",".join(SETTINGS), help="which settings to compare")
    parser.add_argument("--no-server", action="store_true", help="leave out the scenario beside a loaded server")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each scenario")
    parser.add_argument("--alone-only", action="store_true", help="only the training alone (to measure its noise)")
    args = parser.parse_args(argv)
    train, dev = data()
    records = []
    for setting in args.settings.split(","):
        for _ in range(args.repeats):
            for n in (1,) if args.alone_only else (1, 2):
                for i, result in enumerate(trainings(n, setting, train, dev)):
                    scenario = "alone" if n == 1 else "two trainings"
                    records.append({"scenario": scenario, "setting": setting, "process": i, **result})
                    print(records[-1], flush=True)
        model = WORK / f"{setting}-1-0"
        if not (args.no_server or args.alone_only) and (model / "mlbert.json").is_file():
            records.append(
                {
                    "scenario": "beside a loaded server",
                    "setting": setting,
                    "process": 0,
                    **beside_server(setting, model, train, dev),
                }
            )
            print(records[-1], flush=True)
    meta = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "command": shlex.join(["python", "bench/threads.py", *(argv or sys.argv[1:])]),
    }
    write_json(RESULTS, {**meta, "records": records})
    print(table(records))
    return 0


def table(records: list[dict]) -> str:
    lines = ["| scenario | setting | training seconds (each process) | wall s |", "|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["setting"]), []).append(r)
    for (scenario, setting), rows in groups.items():
        seconds = ", ".join(f"{r['train_seconds']:.1f}" if "train_seconds" in r else "error" for r in rows)
        wall = max((r.get("wall_s", 0) for r in rows), default=0)
        lines.append(f"| {scenario} | {setting} | {seconds} | {wall:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
