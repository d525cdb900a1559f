"""What every command shares: argument types, the checks of counts, and the one-JSON-line output."""
from __future__ import annotations

import argparse
import json
import math

# counts: 0 or less is a user error, reported in one line like any other, not by argparse's usage text
COUNTS = ("samples", "n_sup", "limit", "steps", "inputs")


def finite_nonnegative(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def int_list(text: str) -> list[int]:
    """Comma-separated positive integers, sorted, each once: widths, depths."""
    try:
        out = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not out or out[0] < 1:
        raise ValueError(f"expected positive integers, got {text!r}")
    return out


def check_counts(args: argparse.Namespace) -> None:
    for name in COUNTS:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def json_line(obj) -> None:
    print(json.dumps(obj), flush=True)
