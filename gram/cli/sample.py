"""`python -m gram sample`: answers for inputs given as text, one JSON line per input."""
from __future__ import annotations

from pathlib import Path

from ..budget import check, sampling_cost
from ..cards import inference
from ..checkpoint import load_checkpoint
from ..rollout import sample
from ..select import best_of_n, majority_vote
from ..tasks import get_task
from .args import finite_nonnegative, json_line


def cmd_sample(args) -> None:
    if args.input_file:
        lines = [ln for ln in Path(args.input_file).read_text().splitlines() if ln.strip()]
        if not lines:
            raise ValueError(f"--input-file {args.input_file}: no inputs in it (one per line)")
    elif args.input is not None:
        lines = [args.input]
    else:
        lines = [None]  # unconditional tasks
    model, cfg, card = load_checkpoint(args.checkpoint)
    d = inference(card, cfg.train.n_sup)
    n_sup = args.n_sup or d["n_sup"]
    temperature = d["temperature"] if args.temperature is None else args.temperature
    task = get_task(cfg.train.task)
    # one input at a time: each is one request
    check(sampling_cost(cfg.model, 1, args.samples, n_sup), hint="Lower --samples or --n-sup.")
    for k, line in enumerate(lines):
        try:
            x = task.empty_input() if line is None else task.parse(line)
        except ValueError as e:
            raise ValueError(f"input {k + 1}: {e}") from None
        # ARC: `task_id: grid` picks that task's puzzle embedding
        puzzle = task.puzzle_of(line) if line is not None and hasattr(task, "puzzle_of") else None
        out, values = sample(model, x[None], args.samples, seed=args.seed, n_sup=n_sup,
                             puzzle=None if puzzle is None else puzzle[None], temperature=temperature)
        out = task.canonical(out[0]).unsqueeze(0)  # one form per answer, so that votes count answers
        pick = (majority_vote(out) if args.select == "vote" else best_of_n(values))[0]
        json_line({"input": line if line is not None else "", "samples": [task.format_output(s) for s in out[0]],
                   "selected": task.format_output(out[0, pick]), "selected_index": int(pick),
                   "values": [round(v, 4) for v in values[0].tolist()],
                   "valid": task.is_correct(x[None].expand(args.samples, -1), out[0]).tolist()})


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="sample answers for inputs given as text")
    s.add_argument("--checkpoint", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--input", help="one input in the task's text format")
    g.add_argument("--input-file", help="a file with one input per line")
    s.add_argument("--samples", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-sup", type=int, help="supervision steps (default: the depth the card was evaluated at)")
    s.add_argument("--select", choices=("vote", "lprm"), default="vote")
    s.add_argument("--temperature", type=finite_nonnegative, help="scale of the prior's noise (default: the card's)")
    s.set_defaults(func=cmd_sample)
