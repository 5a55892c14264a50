from collections import Counter

from mlbert.demo_data import LABELS, make_dataset


def test_demo_dataset_is_big_multi_label_long_tailed_and_deterministic():
    splits = make_dataset(2400)
    rows = [r for split in splits.values() for r in split]
    assert len(rows) == 2400 and len(LABELS) >= 8
    counts = Counter(label for r in rows for label in r["labels"])
    assert set(counts) == set(LABELS)
    assert min(counts.values()) < 0.1 * max(counts.values())  # rare labels exist
    assert sum(len(r["labels"]) > 1 for r in rows) > 0.15 * len(rows)  # real co-occurrence
    assert any(not r["labels"] for r in rows)  # texts with no label at all
    pairs = Counter(tuple(r["labels"]) for r in rows if len(r["labels"]) == 2)
    assert pairs[("billing", "refund")] > pairs.get(("praise", "shipping"), 0)
    assert make_dataset(2400) == splits
    assert len({r["id"] for r in rows}) == 2400
