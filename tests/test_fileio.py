import pytest

from mlbert.fileio import atomic_open, recover_dir, replace_dir


def test_atomic_open_leaves_the_old_file_and_no_temp_file_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_replace_dir_swaps_and_recover_finds_the_old_copy(tmp_path):
    final = tmp_path / "last"
    for n in (1, 2):
        tmp = tmp_path / f"tmp{n}"
        tmp.mkdir()
        (tmp / "v").write_text(str(n))
        replace_dir(tmp, final)
    assert (final / "v").read_text() == "2" and sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    final.rename(tmp_path / "last.old")  # as if we died between the two renames
    assert recover_dir(final) == tmp_path / "last.old"
