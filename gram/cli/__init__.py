"""`python -m gram <command>`: train, eval, sample, data, bench.

Errors a user can cause (bad input text, a bad checkpoint, an unknown key) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from .budget import check, sampling_cost
from .cards import inference, inference_of, read_card
from .checkpoint import CheckpointError, load_checkpoint, write_json
from .config import Config
from .rollout import HALT_AT, sample
from .select import best_of_n, majority_vote
from .tasks import evaluate_samples, get_task, task_names


def _json_line(obj) -> None:
    print(json.dumps(obj), flush=True)


def _positive_or_zero(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def probability(text: str) -> float:  # an argparse type, also for `gram scale`
    value = float(text)
    if not 0 < value < 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


# --- train ------------------------------------------------------------------------------------
STOP = {"signal": None}  # set by SIGINT/SIGTERM: training ends after the step in progress, saves, and exits


def _stop(signum, frame):
    STOP["signal"] = signum


RUN_FILES = ("model.safetensors", "config.json", "card.json", "resume.safetensors", "resume.json")


def cmd_train(args) -> None:
    from tqdm import tqdm

    from .checkpoint import RunLock, recover
    from .train import Trainer, default_config

    if not str(args.out).strip():
        raise ValueError("--out must name a directory")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a directory")
    writer = int(os.environ.get("RANK", "0")) == 0  # under torchrun rank 0 writes the run; the others only read it
    lock = RunLock(out).acquire() if writer else None  # held until exit: a second trainer on this run is refused
    if writer:
        recover(out)
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if args.resume:
        if args.config or args.task or args.set:
            raise ValueError("--resume continues the run as it was saved; --config, --task and --set would be "
                             "ignored, so they are refused (only --steps may extend it)")
        if not (out / "resume.json").is_file():
            raise CheckpointError(f"{out}: nothing to resume (no resume.json)")
        tr = Trainer.resume(out)
        if args.steps:
            tr.cfg.train.steps = args.steps
    else:
        if existing and not args.overwrite:
            raise ValueError(f"--out {out} already holds a run ({', '.join(existing)}): pass --resume to continue "
                             "it, --overwrite to replace it, or another --out")
        cfg = Config.load(args.config) if args.config else default_config(args.task)
        if args.config and args.task:
            cfg.train.task = args.task
        cfg = cfg.override(args.set or [])
        if args.steps:
            cfg.train.steps = args.steps
        if writer:
            _check_writable(out)
        tr = Trainer(cfg, out=out)
    t = tr.cfg.train
    bar = tqdm(total=t.steps, initial=tr.step, desc=f"train {t.task} ({tr.cfg.model.mode})", file=sys.stderr,
               dynamic_ncols=True, disable=not tr.world.main)  # under torchrun, rank 0 reports
    last_eval: dict = {}

    def report(log: dict) -> None:
        if "prior_accuracy" in log:
            last_eval.update(log)
            tqdm.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in log.items()}), file=sys.stderr)
            return
        bar.update(1)
        post = {"loss": log["loss"], "post_acc": log["train_accuracy"]}
        if "train_prior_accuracy" in log:
            post.update(prior_acc=log["train_prior_accuracy"], kl=log["kl"], sigma=log["sigma_p"])
        if last_eval:
            post["heldout_prior"] = last_eval["prior_accuracy"]
        bar.set_postfix({k: f"{v:.3g}" for k, v in post.items()})

    try:
        tr.fit(callback=report, warn=lambda msg: tqdm.write(msg, file=sys.stderr), should_stop=lambda: STOP["signal"] is not None,
               max_seconds=None if args.minutes is None else 60 * args.minutes)
    except OSError as e:  # a full or read-only disk: the last complete save is still there
        raise OSError(e.errno, f"could not save the run in {out} ({e.strerror}); the last complete save there is "
                               f"kept (step {_saved_step(out)})") from None
    finally:
        bar.close()
        if lock is not None:
            lock.release()
    if STOP["signal"] is not None:
        print(f"interrupted at step {tr.step}; saved. Continue with: python -m gram train --out {out} --resume",
              file=sys.stderr)
        sys.exit(130)
    if tr.world.main:
        _json_line({"checkpoint": str(out), **tr.card()})


def _check_writable(out: Path) -> None:
    """Find an unwritable place before training, not at the first save."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.probe-{os.getpid()}"
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as e:
        raise OSError(e.errno, f"cannot write the run in {out.parent} ({e.strerror})") from None


