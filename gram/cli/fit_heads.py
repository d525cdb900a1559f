"""`python -m gram fit-heads`: refit a checkpoint's halting and LPRM heads in place (gram.heads.fit_heads)."""
from __future__ import annotations

import sys

from ..checkpoint import load_checkpoint, save_checkpoint
from ..heads import fit_heads
from ..tasks import get_task
from .args import json_line


def cmd_fit_heads(args) -> None:
    """Refit a checkpoint's heads in place and record head_steps in its config, so that the card's training
    command (train, then the same refit at its end) reproduces the checkpoint. --halt-only leaves the config
    (how v was fitted) as it is and records the halting refit in the card instead (`halt_refit`)."""
    model, cfg, card = load_checkpoint(args.checkpoint)
    task = get_task(cfg.train.task)
    inputs = args.inputs or cfg.train.head_inputs
    losses = fit_heads(model, task, task.split("train", cfg.train.seed), args.steps, seed=cfg.train.seed,
                       dtype=cfg.train.dtype, inputs=inputs, keep_value=args.halt_only)
    if args.halt_only:  # the config still says how v was fitted; the card says how q_halt was refitted after
        card["heads"] = {**card.get("heads", {}), "halt_loss": losses["halt_loss"]}
        card["halt_refit"] = {"steps": args.steps, "inputs": inputs}
    else:
        cfg.train.head_steps, cfg.train.head_inputs = args.steps, inputs
        card["heads"] = losses
        card.pop("halt_refit", None)
    save_checkpoint(args.checkpoint, model, cfg, card)
    json_line({"checkpoint": args.checkpoint, "head_steps": args.steps, "head_inputs": inputs, **losses})
    if not args.halt_only:
        print("the card's LPRM metrics predate the refit: run `python -m gram eval --checkpoint "
              f"{args.checkpoint} --card` again", file=sys.stderr)


def add_parser(sub) -> None:
    f = sub.add_parser("fit-heads", help="refit a checkpoint's halting and LPRM heads on its own prior rollouts")
    f.add_argument("--checkpoint", required=True)
    f.add_argument("--steps", type=int, default=3000, help="optimiser steps of the heads (the core is not touched)")
    f.add_argument("--inputs", type=int, help="training inputs to roll out (x 4 samples); default: the config's head_inputs")
    f.add_argument("--halt-only", action="store_true",
                   help="refit the halting head alone; the LPRM head, and the card's metrics that depend on it, stay as they are")
    f.set_defaults(func=cmd_fit_heads)
