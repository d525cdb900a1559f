"""Sudoku 9x9, conditional (fill a puzzle) and unconditional (write a complete grid from nothing).

Tokens: 0 pad, 1 blank, 2-10 digits 1-9; 81 cells, row-major. The core uses the sequence-MLP mixer
(the paper's Sudoku model).

Data. Sudoku-Extreme (CSV `source,question,answer,rating`, '.' for blanks) cannot be downloaded here,
so puzzles are generated locally: a random complete grid (randomised backtracking), then clues removed
in random order while the solution stays unique, down to `clues` givens (a minimal puzzle may stop
above it). Difficulty knobs: `clues` (fewer is harder), `hard_clues` (every second puzzle of the stream
dug down to that many instead: 22 gives 23-27 givens) and `min_rating`, a floor on the solver-effort
rating = branching nodes the exact solver needs (Sudoku-Extreme's `rating` column plays that role).
`eval` reports hard puzzles (at most HARD_GIVENS givens) and medium ones apart. Generation is pure Python
(~3 ms a puzzle at 30 clues, ~10 ms dug towards 22; the digging of a large set spread over every
core), so the generated set is augmented, as HRM/TRM do for Sudoku-Extreme-1k: 2,048 training puzzles x
32 augmentations (~6 s to generate on 2 cores; with 256 the model overfit: 77% of training rows solved against 52%
held out) and 64 test puzzles (unaugmented, disjoint from training, generated first so the test split
alone takes a second). Users with the Sudoku-Extreme files set GRAM_SUDOKU_EXTREME to the folder holding
train.csv and test.csv; the `sudoku` task then reads the first `csv_rows` rows of each instead (see
`read_extreme_csv`).

Augmentations keep a grid valid: digit permutation, transpose, band and stack shuffles, row shuffles
inside bands and column shuffles inside stacks. One is stored as a cell permutation and a token map,
so applying it and inverting it are two gathers.

Unconditional: the test input is all blank, the targets complete grids (512 random grids x 32
augmentations for training). Half the training inputs show up to `train_clues` cells of their grid (see
`clue_mask`): from blank inputs alone nothing was learnt here. Metrics: validity rate and the
fraction of distinct grids among the samples (the paper: 99.05% valid, all distinct).
"""
from __future__ import annotations

import csv
import functools
import operator
import os
import random
from pathlib import Path

import torch

from .base import PAD, Split, Task

