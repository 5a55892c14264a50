"""Label texts: what each label means in words, for heads that start from it (label_init.py) and for
zero-shot classifiers.

A label's text is its description when one is given (`--label-descriptions F`), else its name made into
words: `-`, `_`, `/`, `.` and camelCase become spaces ("crude-oil" -> "crude oil", "moneyFx" -> "money fx"),
since an encoder knows "crude oil" better than the token soup of "crude-oil". A description may be several
texts (a JSON list): the label then reads as their mean, so a few short phrases, each encoded alone, describe
it better than one long line of them (BENCHMARKS.md, zero-shot).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .data import text_lines
from .errors import DataError

DESCRIPTION_SUFFIXES = (".json", ".csv", ".tsv")
_SEPARATORS = re.compile(r"[-_/.\s]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

LabelText = str | list[str]  # one text, or several that the label reads as their mean


def label_words(name: str) -> str:
    """A label name as words: "crude-oil" -> "crude oil", "moneyFx" -> "money fx", "HTTPError" -> "http error"."""
    words = " ".join(_CAMEL.sub(" ", part) for part in _SEPARATORS.split(name) if part)
    return words.lower() if words.strip() else name


def label_texts(labels: Sequence[str], descriptions: Mapping[str, LabelText] | None = None) -> list[LabelText]:
    """Each label's text, in the labels' order: its description, or its name as words."""
    descriptions = descriptions or {}
    _check_label_texts({label: descriptions[label] for label in labels if label in descriptions})
    return [descriptions.get(label) or label_words(label) for label in labels]


def flat_texts(texts: Sequence[LabelText]) -> tuple[list[str], np.ndarray]:
    """Label texts one per row, and for each row the index of the label it describes (what an encoder reads:
    a label with several texts has several rows)."""
    groups = [[text] if isinstance(text, str) else list(text) for text in texts]
    return [t for group in groups for t in group], np.repeat(np.arange(len(groups)), [len(g) for g in groups])


def _check_label_texts(descriptions: Mapping[str, object], where: str = "") -> None:
    """Refuse a description that is no label text, naming its label (and its file: `where`, "path: ")."""
    for label, value in descriptions.items():
        if not is_label_text(value):
            shown = json.dumps(value, default=repr)[:40]
            raise DataError(
                f"{where}the description of {label!r} is {shown}, not a non-empty text or a non-empty list of texts"
            )


def is_label_text(value: object) -> bool:
    """A non-empty text, or a non-empty list of them."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, list) and bool(value) and all(isinstance(t, str) and t.strip() for t in value)


def unknown_labels(labels: Sequence[str], descriptions: Mapping[str, str]) -> list[str]:
    """Labels described in the file that the data do not have (worth a warning: a typo, or a stale file)."""
    known = set(labels)
    return sorted(label for label in descriptions if label not in known)


def read_label_descriptions(path: str | Path) -> dict[str, LabelText]:
    """label -> description from a JSON object ({"label": "description", ...}, or a list of texts for a label:
    {"joy": ["so happy", "what a great day"]}) or a two-column CSV/TSV (label, description; a header row
    `label,description` is optional)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such label-descriptions file")
    suffix = path.suffix.lower()
    if suffix not in DESCRIPTION_SUFFIXES:
        raise DataError(
            f"{path}: label descriptions are read from .json (an object label -> description) or .csv/.tsv "
            f"(two columns: label, description), not {suffix or 'a file without extension'}"
        )
    if suffix == ".json":
        return _json_descriptions(path)
    return _table_descriptions(path, "\t" if suffix == ".tsv" else ",")


def _json_descriptions(path: Path) -> dict[str, LabelText]:
    text = "".join(line for _, line in text_lines(path))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, dict):
        raise DataError(f'{path}: a JSON {type(value).__name__}, not an object; write {{"label": "description"}}')
    _check_label_texts(value, where=f"{path}: ")
    return {
        label: description.strip() if isinstance(description, str) else [t.strip() for t in description]
        for label, description in value.items()
    }


def _table_descriptions(path: Path, delimiter: str) -> dict[str, str]:
    descriptions: dict[str, str] = {}
    reader = csv.reader((line for _, line in text_lines(path)), delimiter=delimiter)
    start = 0
    try:
        for row in reader:
            lineno, start = start + 1, reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise DataError(
                    f"{path}:{lineno}: {len(row)} cells; each row is two: label{delimiter}description "
                    "(quote a description that contains the delimiter)"
                )
            label, description = row[0].strip(), row[1].strip()
            if not descriptions and (label.lower(), description.lower()) == ("label", "description"):
                continue  # the optional header
            if not label or not description:
                raise DataError(f"{path}:{lineno}: an empty {'label' if not label else 'description'}")
            if label in descriptions:
                raise DataError(
                    f"{path}:{lineno}: {label!r} is described twice (several texts for one label: a JSON file, "
                    '{"label": ["text", "text"]})'
                )
            descriptions[label] = description
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: cannot parse the row ({e}); check its quoting") from None
    return descriptions


def read_label_list(path: str | Path) -> list[str]:
    """Label names, one a line (like the datasets' labels.txt): the labels of a zero-shot classifier."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such labels file")
    labels: list[str] = []
    seen: set[str] = set()
    for lineno, line in text_lines(path):
        label = line.strip()
        if not label:
            continue
        if label in seen:
            raise DataError(f"{path}:{lineno}: {label!r} is listed twice")
        seen.add(label)
        labels.append(label)
    if not labels:
        raise DataError(f"{path}: no labels; write one label a line")
    return labels
