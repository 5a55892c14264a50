"""Shared fixtures: a tiny random BERT, demo data files, and a model folder trained once (builders in helpers.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# The token cache of every test run (and of the commands tests start) lives in a fresh folder, never ~/.cache,
# removed when the run ends (each run left one behind in /tmp before).
os.environ["MLBERT_CACHE_DIR"] = tempfile.mkdtemp(prefix="mlbert-test-tokens-")

from helpers import build_tiny_encoder, tiny_settings, write_jsonl
from mlbert.demo_data import make_dataset


def pytest_unconfigure(config):
    shutil.rmtree(os.environ["MLBERT_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def demo_splits():
    return make_dataset(600, seed=3)


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory, demo_splits) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("demo-data")
    return {name: write_jsonl(folder / f"{name}.jsonl", rows) for name, rows in demo_splits.items()}


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_encoder, demo_files) -> Path:
    """A model folder trained once through the public job, shared by read-only tests."""
    from mlbert.cli.jobs import train_job
    from mlbert.config import TrainConfig

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train_job(
        TrainConfig(**tiny_settings(tiny_encoder, epochs=4)),
        demo_files["train"],
        demo_files["dev"],
        out,
        test=demo_files["test"],
        progress=False,
    )
    return out
