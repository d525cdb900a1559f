"""One evaluation pipeline: draw N answers per input once, then read every metric off what was drawn.

`draw` rolls out every input x N trajectories, `chunk` rows at a time; trajectory j of input i draws seed
+ i * N + j, so any answer can be replayed alone and the chunking changes nothing. One trace per chunk is read
at each requested depth and, with act=True, where ACT halts each trajectory (the end of the first supervision
step whose P(halt) passes halt_at, the rule rollout(halt=True) applies): a table of depths and ACT costs one
rollout. Each reading is a SampleSet, and every metric below is a function of one. A width n reads the first
n trajectories of every input (`SampleSet.first`), so the width curves are nested: pass@n, coverage@n and
distinct@n can only grow with n, and vote@n and LPRM@n differ only by their rule, never by the answers.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import torch

from .budget import check, rollout_cost
from .cards import inference
from .checkpoint import load_checkpoint
from .rollout import HALT_AT, Trace, fold, rollout
from .select import best_of_n, majority_vote
from .tasks import get_task
from .tasks.base import Split, Task


@dataclass
class SampleSet:
    """N answers to each of P inputs, as votes, coverage and the task's metrics count them."""

    answers: torch.Tensor  # (P, N, S) canonical answers (Task.canonical: one form per answer)
    valid: torch.Tensor  # (P, N) bool
    values: torch.Tensor | None = None  # (P, N) LPRM value of each answer, in [0, 1]
    n_targets: torch.Tensor | None = None  # (P,) how many valid answers each input has: coverage's denominator
    steps: torch.Tensor | None = None  # (P, N) supervision steps each answer took (the depth, or where ACT halted)
    split: Split | None = None  # the inputs and their stored targets, when drawn on a split
    samples: torch.Tensor | None = None  # (P, N, S) the answers as decoded, before Task.canonical: what a board shows

    @classmethod
    def of(cls, task: Task, split: Split, samples: torch.Tensor, values: torch.Tensor | None = None,
           steps: torch.Tensor | None = None) -> "SampleSet":
        """Raw samples (P, N, S) of the inputs of `split`: canonicalised, then judged."""
        answers = task.canonical_samples(samples)
        P, N, S = answers.shape
        valid = task.is_correct(split.inputs.repeat_interleave(N, 0), answers.reshape(P * N, S)).view(P, N)
        return cls(answers, valid, values, split.n_targets(), steps, split, samples)

    @property
    def P(self) -> int:
        return self.answers.shape[0]

    @property
    def N(self) -> int:
        return self.answers.shape[1]

    def first(self, n: int) -> "SampleSet":
        """The first n trajectories of every input: the answers a width of n would have drawn."""
        if not 1 <= n <= self.N:
            raise ValueError(f"widths must be in [1, {self.N}] (the samples drawn), got {n}")
        cut = lambda t: None if t is None else t[:, :n]
        out = SampleSet(self.answers[:, :n], self.valid[:, :n], cut(self.values), self.n_targets, cut(self.steps),
                        self.split, cut(self.samples))
        out.__dict__["first_seen"] = cut(self.first_seen)  # whether answer j is new does not depend on later ones
        return out

    @cached_property
    def first_seen(self) -> torch.Tensor:
        """(P, N) bool: answer j of an input is the first of its kind among answers 0..j."""
        out = torch.zeros(self.P, self.N, dtype=torch.bool)
        for i, a in enumerate(self.answers):
            kinds, kind = torch.unique(a, dim=0, return_inverse=True)
            first = torch.full((len(kinds),), self.N).scatter_reduce(0, kind, torch.arange(self.N), "amin")
            out[i, first] = True
        return out


