"""Read and validate data files into texts and label lists; map label lists to 0/1 matrices.

Formats by extension: .jsonl/.ndjson (one JSON object a line), .csv, .tsv, .parquet, and for
prediction only .txt (one text a line). Every error names the file, the line and the fix.
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUFFIXES = (*JSONL_SUFFIXES, ".csv", ".tsv", ".parquet")


@dataclass
class Dataset:
    """Texts with their label lists (`labels` is None for unlabelled data), in file order."""

    texts: list[str]
    labels: list[list[str]] | None
    ids: list[str]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.texts)


def read_dataset(
    path: str | Path,
    text_field: str = "text",
    label_field: str = "labels",
    label_sep: str | None = None,
    require_labels: bool = True,
) -> Dataset:
    """Read one split. With `require_labels=False` labels are read when present, else left None."""
    texts: list[str] = []
    labels: list[list[str]] = []
    ids: list[str] = []
    has_labels = False
    for example in iter_examples(path, text_field, label_field, label_sep, require_labels):
        texts.append(example.text)
        ids.append(example.id if example.id is not None else str(len(ids)))
        if example.labels is not None:
            has_labels = True
            labels.append(example.labels)
    return Dataset(texts=texts, labels=labels if has_labels else None, ids=ids, source=str(path))


@dataclass
class Example:
    where: str  # "file:line", for error messages
    id: str | None
    text: str
    labels: list[str] | None


def iter_examples(
    path: str | Path,
    text_field: str = "text",
    label_field: str = "labels",
    label_sep: str | None = None,
    require_labels: bool = True,
) -> Iterator[Example]:
    """Validated examples one at a time, in file order: a file larger than memory can stream through."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass a data file ({', '.join(SUFFIXES)})")
    suffix = path.suffix.lower()
    if suffix == ".txt" and not require_labels:
        rows: Iterable[tuple[str, dict[str, Any]]] = _txt_rows(path, text_field)
    elif suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path)
    elif suffix in (".csv", ".tsv"):
        rows = _csv_rows(path, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        rows = _parquet_rows(path)
    else:
        allowed = SUFFIXES + (() if require_labels else (".txt",))
        raise DataError(f"{path}: unknown file type {suffix or '(none)'!r}; use one of {', '.join(allowed)}")

    has_labels: bool | None = None
    n = 0
    for where, row in rows:
        if text_field not in row:
            raise DataError(
                f"{where}: no {text_field!r} field (fields: {', '.join(map(str, row)) or 'none'}); "
                "pass --text-field NAME to read another one"
            )
        text = row[text_field]
        if not isinstance(text, str):
            raise DataError(f"{where}: {text_field!r} is {type(text).__name__} {text!r:.60}; expected a string")
        check_text(text, where, repr(text_field))
        row_has_labels = label_field in row
        if require_labels and not row_has_labels:
            raise DataError(
                f"{where}: no {label_field!r} field (fields: {', '.join(map(str, row))}); "
                "pass --label-field NAME to read another one"
            )
        if has_labels is None:
            has_labels = row_has_labels
        elif has_labels != row_has_labels:
            raise DataError(
                f"{where}: {'has' if row_has_labels else 'lacks'} a {label_field!r} field while "
                "earlier lines do not; give every line labels (an empty list is fine) or none"
            )
        labels = _parse_labels(row[label_field], where, label_field, label_sep, suffix) if row_has_labels else None
        row_id = row.get("id")
        n += 1
        yield Example(
            where=where, id=str(row_id) if row_id is not None and str(row_id) != "" else None, text=text, labels=labels
        )
    if n == 0:
        raise DataError(f"{path}: no examples; the file is empty (each line or row should hold one example)")


def _parse_labels(value: Any, where: str, field: str, sep: str | None, suffix: str) -> list[str]:
    if isinstance(value, str) and suffix in (".csv", ".tsv", ".parquet"):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise DataError(
                    f"{where}: {field!r} is {stripped!r:.60}, which starts like a JSON list but is "
                    'not valid JSON; write it as ["a", "b"] or as a|b with --label-sep \'|\''
                ) from None
        elif sep is not None:
            value = [] if not stripped else stripped.split(sep)
        elif not stripped:
            value = []
        else:
            raise DataError(
                f"{where}: {field!r} is the string {stripped!r:.60}; pass --label-sep (e.g. '|' "
                "for 'a|b', or one that never occurs for one label a row) or write a JSON list"
            )
    elif isinstance(value, str) and sep is not None:
        value = [] if not value.strip() else value.split(sep)
    if value is None:
        raise DataError(f"{where}: {field!r} is null; expected a list of labels (an empty list for none)")
    if isinstance(value, str):
        raise DataError(
            f"{where}: {field!r} is the string {value!r:.60}; expected a list of strings. "
            "If labels are one string like 'a|b', pass --label-sep '|'"
        )
    if hasattr(value, "tolist"):  # numpy / pyarrow arrays from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: {field!r} is {type(value).__name__} {value!r:.60}; expected a list of strings")
    out: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise DataError(
                f"{where}: {field!r} holds {type(item).__name__} {item!r:.40}; each label must be a "
                "string (or an integer id)"
            )
        name = str(item).strip()
        if not name:
            raise DataError(f"{where}: {field!r} holds an empty label name; remove it")
        if name not in out:  # a label listed twice is still one label
            out.append(name)
    return out


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno}); "
                'each line must be one JSON object like {"text": ..., "labels": [...]}'
            ) from None
        except RecursionError:
            raise DataError(
                f"{path}:{lineno}: JSON nested too deeply; each line must be one flat JSON object"
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{path}:{lineno}: a JSON {type(row).__name__}, not an object; "
                'each line must be one JSON object like {"text": ..., "labels": [...]}'
            )
        yield f"{path}:{lineno}", row


