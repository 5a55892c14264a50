"""The README's Python examples run as written, on the data `make demo` writes (issue 21)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import REPO

pytestmark = pytest.mark.integration


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_python_examples():
    assert python_blocks()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One folder for all blocks, as for a reader going down the README: a later block may use the model
    an earlier one saved."""
    from mlbert.cli.demo import write_demo_data

    folder = tmp_path_factory.mktemp("readme")
    write_demo_data(folder / "runs/demo/data", 2400)  # as `make demo` does
    return folder


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_each_python_block_runs_on_the_demo_data(index, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    namespace: dict = {}
    exec(compile(python_blocks()[index], f"README.md python block {index + 1}", "exec"), namespace)
