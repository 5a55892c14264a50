"""The README's Python examples run as written, on the data `make demo` writes (issue 21)."""

from __future__ import annotations

import re
import shlex
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


def shell_commands() -> list[str]:
    """The mlbert command lines of the README's bash blocks (continuation lines joined, comments cut), also
    those started through torchrun or accelerate; lines that elide flags with `...` are left out."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), flags=re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    commands = []
    for line in lines:
        words = shlex.split(line) if line and not line.startswith("#") else []
        for start in range(len(words)):
            if words[start] == "mlbert" and (start == 0 or words[start - 1] == "-m"):
                commands.append(shlex.join(words[start + 1 :]))
                break
    return [c for c in commands if "..." not in c]


def test_the_readme_has_shell_examples():
    assert len(shell_commands()) >= 10


@pytest.mark.parametrize("command", shell_commands())
def test_each_shell_command_parses_as_written(command):
    """Their data live in ../shared/data or take hours: each is checked against the real parser (every flag,
    every choice, every required argument), not run."""
    from mlbert.cli.commands import build_parser

    build_parser().parse_args(shlex.split(command))
