"""Two processes on Accelerate + torch.distributed (gloo on the CPU), started by torchrun like a user would.

Equivalence: with world processes each taking every world-th batch, an optimizer step sees the same
batches as one process with grad_accum=world, so (without dropout, which draws different masks in
each process) the weights match to float rounding. Resume: a run killed mid-way and resumed with
the same number of processes ends where the uninterrupted one does. Every run here hides the GPUs
(CPU_ONLY), so a machine with one GPU tests the same gloo path as CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import build_tiny_encoder, write_jsonl
from mlbert.checkpoint import load_weights

WEIGHT_TOLERANCE = 1e-5
CPU_ONLY = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
N_TRAIN = 416  # 52 batches of 8: an even count, so no batch is left out with 2 processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, demo_splits):
    folder = tmp_path_factory.mktemp("dist")
    encoder = build_tiny_encoder(folder / "encoder")
    config = json.loads((encoder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(config))
    train = write_jsonl(folder / "train.jsonl", demo_splits["train"][:N_TRAIN])
    dev = write_jsonl(folder / "dev.jsonl", demo_splits["dev"])
    flags = [
        "--train",
        str(train),
        "--dev",
        str(dev),
        "--model",
        str(encoder),
        "--epochs",
        "6",
        "--max-length",
        "48",
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--head-lr",
        "0.1",
        "--pooling",
        "mean",
        "--dropout",
        "0",
        "--patience",
        "0",
        "--quiet",
    ]
    return folder, flags


def _torchrun(flags: list[str], out: Path, **popen) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "mlbert",
        "train",
        *flags,
        "--out",
        str(out),
    ]
    return subprocess.Popen(cmd, env=CPU_ONLY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _children(pid: int) -> list[int]:
    """Worker pids of a launcher (torchrun starts each worker in a session of its own, so a process-group
    kill would miss them)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out


def _max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def two_process_run(setup):
    folder, flags = setup
    out = folder / "two"
    stdout = _finish(_torchrun([*flags, "--save-steps", "0"], out))
    assert stdout.count("best epoch") == 1  # only the main process reports
    return out


def test_two_processes_match_one_process_with_the_same_global_batch(setup, two_process_run):
    folder, flags = setup
    one = folder / "one"
    subprocess.run(
        [sys.executable, "-m", "mlbert", "train", *flags, "--out", str(one), "--save-steps", "0", "--grad-accum", "2"],
        env=CPU_ONLY,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert _max_weight_diff(one, two_process_run) < WEIGHT_TOLERANCE
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two_process_run))
    for name in ("micro_f1", "macro_f1"):
        assert m2["dev"]["metrics"]["per_label"][name] == pytest.approx(
            m1["dev"]["metrics"]["per_label"][name], abs=1e-6
        )
    assert m2["thresholds"] == m1["thresholds"]
    # The loss of each epoch is over both processes' batches, so it matches too.
    assert [h["train_loss"] for h in m2["history"]] == pytest.approx([h["train_loss"] for h in m1["history"]], rel=1e-5)
    start = json.loads((two_process_run / "train_log.jsonl").open().readline())
    assert start["steps_per_epoch"] == 26  # 52 batches shared out, not 52 each


def test_killed_two_process_run_resumes_to_the_same_weights(setup, two_process_run):
    if not Path("/proc/self/task").is_dir():
        pytest.skip("finding the worker processes needs Linux /proc")
    folder, flags = setup
    out = folder / "killed"
    run_flags = [*flags, "--save-steps", "5"]
    proc = _torchrun(run_flags, out)
    state_file = out / "checkpoints" / "last" / "state.json"
    deadline = time.time() + 240
    while not state_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    for pid in [*_children(proc.pid), proc.pid]:  # both workers and the launcher, no chance to clean up
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    killed_at = json.loads(state_file.read_text())
    assert killed_at["world_size"] == 2 and 0 < killed_at["global_step"] < 6 * 26

    # The same run with another number of processes would replay other batches: refused, exit 2.
    one = subprocess.run(
        [sys.executable, "-m", "mlbert", "train", *run_flags, "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
        env=CPU_ONLY,
    )
    assert one.returncode == 2 and "2 process(es)" in one.stderr

    _finish(_torchrun([*run_flags, "--resume"], out))
    assert _max_weight_diff(out, two_process_run) < WEIGHT_TOLERANCE
    events = [json.loads(line)["event"] for line in (out / "train_log.jsonl").open()]
    assert "resume" in events and events[-1] == "end"


def test_more_processes_than_gpus_is_refused_with_what_to_do(monkeypatch):
    import torch

    from mlbert.distributed import use_cpu
    from mlbert.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="only 1 GPU.*CUDA_VISIBLE_DEVICES="):
        use_cpu()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert use_cpu() is False
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert use_cpu() is True  # gloo processes on the CPUs
