"""Budgets before work: the memory and the arithmetic that a rollout, a sampling run or a training step will
need, estimated from the sizes alone (width x depth x transitions x updates x positions x D), and refused with
those numbers when over a ceiling, before anything is allocated. So `--samples 1000000000`, or a config whose
T or n_sup is 10**9, is one line in a fraction of a second rather than an allocator traceback or a hang.

The estimates are generous (several live copies of every activation): they bound, they do not predict.
"""
from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import MAX_PARAMETERS
from .config import Config, ModelConfig
from .rollout import sample

MEMORY_SHARE = 0.75  # of the memory this process may use: what one request may plan to take
# floating-point operations one command may plan. The largest evaluation of a shipped card (nqueens10, 500 inputs
# x 20 samples at depth 16) plans 2.5e13, ~25 min on one CPU core (~20 GFLOP/s measured); 1e15 is a day there
WORK_CEILING = 1e15
# a transition costs at least this, however few its rows: Python and kernel start-up, ~2 ms measured on one
# row of a tiny model (~20 GFLOP/s here), so 200,000 transitions of one trajectory count as the minutes they take
TRANSITION_FLOOR = 4e7
CHUNK = sample.__kwdefaults__["chunk"]  # rows gram.rollout.sample rolls out at once
GENERATOR_BYTES = 8192  # a trajectory's own torch.Generator (gram.rollout.NoiseStreams): ~5 KB of state


class BudgetError(ValueError):
    """A request over the memory or work ceiling; the message names the sizes and both numbers."""


@dataclass(frozen=True)
class Cost:
    what: str  # "sampling", "a training step", ...
    sizes: str  # the factors, e.g. "20 samples x 64 inputs x 4 steps x 2 transitions x 3 updates x 64 positions x D=64"
    bytes: float
    flops: float


