"""Label texts (label_text.py): names made into words, description files and their mistakes, label lists, and
the CLI's handling of a bad file (exit 2, one line, nothing written)."""

from __future__ import annotations

import json

import pytest

from mlbert.errors import DataError
from mlbert.label_text import (
    flat_texts,
    label_texts,
    label_words,
    read_label_descriptions,
    read_label_list,
    unknown_labels,
)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("crude-oil", "crude oil"),
        ("money_fx", "money fx"),
        ("moneyFx", "money fx"),
        ("HTTPError", "http error"),
        ("us.dollar/yen", "us dollar yen"),
        ("admiration", "admiration"),
        ("---", "---"),  # nothing but separators: the name as it is, never an empty text
    ],
)
def test_a_label_name_becomes_words(name, words):
    assert label_words(name) == words


def test_descriptions_win_and_names_fill_in():
    texts = label_texts(["crude-oil", "gold"], {"gold": "gold mining and prices"})
    assert texts == ["crude oil", "gold mining and prices"]
    assert unknown_labels(["gold"], {"gold": "x", "silvr": "y"}) == ["silvr"]


def test_descriptions_from_json_csv_and_tsv(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"joy": " feeling happy ", "anger": "feeling mad"}), encoding="utf-8")
    assert read_label_descriptions(tmp_path / "d.json") == {"joy": "feeling happy", "anger": "feeling mad"}
    (tmp_path / "d.csv").write_text('label,description\njoy,"happy, glad"\n\nanger,mad\n', encoding="utf-8")
    assert read_label_descriptions(tmp_path / "d.csv") == {"joy": "happy, glad", "anger": "mad"}
    (tmp_path / "d.tsv").write_text("joy\thappy\n", encoding="utf-8")  # no header
    assert read_label_descriptions(tmp_path / "d.tsv") == {"joy": "happy"}


def test_a_label_may_have_several_texts(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"joy": [" so happy", "great day "], "anger": "mad"}), encoding="utf-8")
    descriptions = read_label_descriptions(tmp_path / "d.json")
    assert descriptions == {"joy": ["so happy", "great day"], "anger": "mad"}
    texts = label_texts(["anger", "crude-oil", "joy"], descriptions)
    assert texts == ["mad", "crude oil", ["so happy", "great day"]]
    flat, owners = flat_texts(texts)
    assert flat == ["mad", "crude oil", "so happy", "great day"] and owners.tolist() == [0, 1, 2, 2]
    for bad in ([], ["happy", 3], "  "):  # from the Python API, unchecked by a file reader
        with pytest.raises(DataError, match="the description of 'joy' is"):
            label_texts(["joy"], {"joy": bad})


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.txt", "joy happy", r"d\.txt: label descriptions are read from \.json"),
        ("d.json", "[1, 2]", r"d\.json: a JSON list, not an object"),
        ("d.json", '{"joy": 3}', r"the description of 'joy' is 3, not a non-empty text or a non-empty list"),
        ("d.json", '{"joy": []}', r"the description of 'joy' is \[\], not a non-empty text"),
        ("d.json", '{"joy": ["happy", " "]}', r"the description of 'joy' is \[\"happy\", \" \"\]"),
        ("d.json", '{"joy": "happy",\n', r"d\.json:2: not valid JSON"),
        ("d.csv", "joy,happy\nanger,mad,furious\n", r"d\.csv:2: 3 cells; each row is two"),
        ("d.csv", "joy,happy\nanger,\n", r"d\.csv:2: an empty description"),
        ("d.csv", "joy,happy\n\njoy,glad\n", r"d\.csv:3: 'joy' is described twice"),
        ("d.csv", b"joy,caf\xe9\n", r"d\.csv:1: not UTF-8"),
    ],
)
def test_a_bad_descriptions_file_says_where_and_what(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError, match=message):
        read_label_descriptions(path)


def test_a_missing_descriptions_file(tmp_path):
    with pytest.raises(DataError, match="no such label-descriptions file"):
        read_label_descriptions(tmp_path / "absent.json")


def test_label_lists(tmp_path):
    (tmp_path / "labels.txt").write_text("joy\n\nanger \n", encoding="utf-8")
    assert read_label_list(tmp_path / "labels.txt") == ["joy", "anger"]
    (tmp_path / "twice.txt").write_text("joy\nanger\njoy\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"twice\.txt:3: 'joy' is listed twice"):
        read_label_list(tmp_path / "twice.txt")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no labels"):
        read_label_list(tmp_path / "empty.txt")


def test_train_refuses_a_bad_descriptions_file_before_writing(tmp_path, demo_files, capsys):
    from mlbert.cli import main

    (tmp_path / "d.csv").write_text("joy,happy,glad\n", encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", "--train", str(demo_files["train"]), "--dev", str(demo_files["dev"]), "--out", str(out)]
    assert main([*argv, "--label-descriptions", str(tmp_path / "d.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "d.csv:1: 3 cells" in err[0]
    assert not out.exists()
