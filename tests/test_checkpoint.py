"""The run-folder rule that `mlbert train` and `mlbert pretrain` share (--resume, --overwrite)."""

import pytest

from mlbert.checkpoint import prepare_run_dir, read_checkpoint, write_checkpoint
from mlbert.errors import ConfigError

MARKERS = ("checkpoints", "train_log.jsonl", "metrics.json")
FINISHED = ("metrics.json",)


def test_a_new_or_empty_folder_is_fine(tmp_path):
    prepare_run_dir(tmp_path / "new", resume=False, overwrite=False, markers=MARKERS, finished=FINISHED)
    prepare_run_dir(tmp_path, resume=False, overwrite=False, markers=MARKERS, finished=FINISHED)


def test_an_earlier_run_needs_resume_or_overwrite(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="--resume to continue it, --overwrite to replace it"):
        prepare_run_dir(tmp_path, resume=False, overwrite=False, markers=MARKERS, finished=FINISHED)
    prepare_run_dir(tmp_path, resume=False, overwrite=True, markers=MARKERS, finished=FINISHED)
    assert not (tmp_path / "metrics.json").exists() and (tmp_path / "mine.txt").is_file()


def test_whole_overwrite_empties_the_folder(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    prepare_run_dir(tmp_path, resume=False, overwrite=True, markers=MARKERS, finished=FINISHED, whole=True)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_of_other_files_is_never_touched(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="holds other files"):
            prepare_run_dir(tmp_path, resume=False, overwrite=overwrite, markers=MARKERS, finished=FINISHED)
    assert (tmp_path / "notes.txt").is_file()


def test_resume_needs_a_checkpoint_and_contradicts_overwrite(tmp_path):
    with pytest.raises(ConfigError, match="contradict"):
        prepare_run_dir(tmp_path, resume=True, overwrite=True, markers=MARKERS, finished=FINISHED)
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_run_dir(tmp_path / "nope", resume=True, overwrite=False, markers=MARKERS, finished=FINISHED)
    with pytest.raises(ConfigError, match="no checkpoint"):
        prepare_run_dir(tmp_path, resume=True, overwrite=False, markers=MARKERS, finished=FINISHED)
    import torch

    write_checkpoint(tmp_path / "checkpoints" / "last", {"w": torch.zeros(1)}, {"step": 1})
    prepare_run_dir(tmp_path, resume=True, overwrite=False, markers=MARKERS, finished=FINISHED)
    assert read_checkpoint(tmp_path / "checkpoints" / "last")[1] == {"step": 1}


def test_a_run_that_died_before_its_first_checkpoint_is_simply_replaced(tmp_path):
    (tmp_path / "train_log.jsonl").write_text("{}")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / ".tmpab12cd").write_text("left by a killed write")
    prepare_run_dir(tmp_path, resume=False, overwrite=False, markers=MARKERS, finished=FINISHED)
    assert list(tmp_path.iterdir()) == []


def test_abandon_leaves_the_folder_as_it_was_found(tmp_path):
    from mlbert.checkpoint import abandon_run_dir

    made = tmp_path / "made"
    made.mkdir()
    (made / "train_log.jsonl").write_text("{}")
    abandon_run_dir(made, MARKERS, existed=False)
    assert not made.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    (kept / "train_log.jsonl").write_text("{}")
    abandon_run_dir(kept, MARKERS, existed=True)
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
