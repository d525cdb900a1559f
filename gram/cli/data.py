"""`python -m gram data`: a split's inputs as text, or the disk cache of every split built."""
from __future__ import annotations

import time

from ..tasks import get_task, task_names
from .args import json_line


def cmd_data(args) -> None:
    if args.build:  # make (or check) the cached splits, one JSON line each
        for name in args.task or task_names():
            task = get_task(name)
            for which in ("train", "test"):
                t0 = time.perf_counter()
                ready = task.split_ready(which, args.seed)
                n = len(task.split(which, args.seed))
                json_line({"task": name, "split": which, "seed": args.seed, "inputs": n, "cached": ready,
                           "seconds": round(time.perf_counter() - t0, 2)})
        return
    if not args.task or len(args.task) != 1:
        raise ValueError("name one --task to print (or pass --build)")
    task = get_task(args.task[0])
    split = task.split(args.split, args.seed)
    for x in split.inputs:
        print(task.format_input(x))


def add_parser(sub) -> None:
    d = sub.add_parser("data", help="print a split's inputs, one per line, in the task's text format; or --build "
                                    "the disk cache of every split (gram.tasks.cache)")
    d.add_argument("--task", choices=task_names(), action="append", help="a task (with --build: repeat; default all)")
    d.add_argument("--build", action="store_true", help="build (or check) the cached train and test splits")
    d.add_argument("--split", choices=("train", "test"), default="test")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)
