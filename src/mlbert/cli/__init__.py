"""The `mlbert` command line: a thin layer of flags over the Python API.

commands.py  one parser builder and one handler per subcommand; main()
flags.py     flags generated from the settings classes, and the flags several commands share
jobs.py      file-to-file jobs behind the commands (read and check all input, then write)
display.py   plain-text tables for the terminal
demo.py      `mlbert demo`: the whole product on data it makes itself
"""

from .commands import build_parser, main

__all__ = ["build_parser", "main"]