BLANK = 1  # digit d is token d + 1
HARD_GIVENS = 26  # a puzzle with at most this many givens counts as hard (Sudoku-Extreme's are harder still)
BOX = [(r // 3) * 3 + c // 3 for r in range(9) for c in range(9)]
# (27, 9) cell indices of every row, column and box
UNITS = torch.tensor([[r * 9 + c for c in range(9)] for r in range(9)]
                     + [[r * 9 + c for r in range(9)] for c in range(9)]
                     + [[i for i in range(81) if BOX[i] == b] for b in range(9)])
UNIT_NAMES = [f"row {r + 1}" for r in range(9)] + [f"column {c + 1}" for c in range(9)] + [f"box {b + 1}" for b in range(9)]
_ALL_DIGITS = 0x3FE  # bits 1..9


# --- exact solver -----------------------------------------------------------------------------------
def solve(grid: list[int], limit: int = 2, rng: random.Random | None = None) -> tuple[list[list[int]], int]:
    """Backtracking over bitmasks, always branching on the cell with the fewest candidates (so forced
    cells are filled without branching). grid: 81 ints, 0 = blank. Returns up to `limit` solutions and the
    number of branching nodes (the effort rating). rng shuffles the digit order (random complete grids)."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, d in enumerate(grid):
        if d:
            bit, r, c, b = 1 << d, i // 9, i % 9, BOX[i]
            if (rows[r] | cols[c] | boxes[b]) & bit:
                return [], 0  # the givens already break a rule
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
    g = list(grid)
    empty = [i for i in range(81) if not g[i]]
    sols: list[list[int]] = []
    nodes = 0

    def search() -> bool:  # True: stop, enough solutions
        nonlocal nodes
        best, best_cand, best_n = -1, 0, 10
        for i in empty:
            if g[i]:
                continue
            cand = _ALL_DIGITS & ~(rows[i // 9] | cols[i % 9] | boxes[BOX[i]])
            n = cand.bit_count()
            if n < best_n:
                best, best_cand, best_n = i, cand, n
                if n <= 1:
                    break
        if best < 0:
            sols.append(list(g))
            return len(sols) >= limit
        if best_n == 0:
            return False
        nodes += best_n > 1
        digits = [d for d in range(1, 10) if best_cand >> d & 1]
        if rng is not None:
            rng.shuffle(digits)
        r, c, b = best // 9, best % 9, BOX[best]
        for d in digits:
            bit = 1 << d
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            g[best] = d
            if search():
                return True
            rows[r] ^= bit
            cols[c] ^= bit
            boxes[b] ^= bit
            g[best] = 0
        return False

    search()
    return sols, nodes


def random_grid(rng: random.Random) -> list[int]:
    return solve([0] * 81, 1, rng)[0][0]


def generate_puzzle(rng: random.Random, clues: int = 30) -> tuple[list[int], list[int], int]:
    """A puzzle with a unique solution and about `clues` givens: (puzzle, solution, rating)."""
    solution, cells = draw_grid(rng)
    puzzle = dig(solution, cells, clues)
    return puzzle, solution, solve(puzzle, 2)[1]


def draw_grid(rng: random.Random) -> tuple[list[int], list[int]]:
    """A random complete grid and the order its givens are tried for removal: all a puzzle takes from rng."""
    solution = random_grid(rng)
    cells = list(range(81))
    rng.shuffle(cells)
    return solution, cells


def dig(solution: list[int], cells: list[int], clues: int) -> list[int]:
    """Givens removed in the order of `cells` while the solution stays unique, down to `clues` of them."""
    puzzle, n = list(solution), 81
    for i in cells:
        if n <= clues:
            break
        d, puzzle[i] = puzzle[i], 0
        # one search for a solution without d there (the known one has it) instead of a search for two
        if has_solution_without(puzzle, i, d):
            puzzle[i] = d  # removing it would allow a second solution
        else:
            n -= 1
    return puzzle


# --- the digging's uniqueness test, on bitboards ---------------------------------------------------------
# One 81-bit int per digit marks the blank cells it may still go in, so a round of constraint propagation
# over the whole grid is a few dozen int operations rather than a Python loop over cells: 4x faster than
# solve() on puzzles dug towards 22 givens, where dig() spends all its time (docs/recipe.md, data).
_UNIT_MASKS = [sum(1 << i for i in unit) for unit in UNITS.tolist()]
_PEERS = [functools.reduce(operator.or_, (m for m in _UNIT_MASKS if m >> i & 1)) for i in range(81)]  # cell i's units


def has_solution_without(puzzle: list[int], cell: int, digit: int) -> bool:
    """Whether puzzle (81 ints, 0 = blank) has a solution without `digit` in the blank `cell`: asked of the known
    solution's digit, no means the solution stays unique with that cell blank."""
    blank = sum(1 << i for i in range(81) if not puzzle[i])
    places = [blank] * 10  # places[d]: the blank cells d may go in (index 0 unused)
    for i, d in enumerate(puzzle):
        if d:
            places[d] &= ~_PEERS[i]
    places[digit] &= ~(1 << cell)
    return _completes(places, blank)


def _completes(places: list[int], blank: int) -> bool:
    """Depth-first search for any completion: cells with one candidate, then digits with one place left in a
    unit, are filled until none is left; then a branch on a cell with two candidates (more if none has two)."""
    while blank:
        one = two = three = 0  # the cells with at least 1, 2, 3 candidates
        for p in places[1:]:
            three |= two & p
            two |= one & p
            one |= p
        if blank & ~one:
            return False  # a blank cell nothing fits
        singles = one & ~two
        forced = [(b, d) for b in _bits(singles) for d in range(1, 10) if places[d] & b]
        if not forced:
            units = [m for m in _UNIT_MASKS if m & blank]
            forced = [(q, d) for d in range(1, 10) if (p := places[d]) for m in units if (q := p & m) and not q & (q - 1)]
            if not forced:
                break
        for b, d in forced:
            if blank & b and places[d] & b:  # else an earlier one of this round took it: the next round sees it
                blank = _place(places, blank, b, d)
    else:
        return True
    b = two & ~three or two
    b &= -b
    for d in range(1, 10):
        if places[d] & b:
            branch = list(places)
            if _completes(branch, _place(branch, blank, b, d)):
                return True
    return False


def _place(places: list[int], blank: int, b: int, d: int) -> int:
    """Digit d into the cell of bit b: no digit goes there any more, d nowhere else in its units."""
    keep = ~b
    places[:] = [p & keep for p in places]
    places[d] &= ~_PEERS[b.bit_length() - 1]
    return blank & ~b


def _bits(x: int):
    while x:
        b = x & -x
        yield b
        x ^= b


def dig_all(jobs: list[tuple], parallel_from: int = 512) -> list[list[int]]:
    """dig() over many (solution, cells, clues), on every core from `parallel_from` jobs: it is pure Python, and
    the puzzles come out the same either way (each is fixed by its solution, cell order and clues)."""
    if len(jobs) < parallel_from or (os.cpu_count() or 1) < 2:
        return [dig(*j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the caller may be a threaded server (Streamlit), where a forked child can inherit a held lock
    with ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(dig, *zip(*jobs), chunksize=64))


# --- validity, in torch -----------------------------------------------------------------------------
def valid_grids(pred: torch.Tensor) -> torch.Tensor:
    """(B, 81) tokens -> (B,) every row, column and box holds the digits 1-9 once."""
    return (pred[:, UNITS.to(pred.device)].sort(-1).values == torch.arange(2, 11, device=pred.device)).all(-1).all(-1)


def keeps_givens(x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    given = x > BLANK
    return ((pred == x) | ~given).all(1)


# --- augmentations ----------------------------------------------------------------------------------
def random_augmentations(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n augmentations as (cells (n, 81), token_map (n, 11)): token_map[grid[cells]] is a valid grid
    when grid is. Random permutations are argsorts of uniform noise, so the whole batch is a few ops."""
    def shuffled_lines():  # (n, 9): bands (or stacks) permuted, lines permuted inside each
        bands = torch.rand(n, 3, generator=gen).argsort(1)
        inner = torch.rand(n, 3, 3, generator=gen).argsort(2)
        return (3 * bands[:, :, None] + inner).flatten(1)
    r, c = shuffled_lines(), shuffled_lines()
    cells = r[:, :, None] * 9 + c[:, None, :]
    transpose = torch.rand(n, 1, 1, generator=gen) < 0.5
    cells = torch.where(transpose, cells.transpose(1, 2), cells).flatten(1)
    digits = 2 + torch.rand(n, 9, generator=gen).argsort(1)
    return cells, torch.cat([torch.tensor([PAD, BLANK]).expand(n, 2), digits], 1)


def apply_augmentation(aug, tokens: torch.Tensor) -> torch.Tensor:
    """aug = (cells, token_map) with the same leading shape as tokens (..., 81)."""
    cells, token_map = aug
    return token_map.gather(-1, tokens.gather(-1, cells))


def invert_augmentation(aug) -> tuple[torch.Tensor, torch.Tensor]:
    cells, token_map = aug
    return cells.argsort(-1), token_map.argsort(-1)


def augmented(inputs: torch.Tensor, targets: torch.Tensor, n_aug: int, gen: torch.Generator):
    """Each pair followed by n_aug - 1 random augmentations of it."""
    aug = random_augmentations(len(inputs) * (n_aug - 1), gen)
    xs = apply_augmentation(aug, inputs.repeat_interleave(n_aug - 1, 0)).view(len(inputs), n_aug - 1, -1)
    ys = apply_augmentation(aug, targets.repeat_interleave(n_aug - 1, 0)).view(len(inputs), n_aug - 1, -1)
    return torch.cat([inputs[:, None], xs], 1).flatten(0, 1), torch.cat([targets[:, None], ys], 1).flatten(0, 1)


# --- Sudoku-Extreme CSV -----------------------------------------------------------------------------
def read_extreme_csv(path: str | Path, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The Sudoku-Extreme format (`source,question,answer,rating`, '.' for blanks) -> input tokens,
    target tokens and ratings of the first `rows` rows. Every answer is checked to be a valid grid that
    keeps its question's givens."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["source", "question", "answer", "rating"]:
            raise ValueError(f"{path}: expected the header source,question,answer,rating, got {header}")
        qs, ans, ratings = [], [], []
        for line, rec in enumerate(reader, start=2):
            if rows is not None and len(qs) >= rows:
                break
            if len(rec) != 4:
                raise ValueError(f"{path}:{line}: expected 4 fields, got {len(rec)}")
            _, q, a, rating = rec
            if len(q) != 81 or len(a) != 81 or set(q) - set(".0123456789") or set(a) - set("123456789"):
                raise ValueError(f"{path}:{line}: question and answer must be 81 cells ('.' or 1-9; answer 1-9)")
            if not rating.strip().lstrip("-").isdigit():
                raise ValueError(f"{path}:{line}: rating must be an integer, got {rating!r}")
            qs.append([0 if ch in ".0" else int(ch) for ch in q])
            ans.append([int(ch) for ch in a])
            ratings.append(int(rating))
    if not qs:
        raise ValueError(f"{path}: no puzzles")
    x = torch.tensor(qs) + 1
    y = torch.tensor(ans) + 1
    bad = ~(valid_grids(y) & keeps_givens(x, y))
    if bad.any():
        raise ValueError(f"{path}:{int(bad.nonzero()[0]) + 2}: the answer is not a valid grid completing the question")
    return x, y, torch.tensor(ratings)


# --- the tasks --------------------------------------------------------------------------------------
def _cells_text(tokens: torch.Tensor, blank: str) -> str:
    return "".join(str(t - 1) if 2 <= t <= 10 else blank for t in tokens.tolist())


class Sudoku(Task):
    seq_len, vocab = 81, 11
    board = "sudoku"
    rules = ("Fill the 9x9 grid so that every row, every column and every 3x3 box holds the digits 1-9 once. "
             "The givens (amber) stay; a proper puzzle has one solution.")
    def __init__(self, name: str = "sudoku", n_train: int = 2048, n_test: int = 64, n_aug: int = 32, clues: int = 30,
                 hard_clues: int | None = None, min_rating: int = 0, csv_dir: str | None = None,
                 csv_rows: int = 100_000):
        self.name, self.n_train, self.n_test, self.n_aug = name, n_train, n_test, n_aug
        self.clues, self.hard_clues, self.min_rating = clues, hard_clues, min_rating
        self.csv_dir, self.csv_rows = csv_dir, csv_rows

    def recipe(self, seed: int = 0) -> dict:
        if self.csv_dir:
            return {"task": self.name, "source": f"Sudoku-Extreme CSV in {self.csv_dir}",
                    "rows_per_split": self.csv_rows, "seed": seed}
        return {"task": self.name, "source": "generated", "train_puzzles": self.n_train, "augmentations": self.n_aug,
                "test_puzzles": self.n_test, "clues": self.clues,
                **({"hard_clues": self.hard_clues} if self.hard_clues else {}), "min_rating": self.min_rating,
                "seed": seed}

    @functools.lru_cache(maxsize=4)
    def _all(self, seed: int) -> tuple[Split, Split]:
        if self.csv_dir:
            train = read_extreme_csv(Path(self.csv_dir) / "train.csv", self.csv_rows)
            test = read_extreme_csv(Path(self.csv_dir) / "test.csv", self.csv_rows)
            return _unique_split(train[0], train[1]), _unique_split(test[0], test[1])
        x, y = self._generated(seed, self.n_test + self.n_train)
        gen = torch.Generator().manual_seed(seed)
        tx, ty = augmented(x[self.n_test:], y[self.n_test:], self.n_aug, gen)
        return _unique_split(tx, ty), _unique_split(x[: self.n_test], y[: self.n_test])

    @functools.lru_cache(maxsize=4)
    def _generated(self, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first n puzzles and solutions of the seeded stream, as tokens: the test split is its head, so it
        is generated alone (in a second) when no training data is asked for. With hard_clues, every second
        puzzle of the stream is dug down to hard_clues givens instead of clues. The grids are drawn in stream
        order, then dug on every core."""
        rng = random.Random(seed)
        puzzles, solutions = [], []
        while len(puzzles) < n:  # one round unless a rating floor turns puzzles away
            jobs = [(*draw_grid(rng), self.hard_clues if self.hard_clues and (len(puzzles) + k) % 2 else self.clues)
                    for k in range(n - len(puzzles))]
            for (solution, _, _), puzzle in zip(jobs, dig_all(jobs)):
                if not self.min_rating or solve(puzzle, 2)[1] >= self.min_rating:
                    puzzles.append(puzzle)
                    solutions.append(solution)
        return torch.tensor(puzzles) + 1, torch.tensor(solutions) + 1

    @property
    def cache_data(self) -> bool:
        return not self.csv_dir

    def build_split(self, name: str, seed: int) -> Split:
        return self._test(seed) if name == "test" else self._all(seed)[0]

    def _test(self, seed: int) -> Split:
        # generated: the head of the stream alone, so evaluating never waits for the training puzzles
        return self._all(seed)[1] if self.csv_dir else _unique_split(*self._generated(seed, self.n_test))

    def is_correct(self, x, pred):
        return valid_grids(pred) & keeps_givens(x, pred)

    def levels(self, split):
        givens = (split.inputs > BLANK).sum(1)
        return {"hard": givens <= HARD_GIVENS, "medium": givens > HARD_GIVENS}

    def parse(self, text: str) -> torch.Tensor:
        """81 cells, '.' or '0' for a blank, digits 1-9; whitespace and '/' or '|' separators ignored."""
        cells = "".join(ch for ch in text if not ch.isspace() and ch not in "/|")
        bad = sorted(set(cells) - set(".0123456789"))
        if bad:
            raise ValueError(f"unknown character(s) {bad}: a Sudoku cell is 1-9, or '.' or '0' for a blank")
        if len(cells) != 81:
            raise ValueError(f"a Sudoku has 81 cells, got {len(cells)}")
        x = torch.tensor([BLANK if ch in ".0" else int(ch) + 1 for ch in cells])
        for unit, name in zip(UNITS, UNIT_NAMES):
            digits = [t - 1 for t in x[unit].tolist() if t > BLANK]
            twice = sorted({d for d in digits if digits.count(d) > 1})
            if twice:
                raise ValueError(f"the givens repeat {', '.join(map(str, twice))} in {name}")
        return x

    def format_input(self, x: torch.Tensor) -> str:
        return _cells_text(x, ".")

    def format_output(self, y: torch.Tensor) -> str:
        """81 digits, row-major; '0' where a cell holds no digit."""
        return _cells_text(y, "0")

    def clashes(self, x, pred):
        """Digits repeated in a row, column or box, and givens overwritten."""
        d = torch.where(pred > BLANK, pred, 0)[UNITS]  # (27 units, 9 cells)
        same = (d[:, :, None] == d[:, None, :]).sum(2) > 1  # a cell whose digit is elsewhere in its unit too
        hit = torch.zeros(81, dtype=torch.bool)
        hit[UNITS[same & (d > 0)]] = True
        return hit | ((x > BLANK) & (pred != x))

    def edit(self, x, target, value=None):
        """Write digit `value` (1-9) into a cell, or blank it (value None or 0)."""
        x = x.clone()
        x[int(target)] = BLANK if not value else int(value) + 1
        return x


def clue_mask(n: int, cells: int, max_clues: int, gen: torch.Generator) -> torch.Tensor:
    """(n, cells) bool: half the rows show no cell, half k ~ U{1..max_clues} random cells. A curriculum for
    unconditional Sudoku: completing a partial target teaches the core to propagate what the noise commits,
    which a blank input alone gives no handle on."""
    k = torch.randint(1, max_clues + 1, (n,), generator=gen)
    k[torch.rand(n, generator=gen) < 0.5] = 0
    rank = torch.rand(n, cells, generator=gen).argsort(1).argsort(1)  # a random order of the cells
    return rank < k[:, None]


class SudokuUncond(Sudoku):
    """Complete grids from an all-blank input."""

    rules = ("Write a complete, valid Sudoku grid (every row, column and 3x3 box holding 1-9 once) starting from "
             "a blank one. There are about 6.7e21 of them: every sample should be a new one.")

    multi_solution = True
    unconditional = True

    def __init__(self, name: str = "sudoku_uncond", n_train: int = 512, n_test: int = 64, n_aug: int = 32,
                 train_clues: int = 0):
        super().__init__(name, n_train, n_test, n_aug)
        self.train_clues = train_clues

    def recipe(self, seed: int = 0) -> dict:
        return {"task": self.name, "source": "random complete grids", "train_grids": self.n_train,
                "augmentations": self.n_aug, "test_grids": self.n_test, "train_clues": self.train_clues, "seed": seed}

    @functools.lru_cache(maxsize=4)
    def _all(self, seed: int) -> tuple[Split, Split]:
        rng = random.Random(seed)
        grids = torch.tensor([random_grid(rng) for _ in range(self.n_train + self.n_test)]) + 1
        blank = self.empty_input()[None]
        _, train = augmented(blank.expand(self.n_train, -1), grids[self.n_test:], self.n_aug,
                             torch.Generator().manual_seed(seed))
        train = train.unique(dim=0)
        test = Split(blank, grids[: self.n_test], torch.zeros(self.n_test, dtype=torch.long))
        if not self.train_clues:
            return Split(blank, train, torch.zeros(len(train), dtype=torch.long)), test
        shown = clue_mask(len(train), train.shape[1], self.train_clues, torch.Generator().manual_seed(seed + 1))
        inputs, owner = torch.where(shown, train, BLANK).unique(dim=0, return_inverse=True)
        return Split(inputs, train, owner), test

    def _test(self, seed: int) -> Split:
        return self._all(seed)[1]

    def levels(self, split):
        return {}  # its one input is blank: no puzzle to rate by its givens

    def empty_input(self) -> torch.Tensor:
        return torch.full((81,), BLANK)

    def parse(self, text: str) -> torch.Tensor:
        if text.strip():
            raise ValueError(f"{self.name} is unconditional: it takes no input (omit --input)")
        return self.empty_input()

    def extra_metrics(self, split, samples, picked):
        flat = samples.reshape(-1, samples.shape[-1])
        return {"validity": valid_grids(flat).float().mean().item(),
                # the fraction of distinct grids among all samples (1.0: no two samples alike)
                "distinct": len(flat.unique(dim=0)) / len(flat)}


def _unique_split(x: torch.Tensor, y: torch.Tensor) -> Split:
    """One target per input (a proper Sudoku has one solution); duplicate inputs dropped."""
    _, inverse = x.unique(dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(x)).scatter_reduce(0, inverse, torch.arange(len(x)), "amin")
    first = first.sort().values  # keep the original order
    return Split(x[first], y[first], torch.arange(len(first)))


def extreme_from_env() -> str | None:
    """GRAM_SUDOKU_EXTREME: a folder with Sudoku-Extreme's train.csv and test.csv, if the user has them."""
    return os.environ.get("GRAM_SUDOKU_EXTREME") or None