def draw(model, task: Task, split: Split, n: int, *, depths: list[int], act: bool = False, halt_at: float = HALT_AT,
         seed: int = 0, temperature: float = 1.0, dtype: str = "auto", chunk: int = 4096,
         log=None, on_step=None) -> dict[int | str, SampleSet]:
    """n trajectories for every input of `split`, rolled out to max(depths) supervision steps. Returns a
    SampleSet per depth (keyed by the depth) and, with act=True, one keyed 'act': each trajectory's answer
    where its halting head first passed halt_at, at most max(depths) steps in. on_step: as gram.rollout's,
    for every chunk."""
    depths = sorted({int(d) for d in depths})
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be positive supervision steps, got {depths}")
    P, S = split.inputs.shape
    deepest = depths[-1]
    record = "steps" if act or len(depths) > 1 else "none"  # the end alone needs no records
    readings = {k: [] for k in [*depths, *(["act"] if act else [])]}
    dev = next(model.parameters()).device
    for rows, seeds, pz in fold(split.inputs, n, seed=seed, chunk=chunk, puzzle=split.puzzle):
        tr = rollout(model, rows.to(dev), n_sup=deepest, seeds=seeds, record=record, latents="pooled",
                     puzzle=None if pz is None else pz.to(dev), dtype=dtype, temperature=temperature, on_step=on_step)
        for d in depths:
            pred, value = (tr.final, tr.final_value) if record == "none" else (tr.pred[tr.at(d)], tr.value[tr.at(d)])
            readings[d].append((pred, value, torch.full((len(seeds),), d)))
        if act:
            readings["act"].append(_act(tr, halt_at))
        if log:
            log(f"trajectories {seeds[-1] - seed + 1}/{P * n}")
    out = {}
    for k, parts in readings.items():
        pred, value, steps = (torch.cat([p[i].cpu() for p in parts]) for i in range(3))
        out[k] = SampleSet.of(task, split, pred.view(P, n, S), value.view(P, n).float(), steps.view(P, n))
    return out


