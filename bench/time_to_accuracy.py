"""Time to accuracy: test micro/macro-F1 against whole-run wall-clock time, mlbert with only --time-budget
beside the peers, on the same machine, one run per point (issue 17).

    python bench/time_to_accuracy.py --dataset goemotions --systems mlbert --budgets 10,15
    python bench/time_to_accuracy.py --dataset reuters --systems hf-trainer --budgets 10
    python bench/time_to_accuracy.py --dataset reuters --systems tfidf-linearsvc,libmultilabel-linear
    python bench/time_to_accuracy.py --plot          # the PNG from the stored records only

Systems:
  mlbert            `mlbert train ... --time-budget Xm` in a fresh process, nothing else set (--mlbert-flags
                    adds flags for a variant row, named "mlbert <flags>"); a fresh token cache per run, so
                    tokenizing is paid as on a first run. Headline: the model's default thresholds.
  hf-trainer        bench/hf_recipe.py (dynamic padding + length grouping, decisions at 0.5; a dev-tuned global
                    cut-off recorded beside), its epochs chosen to fit the budget from two timed probes of 20
                    and 80 steps (the probes count in its wall time).
  tfidf-linearsvc, libmultilabel-linear
                    bench/accuracy.py's baselines, one point each at their own wall time (budget_s null).

Every record: dataset, system, budget_s, wall_s (whole run: data reading to saved model / scores), micro_f1,
macro_f1 (test, the system's headline thresholds), dev scores where known, machine, date, command.
Records are merged into bench/results/time_to_accuracy.json by (dataset, system, budget_s, machine): a
point measured on another machine is kept beside it (the plot draws the other machine's points apart).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS_DIR, SHARED_DATA, WORK_DIR, machine

RESULTS = RESULTS_DIR / "time_to_accuracy.json"
PLOT = RESULTS_DIR / "time_to_accuracy.png"
HF_PROBE_STEPS = (20, 80)
PLOTTED = {
    "mlbert": "tab:orange",
    "hf-trainer": "tab:blue",
    "tfidf-linearsvc": "tab:green",
    "libmultilabel-linear": "tab:red",
}


def mlbert_point(folder: Path, budget_min: float | None, flags: list[str]) -> dict:
    """One `mlbert train` run; without a budget (None) it checks the run's own estimate of its wall time."""
    budget = ["--time-budget", f"{budget_min:g}m"] if budget_min is not None else []
    name = f"{budget_min:g}m" if budget_min is not None else "nobudget"
    out = WORK_DIR / f"tta-{folder.name}-{name}{'-' + '-'.join(f.strip('-') for f in flags) if flags else ''}"
    argv = [
        "mlbert", "train", "--train", str(folder / "train.jsonl"), "--dev", str(folder / "dev.jsonl"),
        "--test", str(folder / "test.jsonl"), "--out", str(out), "--overwrite", "--quiet", *budget, *flags,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MLBERT_CACHE_DIR": cache}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", *argv], check=True, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    mode = metrics["test"]["default_mode"]
    best = next((h for h in metrics["history"] if h["step"] == metrics["best_step"]), {})
    return {
        "system": "mlbert" + (" " + " ".join(flags) if flags else ""),
        "budget_s": budget_min * 60 if budget_min is not None else None,
        "wall_s": round(wall, 1),
        "micro_f1": metrics["test"]["metrics"][mode]["micro_f1"],
        "macro_f1": metrics["test"]["metrics"][mode]["macro_f1"],
        "dev_micro_f1": metrics["dev"]["metrics"][mode]["micro_f1"],
        "dev_macro_f1": metrics["dev"]["metrics"][mode]["macro_f1"],
        "headline": mode,
        "best_dev_score": best.get("score"),
        "budget": metrics.get("budget"),
        "phases": metrics.get("phases"),
        "run_wall_s": metrics.get("wall_s"),  # as the run itself counted it (no interpreter start-up)
        "config": {k: metrics_config(out)[k] for k in ("pooling", "head", "max_length", "batch_size", "epochs")},
        "command": shlex.join(argv),
    }


def metrics_config(out: Path) -> dict:
    return json.loads((out / "mlbert.json").read_text())["config"]


