"""What chunked reading costs at prediction (issue 18): documents/s and peak RSS of a chunk-trained model
reading long documents in windows, the same windows scored as independent texts, and the same model
truncating at max_length; each in a fresh process, one after the other, on the same documents.

    python bench/long_text.py --model runs/tta-reuters_long-10m-long-text-chunk --n 400

Target: chunked reading at ≥ 0.9x the throughput of its own windows as texts (the combination after the head
is the only extra work). Writes bench/results/long_text.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from common import RESULTS_DIR, SHARED_DATA, machine, peak_rss_mb, run_child

RESULTS = RESULTS_DIR / "long_text.json"
READINGS = ("chunk", "windows-as-texts", "truncate")


def child(spec: dict) -> dict:
    """One reading in this fresh process -> documents/s, windows, peak RSS."""
    from mlbert import MultiLabelClassifier
    from mlbert.batching import Chunking, encode
    from mlbert.predict import predict_proba

    rows = [json.loads(line) for line in Path(spec["data"]).read_text(encoding="utf-8").splitlines()][: spec["n"]]
    texts = [r["text"] for r in rows]
    clf = MultiLabelClassifier.load(spec["model"])
    c = clf.config
    if spec["reading"] == "truncate":
        clf.config = c.replace(long_text="truncate")

    chunking = Chunking(c.chunk_stride, c.max_chunks)

    def read() -> None:
        """One pass over the documents in this process's reading."""
        if spec["reading"] != "windows-as-texts":
            clf.predict_proba(texts)
            return
        # the same windows chunked reading makes, scored as texts of their own, nothing combined
        encoded = encode(clf.tokenizer_, texts, c.max_length, chunking=chunking)
        predict_proba(clf.model_, encoded.window_texts(), c.eval_batch_size)

    read()  # a first pass pays one-off costs (kernel set-up for each batch shape); the second is timed
    started = time.perf_counter()
    read()
    seconds = time.perf_counter() - started
    windows = len(texts) if spec["reading"] == "truncate" else len(encode(clf.tokenizer_, texts, c.max_length,
                                                                            chunking=chunking).input_ids)  # fmt: skip
    return {"seconds": round(seconds, 2), "docs_per_s": round(len(texts) / seconds, 2), "windows": windows,
            "peak_rss_mb": round(peak_rss_mb(), 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a model folder trained with --long-text chunk")
    parser.add_argument("--data", default=str(SHARED_DATA / "reuters_long" / "test.jsonl"))
    parser.add_argument("--n", type=int, default=400, help="documents to read")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not args.model or not Path(args.data).is_file():
        print("long_text.py: needs --model and the reuters_long data (../shared/data)", file=sys.stderr)
        return 2
    records = [run_child(__file__, {"reading": r, "model": args.model, "data": args.data, "n": args.n})
               for r in READINGS]  # fmt: skip
    by = {r["reading"]: r for r in records}
    out = {
        "records": records,
        "chunk_vs_windows_as_texts": round(by["chunk"]["docs_per_s"] / by["windows-as-texts"]["docs_per_s"], 3),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "command": "python bench/long_text.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
