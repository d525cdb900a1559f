"""Refit the halting (ACT) and LPRM heads on prior rollouts of a finished model.

Trained jointly, the heads chase a core that moves under them, and the checkpoint pairs the core's EMA with
heads fitted to the live weights: the jointly trained LPRM ranked one input's samples no better than chance.
Refitted on the final model's prior rollouts, what inference sees, it picks better than the vote (the
measurements: docs/recipe.md, "Numbers behind the defaults"). The core is untouched: only the two heads change.
"""
from __future__ import annotations

import torch

from .model import GRAM, head_losses
from .rollout import rollout
from .tasks.base import Split, Task

SAMPLES, N_SUP, BATCH, LR = 4, 16, 256, 1e-3


@torch.no_grad()
def _records(model: GRAM, task: Task, split: Split, seed: int, dtype: str, inputs: int):
    """Prior rollouts of `inputs` training inputs x SAMPLES, every supervision step up to N_SUP a record:
    h (R*B, L, D) float16, and whether / how well that step's prediction answers its input (R*B,) each."""
    s = split.sample(inputs, seed=seed)
    x = s.inputs.repeat_interleave(SAMPLES, 0)
    puzzle = None if s.puzzle is None else s.puzzle.repeat_interleave(SAMPLES, 0)
    dev = next(model.parameters()).device
    tr = rollout(model, x.to(dev), n_sup=N_SUP, seed=seed, puzzle=None if puzzle is None else puzzle.to(dev), dtype=dtype)
    pred = tr.pred.cpu()
    correct = torch.stack([task.is_correct(x, p).float() for p in pred])  # (R, B)
    reward = torch.stack([task.reward(x, p).float() for p in pred])
    return tr.h.flatten(0, 1), correct.flatten(), reward.flatten()


def fit_heads(model: GRAM, task: Task, split: Split, steps: int, seed: int = 0, dtype: str = "auto",
              inputs: int = 1024, keep_value: bool = False) -> dict:
    """Re-initialise both heads and fit them for `steps` AdamW steps: q_halt to "this step's prediction is
    right", v to the task's reward (the LPRM target). The heads start afresh so the result depends only on
    the core and the seed (refitting a refitted checkpoint gives the same heads). q_halt reads v's features
    detached, so v's fit does not depend on it. keep_value: re-initialise and fit q_halt alone, on v's
    features as they are; v and every metric read from it stay untouched. Returns the final losses."""
    h, correct, reward = _records(model, task, split, seed, dtype, inputs)
    heads = [model.halt_head] + ([] if keep_value else [*model.value_head])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in heads:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    params = [p for m in heads for p in m.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, LR, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    dev = params[0].device
    for _ in range(steps):
        idx = torch.randint(len(h), (BATCH,), generator=g)
        q_halt, v = model.heads(h[idx].to(dev).float())
        halt_loss, value_loss = (loss.mean() for loss in head_losses(q_halt, v, correct[idx].to(dev), reward[idx].to(dev)))
        opt.zero_grad(set_to_none=True)
        (halt_loss if keep_value else halt_loss + value_loss).backward()
        opt.step()
    for p, r in zip(params, was):
        p.requires_grad_(r)
    return {"halt_loss": round(halt_loss.item(), 4), "value_loss": round(value_loss.item(), 4)} if steps else {}
