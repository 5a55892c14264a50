"""The real commands, as a user types them: subprocesses for the main path, main() for the many bad inputs."""

import json
import os
import subprocess
import sys

import pytest

from helpers import interruptible, tiny_settings, write_jsonl
from mlbert.cli import main


def mlbert(*args, check=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlbert", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _flags(settings):
    return [x for k, v in settings.items() for x in (f"--{k.replace('_', '-')}", v)]


def test_train_evaluate_predict_from_the_command_line(tmp_path, tiny_encoder, demo_files):
    out = tmp_path / "run"
    proc = mlbert(
        "train",
        "--train",
        demo_files["train"],
        "--dev",
        demo_files["dev"],
        "--test",
        demo_files["test"],
        "--out",
        out,
        *_flags(tiny_settings(tiny_encoder)),
    )
    assert "micro_f1" in proc.stdout and "best epoch" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"dev", "test", "thresholds", "history"} <= set(metrics)
    assert not (out / "checkpoints").exists() and (out / "train_log.jsonl").is_file()

    proc = mlbert("evaluate", "--model", out, "--data", demo_files["test"], "--json", tmp_path / "eval.json")
    report = json.loads((tmp_path / "eval.json").read_text())
    for mode in ("fixed", "global", "per_label"):
        for name in ("micro_f1", "macro_f1", "micro_roc_auc", "p_at_1"):
            assert report["metrics"][mode][name] == pytest.approx(metrics["test"]["metrics"][mode][name], abs=1e-9)
    assert len(report["per_label"]) == metrics["n_labels"] and "worst 10 labels" in proc.stdout

    mlbert("predict", "--model", out, "--input", demo_files["test"], "--output", tmp_path / "pred.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "pred.jsonl").open()]
    n_inputs = sum(1 for line in demo_files["test"].open() if line.strip())
    assert len(lines) == n_inputs and set(lines[0]) == {"id", "labels", "scores"}
    assert lines[0]["id"] == json.loads(demo_files["test"].open().readline())["id"]
    assert all(0 <= p <= 1 for p in lines[0]["scores"].values())


def test_predict_overrides_and_txt_input(tmp_path, trained_dir):
    (tmp_path / "in.txt").write_text("I want a refund for order A1043\nthe app crashes\n")
    out = tmp_path / "p.jsonl"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained_dir),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(out),
                "--threshold",
                "0",
                "--top-k",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.open()]
    assert [r["id"] for r in rows] == ["0", "1"] and all(len(r["labels"]) == 2 for r in rows)
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained_dir),
                "--input",
                str(tmp_path / "in.txt"),
                "--output",
                str(out),
                "--threshold",
                "1",
                "--at-least-one",
                "--quiet",
            ]
        )
        == 0
    )
    assert all(len(json.loads(line)["labels"]) == 1 for line in out.open())