def hf_point(folder: Path, budget_min: float, max_length: int = 256) -> dict:
    """The HF recipe given the same wall time: a timed probe, then as many epochs as fit; texts cut at
    `max_length` tokens (the recipe truncates)."""
    from hf_recipe import RecipeSettings, recipe_proba, train_recipe
    from mlbert.data import binarize, label_vocabulary, read_dataset
    from mlbert.metrics import compute_metrics
    from mlbert.thresholds import tune_global_threshold

    started = time.perf_counter()
    splits = {name: read_dataset(folder / f"{name}.jsonl") for name in ("train", "dev", "test")}
    vocab = label_vocabulary(splits["train"].labels)
    y = {name: binarize(d.labels, vocab)[0] for name, d in splits.items()}
    base = RecipeSettings(batch_size=16, max_length=max_length, padding="dynamic", group_by_length=True)
    # Two timed probes: the Trainer's set-up and first steps cost far more than its steady steps (one
    # probe of 20 steps over-estimated a step 2.8x), so a step is the difference between them.
    seconds = {}
    for steps in HF_PROBE_STEPS:
        probe = RecipeSettings(**{**base.__dict__, "max_steps": steps})
        seconds[steps] = train_recipe(splits["train"].texts, y["train"], vocab, probe)[2]["train_seconds"]
    short, long = HF_PROBE_STEPS
    step_s = (seconds[long] - seconds[short]) / (long - short)
    set_up_s = max(0.0, seconds[short] - short * step_s)
    steps_per_epoch = -(-len(splits["train"].texts) // base.batch_size)
    # Left for training: the budget less the time so far, the Trainer's set-up, the scoring of dev and test
    # (about a third of a training step's time per batch of the same size) and model loading (~10 s).
    n_scored = len(splits["dev"].texts) + len(splits["test"].texts)
    left = budget_min * 60 - (time.perf_counter() - started) - set_up_s - n_scored / base.batch_size * step_s / 3 - 10
    epochs = max(0.05, left / step_s / steps_per_epoch)
    settings = RecipeSettings(**{**base.__dict__, "epochs": round(epochs, 3)})
    model, tokenizer, _ = train_recipe(splits["train"].texts, y["train"], vocab, settings)
    test = recipe_proba(model, tokenizer, splits["test"].texts, settings)
    dev = recipe_proba(model, tokenizer, splits["dev"].texts, settings)
    wall = time.perf_counter() - started
    m_test, m_dev = compute_metrics(test, y["test"], 0.5), compute_metrics(dev, y["dev"], 0.5)
    cut, _ = tune_global_threshold(dev, y["dev"])  # beside the recipe's 0.5: one cut-off tuned on dev
    m_tuned = compute_metrics(test, y["test"], cut)
    return {
        "system": "hf-trainer",
        "budget_s": budget_min * 60,
        "wall_s": round(wall, 1),
        "micro_f1": float(m_test["micro_f1"]),
        "macro_f1": float(m_test["macro_f1"]),
        "dev_micro_f1": float(m_dev["micro_f1"]),
        "dev_macro_f1": float(m_dev["macro_f1"]),
        "headline": "fixed",
        "micro_f1_global_tuned": float(m_tuned["micro_f1"]),
        "macro_f1_global_tuned": float(m_tuned["macro_f1"]),
        "epochs": settings.epochs,
        "max_length": max_length,
        "probe_seconds_per_step": round(step_s, 4),
        "probe_set_up_s": round(set_up_s, 1),
        "command": f"bench/hf_recipe.py RecipeSettings({settings})",
    }


def linear_point(folder: Path, system: str) -> dict:
    from accuracy import run_system
    from mlbert.data import label_vocabulary, read_dataset

    started = time.perf_counter()
    splits = {name: read_dataset(folder / f"{name}.jsonl") for name in ("train", "dev", "test")}
    vocab = label_vocabulary(splits["train"].labels)
    result = run_system(system, folder, splits, vocab, argparse.Namespace())
    wall = time.perf_counter() - started
    return {
        "system": system,
        "budget_s": None,
        "wall_s": round(wall, 1),
        "micro_f1": result["test"][result["headline"]]["micro_f1"],
        "macro_f1": result["test"][result["headline"]]["macro_f1"],
        "headline": result["headline"],
        "command": f"bench/accuracy.py run_system({system!r})",
    }


def train_share_folder(folder: Path, share: float) -> Path:
    """A seeded `share` of the training split (dev and test whole) under runs/data/, e.g. goemotions10."""
    out = WORK_DIR / "data" / f"{folder.name}{round(share * 100)}"
    if not (out / "train.jsonl").is_file():
        out.mkdir(parents=True, exist_ok=True)
        rows = (folder / "train.jsonl").read_text(encoding="utf-8").splitlines()
        random.Random(0).shuffle(rows)
        (out / "train.jsonl").write_text("\n".join(rows[: int(len(rows) * share)]) + "\n", encoding="utf-8")
        for name in ("dev.jsonl", "test.jsonl", "labels.txt"):
            shutil.copyfile(folder / name, out / name)
    return out


def _key(record: dict) -> tuple:
    """What one point is: a later run of it replaces the stored one."""
    return record["dataset"], record["system"], record["budget_s"], record["machine"]


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The comparison only: variant rows (extra flags) and the estimate checks stay in the JSON.
    records = [
        r for r in records if r["system"] in PLOTTED and r["wall_s"] and r["dataset"] in ("goemotions", "reuters")
    ]
    datasets = sorted({r["dataset"] for r in records})
    # Points come from one machine where possible; one measured elsewhere is drawn apart (a triangle) and named.
    machines = [r["machine"] for r in records]
    main_machine = max(set(machines), key=machines.count)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.6 * len(datasets)), squeeze=False)
    for row, dataset in zip(axes, datasets):
        mine = [r for r in records if r["dataset"] == dataset]
        for ax, metric in zip(row, ("micro_f1", "macro_f1")):
            for system, host in sorted({(r["system"], r["machine"]) for r in mine}):
                points = sorted(
                    (r["wall_s"] / 60, r[metric]) for r in mine if (r["system"], r["machine"]) == (system, host)
                )
                style = ("o-" if len(points) > 1 else "s") if host == main_machine else "^"
                label = system if host == main_machine else f"{system} ({host.rpartition(', ')[2]})"
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label, color=PLOTTED[system])
            ax.set_xscale("log")
            ax.set_xlabel("whole-run wall time (minutes, log scale)")
            ax.set_ylabel(f"test {metric.replace('_', '-')}")
            ax.set_title(dataset)
            ax.grid(True, alpha=0.3)
    # One legend for all panels, below them: inside a panel it covered the points.
    labelled = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(labelled.values(), labelled.keys(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"Time to accuracy ({main_machine}; triangles: measured on the machine named)", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="folder name under --data-root (reuters, goemotions)")
    parser.add_argument("--data-root", default=str(SHARED_DATA))
    parser.add_argument("--systems", default="mlbert", help="comma-separated: mlbert, hf-trainer, tfidf-linearsvc, ...")
    parser.add_argument(
        "--budgets",
        default="5,10,20,45",
        help="minutes, comma-separated (mlbert, hf-trainer); 'none': an mlbert run without a budget, whose "
        "record compares the run's own estimate of its wall time (budget.estimate_s) with the real one",
    )
    parser.add_argument("--mlbert-flags", default="", help="extra flags for a variant mlbert row, e.g. '--head mlp'")
    parser.add_argument(
        "--hf-max-length", type=int, default=256, help="hf-trainer: tokens kept per text (e.g. 512 on reuters_long)"
    )
    parser.add_argument(
        "--train-share", type=float, default=1.0, help="train on a seeded share of the training split (e.g. 0.1)"
    )
    parser.add_argument("--plot", action="store_true", help="only redraw the PNG from the stored records")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "bench/time_to_accuracy.py", *(argv if argv is not None else sys.argv[1:])])
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    if not args.plot:
        if not args.dataset:
            parser.error("--dataset is needed unless --plot")
        folder = Path(args.data_root) / args.dataset
        if not folder.is_dir():
            print(f"time_to_accuracy.py: {folder} not found; benchmarks need ../shared/data", file=sys.stderr)
            return 2
        if args.train_share < 1:
            folder = train_share_folder(folder, args.train_share)
        for system in [s for s in args.systems.split(",") if s]:
            budgets = (
                [None if b == "none" else float(b) for b in args.budgets.split(",")]
                if system in ("mlbert", "hf-trainer")
                else [None]
            )
            for budget in budgets:
                if budget is None and system == "hf-trainer":
                    parser.error("hf-trainer needs a budget")
                if system == "mlbert":
                    point = mlbert_point(folder, budget, shlex.split(args.mlbert_flags))
                elif system == "hf-trainer":
                    point = hf_point(folder, budget, args.hf_max_length)
                else:
                    point = linear_point(folder, system)
                record = {
                    "dataset": folder.name,
                    **point,
                    "machine": machine(),
                    "date": datetime.date.today().isoformat(),
                    "bench_command": command,
                }
                records = [r for r in records if _key(r) != _key(record)] + [record]
                RESULTS.write_text(json.dumps(records, indent=2) + "\n")  # after every point: a cut run keeps it
                print(json.dumps({k: record[k] for k in ("dataset", "system", "budget_s", "wall_s", "micro_f1",
                                                         "macro_f1")}), flush=True)  # fmt: skip
    if records:
        plot(records, PLOT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
