"""GRAM: a generative recursive reasoning model.

    from gram import draw, get_task, load_checkpoint, metrics
    model, cfg, card = load_checkpoint("checkpoints/nqueens8")
    task = get_task(cfg.train.task)
    answers = draw(model, task, task.split("test", cfg.train.seed), 20, depths=[4])[4]  # 20 per input, depth 4
    print(metrics(task, answers))  # accuracy, vote, LPRM, coverage, ... as `python -m gram eval` prints

The rollout itself (one Trace of many trajectories) is `gram.rollout.rollout`: the function cannot be a name
of the package, whose module of the same name would hide it. The names load on first use, so `import gram`
(and the app's first paint) does not import torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy names below resolve to, for readers and type checkers
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import Config, ModelConfig, TrainConfig
    from .evaluate import SampleSet, draw, metrics
    from .model import GRAM, elbo, head_losses
    from .rollout import Trace, branch, posterior_rollout
    from .tasks import Split, Task, get_task, task_names
    from .recipes import default_config
    from .train import Trainer

_EXPORTS = {
    "checkpoint": ("load_checkpoint", "save_checkpoint"),
    "config": ("Config", "ModelConfig", "TrainConfig"),
    "evaluate": ("SampleSet", "draw", "metrics"),
    "model": ("GRAM", "elbo", "head_losses"),
    "rollout": ("Trace", "branch", "posterior_rollout"),
    "tasks": ("Split", "Task", "get_task", "task_names"),
    "recipes": ("default_config",),
    "train": ("Trainer",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'gram' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
