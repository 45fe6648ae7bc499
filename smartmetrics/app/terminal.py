"""Consoles for user-facing output: the terminal's width on a TTY, wide enough for tables in logs."""

from __future__ import annotations

import sys

from rich.console import Console

PIPE_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A rich Console on stdout (or stderr) that does not squeeze tables to 80 columns when piped."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, width=None if stream.isatty() else PIPE_WIDTH)
