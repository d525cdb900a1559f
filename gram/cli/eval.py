"""`python -m gram eval`: a checkpoint's metrics on its held-out test split (gram.evaluate.evaluate_checkpoint)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..cards import inference_of, read_card
from ..checkpoint import write_json
from ..evaluate import evaluate_checkpoint
from ..rollout import HALT_AT
from .args import finite_nonnegative, json_line, probability


def cmd_eval(args) -> None:
    path = Path(args.checkpoint) / "card.json"
    card = read_card(path) if args.card else None  # a card it cannot update is refused before the work
    res = evaluate_checkpoint(args.checkpoint, args.samples, args.limit, args.seed, args.n_sup, args.halt, args.temperature,
                              args.halt_at)
    if args.card:
        card.setdefault("metrics", {})[f"test_{res['samples']}_samples"] = res
        card["inference"] = inference_of(res)
        card["eval_command"] = "python -m gram " + " ".join(sys.argv[1:])
        write_json(path, card)
    json_line(res)


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="metrics of a checkpoint on its held-out test split")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--samples", type=int, help="samples per input (default: the card's, else 20)")
    e.add_argument("--limit", type=int, help="only M test inputs, drawn at random (seeded)")
    e.add_argument("--seed", type=int, default=0,
                   help="trajectory j of input i draws seed + i * samples + j: for independent runs, space seeds by "
                        "more than inputs x samples (seeds 0 and 7 share all but 7 of 1,000 MNIST samples)")
    e.add_argument("--n-sup", type=int, help="supervision steps at inference (default: the card's, else as trained)")
    e.add_argument("--halt", action="store_true",
                   help="ACT: stop each trajectory once its halting head's P(answer is right) passes --halt-at (at most --n-sup steps)")
    e.add_argument("--halt-at", type=probability, help=f"ACT threshold (default: the card's, else {HALT_AT})")
    e.add_argument("--temperature", type=finite_nonnegative,
                   help="scale of the prior's noise (1: as trained; 0: its mean, one trajectory; default: the card's)")
    e.add_argument("--card", action="store_true", help="store the result in the checkpoint's card.json")
    e.set_defaults(func=cmd_eval)