def _csv_rows(path: Path, delimiter: str) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    # Lines keep their endings, as csv wants (a quoted cell may hold a line break).
    reader = csv.reader((line for _, line in text_lines(path)), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return
        start = reader.line_num
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                start = reader.line_num
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{start + 1}: {len(row)} cells where the header has {len(header)}; "
                    "quote cells that contain the delimiter or line breaks"
                )
            yield f"{path}:{start + 1}", dict(zip(header, row))
            start = reader.line_num
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: cannot parse the row ({e}); check its quoting") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=8192)  # row groups stream; the file may not fit in RAM
        i = 0
        for batch in batches:
            for row in batch.to_pylist():
                i += 1
                yield f"{path}: row {i}", row
    except (OSError, pa.ArrowException) as e:  # a file that is not parquet, or a damaged one
        raise DataError(f"{path}: cannot read as Parquet ({e})") from None


def _txt_rows(path: Path, text_field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in text_lines(path):
        if line.strip():
            yield f"{path}:{lineno}", {text_field: line.rstrip("\r\n")}


BOM = b"\xef\xbb\xbf"


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line with its ending) of a UTF-8 file, decoded line by line so that a bad byte is
    reported on its own line (a text-mode file decodes whole buffers, ahead of the line count). A leading
    byte-order mark, which spreadsheet exports write, is dropped."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start + 1} of the line); "
                    "save the file as UTF-8"
                ) from None


def lone_surrogate(text: str) -> int | None:
    """Where `text` holds a lone surrogate (a JSON escape like \\ud800 decodes to one; no tokenizer takes it),
    else None. The one test of it: files, the Python API and the server's requests all ask this."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def check_text(text: str, where: str, what: str) -> None:
    """A text a tokenizer can take: not blank, and no lone surrogate."""
    if not text.strip():
        raise DataError(f"{where}: {what} is empty; remove the line or give it text")
    at = lone_surrogate(text)
    if at is not None:
        raise DataError(
            f"{where}: {what} holds a lone surrogate ({text[at]!a} at character {at + 1}), which is "
            "not text; fix the escape or remove it"
        )


def label_vocabulary(label_lists: Iterable[Sequence[str]]) -> list[str]:
    """The sorted set of labels seen in training; its order is the column order everywhere."""
    return sorted({label for labels in label_lists for label in labels})


def binarize(label_lists: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> tuple[np.ndarray, Counter]:
    """Label lists -> (n_texts, n_labels) 0/1 matrix, and a Counter of labels not in the vocabulary.

    Unknown labels cannot be scored (the model has no output for them), so they are left out of
    the matrix and returned for the caller to report.
    """
    index = {label: j for j, label in enumerate(vocabulary)}
    y = np.zeros((len(label_lists), len(vocabulary)), dtype=np.float32)
    unseen: Counter = Counter()
    for i, labels in enumerate(label_lists):
        for label in labels:
            j = index.get(label)
            if j is None:
                unseen[label] += 1
            else:
                y[i, j] = 1.0
    return y, unseen


def describe_unseen(unseen: Counter, source: str, limit: int = 10) -> str:
    names = ", ".join(f"{name} ({n})" for name, n in unseen.most_common(limit))
    more = f" and {len(unseen) - limit} more" if len(unseen) > limit else ""
    return (
        f"{source}: {len(unseen)} label(s) never seen in training, on {sum(unseen.values())} example-label "
        f"pair(s), are left out of the metrics: {names}{more}"
    )


def split_dev(label_lists: Sequence[Sequence[str]], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, dev rows): about `share` of the rows held out as dev, in a seeded order. A row goes to dev
    only if each of its labels keeps at least one row in train, so no label drops out of the vocabulary
    (as the Reuters dev split was made)."""
    n = len(label_lists)
    target = round(share * n)
    if target < 1 or target >= n:
        raise DataError(f"cannot hold out {share:g} of {n} training examples as dev; give a dev file instead")
    left = Counter(label for labels in label_lists for label in labels)
    dev: list[int] = []
    for i in np.random.default_rng(seed).permutation(n):
        if len(dev) >= target:
            break
        if all(left[label] > 1 for label in label_lists[i]):
            for label in label_lists[i]:
                left[label] -= 1
            dev.append(int(i))
    held = np.zeros(n, dtype=bool)
    held[dev] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