BAD_JSONL = {
    "malformed": ('{"text": "a", "labels": []}\n{"text": "b", "labels": [\n', "bad.jsonl:2: not valid JSON"),
    "missing_field": ('{"text": "a", "labels": []}\n{"body": "b", "labels": []}\n', "bad.jsonl:2: no 'text' field"),
    "label_type": ('{"text": "a", "labels": "x"}\n', "bad.jsonl:1: 'labels' is the string"),
    "empty_text": ('{"text": "", "labels": ["x"]}\n', "bad.jsonl:1: 'text' is empty"),
    "empty_split": ("", "bad.jsonl: no examples"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_training_input_exits_2_with_one_line_and_writes_nothing(tmp_path, demo_files, case, capsys):
    content, message = BAD_JSONL[case]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    out = tmp_path / "run"
    code = main(["train", "--train", str(demo_files["train"]), "--dev", str(bad), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith("mlbert: error: ")
    assert not out.exists()


def test_missing_file_exits_2_in_a_real_process(tmp_path, demo_files):
    proc = mlbert(
        "train", "--train", tmp_path / "nope.jsonl", "--dev", demo_files["dev"], "--out", tmp_path / "r", check=False
    )
    assert proc.returncode == 2 and proc.stderr.strip() == f"mlbert: error: {tmp_path / 'nope.jsonl'}: no such file"
    assert not (tmp_path / "r").exists()


def test_bad_predict_input_leaves_no_output(tmp_path, trained_dir, capsys):
    bad = write_jsonl(tmp_path / "in.jsonl", [{"text": "fine"}, {"text": ""}])
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--model", str(trained_dir), "--input", str(bad), "--output", str(out)]) == 2
    assert "in.jsonl:2: 'text' is empty" in capsys.readouterr().err and not out.exists()


def test_tune_rewrites_thresholds_and_refuses_bad_files(tmp_path, trained_dir, demo_files, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained_dir, model)
    before = (model / "mlbert.json").read_text()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine", "labels": ["billing"]}, {"text": "x", "labels": 3}])
    assert main(["tune", "--model", str(model), "--data", str(demo_files["dev"]), "--data", str(bad)]) == 2
    assert "bad.jsonl:2" in capsys.readouterr().err and (model / "mlbert.json").read_text() == before
    assert main(["tune", "--model", str(model), "--data", str(demo_files["dev"]), "--quiet"]) == 0
    manifest = json.loads((model / "mlbert.json").read_text())
    assert manifest["training"]["threshold_tuning"]["data"] == [str(demo_files["dev"])]
    assert len(manifest["thresholds"]["per_label"]) == len(manifest["labels"])


def test_refuses_to_overwrite_an_earlier_run(tmp_path, trained_dir, demo_files, capsys):
    code = main(
        [
            "train",
            "--train",
            str(demo_files["train"]),
            "--dev",
            str(demo_files["dev"]),
            "--out",
            str(trained_dir),
            "--quiet",
        ]
    )
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_bad_flag_values_exit_2(tmp_path, demo_files, capsys):
    code = main(
        [
            "train",
            "--train",
            str(demo_files["train"]),
            "--dev",
            str(demo_files["dev"]),
            "--out",
            str(tmp_path / "r"),
            "--warmup-ratio",
            "2",
        ]
    )
    assert code == 2 and "warmup_ratio must be in [0, 1)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", "x", "--dev", "y", "--out", "z", "--pooling", "attention"])
    assert e.value.code == 2


@pytest.mark.parametrize(
    "flag, value", [("--precision", "fp16"), ("--threshold-data", "train"), ("--head", "cnn"), ("--metric", "accuracy")]
)
def test_flags_with_choices_refuse_a_typo(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--train", "x", "--dev", "y", "--out", "z", flag, value])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_every_setting_is_a_flag_of_its_command():
    import dataclasses

    from mlbert.cli import build_parser
    from mlbert.config import PretrainConfig, TrainConfig

    parser = build_parser()
    for command, cls in (("train", TrainConfig), ("pretrain", PretrainConfig)):
        sub = parser._subparsers._group_actions[0].choices[command]
        flags = {option for action in sub._actions for option in action.option_strings}
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in flags, (command, f.name)
        assert "--quiet" in flags


def test_pretrain_flags_build_its_config():
    from mlbert.cli import build_parser
    from mlbert.cli.flags import settings_from_args
    from mlbert.config import PretrainConfig

    args = build_parser().parse_args(
        ["pretrain", "--text", "t.txt", "--out", "o", "--max-length", "64", "--whole-word-mask", "--dev-share", "0.1"]
    )
    assert settings_from_args(PretrainConfig, args) == PretrainConfig(
        max_length=64, whole_word_mask=True, dev_share=0.1
    )


def test_help_lists_every_command():
    proc = mlbert("--help")
    for command in ("train", "evaluate", "tune", "predict", "serve", "export", "report", "pretrain", "demo"):
        assert command in proc.stdout
    assert "--warmup-ratio" in mlbert("train", "--help").stdout


def test_interrupted_training_resumes_from_the_command_line(tmp_path, tiny_encoder, demo_files):
    import signal
    import time

    out = tmp_path / "run"
    args = [
        "train",
        "--train",
        demo_files["train"],
        "--dev",
        demo_files["dev"],
        "--out",
        out,
        *_flags(tiny_settings(tiny_encoder, epochs=3, save_steps=5)),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlbert", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last" / "state.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and not (out / "metrics.json").exists()
    state = json.loads((out / "checkpoints" / "last" / "state.json").read_text())
    assert state["global_step"] > 0

    mlbert(*args, "--resume")
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]][-1] == 3 and "test" not in metrics
    events = [json.loads(line)["event"] for line in (out / "train_log.jsonl").open()]
    assert "resume" in events and events[-1] == "end"


def test_help_does_not_load_torch():
    # Issue 21: `mlbert --help` took about 5 s, importing torch, transformers and the rest to print text.
    code = (
        "import sys\nfrom mlbert.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sklearn', 'accelerate') if m in sys.modules)\n"
        "print('loaded:', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("loaded: []"), out[-300:]


def test_help_text_shows_single_percent_signs():
    assert "%%" not in mlbert("pretrain", "--help").stdout


def test_train_without_dev_holds_out_a_share_or_says_how(tmp_path, tiny_encoder, demo_files, capsys):
    args = ["train", "--train", str(demo_files["train"]), "--out", str(tmp_path / "run"), "--quiet",
            *map(str, _flags(tiny_settings(tiny_encoder, epochs=1)))]  # fmt: skip
    assert main(args) == 2 and "--dev-split" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main([*args, "--dev-split", "0.2"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    n_train = sum(1 for line in demo_files["train"].open() if line.strip())
    assert metrics["dev"]["n_examples"] == round(0.2 * n_train) and "dev_split 0.2" in metrics["files"]["dev"]
    assert metrics["n_train"] == n_train - metrics["dev"]["n_examples"]


# -- predict: the shapes people pass (issue 21) ------------------------------------------------------------
def test_predict_writes_the_format_its_output_names(tmp_path, trained_dir, capsys):
    import pyarrow.parquet as pq

    (tmp_path / "in.txt").write_text("I want a refund for order A1043\nthe app crashes\n")
    base = ["predict", "--model", str(trained_dir), "--input", str(tmp_path / "in.txt"), "--quiet", "--threshold", "0"]
    assert main([*base, "--output", str(tmp_path / "p.csv"), "--top-k", "2", "--label-sep", ";"]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()  # was JSON lines whatever the name
    header = rows[0].split(",")
    assert header[:2] == ["id", "labels"] and all(h.startswith("score:") for h in header[2:]) and len(rows) == 3
    assert rows[1].split(",")[1].count(";") == 1  # two labels, joined
    assert main([*base, "--output", str(tmp_path / "p.tsv"), "--include-text"]) == 0
    assert (tmp_path / "p.tsv").read_text().splitlines()[0].split("\t")[:3] == ["id", "text", "labels"]
    assert main([*base, "--output", str(tmp_path / "p.parquet")]) == 0
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == 2 and table.schema.field("labels").type.value_type == "string"
    assert main([*base, "--output", str(tmp_path / "p.txt")]) == 2
    assert "--format" in capsys.readouterr().err and not (tmp_path / "p.txt").exists()


def test_predict_reads_and_writes_the_standard_streams(tmp_path, trained_dir):
    proc = subprocess.run(
        [sys.executable, "-m", "mlbert", "predict", "--model", str(trained_dir), "--input", "-", "--output", "-"],
        input="I want a refund\nthe app crashes\n", capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["0", "1"] and not (tmp_path / "-").exists()
    proc = mlbert("predict", "--model", trained_dir, "--text", "I want a refund", "--text", "the app crashes")
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == ["0", "1"]


def test_sigterm_stops_training_with_the_way_to_resume(tmp_path, tiny_encoder, demo_files):
    import signal
    import time

    out = tmp_path / "run"
    args = ["train", "--train", demo_files["train"], "--dev", demo_files["dev"], "--out", out,
            *_flags(tiny_settings(tiny_encoder, epochs=3, save_steps=5))]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "mlbert", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last" / "state.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # a scheduler or `docker stop`, not Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "--resume" in err, err[-500:]


def test_the_interrupt_message_never_points_at_a_checkpoint_that_is_not_there(tmp_path):
    import argparse

    from mlbert.cli.commands import _interrupted

    message = _interrupted(argparse.Namespace(command="train", out=str(tmp_path / "nothing")))
    assert "--resume" not in message and "nothing to resume" in message
