"""`python -m gram results`: the README's results table, from the checkpoints' cards."""
from __future__ import annotations

from ..results import results_table, write_readme_table


def cmd_results(args) -> None:
    if args.write:
        write_readme_table(args.write, args.checkpoints)
    print(results_table(args.checkpoints))


def add_parser(sub) -> None:
    t = sub.add_parser("results", help="the README's results table, from the checkpoints' cards")
    t.add_argument("--checkpoints", default="checkpoints")
    t.add_argument("--write", metavar="README", help="replace the table between the README's results markers")
    t.set_defaults(func=cmd_results)
