"""`python -m gram scale`: the width x depth table of a checkpoint (gram.scale) as JSON, CSV and HTML."""
from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import torch

from ..cards import inference
from ..checkpoint import load_checkpoint
from ..rollout import HALT_AT
from ..scale import COLUMNS, figure, format_table, scale_table
from ..tasks import get_task
from .args import int_list, json_line, probability


def cmd_scale(args) -> None:
    model, cfg, card = load_checkpoint(args.checkpoint)
    task = get_task(cfg.train.task)
    split = task.split("test", cfg.train.seed).sample(args.limit)
    widths = int_list(args.widths)
    d = inference(card, cfg.train.n_sup)  # the card's settings: depths up to the one it was read at
    top = d["n_sup"]
    depths = int_list(args.depths) if args.depths else sorted({1, top, *[2 ** i for i in range(12) if 2 ** i < top]})
    halt_at = d["halt_at"] if args.halt_at is None else args.halt_at
    t0 = time.perf_counter()
    rows = scale_table(model, task, split, widths, depths, act=args.act, seed=args.seed, dtype=args.dtype,
                       log=lambda s: print(s, file=sys.stderr, flush=True), halt_at=halt_at)
    meta = {"checkpoint": str(args.checkpoint), "task": task.name, "mode": cfg.model.mode, "inputs": len(split),
            "widths": widths, "depths": depths, "act": args.act, "halt_at": halt_at, "seed": args.seed,
            "seconds": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    with open(out / "scale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    title = f"{task.name} ({cfg.model.mode}), {len(split)} held-out inputs, {Path(args.checkpoint).name}"
    figure(rows, title).write_html(out / "scale.html", include_plotlyjs=True)  # inline plotly.js: works offline
    print(format_table(rows))
    json_line({**meta, "out": str(out)})


def add_parser(sub) -> None:
    s = sub.add_parser("scale", help="accuracy and coverage against width (vote / LPRM) and depth (steps / ACT)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--widths", default="1,2,4,8,16,32,64", help="comma-separated numbers of trajectories")
    s.add_argument("--depths", help="comma-separated supervision steps (default: powers of 2 up to the card's depth)")
    s.add_argument("--act", action="store_true", help="also ACT halting (at most max(depths) steps)")
    s.add_argument("--halt-at", type=probability, help=f"ACT threshold on P(halt) (default: the card's, else {HALT_AT})")
    s.add_argument("--limit", type=int, default=32, help="M held-out inputs, drawn at random (seeded)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"))
    s.add_argument("--out", default="runs/scale", help="directory for scale.json, scale.csv, scale.html")
    s.set_defaults(func=cmd_scale)
