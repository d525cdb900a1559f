"""N-Queens completion: given a few queens of a solution, place the rest.

Tokens: 0 pad, 1 empty, 2 queen; one token per cell, row-major. Inputs are all solutions with k queens
removed (k in `remove`), deduplicated: an input keeps every solution that contains its queens, so a
model can be scored on coverage of all valid completions. Split 85:15 by unique input, seeded.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import torch

from .base import Split, Task

EMPTY, QUEEN = 1, 2


@lru_cache(maxsize=None)
def solutions(n: int) -> tuple[tuple[int, ...], ...]:
    """All placements as column-per-row tuples, by backtracking with bitmasks (92 for 8, 724 for 10)."""
    out, full = [], (1 << n) - 1

    def place(row, cols, d1, d2, acc):
        if row == n:
            out.append(tuple(acc))
            return
        free = full & ~(cols | d1 | d2)
        while free:
            bit = free & -free
            free ^= bit
            acc.append(bit.bit_length() - 1)
            place(row + 1, cols | bit, ((d1 | bit) << 1) & full, (d2 | bit) >> 1, acc)
            acc.pop()

    place(0, 0, 0, 0, [])
    return tuple(out)


class NQueens(Task):
    multi_solution = True
    board = "queens"
    rules = ("Complete the board with one queen in every row so that no two queens attack each other along a "
             "row, a column or a diagonal. The given queens (amber) stay where they are.")
    def __init__(self, n: int, remove: tuple[int, ...], name: str | None = None):
        self.n, self.remove = n, tuple(remove)
        self.name = name or f"nqueens{n}"
        self.seq_len, self.vocab = n * n, 3
        r, c = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
        # (4, S) line id of each cell: row, column, diagonal, anti-diagonal (offset to keep them apart)
        self.lines = torch.stack([r, n + c, 2 * n + r - c + n - 1, 5 * n + r + c])
        self.n_lines = 7 * n

    def recipe(self, seed: int = 0) -> dict:
        return {"task": self.name, "n": self.n, "remove": list(self.remove), "split": "85:15 by unique input", "seed": seed}

    @lru_cache(maxsize=4)
    def _all(self, seed: int) -> tuple[Split, Split]:
        sols = solutions(self.n)
        completions: dict[tuple, list[int]] = {}
        for s, cols in enumerate(sols):
            queens = list(enumerate(cols))
            for k in self.remove:
                for kept in itertools.combinations(queens, self.n - k):
                    completions.setdefault(kept, []).append(s)
        keys = sorted(completions)  # deterministic order before the seeded shuffle
        boards = torch.full((len(sols), self.seq_len), EMPTY, dtype=torch.long)
        for s, cols in enumerate(sols):
            boards[s, [r * self.n + c for r, c in enumerate(cols)]] = QUEEN
        inputs = torch.full((len(keys), self.seq_len), EMPTY, dtype=torch.long)
        owner, sol_idx = [], []
        for i, kept in enumerate(keys):
            inputs[i, [r * self.n + c for r, c in kept]] = QUEEN
            owner += [i] * len(completions[kept])
            sol_idx += completions[kept]
        every = Split(inputs, boards[sol_idx], torch.tensor(owner))
        perm = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed))
        n_test = round(0.15 * len(keys))
        return every.subset(perm[n_test:].sort().values), every.subset(perm[:n_test].sort().values)

    def build_split(self, name: str, seed: int) -> Split:
        return self._all(seed)[name == "test"]

    def is_correct(self, x, pred):
        queen = (pred == QUEEN).long()  # (B, S); anything else counts as empty
        counts = torch.zeros(len(pred), self.n_lines, dtype=torch.long, device=pred.device)
        for line in self.lines.to(pred.device):  # 4 line families, each a scatter over the board
            counts.scatter_add_(1, line.expand_as(queen), queen)
        rows_cols = counts[:, : 2 * self.n]
        diags = counts[:, 2 * self.n:]
        keeps_given = ((x == QUEEN) <= (pred == QUEEN)).all(1)
        return (rows_cols == 1).all(1) & (diags <= 1).all(1) & keeps_given

    def parse(self, text: str) -> torch.Tensor:
        rows = [r.strip() for r in text.replace("/", "\n").strip().splitlines() if r.strip()]
        n = self.n
        if len(rows) != n or any(len(r) != n for r in rows):
            shape = f"{len(rows)} rows of lengths {sorted({len(r) for r in rows})}"
            raise ValueError(f"{self.name} needs {n} rows of {n} cells ('.' or 'Q'), got {shape}")
        bad = sorted({ch for r in rows for ch in r} - set(".Qq"))
        if bad:
            raise ValueError(f"unknown character(s) {bad}: use '.' for empty and 'Q' for a queen")
        x = torch.tensor([QUEEN if ch in "Qq" else EMPTY for r in rows for ch in r])
        for line in self.lines:
            hit = torch.zeros(self.n_lines, dtype=torch.long).scatter_add_(0, line, (x == QUEEN).long())
            if (hit > 1).any():
                cells = [divmod(i, n) for i in torch.nonzero(x == QUEEN).flatten().tolist()]
                clash = [(r, c) for r, c in cells if hit[line[r * n + c]] > 1]
                raise ValueError(f"given queens attack each other at (row, col) {clash}")
        return x

    def format_output(self, y: torch.Tensor) -> str:
        cells = ["Q" if int(t) == QUEEN else "." for t in y]
        return "/".join("".join(cells[r * self.n:(r + 1) * self.n]) for r in range(self.n))

    format_input = format_output

    def clashes(self, x, pred):
        """Queens that share a row, column or diagonal with another queen."""
        queen = (pred == QUEEN).long()
        hit = torch.zeros(len(pred), dtype=torch.bool)
        for line in self.lines:
            counts = torch.zeros(self.n_lines, dtype=torch.long).scatter_add_(0, line, queen)
            hit |= counts[line] > 1
        return hit & (queen > 0)

    def edit(self, x, target, value=None):
        """Place a queen on an empty cell, or take one away."""
        x = x.clone()
        x[int(target)] = EMPTY if x[int(target)] == QUEEN else QUEEN
        return x
