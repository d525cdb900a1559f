"""`python -m gram train`: a run in a checkpoint directory, saved all or nothing, stopped cleanly by a signal."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..checkpoint import CheckpointError
from ..config import Config
from ..tasks import task_names
from .args import json_line

STOP = {"signal": None}  # set by SIGINT/SIGTERM: training ends after the step in progress, saves, and exits


def request_stop(signum, frame):
    STOP["signal"] = signum


RUN_FILES = ("model.safetensors", "config.json", "card.json", "resume.safetensors", "resume.json")
DEFAULT_TASK = "nqueens8"


def cmd_train(args) -> None:
    from tqdm import tqdm

    from ..checkpoint import RunLock, recover
    from ..recipes import default_config
    from ..train import Trainer

    if not args.resume and not args.task and not args.config:
        args.task = DEFAULT_TASK
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
    tr.world.close()
    if STOP["signal"] is not None:
        print(f"interrupted at step {tr.step}; saved. Continue with: python -m gram train --out {out} --resume",
              file=sys.stderr)
        sys.exit(130)
    if tr.world.main:
        json_line({"checkpoint": str(out), **tr.card()})


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


def add_parser(sub) -> None:
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