def memory_ceiling() -> float:
    """MEMORY_SHARE of the memory this process may use: the machine's physical memory, or less where an
    address-space limit (ulimit -v) or a cgroup caps it."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    try:
        limits.append(int(Path("/sys/fs/cgroup/memory.max").read_text()))
    except (OSError, ValueError):  # no cgroup v2, or "max": no cap
        pass
    return MEMORY_SHARE * min(limits)


def _hidden(m: ModelConfig) -> int:
    return max(1, int(m.mlp_ratio * m.D))


def transition_flops(m: ModelConfig) -> float:
    """Floating-point operations of one high-level transition of one trajectory: K + 1 passes of a stack
    (f_L K times, then f_H), the guidance and the decoder, at every position."""
    L, D = m.n_positions, m.D
    mix = 4 * D * D + 2 * L * D if m.mixer == "attn" else 3 * max(1, int(m.mlp_ratio * L)) * D
    stack = m.n_layers * (mix + 3 * D * _hidden(m))
    return 2.0 * L * ((m.K + 1) * stack + 4 * D * D + D * max(1, m.vocab) * max(1, m.patch) ** 2)


def _row_bytes(m: ModelConfig) -> float:
    """Working memory of one trajectory while it rolls out (no gradients): state, noise, the largest block's
    temporaries and the decoder's logits in fp32, and half as much again (autocast keeps copies): measured peaks
    per row were 0.64-0.82 of this on N-Queens-10, Sudoku, MNIST and graph colouring."""
    L, D = m.n_positions, m.D
    mix = m.n_heads * L * L if m.mixer == "attn" else 3 * max(1, int(m.mlp_ratio * L)) * D
    return 1.5 * 4 * (L * (12 * D + 3 * _hidden(m)) + mix + 3 * m.seq_len * max(1, m.vocab)) + GENERATOR_BYTES


def record_bytes(m: ModelConfig, latents: str = "full") -> float:
    """One recorded point of one trajectory (gram.rollout.Trace): h in fp16, probabilities, the answer, the
    noise summary and the heads."""
    L = m.n_positions
    return (L * m.D if latents == "full" else m.D) * 2 + m.seq_len * max(1, m.vocab) * 2 + m.seq_len * 8 + 3 * L * 2 + 16


def _sizes(rows: str, n_sup: int | None, m: ModelConfig) -> str:
    steps = "" if n_sup is None else f" x {n_sup:,} steps"
    return f"{rows}{steps} x {m.T:,} transitions x {m.K + 1:,} updates x {m.n_positions:,} positions x D={m.D:,}"


def rollout_cost(m: ModelConfig, rows: int, n_sup: int, *, record: str = "none", latents: str = "full",
                 chunk: int | None = None, answers: int = 4, what: str = "a rollout", width: str | None = None) -> Cost:
    """`rows` trajectories of n_sup supervision steps, `chunk` of them at a time (None: all at once), each chunk
    recording every transition, every step or nothing. `answers` copies of every row's answer are kept (inputs,
    answers, canonical forms, ...); `width` names the rows in the message (default: 'N trajectories')."""
    at_once = max(1, rows if chunk is None else min(rows, chunk))
    records = {"transitions": n_sup * m.T, "steps": n_sup}.get(record, 0)
    in_flight = at_once * (_row_bytes(m) + records * record_bytes(m, latents))
    chunks = -(-rows // at_once)
    return Cost(what, _sizes(width or f"{rows:,} trajector{'y' if rows == 1 else 'ies'}", n_sup, m), in_flight + rows * answers * (8 * m.seq_len + 4),
                n_sup * m.T * (rows * transition_flops(m) + chunks * TRANSITION_FLOOR))


def sampling_cost(m: ModelConfig, inputs: int, samples: int, n_sup: int, what: str = "sampling",
                  chunk: int = CHUNK) -> Cost:
    """gram.rollout.sample: `samples` answers for each of `inputs` inputs, `chunk` rows at a time."""
    return rollout_cost(m, inputs * samples, n_sup, chunk=chunk, what=what,
                        width=f"{samples:,} samples x {inputs:,} inputs")


def training_cost(cfg: Config) -> Cost:
    """One optimiser step: a supervision step of the batch with every activation kept for the backward pass
    (T transitions x K + 1 stack passes), and the weights, EMA, gradients and Adam moments (5 copies of a
    generous parameter bound)."""
    m, t = cfg.model, cfg.train
    L = m.n_positions
    mix = m.n_heads * L * L if m.mixer == "attn" else 3 * max(1, int(m.mlp_ratio * L)) * m.D
    saved = m.T * ((m.K + 1) * m.n_layers * (L * (10 * m.D + 4 * _hidden(m)) + mix) + 4 * L * m.D)
    activations = t.batch * 4 * (saved + 3 * m.seq_len * max(1, m.vocab))
    return Cost("a training step", _sizes(f"batch {t.batch:,}", None, m), activations + 20 * m.parameter_bound(),
                3 * t.batch * m.T * transition_flops(m))


def check(cost: Cost, memory: float | None = None, work: float = WORK_CEILING, hint: str = "") -> Cost:
    """The cost, or BudgetError naming the sizes, the estimate and the ceiling it passes. memory defaults to
    memory_ceiling()."""
    memory = memory_ceiling() if memory is None else memory
    over = []
    if cost.bytes > memory:
        over.append(f"about {_gb(cost.bytes)} of memory, more than the {_gb(memory)} allowed here")
    if cost.flops > work:
        over.append(f"about {cost.flops:.1e} operations, more than the {work:.0e} allowed")
    if over:
        raise BudgetError(f"{cost.what} of {cost.sizes} would need {' and '.join(over)}; refused before it "
                          f"started.{' ' + hint if hint else ''}")
    return cost


def check_training(cfg: Config) -> None:
    """Training's step and its held-out evaluation (eval_samples inputs, one sample, n_sup steps), before the
    model is built."""
    t = cfg.train
    bound = cfg.model.parameter_bound()
    if bound > MAX_PARAMETERS:  # it would train a checkpoint that load_checkpoint refuses
        raise BudgetError(f"this model may have up to {bound:,} parameters, more than the {MAX_PARAMETERS:,} a "
                          "checkpoint may hold; lower D or n_layers")
    check(training_cost(cfg), hint="Lower batch, T, K, D or n_layers.")
    check(sampling_cost(cfg.model, t.eval_samples, 1, t.n_sup, "the held-out evaluation"),
          hint="Lower eval_samples or n_sup.")


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"
