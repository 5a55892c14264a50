import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlbert.data import binarize, describe_unseen, label_vocabulary, read_dataset
from mlbert.errors import DataError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_reads_texts_labels_and_ids_and_allows_empty_label_lists(tmp_path):
    p = write(
        tmp_path / "d.jsonl", '{"id": "a", "text": "one", "labels": ["x", "y"]}\n\n{"text": "two", "labels": []}\n'
    )
    d = read_dataset(p)
    assert d.texts == ["one", "two"] and d.labels == [["x", "y"], []] and d.ids == ["a", "1"]


def test_duplicate_labels_on_one_example_count_once(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "t", "labels": ["x", "x", "y"]}\n')
    assert read_dataset(p).labels == [["x", "y"]]


def test_custom_fields_and_label_separator_in_jsonl(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"body": "t", "tags": "a|b"}\n')
    d = read_dataset(p, text_field="body", label_field="tags", label_sep="|")
    assert d.labels == [["a", "b"]]


def test_csv_with_separator_and_tsv_with_json_lists(tmp_path):
    csv_path = write(tmp_path / "d.csv", 'text,labels\n"hello, world",a;b\nbye,\n')
    d = read_dataset(csv_path, label_sep=";")
    assert d.texts == ["hello, world", "bye"] and d.labels == [["a", "b"], []]
    tsv_path = write(tmp_path / "d.tsv", 'text\tlabels\nhello\t["a", "b"]\n')
    assert read_dataset(tsv_path).labels == [["a", "b"]]


def test_csv_label_string_without_separator_asks_for_label_sep(tmp_path):
    p = write(tmp_path / "d.csv", "text,labels\nhello,a|b\n")
    with pytest.raises(DataError, match=r"d\.csv:2: .*--label-sep"):
        read_dataset(p)


def test_parquet_with_list_column(tmp_path):
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a b", "c"], "labels": [["x"], []]}), p)
    d = read_dataset(p)
    assert d.texts == ["a b", "c"] and d.labels == [["x"], []]


def test_txt_is_accepted_for_unlabelled_input_only(tmp_path):
    p = write(tmp_path / "d.txt", "first text\n\nsecond text\n")
    d = read_dataset(p, require_labels=False)
    assert d.texts == ["first text", "second text"] and d.labels is None
    with pytest.raises(DataError, match="unknown file type"):
        read_dataset(p)


@pytest.mark.parametrize(
    "content, pattern",
    [
        ('{"text": "a", "labels": ["x"]}\n{"text": "b", "labels": ["x"]\n', r"d\.jsonl:2: not valid JSON"),
        ('{"text": "a", "labels": ["x"]}\n{"labels": ["x"]}\n', r"d\.jsonl:2: no 'text' field .*--text-field"),
        ('{"text": "a"}\n', r"d\.jsonl:1: no 'labels' field"),
        ('{"text": "a", "labels": "x"}\n', r"d\.jsonl:1: 'labels' is the string 'x'.*--label-sep"),
        ('{"text": "a", "labels": [1.5]}\n', r"d\.jsonl:1: 'labels' holds float"),
        ('{"text": "a", "labels": {"x": 1}}\n', r"d\.jsonl:1: 'labels' is dict"),
        ('{"text": "   ", "labels": []}\n', r"d\.jsonl:1: 'text' is empty"),
        ('{"text": 3, "labels": []}\n', r"d\.jsonl:1: 'text' is int"),
        ('["a", "b"]\n', r"d\.jsonl:1: a JSON list, not an object"),
        ("\n\n", r"d\.jsonl: no examples"),
    ],
)
def test_bad_input_names_file_line_and_problem(tmp_path, content, pattern):
    p = write(tmp_path / "d.jsonl", content)
    with pytest.raises(DataError, match=pattern):
        read_dataset(p)


def test_missing_file_and_folder_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_dataset(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="is a folder"):
        read_dataset(tmp_path)


def test_non_utf8_file_is_reported_with_its_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"text": "ok", "labels": []}\n{"text": "\xff\xfe", "labels": []}\n')
    with pytest.raises(DataError, match="UTF-8"):
        read_dataset(p)


def test_vocabulary_is_sorted_and_binarize_reports_unseen_labels():
    vocab = label_vocabulary([["b", "a"], [], ["c"]])
    assert vocab == ["a", "b", "c"]
    y, unseen = binarize([["a"], ["c", "zzz"], []], vocab)
    np.testing.assert_array_equal(y, [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    assert unseen == {"zzz": 1}
    assert "zzz (1)" in describe_unseen(unseen, "test")


def test_reads_a_real_shared_split_when_present():
    from helpers import SHARED_DATA

    path = SHARED_DATA / "reuters" / "dev.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent (benchmark data lives in ../shared/data)")
    d = read_dataset(path)
    assert len(d) == sum(1 for line in path.open() if line.strip())
    assert all(isinstance(x, str) for labels in d.labels for x in labels)
    json.loads(path.open().readline())


def test_split_dev_holds_out_the_share_and_keeps_every_label_in_train():
    from mlbert.data import split_dev

    labels = [["common"]] * 80 + [["rare"]] + [["common", "pair"]] * 2 + [[]] * 17
    train, dev = split_dev(labels, 0.1, seed=1)
    assert len(dev) == 10 and len(train) == 90 and not set(train) & set(dev)
    kept = {label for i in train for label in labels[i]}
    assert kept == {"common", "rare", "pair"}  # the single "rare" text and one "pair" text stay in train
    assert (split_dev(labels, 0.1, seed=1)[1] == dev).all()  # seeded
    with pytest.raises(DataError, match="give a dev file"):
        split_dev(labels[:3], 0.1, seed=1)
