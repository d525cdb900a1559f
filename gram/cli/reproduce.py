"""`python -m gram reproduce`: the paper's claims measured on the shipped checkpoints, as a report."""
from __future__ import annotations

import sys
from pathlib import Path

from ..reproduce import FULL, QUICK, reproduce
from .args import json_line


def cmd_reproduce(args) -> None:
    budget = QUICK if args.quick else FULL
    claims = reproduce(args.checkpoints, args.out, budget, args.seed, log=lambda s: print(s, file=sys.stderr, flush=True))
    for i, c in enumerate(claims):
        print(f"{i + 1}. {c.title}: {c.verdict}", file=sys.stderr)
    json_line({"report": str(Path(args.out) / "report.md"), "verdicts": [c.verdict for c in claims]})


def add_parser(sub) -> None:
    r = sub.add_parser("reproduce", help="the paper's claims on the shipped checkpoints: a Markdown + Plotly HTML report")
    r.add_argument("--quick", action="store_true", help=f"fewer inputs and samples ({QUICK.inputs} inputs, {QUICK.samples} samples)")
    r.add_argument("--checkpoints", default="checkpoints")
    r.add_argument("--out", default="runs/reproduce")
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=cmd_reproduce)

