"""`python -m gram bench train | learn | sample`: training speed, learning speed, sampling speed."""
from __future__ import annotations

import sys

import torch

from ..bench import paper_config, time_sampling, time_train
from ..learn import DEMO_TASK, learn
from .args import json_line


def cmd_train(args) -> None:
    from ..recipes import default_config
    sizes = {"default": lambda: default_config(args.task), "paper": lambda: paper_config(args.task)}
    for name in args.sizes.split(","):
        if name not in sizes:
            raise ValueError(f"--sizes: unknown size {name!r} (default, paper)")
        cfg = sizes[name]().override(args.set or [])
        json_line({"config": name, "task": args.task, **time_train(cfg, steps=args.steps, profile=args.profile)})


def cmd_learn(args) -> None:
    task = args.task or DEMO_TASK
    modes = ["gram", "deterministic"] if args.mode == "both" else [args.mode]
    result = {"task": task, "minutes": args.minutes, "seed": args.seed, "threads": torch.get_num_threads()}
    for mode in modes:
        result[mode] = learn(task, mode, args.minutes, args.seed, args.set, out=args.out and f"{args.out}-{mode}",
                             log=lambda s: print(s, file=sys.stderr, flush=True))
    json_line(result)


def cmd_sample(args) -> None:
    res = time_sampling(args.checkpoint, args.n, args.transitions, args.reps, args.dtype)
    t1, tn, t_noise, n = res["seconds_N1"], res[f"seconds_N{args.n}"], res["noise_draw_seconds"], args.n
    print(f"N=1: {t1:.3f} s   N={n}: {tn:.3f} s ({tn / t1:.1f}x, goal <= 8x)   noise streams: {t_noise:.3f} s "
          f"({100 * res['noise_share']:.1f}% of N={n})   trace {n} x {res['transitions']} transitions: "
          f"{res['trace_mb']} MB (budget 200 MB)", file=sys.stderr)
    json_line(res)


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: training speed, learning speed, sampling")
    bs = b.add_subparsers(dest="bench", required=True)
    t = bs.add_parser("train", help="training throughput, peak memory and MFU at the default and paper sizes")
    t.add_argument("--task", default="nqueens8")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--sizes", default="default,paper", help="comma-separated: default (the task's recipe), paper")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. compile=true")
    t.add_argument("--profile", action="store_true", help="also profile 2 steps: top ops (stderr), phase shares")
    t.set_defaults(func=cmd_train)

    p = bs.add_parser("learn", help="time-to-accuracy from scratch within a wall-clock budget")
    p.add_argument("--task", default=None, help=f"default: the demo task {DEMO_TASK}")
    p.add_argument("--mode", choices=("gram", "deterministic", "noise", "flat", "both"), default="both")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override the recipe")
    p.add_argument("--out", help="also save the trained checkpoints to OUT-<mode>")
    p.set_defaults(func=cmd_learn)

    s = bs.add_parser("sample", help="sampling: N=1 vs N=64 trajectories on one puzzle, noise cost, trace memory")
    s.add_argument("--checkpoint", help="default: checkpoints/nqueens8 if present, else an untrained model")
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--transitions", type=int, default=48)
    s.add_argument("--reps", type=int, default=3)
    s.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"))
    s.set_defaults(func=cmd_sample)
