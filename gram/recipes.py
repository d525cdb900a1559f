"""Each task's training recipe, in one place: the ModelConfig and TrainConfig fields where a task departs from
the global defaults of gram/config.py. A fresh `gram train --task T` starts here; a shipped checkpoint's
config.json holds the whole config it was trained with. The runs behind every value: docs/recipe.md.
"""
from __future__ import annotations

from .config import Config
from .tasks import task_names

# fixed small grids: the sequence-MLP mixer learns them several times faster per step than attention
MLP = {"mixer": "mlp"}

RECIPES: dict[str, dict[str, dict]] = {
    "nqueens7": {"model": MLP},
    # beta 1 let the posterior leak a "which solution" code; beta 2 delays it
    "nqueens8": {"model": MLP, "train": {"beta": 2.0}},
    "nqueens10": {"model": MLP, "train": {"beta": 2.0}},
    # the KL is averaged over all n(n-1)/2 + n positions, the cross-entropy over the n colour slots: the ELBO's
    # weight is positions / slots (4.5 for n = 8); under it the posterior leaked at once, ~2.7x it learns
    "graph_coloring8": {"model": MLP, "train": {"beta": 12.0}},
    "graph_coloring10": {"model": MLP, "train": {"beta": 15.0}},
    "sudoku": {"model": MLP},
    "sudoku_mixed": {"model": MLP},
    "sudoku_uncond": {"model": MLP},
    # 7x7-pixel patches (16 latent positions): fewer independent noise draws, more coherent digits; beta 16x
    # the ELBO's weight (16 positions / 784 pixels)
    "mnist": {"model": {"patch": 7}, "train": {"beta": 0.32}},
    "arc1": {},
    "arc2": {},
    "arc1_mini": {},
}


def default_config(task_name: str) -> Config:
    """The recipe for a task: the global defaults, then the task's entry in RECIPES."""
    if task_name not in RECIPES:
        raise ValueError(f"unknown task {task_name!r}; known: {', '.join(task_names())}")
    cfg = Config()
    cfg.train.task = task_name
    for part, fields in RECIPES[task_name].items():
        for k, v in fields.items():
            if not hasattr(getattr(cfg, part), k):  # setattr would add a field that nothing reads
                raise ValueError(f"the recipe of {task_name} sets {part}.{k}, which is not a config field")
            setattr(getattr(cfg, part), k, v)
    return cfg
