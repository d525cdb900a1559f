"""Task registry: `get_task(name)` returns the task behind a CLI/app task name."""
from __future__ import annotations

from .arc import ARC
from .base import PAD, Split, Task
from .graph_coloring import GraphColoring
from .mnist import MNIST, idx_from_env
from .nqueens import NQueens
from .sudoku import Sudoku, SudokuUncond, extreme_from_env

_FACTORIES = {
    "nqueens7": lambda: NQueens(7, remove=(4, 5, 6)),  # the demo task: learns in minutes on a CPU
    "nqueens8": lambda: NQueens(8, remove=(5, 6, 7)),
    "nqueens10": lambda: NQueens(10, remove=(7, 8, 9)),
    "graph_coloring8": lambda: GraphColoring(8, p=0.5, n_train=7002, n_test=255),
    "graph_coloring10": lambda: GraphColoring(10, p=0.45, n_train=13465, n_test=192),
    "sudoku": lambda: Sudoku(csv_dir=extreme_from_env()),
    # every second puzzle dug towards 22 givens: a test split of hard and medium puzzles, 4x the training puzzles
    "sudoku_mixed": lambda: Sudoku("sudoku_mixed", n_train=8192, hard_clues=22),
    "sudoku_uncond": lambda: SudokuUncond(train_clues=40),
    "mnist": lambda: MNIST(idx_from_env()),
    "arc1": lambda: ARC("arc1", "arcagi"),
    "arc2": lambda: ARC("arc2", "arcagi2"),
    "arc1_mini": lambda: ARC("arc1_mini", "arcagi", canvas=10, n_aug=8, max_tasks=16),  # trains on a CPU
}
_CACHE: dict[str, Task] = {}


def task_names() -> list[str]:
    return list(_FACTORIES)


def get_task(name: str) -> Task:
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(_FACTORIES)}")
    if name not in _CACHE:
        _CACHE[name] = _FACTORIES[name]()
    return _CACHE[name]


__all__ = ["PAD", "Split", "Task", "get_task", "task_names", "NQueens", "GraphColoring", "Sudoku", "SudokuUncond", "MNIST", "ARC"]