def _act(tr: Trace, halt_at: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(answer (B, S), value (B,), supervision step (B,)) where ACT halts each trajectory of a trace recorded
    at every step; a trajectory that never passes halt_at answers at the last step."""
    ends = tr.ends()
    passed = tr.halt[ends] > halt_at  # (n_sup, B)
    B = passed.shape[1]
    stop = torch.where(passed.any(0), passed.float().argmax(0), passed.shape[0] - 1)  # the first step past it
    rows = torch.arange(B)
    return tr.pred[ends][stop, rows], tr.value[ends][stop, rows], tr.sup[ends][stop]


# --- metrics: each a function of a SampleSet ---------------------------------------------------------
def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _picked(s: SampleSet, index: torch.Tensor) -> float:
    """Accuracy of the answer at index (P,) of each input."""
    return s.valid.gather(1, index[:, None]).float().mean().item()


def accuracy(s: SampleSet) -> float:
    """Mean validity over inputs and samples: the expected accuracy of one sample (the paper's accuracy@1)."""
    return s.valid.float().mean().item()


def pass_at(s: SampleSet) -> float:
    """Share of inputs with at least one valid answer (pass@N, the oracle pick)."""
    return s.valid.any(1).float().mean().item()


def picks(s: SampleSet) -> dict[str, torch.Tensor]:
    """(P,) the index of the answer each rule picks per input: 'vote' (gram.select.majority_vote) and, when
    the values are known, 'lprm' (the highest LPRM value, gram.select.best_of_n)."""
    out = {"vote": majority_vote(s.answers)}
    if s.values is not None:
        out["lprm"] = best_of_n(s.values)
    return out


def vote(s: SampleSet) -> float:
    """Accuracy of the majority vote's pick."""
    return _picked(s, majority_vote(s.answers))


def lprm(s: SampleSet) -> float:
    """Accuracy of the answer with the highest LPRM value."""
    return _picked(s, best_of_n(s.values))


def distinct(s: SampleSet) -> float:
    """Mean number of distinct answers per input."""
    return int(s.first_seen.sum()) / s.P


def found(s: SampleSet) -> torch.Tensor:
    """(P,) how many distinct valid answers each input got: coverage's numerator."""
    return (s.first_seen & s.valid).sum(1)


def _coverage(s: SampleSet) -> list[float]:
    """Per input: distinct valid answers found / valid answers there are, at most 1."""
    if s.n_targets is None:
        raise ValueError("coverage needs the number of valid answers of each input (SampleSet.n_targets)")
    return [min(1.0, f / max(1, t)) for f, t in zip(found(s).tolist(), s.n_targets.tolist())]


def coverage(s: SampleSet) -> float:
    """Mean over inputs of (distinct valid answers / all valid answers)."""
    return _mean(_coverage(s))


def multi_coverage(s: SampleSet) -> float | None:
    """Coverage over the inputs with several valid answers only (None when there are none): on an input with
    one answer coverage is accuracy, so this is what sampling many trajectories is for."""
    per = [c for c, t in zip(_coverage(s), s.n_targets.tolist()) if t > 1]
    return _mean(per) if per else None


def exact_match(s: SampleSet) -> float:
    """Share of samples equal to one of the stored targets of their input."""
    targets = [set() for _ in range(s.P)]
    for y, o in zip(s.split.targets.tolist(), s.split.owner.tolist()):
        targets[o].add(tuple(y))
    return sum(tuple(a) in targets[i] for i in range(s.P) for a in s.answers[i].tolist()) / (s.P * s.N)


def curves(s: SampleSet, widths: list[int]) -> dict:
    """Lists over widths n of the metrics of the first n samples: vote, lprm (when values are known), oracle
    (pass@n), mean (accuracy), distinct and coverage (when n_targets is known)."""
    if not widths:
        raise ValueError(f"widths must be in [1, {s.N}] (the samples drawn), got {widths}")
    at = [s.first(n) for n in widths]
    out = {"n": list(widths), "vote": [vote(a) for a in at]}
    if s.values is not None:
        out["lprm"] = [lprm(a) for a in at]
    out.update(oracle=[pass_at(a) for a in at], mean=[accuracy(a) for a in at], distinct=[distinct(a) for a in at])
    if s.n_targets is not None:
        out["coverage"] = [coverage(a) for a in at]
    return out


def metrics(task: Task, s: SampleSet, widths: list[int] | None = None) -> dict:
    """What `gram eval` reports (s drawn on a split):

    accuracy     mean over inputs and samples of validity (the paper's per-sample accuracy)
    exact_match  share of samples equal to one of the stored targets of their input
    coverage     mean over inputs of (distinct valid samples / number of valid answers)
    distinct     mean number of distinct answers per input
    accuracy_vote / accuracy_lprm: validity of the answer picked by majority vote / best LPRM value
    multi_coverage  coverage over inputs with several answers, on tasks that have them
    puzzles_<level>, accuracy_<level>, accuracy_<rule>_<level>: the same on each of the task's levels (Task.levels)
    the task's own numbers (Task.extra_metrics: conflicts, validity, IS / FD, ...), and with widths the curves
    """
    picked = picks(s)
    out = {"n_examples": s.P, "samples": s.N, "accuracy": accuracy(s), "exact_match": exact_match(s),
           "coverage": coverage(s), "distinct": distinct(s)}
    for rule, index in picked.items():
        out[f"accuracy_{rule}"] = _picked(s, index)
    multi = multi_coverage(s) if task.multi_solution else None
    if multi is not None:
        out["multi_coverage"] = multi
    for level, rows in (task.levels(s.split) if s.split is not None else {}).items():
        if rows.any():
            sub = SampleSet(s.answers[rows], s.valid[rows])
            out[f"puzzles_{level}"] = sub.P
            out[f"accuracy_{level}"] = accuracy(sub)
            for rule, index in picked.items():
                out[f"accuracy_{rule}_{level}"] = _picked(sub, index[rows])
    out.update(task.extra_metrics(s.split, s.answers, picked))
    if widths:
        out["curves"] = curves(s, widths)
    return out


def evaluate_checkpoint(directory, samples: int | None = None, limit: int | None = None, seed: int = 0,
                        n_sup: int | None = None, halt: bool = False, temperature: float | None = None,
                        halt_at: float | None = None) -> dict:
    """`metrics` on the held-out test split, as `python -m gram eval` prints them; settings left as None are
    the card's (gram.cards.inference). halt: each trajectory answers where ACT halts it (at most n_sup steps)."""
    model, cfg, card = load_checkpoint(directory)
    d = inference(card, cfg.train.n_sup)
    samples, n_sup = samples or d["samples"], n_sup or d["n_sup"]
    temperature = d["temperature"] if temperature is None else temperature
    halt_at = d["halt_at"] if halt_at is None else halt_at
    task = get_task(cfg.train.task)
    split = task.split("test", cfg.train.seed).sample(limit)
    chunk = draw.__kwdefaults__["chunk"]
    # ACT reads where each trajectory halts off a record per supervision step; a fixed depth needs no records
    check(rollout_cost(cfg.model, len(split) * samples, n_sup, record="steps" if halt else "none", latents="pooled",
                       chunk=chunk, what="sampling", width=f"{samples:,} samples x {len(split):,} inputs"),
          hint="Lower --samples, --limit or --n-sup.")
    t0 = time.perf_counter()
    s = draw(model, task, split, samples, depths=[n_sup], act=halt, halt_at=halt_at, seed=seed,
             temperature=temperature, chunk=chunk)["act" if halt else n_sup]
    return {"task": task.name, "mode": cfg.model.mode, **metrics(task, s), "seed": seed,
            "n_sup": n_sup, "temperature": temperature, **({"halt_at": halt_at} if halt else {}),
            "seconds": round(time.perf_counter() - t0, 2)}
