"""BENCHMARKS.md's generated tables say exactly what bench/results/accuracy.json and ablation.json hold."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench_module(name: str):
    # As when a script runs as `python bench/NAME.py`: bench/ on the path for `from common import ...`.
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_match_the_results_file():
    accuracy = _bench_module("accuracy")
    records = json.loads((ROOT / "bench" / "results" / "accuracy.json").read_text())
    doc = (ROOT / "BENCHMARKS.md").read_text()
    for dataset in sorted({r["dataset"] for r in records}):
        begin, end = f"<!-- accuracy:{dataset}:begin -->", f"<!-- accuracy:{dataset}:end -->"
        assert begin in doc and end in doc, f"BENCHMARKS.md has no generated block for {dataset}"
        block = doc.split(begin, 1)[1].split(end, 1)[0].strip("\n")
        assert block == accuracy.section(dataset, records), (
            f"BENCHMARKS.md's {dataset} table differs from bench/results/accuracy.json; regenerate it with "
            f"python bench/accuracy.py --dataset {dataset} --systems '' --write-benchmarks"
        )


def test_every_record_names_the_command_that_made_it():
    for r in json.loads((ROOT / "bench" / "results" / "accuracy.json").read_text()):
        assert r["command"] and r["command"] != "(not recorded)", r["system"]


def test_ablation_table_matches_the_results_file():
    ablation = _bench_module("ablation")
    records = json.loads((ROOT / "bench" / "results" / "ablation.json").read_text())["records"]
    doc = (ROOT / "BENCHMARKS.md").read_text()
    begin, end = "<!-- ablation:begin -->", "<!-- ablation:end -->"
    assert begin in doc and end in doc, "BENCHMARKS.md has no generated ablation block"
    assert doc.split(begin, 1)[1].split(end, 1)[0].strip("\n") == ablation.summary(records), (
        "BENCHMARKS.md's ablation table differs from bench/results/ablation.json; regenerate it with "
        "python bench/ablation.py --summary --write-benchmarks"
    )
    assert all(r["command"].startswith("mlbert train ") and r.get("device") for r in records)
