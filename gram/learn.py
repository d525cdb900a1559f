"""`python -m gram bench learn`: time-to-accuracy from scratch on this machine.

Trains for at most M wall-clock minutes of training (evaluation time excluded), evaluating prior
rollouts (one sample, EMA weights) on held-out inputs every M/10 minutes. The last stdout line is one
JSON object: per mode, the final prior accuracy, minutes to 50% and 90%, the posterior's accuracy on
the same inputs, the true KL, and coverage@20 on held-out inputs with several valid answers.
"""
from __future__ import annotations

import torch

from .evaluate import coverage, draw

DEMO_TASK = "nqueens7"


def learn(task: str, mode: str, minutes: float, seed: int = 0, overrides: list[str] | None = None,
          evals: int = 10, coverage_inputs: int = 64, out=None, log=print) -> dict:
    from .recipes import default_config
    from .train import Trainer
    cfg = default_config(task)
    cfg.model.mode = mode
    cfg.train.seed = seed
    cfg = cfg.override(overrides or [])
    cfg.train.steps = 10**9  # the clock decides
    cfg.train.eval_every = 10**9
    tr = Trainer(cfg, out=out)
    budget = minutes * 60
    curve = []
    for k in range(1, evals + 1):
        tr.fit(max_seconds=budget * k / evals - tr.wall, steps=10**9)
        ev = tr.evaluate()
        row = {"minutes": round(tr.wall / 60, 2), "step": tr.step, "prior_accuracy": ev["prior_accuracy"],
               "posterior_accuracy": ev["posterior_accuracy"],
               "true_kl": _recent_mean(tr.history, "kl"), "ce": _recent_mean(tr.history, "ce")}
        curve.append(row)
        log(f"[{mode}] {row['minutes']:6.2f} min  step {row['step']:6d}  prior {row['prior_accuracy']:.3f}  "
            f"posterior {row['posterior_accuracy']:.3f}  ce {row['ce']:.4f}  kl {row['true_kl']:.4f}")
    split = tr.test_split
    multi = torch.nonzero(split.n_targets() > 1).flatten()[:coverage_inputs]
    cov = None
    if len(multi):
        sub = split.subset(multi)
        n_sup = cfg.train.n_sup
        cov = coverage(draw(tr.ema, tr.task, sub, 20, depths=[n_sup], seed=seed, dtype=cfg.train.dtype)[n_sup])
    first = lambda thr: next((r["minutes"] for r in curve if r["prior_accuracy"] >= thr), None)
    if out:
        tr.save()
    return {"prior_accuracy": curve[-1]["prior_accuracy"], "minutes_to_50": first(0.5), "minutes_to_90": first(0.9),
            "posterior_accuracy": curve[-1]["posterior_accuracy"], "true_kl": round(curve[-1]["true_kl"], 5),
            "multi_coverage": cov, "steps": tr.step, "curve": curve}


def _recent_mean(history: list[dict], key: str, n: int = 20) -> float:
    """Mean of `key` over the training logs among the last n records (0 when none has it, e.g. no KL)."""
    vals = [r[key] for r in history[-n:] if key in r]
    return sum(vals) / len(vals) if vals else 0.0