def _saved_step(out: Path):
    try:
        return json.loads((out / "resume.json").read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return "none"


# --- eval -------------------------------------------------------------------------------------
def evaluate_checkpoint(directory, samples: int | None = None, limit: int | None = None, seed: int = 0,
                        n_sup: int | None = None, halt: bool = False, temperature: float | None = None,
                        halt_at: float | None = None) -> dict:
    """Metrics on the held-out test split; settings left as None are the card's (gram.cards.inference)."""
    model, cfg, card = load_checkpoint(directory)
    d = inference(card, cfg.train.n_sup)
    samples, n_sup = samples or d["samples"], n_sup or d["n_sup"]
    temperature = d["temperature"] if temperature is None else temperature
    halt_at = d["halt_at"] if halt_at is None else halt_at
    task = get_task(cfg.train.task)
    split = task.split("test", cfg.train.seed).sample(limit)
    check(sampling_cost(cfg.model, len(split), samples, n_sup), hint="Lower --samples, --limit or --n-sup.")
    t0 = time.perf_counter()
    out, values = sample(model, split.inputs, samples, seed=seed, n_sup=n_sup, halt=halt,
                         halt_at=halt_at, puzzle=split.puzzle, temperature=temperature)
    metrics = evaluate_samples(task, split, out, values)
    return {"task": task.name, "mode": cfg.model.mode, **metrics, "seed": seed,
            "n_sup": n_sup, "temperature": temperature, **({"halt_at": halt_at} if halt else {}),
            "seconds": round(time.perf_counter() - t0, 2)}


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
    _json_line(res)


# --- sample -----------------------------------------------------------------------------------
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
        _json_line({"input": line if line is not None else "", "samples": [task.format_output(s) for s in out[0]],
                    "selected": task.format_output(out[0, pick]), "selected_index": int(pick),
                    "values": [round(v, 4) for v in values[0].tolist()],
                    "valid": task.is_correct(x[None].expand(args.samples, -1), out[0]).tolist()})


# --- data -------------------------------------------------------------------------------------
def cmd_data(args) -> None:
    if args.build:  # make (or check) the cached splits, one JSON line each
        for name in args.task or task_names():
            task = get_task(name)
            for which in ("train", "test"):
                t0 = time.perf_counter()
                ready = task.split_ready(which, args.seed)
                n = len(task.split(which, args.seed))
                _json_line({"task": name, "split": which, "seed": args.seed, "inputs": n, "cached": ready,
                            "seconds": round(time.perf_counter() - t0, 2)})
        return
    if not args.task or len(args.task) != 1:
        raise ValueError("name one --task to print (or pass --build)")
    task = get_task(args.task[0])
    split = task.split(args.split, args.seed)
    for x in split.inputs:
        print(task.format_input(x))


# --- the parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gram", description="GRAM: generative recursive reasoning models")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model; writes a checkpoint directory")
    t.add_argument("--task", choices=task_names(), default=None)
    t.add_argument("--config", help="a config JSON (as in a checkpoint's config.json)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. --set beta=0.5")
    t.add_argument("--steps", type=int, help="total optimiser steps (also extends a resumed run)")
    t.add_argument("--minutes", type=float, help="stop after this much training time (evaluation excluded); "
                   "the card records the steps reached, which reproduce the run")
    t.add_argument("--out", required=True, help="checkpoint directory")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out exactly")
    t.add_argument("--overwrite", action="store_true", help="replace a run already in --out (default: refuse)")
    t.set_defaults(func=cmd_train)

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
    e.add_argument("--temperature", type=_positive_or_zero,
                   help="scale of the prior's noise (1: as trained; 0: its mean, one trajectory; default: the card's)")
    e.add_argument("--card", action="store_true", help="store the result in the checkpoint's card.json")
    e.set_defaults(func=cmd_eval)

    s = sub.add_parser("sample", help="sample answers for inputs given as text")
    s.add_argument("--checkpoint", required=True)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--input", help="one input in the task's text format")
    g.add_argument("--input-file", help="a file with one input per line")
    s.add_argument("--samples", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-sup", type=int, help="supervision steps (default: the depth the card was evaluated at)")
    s.add_argument("--select", choices=("vote", "lprm"), default="vote")
    s.add_argument("--temperature", type=_positive_or_zero, help="scale of the prior's noise (default: the card's)")
    s.set_defaults(func=cmd_sample)

    d = sub.add_parser("data", help="print a split's inputs, one per line, in the task's text format; or --build "
                                    "the disk cache of every split (gram.tasks.cache)")
    d.add_argument("--task", choices=task_names(), action="append", help="a task (with --build: repeat; default all)")
    d.add_argument("--build", action="store_true", help="build (or check) the cached train and test splits")
    d.add_argument("--split", choices=("train", "test"), default="test")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_data)

    from . import bench, heads, reproduce, scale
    bench.add_parser(sub)
    heads.add_parser(sub)
    scale.add_parser(sub)
    reproduce.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    # a signal sets a flag from the very start: training stops between steps and saves; anything else that is
    # interrupted ends with one line, never a traceback
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    args = build_parser().parse_args(argv)
    if args.command == "train" and not args.resume and not args.task and not args.config:
        args.task = "nqueens8"
    for name in ("samples", "n_sup", "limit", "steps", "inputs"):  # counts: 0 or less is a user error, not a traceback
        value = getattr(args, name, None)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be at least 1, got {value}", file=sys.stderr)
            sys.exit(2)
    if args.command != "train":  # only training has a step boundary to stop at; elsewhere a signal ends the command
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (ValueError, CheckpointError, OSError) as e:
        print(f"error: {_short(str(e))}", file=sys.stderr)
        sys.exit(2)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _short(msg: str, limit: int = 500) -> str:
    """One line of bounded length: an error may quote a 100 MB input line."""
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[:limit] + f"... ({len(msg) - limit} more characters)"
