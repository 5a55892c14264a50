"""Hostile inputs (issue 22): damaged model folders, broken encodings, unwritable outputs, crash leftovers.

Each case ends in exit code 2 with one line that names the file, and nothing half-written. The model
cases damage copies of the tiny trained folder; the I/O cases need no special machine except disk-full,
which mounts a small tmpfs where the machine allows it (root) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from helpers import tiny_settings, write_jsonl
from mlbert.cli import main
from mlbert.fileio import atomic_open


def run(args, capsys) -> tuple[int, list[str]]:
    code = main([*map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()


def one_line_error(code, err, *fragments):
    assert code == 2, (code, err)
    assert len(err) == 1 and err[0].startswith("mlbert: error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


@pytest.fixture()
def folder(tmp_path, trained_dir) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(trained_dir, copy)
    return copy


def predict(folder: Path, tmp_path: Path, capsys):
    (tmp_path / "in.txt").write_text("Hello WORLD\n")
    out = tmp_path / "out.jsonl"
    code, err = run(["predict", "--model", folder, "--input", tmp_path / "in.txt", "--output", out, "--quiet"], capsys)
    assert not out.exists()
    return code, err


# -- damaged model folders -------------------------------------------------------------------------------
def _manifest(folder: Path, change) -> None:
    path = folder / "mlbert.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(change(manifest)))


def _set(key, value):
    def change(m):
        m[key] = value
        return m

    return change


def _drop(key):
    def change(m):
        del m[key]
        return m

    return change


def _config(key, value):
    def change(m):
        m["config"][key] = value
        return m

    return change


MANIFEST_DAMAGE = {
    "no labels": (_drop("labels"), "'labels'"),
    "no thresholds": (_drop("thresholds"), "'thresholds'"),
    "no config": (_drop("config"), "'config'"),
    "a list, not an object": (lambda m: [m], "not an object"),
    "format_version a string": (_set("format_version", "2"), "format_version"),
    "string thresholds": (lambda m: {**m, "thresholds": {**m["thresholds"], "global": "0.5"}}, "thresholds"),
    "labels a string": (_set("labels", "joy"), "'labels'"),
    "max_length a word": (_config("max_length", "long"), "max_length"),
    "unknown head": (_config("head", "cnn"), "head"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_exit_2_naming_it(folder, tmp_path, capsys, case):
    change, fragment = MANIFEST_DAMAGE[case]
    _manifest(folder, change)
    code, err = predict(folder, tmp_path, capsys)
    one_line_error(code, err, "mlbert.json", fragment)


def test_a_manifest_that_is_not_json_is_exit_2(folder, tmp_path, capsys):
    (folder / "mlbert.json").write_text('{"labels": [')
    one_line_error(*predict(folder, tmp_path, capsys), "mlbert.json", "not valid JSON")


@pytest.mark.parametrize("name", ["tokenizer.json", "tokenizer_config.json", "config.json"])
def test_a_missing_file_is_named(folder, tmp_path, capsys, name):
    (folder / name).unlink()  # without the tokenizer files, "Hello WORLD" became all [UNK] and exit 0
    one_line_error(*predict(folder, tmp_path, capsys), name, "missing")


WEIGHT_DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "empty": lambda b: b"",
    "garbage header": lambda b: b"\xff" * 8 + b[8:],
}


@pytest.mark.parametrize("case", sorted(WEIGHT_DAMAGE))
def test_damaged_weights_are_exit_2(folder, tmp_path, capsys, case):
    path = folder / "model.safetensors"
    path.write_bytes(WEIGHT_DAMAGE[case](path.read_bytes()))
    one_line_error(*predict(folder, tmp_path, capsys), "model.safetensors")


def test_pickled_weights_are_refused_without_a_traceback(folder, tmp_path, capsys):
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    one_line_error(*predict(folder, tmp_path, capsys), "pytorch_model.bin", "never unpickles")


def test_weights_that_do_not_fit_the_config_are_exit_2(folder, tmp_path, capsys):
    config = json.loads((folder / "config.json").read_text())
    config["encoder"]["hidden_size"] *= 2  # the encoder's own config, inside mlbert's
    (folder / "config.json").write_text(json.dumps(config))
    one_line_error(*predict(folder, tmp_path, capsys), "model.safetensors", "do not fit")


def test_a_head_for_other_labels_is_exit_2(folder, tmp_path, capsys):
    _manifest(
        folder,
        lambda m: {
            **m,
            "labels": [*m["labels"], "extra"],
            "label_texts": [*m["label_texts"], "extra"],
            "thresholds": {**m["thresholds"], "per_label": [*m["thresholds"]["per_label"], 0.5]},
        },
    )
    one_line_error(*predict(folder, tmp_path, capsys), "model.safetensors")


@pytest.mark.parametrize("change", [lambda texts: texts[:-1], lambda texts: [[], *texts[1:]]])
def test_label_texts_that_do_not_match_the_labels_are_exit_2(folder, tmp_path, capsys, change):
    _manifest(folder, lambda m: {**m, "label_texts": change(m["label_texts"])})
    one_line_error(*predict(folder, tmp_path, capsys), "mlbert.json", "'label_texts'")


def test_config_json_that_is_not_json_is_exit_2(folder, tmp_path, capsys):
    (folder / "config.json").write_text("{")
    one_line_error(*predict(folder, tmp_path, capsys), "config.json")


def test_weights_are_readable_by_other_accounts(trained_dir):
    mode = stat.S_IMODE(os.stat(trained_dir / "model.safetensors").st_mode)
    assert mode & stat.S_IRGRP and mode & stat.S_IROTH, oct(mode)  # was 0600


# -- text encodings --------------------------------------------------------------------------------------
def _train_args(tmp_path, train, dev, tiny_encoder, out=None):
    settings = tiny_settings(tiny_encoder, epochs=1)
    flags = [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", v)]
    return [
        str(x) for x in ["train", "--train", train, "--dev", dev, "--out", out or tmp_path / "run", "--quiet", *flags]
    ]


def test_a_lone_surrogate_is_exit_2_with_its_line(tmp_path, demo_files, tiny_encoder, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "labels": []}\n{"text": "a \\ud800 b", "labels": []}\n')
    code, err = run(_train_args(tmp_path, demo_files["train"], bad, tiny_encoder), capsys)
    one_line_error(code, err, "bad.jsonl:2", "surrogate")
    assert not (tmp_path / "run").exists()


def test_a_bad_byte_is_reported_on_its_own_line(tmp_path):
    from mlbert.data import read_dataset
    from mlbert.errors import DataError

    lines = [json.dumps({"text": f"text {i}", "labels": []}).encode() for i in range(5000)]
    for lineno in (61, 4500):
        broken = list(lines)
        broken[lineno - 1] = b'{"text": "caf\xe9", "labels": []}'
        path = tmp_path / "bad.jsonl"
        path.write_bytes(b"\n".join(broken) + b"\n")
        with pytest.raises(DataError, match=f"bad.jsonl:{lineno}: not UTF-8"):
            read_dataset(path)


def test_a_byte_order_mark_is_read_past(tmp_path):
    from mlbert.data import read_dataset

    bom = b"\xef\xbb\xbf"
    (tmp_path / "a.jsonl").write_bytes(bom + b'{"text": "a", "labels": ["x"]}\n')
    (tmp_path / "b.csv").write_bytes(bom + b'id,text,labels\nr1,hello,"[""x""]"\n')
    assert read_dataset(tmp_path / "a.jsonl").labels == [["x"]]
    data = read_dataset(tmp_path / "b.csv")
    assert data.ids == ["r1"] and data.texts == ["hello"]  # the id column was silently dropped before


# -- outputs that cannot be written ----------------------------------------------------------------------
def test_predict_into_a_folder_is_exit_2(tmp_path, trained_dir, capsys):
    (tmp_path / "in.txt").write_text("a text\n")
    (tmp_path / "taken").mkdir()
    code, err = run(
        ["predict", "--model", trained_dir, "--input", tmp_path / "in.txt", "--output", tmp_path / "taken", "--quiet"],
        capsys,
    )
    one_line_error(code, err, "taken", "folder")


def test_an_out_folder_that_cannot_be_made_is_exit_2(tmp_path, demo_files, tiny_encoder, capsys):
    code, err = run(
        _train_args(tmp_path, demo_files["train"], demo_files["dev"], tiny_encoder, "/proc/mlbert-x"), capsys
    )
    one_line_error(code, err, "/proc/mlbert-x")


@pytest.fixture()
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a 64 KiB tmpfs, which needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_is_exit_2_and_leaves_nothing(small_disk, tmp_path, trained_dir, capsys):
    big = write_jsonl(tmp_path / "in.jsonl", [{"text": f"I want a refund for order A{i}"} for i in range(400)])
    out = small_disk / "preds.jsonl"
    code, err = run(["predict", "--model", trained_dir, "--input", big, "--output", out, "--quiet"], capsys)
    one_line_error(code, err, "preds.jsonl", "No space left")
    assert list(small_disk.iterdir()) == []


def test_atomic_open_names_the_file_it_could_not_write(tmp_path):
    from mlbert.errors import OutputError

    with pytest.raises(OutputError, match="cannot write /proc/nope/x.json"), atomic_open("/proc/nope/x.json") as f:
        f.write("{}")


# -- run folders: crash leftovers, failed starts, resume ---------------------------------------------------
def test_a_failed_start_leaves_no_folder(tmp_path, tiny_encoder, capsys):
    rows = [{"text": "a text", "labels": []}, {"text": "another", "labels": []}]
    train, dev = write_jsonl(tmp_path / "t.jsonl", rows), write_jsonl(tmp_path / "d.jsonl", rows)
    code, err = run(_train_args(tmp_path, train, dev, tiny_encoder), capsys)
    one_line_error(code, err, "no labels at all")
    assert not (tmp_path / "run").exists()


def test_a_run_that_died_before_its_first_checkpoint_can_simply_be_started_again(
    tmp_path, demo_files, tiny_encoder, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text('{"event": "start"}\n')  # killed before any checkpoint
    code, err = run([*_train_args(tmp_path, demo_files["train"], demo_files["dev"], tiny_encoder), "--resume"], capsys)
    one_line_error(code, err, "no checkpoint", "start without --resume")
    assert main(_train_args(tmp_path, demo_files["train"], demo_files["dev"], tiny_encoder)) == 0
    assert (out / "mlbert.json").is_file()


def test_crash_leftovers_are_removed_by_the_next_run(tmp_path, demo_files, tiny_encoder):
    out = tmp_path / "run"
    out.mkdir()
    (out / "train_log.jsonl").write_text("")
    (out / ".tmpab12cd").write_bytes(b"x" * 1000)  # what safetensors' writer left when killed
    (out / ".mlbert.json.k3j2.tmp").write_text("{")
    assert main(_train_args(tmp_path, demo_files["train"], demo_files["dev"], tiny_encoder)) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
