"""The task interface: data as tensors, text in and out, validity and metrics, all batched.

Every task encodes an example as two token sequences of the same length `seq_len`: the input x and
the target y. Token 0 is padding: positions where y is 0 carry no loss (graph colouring keeps its
adjacency there). A split holds unique inputs and every valid target of each input, so coverage can be
counted against all answers, not just one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from . import cache

PAD = 0
SPLIT_FIELDS = ("inputs", "targets", "owner", "puzzle")
_SPLITS: dict[str, "Split"] = {}  # this process's splits by cache key: each read from disk once
_SPLITS_MAX = 8


@dataclass
class Split:
    inputs: torch.Tensor  # (P, S) unique inputs
    targets: torch.Tensor  # (Q, S) every valid target
    owner: torch.Tensor  # (Q,) index into inputs of each target
    puzzle: torch.Tensor | None = None  # (P,) puzzle id per input (ARC), else None

    def __len__(self) -> int:
        return len(self.inputs)

    def n_targets(self) -> torch.Tensor:  # (P,) how many valid answers each input has
        return torch.bincount(self.owner, minlength=len(self.inputs))

    def sample(self, m: int | None, seed: int = 0) -> "Split":
        """m inputs drawn at random (seeded), in split order; all of them when m is None or too large. A
        split's first inputs are not a fair sample: N-Queens inputs, say, are sorted by their queens."""
        if m is None or m >= len(self.inputs):
            return self
        return self.subset(torch.randperm(len(self.inputs), generator=torch.Generator().manual_seed(seed))[:m].sort().values)

    def subset(self, idx: torch.Tensor) -> "Split":
        """The inputs at idx with all their targets, renumbered."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        remap = torch.full((len(self.inputs),), -1, dtype=torch.long)
        remap[idx] = torch.arange(len(idx))
        keep = remap[self.owner] >= 0
        return Split(self.inputs[idx], self.targets[keep], remap[self.owner[keep]],
                     None if self.puzzle is None else self.puzzle[idx])


class Task:
    """Subclasses set the class attributes and implement the methods that raise."""

    name: str = ""
    seq_len: int = 0
    vocab: int = 0
    codec: str = "tokens"
    image_side: int = 0
    multi_solution: bool = False  # inputs can have several valid answers: coverage is meaningful
    unconditional: bool = False  # one blank input (empty_input); its samples are all different, so no vote
    rules: str = ""  # the task in a sentence, for people (the app's Tour and puzzle views)
    board: str = "tokens"  # how people draw it: queens | sudoku | graph | image | grid | tokens (the app's figures)
    data_version: int = 1  # bump when build_split's output changes: cached splits of older versions are rebuilt
    cache_data: bool = True  # False where the data is read from the user's files (they may change under us)

    def build_split(self, name: str, seed: int) -> Split:
        """Make split `name` ('train' or 'test') from nothing; split() caches what this returns."""
        raise NotImplementedError

    def split(self, name: str, seed: int = 0) -> Split:
        """Split `name` of the data made with `seed`: built once per machine, then read from the disk cache
        (gram.tasks.cache), keyed by the task's class, recipe, data_version, the split and the seed."""
        if name not in ("train", "test"):
            raise ValueError(f"split must be train or test, got {name!r}")
        if not self.cache_data:
            return self.build_split(name, seed)
        key = self.split_key(name, seed)
        if key in _SPLITS:
            return _SPLITS[key]
        path = self.split_path(name, seed)
        stored = cache.read(path, key)
        if stored is not None and {"inputs", "targets", "owner"} <= set(stored):
            split = Split(**{k: stored[k].long() if k in stored else None for k in SPLIT_FIELDS})
        else:
            split = self.build_split(name, seed)
            cache.write(path, key, {k: cache.narrow(getattr(split, k)) for k in SPLIT_FIELDS
                                    if getattr(split, k) is not None})
        if len(_SPLITS) >= _SPLITS_MAX:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = split
        return split

    def split_key(self, name: str, seed: int) -> str:
        return json.dumps({"class": type(self).__name__, "recipe": self.recipe(seed), "split": name, "seed": seed,
                           "version": self.data_version}, sort_keys=True, default=str)

    def split_path(self, name: str, seed: int) -> Path:
        digest = hashlib.sha256(self.split_key(name, seed).encode()).hexdigest()[:16]
        return cache.cache_root() / "data" / f"{self.name}-{name}-{seed}-{digest}.safetensors"

    def split_ready(self, name: str, seed: int = 0) -> bool:
        """Whether split() would read rather than build (the file is there; its contents are checked on read)."""
        return (not self.cache_data or self.split_key(name, seed) in _SPLITS
                or self.split_path(name, seed).is_file())

    def recipe(self, seed: int = 0) -> dict:
        """How the data was made, for checkpoint cards."""
        return {"task": self.name, "seed": seed}

    def is_correct(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(B, S), (B, S) -> (B,) bool: pred is a valid answer to x."""
        raise NotImplementedError

    def reward(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(B,) in [0, 1]: the LPRM's regression target. Default: validity."""
        return self.is_correct(x, pred).float()

    def parse(self, text: str) -> torch.Tensor:
        """Text -> input tokens (S,). Raises ValueError naming what is wrong."""
        raise NotImplementedError

    def format_input(self, x: torch.Tensor) -> str:
        raise NotImplementedError

    def format_output(self, y: torch.Tensor) -> str:
        raise NotImplementedError

    def canonical(self, pred: torch.Tensor) -> torch.Tensor:
        """(B, S) -> (B, S): the answer a prediction stands for, in the form targets are stored in
        (positions that carry no answer set to PAD, symmetric answers renamed to one representative), so
        that counting distinct answers and comparing with targets is fair. Default: pred itself."""
        return pred

    def canonical_samples(self, samples: torch.Tensor) -> torch.Tensor:
        """(P, N, S) samples -> the same in canonical form: what votes, distinct answers and coverage count."""
        P, N, S = samples.shape
        return self.canonical(samples.reshape(P * N, S)).view(P, N, S)

    def empty_input(self) -> torch.Tensor:
        """The input of an unconditional task (all blank); conditional tasks have none."""
        raise ValueError(f"task {self.name} needs an input")

    def clashes(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """(S,) bool: the cells of one answer pred (S,) to x (S,) that break a rule (drawn marked on the board,
        and what a rejected input is explained by). Default: none."""
        return torch.zeros(len(pred), dtype=torch.bool)

    def edit(self, x: torch.Tensor, target, value: int | None = None) -> torch.Tensor:
        """x (S,) with one edit a person makes by clicking the board: target is a cell (or, for a graph, a pair of
        nodes), value what to put there where the task needs one. The result may break the rules; parse() says
        how. Default: the task has no clickable input."""
        raise ValueError(f"{self.name} has no clickable input")

    def levels(self, split: Split) -> dict[str, torch.Tensor]:
        """Named difficulty levels of a split's inputs as (P,) bool masks (Sudoku: hard and medium puzzles):
        `eval` reports accuracy per level. Default: none."""
        return {}

    def extra_metrics(self, split: Split, samples: torch.Tensor, picked: dict[str, torch.Tensor]) -> dict:
        """Task-specific numbers for `eval` (conflicts, validity, FID...). samples (P, N, S); picked maps a
        selection rule ("vote", "lprm") to the (P,) index of the sample it chose for each input."""
        return {}
