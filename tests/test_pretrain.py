"""Masked-LM pretraining: the masking ratios, perplexity going down, a folder `train` accepts, resume."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import interruptible, tiny_settings
from mlbert.cli import main
from mlbert.config import PretrainConfig
from mlbert.encoders import load_tokenizer
from mlbert.pretrain import _collator, _tokenize, pretrain


def test_masking_ratios_on_a_large_sample(tiny_encoder, demo_splits):
    tokenizer = load_tokenizer(tiny_encoder)
    texts = [r["text"] for r in demo_splits["train"]] * 4
    examples = _tokenize(tokenizer, texts, 48, offsets=False)
    batch = _collator(tokenizer, PretrainConfig(), seed=1)(examples)
    original = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(e["input_ids"]) for e in examples], batch_first=True, padding_value=tokenizer.pad_token_id
    )
    special = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(e["special_tokens_mask"]) for e in examples], batch_first=True, padding_value=1
    ).bool()
    chosen = batch["labels"] != -100
    assert not (chosen & special).any()  # [CLS], [SEP] and padding are never chosen
    assert (batch["labels"][chosen] == original[chosen]).all()
    share = chosen.sum().item() / (~special).sum().item()
    assert share == pytest.approx(0.15, abs=0.01)
    got = batch["input_ids"][chosen]
    masked = (got == tokenizer.mask_token_id).float().mean().item()
    kept = (got == original[chosen]).float().mean().item()
    assert masked == pytest.approx(0.8, abs=0.02)
    assert kept == pytest.approx(0.1 + 0.1 / tokenizer.vocab_size, abs=0.02)  # a random token may be the same
    assert 1 - masked - kept == pytest.approx(0.1, abs=0.02)


def test_pretraining_lowers_perplexity_and_train_accepts_the_result(tmp_path, tiny_encoder, demo_splits, demo_files):
    texts = [r["text"] for r in demo_splits["train"]]
    config = PretrainConfig(model=str(tiny_encoder), max_length=48, batch_size=16, epochs=4, lr=5e-3, save_steps=0)
    summary = pretrain(
        texts, tmp_path / "adapted", config, dev_texts=[r["text"] for r in demo_splits["dev"]], progress=False
    )
    assert summary["perplexity_after"] < 0.7 * summary["perplexity_before"], summary
    assert summary["fresh_mlm_head"]  # the tiny encoder, like the packaged MiniLM, has no MLM head
    assert (tmp_path / "adapted" / "pretrain.json").is_file() and not (tmp_path / "adapted" / "checkpoints").exists()
    flags = []
    for key, value in tiny_settings(tmp_path / "adapted", epochs=1).items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    assert (
        main(
            [
                "train",
                "--train",
                str(demo_files["train"]),
                "--dev",
                str(demo_files["dev"]),
                "--out",
                str(tmp_path / "run"),
                *flags,
                "--quiet",
            ]
        )
        == 0
    )


def test_interrupted_pretraining_resumes(tmp_path, tiny_encoder, demo_splits, capsys):
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(r["text"] for r in demo_splits["train"] * 6) + "\n", encoding="utf-8")
    out = tmp_path / "adapted"
    args = [
        "pretrain",
        "--text",
        str(src),
        "--out",
        str(out),
        "--model",
        str(tiny_encoder),
        "--max-length",
        "48",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--save-steps",
        "5",
        "--quiet",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlbert", *args], stderr=subprocess.PIPE, text=True, preexec_fn=interruptible
    )
    deadline = time.time() + 240
    while not (out / "checkpoints" / "last" / "state.json").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130 and not (out / "pretrain.json").exists()
    assert main(args) == 2  # a non-empty folder needs --resume or --overwrite
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    summary = json.loads((out / "pretrain.json").read_text())
    assert summary["steps"] == 2 * math.ceil(summary["n_texts"] / 8)  # the lost steps are not run twice
    assert np.isfinite(summary["perplexity_after"])
