"""BENCHMARKS.md's generated accuracy tables say exactly what bench/results/accuracy.json holds."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _accuracy_module():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_match_the_results_file():
    accuracy = _accuracy_module()
    records = json.loads((ROOT / "bench" / "results" / "accuracy.json").read_text())
    doc = (ROOT / "BENCHMARKS.md").read_text()
    for dataset in sorted({r["dataset"] for r in records}):
        begin, end = f"<!-- accuracy:{dataset}:begin -->", f"<!-- accuracy:{dataset}:end -->"
        assert begin in doc and end in doc, f"BENCHMARKS.md has no generated block for {dataset}"
        block = doc.split(begin, 1)[1].split(end, 1)[0].strip("\n")
        assert block == accuracy.section(dataset, records), (
            f"BENCHMARKS.md's {dataset} table differs from bench/results/accuracy.json; regenerate it with "
            f"python bench/accuracy.py --dataset {dataset} --systems '' --write-benchmarks")


def test_every_record_names_the_command_that_made_it():
    for r in json.loads((ROOT / "bench" / "results" / "accuracy.json").read_text()):
        assert r["command"] and r["command"] != "(not recorded)", r["system"]
