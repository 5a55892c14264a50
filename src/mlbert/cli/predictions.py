"""Predictions out of `mlbert predict`, in the format the output's name asks for: JSON lines, CSV, TSV or
Parquet, to a file (written atomically) or to standard output (`-`)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..fileio import atomic_open

FORMATS = ("jsonl", "csv", "tsv", "parquet")
BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


def output_format(output: str, given: str | None) -> str:
    """The format to write: `given` (--format), else the output's extension; JSON lines on stdout."""
    if given is not None:
        if given not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {given!r}")
        fmt = given
    elif output == "-":
        fmt = "jsonl"
    else:
        suffix = Path(output).suffix.lower()
        if suffix not in BY_SUFFIX:
            raise ConfigError(
                f"--output {output}: cannot tell the format from {suffix or 'no extension'!r}; name it .jsonl, "
                ".csv, .tsv or .parquet, or pass --format"
            )
        fmt = BY_SUFFIX[suffix]
    if fmt == "parquet" and output == "-":
        raise ConfigError("Parquet cannot go to standard output; give --output FILE.parquet")
    return fmt


def write_predictions(
    output: str,
    fmt: str,
    ids: Sequence[str],
    chosen: Sequence[Sequence[str]],
    probs: np.ndarray,
    labels: Sequence[str],
    texts: Sequence[str] | None = None,
    label_sep: str = "|",
    explanations: Sequence[dict] | None = None,
) -> None:
    """One row per text: id, (text), the chosen labels (highest score first), a score per label.

    JSON lines keep {"id", "labels", "scores": {label: score}}, and with `explanations` (JSON lines only)
    "explanations": {label: [{"text", "start", "end", "attribution"}, ...]}; the tables have columns id, (text),
    labels (joined by `label_sep`; a list column in Parquet) and one `score:LABEL` column per label."""
    if explanations is not None and fmt != "jsonl":
        raise ConfigError(f"explanations are written as JSON lines only, not {fmt}")
    scores = np.round(probs.astype(np.float64), 6)
    if fmt == "parquet":
        _write_parquet(output, ids, chosen, scores, labels, texts)
        return
    buffer = io.StringIO()
    if fmt == "jsonl":
        for i, row_id in enumerate(ids):
            row = {"id": row_id, **({"text": texts[i]} if texts is not None else {}), "labels": list(chosen[i]),
                   "scores": dict(zip(labels, scores[i].tolist()))}  # fmt: skip
            if explanations is not None:
                row["explanations"] = {name: [w.to_dict() for w in words] for name, words in explanations[i].items()}
            buffer.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        writer = csv.writer(buffer, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
        writer.writerow(
            ["id", *(["text"] if texts is not None else []), "labels", *(f"score:{name}" for name in labels)]
        )
        for i, row_id in enumerate(ids):
            text = [texts[i]] if texts is not None else []
            writer.writerow([row_id, *text, label_sep.join(chosen[i]), *scores[i].tolist()])
    if output == "-":
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return
    with atomic_open(output, "w") as f:
        f.write(buffer.getvalue())


def _write_parquet(output, ids, chosen, scores, labels, texts) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"id": pa.array(list(ids), pa.string())}
    if texts is not None:
        columns["text"] = pa.array(list(texts), pa.string())
    columns["labels"] = pa.array([list(c) for c in chosen], pa.list_(pa.string()))
    for j, name in enumerate(labels):
        columns[f"score:{name}"] = pa.array(scores[:, j], pa.float64())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    with atomic_open(output, "wb") as f:
        f.write(sink.getvalue().to_pybytes())
