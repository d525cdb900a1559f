"""Cached calls into the library for the pages. No model logic lives here: every number comes from
gram.rollout / gram.select / gram.analysis / gram.tasks; this module only caches results per
(checkpoint, input, width, seed) and turns library errors into messages.

Caches: rollouts on disk (app.views: keyed by the checkpoint's content and every argument, so a view made
by the background warmer or before a restart opens at once), and in memory with st.cache_resource
(shared by all sessions, bounded).
"""
from __future__ import annotations

import math

import numpy as np
import streamlit as st
import torch

from app import views
from gram import analysis
from gram import rollout as rollouts
from gram.checkpoint import CheckpointError
from gram.rollout import Trace
from gram.select import best_of_n, majority_vote
from gram.tasks import get_task

MAX_WIDTH = 128  # trajectories a page rolls out at once
TRACE_BUDGET = 1.5e9  # bytes a single recorded trace may take


class UserError(ValueError):
    """Something the user can fix; pages show it with st.error."""


torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def load(ckpt, task_name: str | None = None):
    """(model, cfg, card) of a Ckpt, or UserError with a clear message (wrong task, unreadable files)."""
    if ckpt is None:
        raise UserError("No checkpoint selected.")
    try:
        model, cfg, card = views.load(ckpt.path)
    except CheckpointError as e:
        raise UserError(f"Cannot load checkpoint {ckpt.label}: {e}") from None
    except Exception as e:
        raise UserError(f"Cannot load checkpoint {ckpt.label} ({type(e).__name__}: {e})") from None
    if task_name and cfg.train.task != task_name:
        raise UserError(f"Checkpoint {ckpt.label} was trained for task {cfg.train.task!r}, not {task_name!r}. "
                        f"Pick {cfg.train.task!r} in the sidebar or another checkpoint.")
    return model, cfg, card


def trace_bytes(cfg, n: int, n_sup: int, record: str = "transitions", latents: str = "full") -> float:
    m = cfg.model
    L = m.n_positions
    R = n_sup * (m.T if record == "transitions" else 1)
    per = (L * m.D if latents == "full" else m.D) * 2 + m.seq_len * m.vocab * 2 + m.seq_len * 8 + 3 * L * 2 + 16
    return float(R * n * per)


def check_width(cfg, n: int, n_sup: int, record: str = "transitions", latents: str = "full") -> None:
    if not 1 <= n <= MAX_WIDTH:
        raise UserError(f"Width {n} is out of range: choose 1 to {MAX_WIDTH} trajectories.")
    need = trace_bytes(cfg, n, n_sup, record, latents)
    if need > TRACE_BUDGET:
        raise UserError(f"{n} trajectories x {n_sup} steps would record {need / 1e9:.1f} GB of latents, more than "
                        f"the {TRACE_BUDGET / 1e9:.1f} GB this app allows. Lower the width or the depth.")


@st.cache_resource(max_entries=24, show_spinner=False)
def _trace(key: str, x: tuple, n: int, seed: int, n_sup: int, temperature: float, record: str, latents: str,
           halt: bool) -> Trace:
    return views.trace(key.rsplit("@", 1)[0], torch.tensor(x, dtype=torch.long), n=n, seed=seed, n_sup=n_sup,
                       temperature=temperature, record=record, latents=latents, halt=halt)


def trace(ckpt, x: torch.Tensor, *, n: int = 1, seed: int = 0, n_sup: int = 8, temperature: float = 1.0,
          record: str = "transitions", latents: str = "full", halt: bool = False) -> Trace:
    """N trajectories on one input x (S,), seeds seed..seed+N-1 (so trajectory j is replayable alone)."""
    _, cfg, _ = load(ckpt)
    check_width(cfg, n, n_sup, record, latents)
    try:
        return _trace(ckpt.key, tuple(int(v) for v in x.tolist()), int(n), int(seed), int(n_sup), float(temperature),
                      record, latents, bool(halt))
    except torch.OutOfMemoryError:
        raise UserError(f"Out of memory rolling out {n} trajectories; lower the width.") from None
    except RuntimeError as e:
        raise UserError(f"The rollout failed: {e}") from None


@st.cache_resource(max_entries=8, show_spinner=False)
def _posterior(key: str, x: tuple, y: tuple, seed: int, n_sup: int, temperature: float) -> Trace:
    model, _, _ = views.load(key.rsplit("@", 1)[0])
    return rollouts.posterior_rollout(model, torch.tensor([x]), torch.tensor([y]), n_sup=n_sup, seed=seed,
                                      temperature=temperature, record="transitions")


def posterior_trace(ckpt, x: torch.Tensor, y: torch.Tensor, *, seed: int, n_sup: int, temperature: float = 1.0) -> Trace:
    """One trajectory steered by the posterior, which sees the answer y: trace.noise['kl'] per record."""
    _, cfg, _ = load(ckpt)
    check_width(cfg, 1, n_sup)
    return _posterior(ckpt.key, tuple(int(v) for v in x.tolist()), tuple(int(v) for v in y.tolist()), int(seed),
                      int(n_sup), float(temperature))


def slow_notice(ckpt, rows: int, n_sup: int) -> str | None:
    """A sentence saying how long a rollout not yet cached will take, when that is more than a few seconds."""
    try:
        secs = views.estimate_seconds(ckpt.path, rows, n_sup)
    except Exception:
        return None
    return f"About {secs:.0f} s to compute on this machine ({rows} trajectories x {n_sup} steps); cached afterwards." \
        if secs > 3 else None


def branch(ckpt, x: torch.Tensor, *, seed: int, at_record: int, m: int, n_sup: int,
           temperature: float = 1.0) -> tuple[Trace, int]:
    """M continuations of trajectory `seed` from the end of the supervision step holding record `at_record`
    of its transition-level trace. Returns (trace of the M branches, the supervision step branched from)."""
    model, cfg, _ = load(ckpt)
    step = min(at_record // cfg.model.T + 1, n_sup - 1)  # that record's supervision step (1-based), completed
    if step < 1 or m < 1:
        raise UserError("Pick a step before the last one to branch from.")
    check_width(cfg, m, n_sup)
    with torch.inference_mode():
        return rollouts.branch(model, x, seed, step, m, n_sup=n_sup, temperature=temperature,
                               record="transitions"), step


# --- answers ---------------------------------------------------------------------------------
def answer_labels(task, x: torch.Tensor, answers: torch.Tensor, known: list[str] | None = None) -> tuple[list[str], list[bool]]:
    """Name each answer (B, S): 'solution k' for a valid one (numbered in order of first appearance, or by the
    list of known solutions), 'invalid' otherwise. Returns (labels, valid)."""
    valid = task.is_correct(x[None].expand(len(answers), -1), answers).tolist()
    order = {s: i for i, s in enumerate(known or [])}
    labels = []
    for a, v in zip(answers, valid):
        if not v:
            labels.append("invalid")
            continue
        s = task.format_output(a)
        if s not in order:
            order[s] = len(order)
        labels.append(f"solution {order[s] + 1}")
    return labels, valid


def known_solutions(task_name: str, seed: int, x: torch.Tensor) -> list[str] | None:
    """Every valid answer of x when x is one of the task's inputs (test or train split), else None."""
    t = known_targets(task_name, seed, x)
    return None if t is None else [get_task(task_name).format_output(y) for y in t]


def known_targets(task_name: str, seed: int, x: torch.Tensor) -> list[torch.Tensor] | None:
    key = tuple(x.tolist())
    for name in ("test", "train"):  # the held-out split first: a small file, where most puzzles shown live
        found = _known(task_name, seed, name).get(key)
        if found is not None:
            return found
    return None


@st.cache_resource(max_entries=16, show_spinner=False)
def _known(task_name: str, seed: int, name: str) -> dict:
    s = get_task(task_name).split(name, seed)
    out: dict = {}
    for q, o in enumerate(s.owner.tolist()):
        out.setdefault(tuple(s.inputs[o].tolist()), []).append(s.targets[q])
    return out


def batch(ckpt, task_name: str, *, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    """N samples for each of n_inputs held-out inputs (a fixed, seeded subset of the test split)."""
    load(ckpt, task_name)
    if n * n_inputs > 8192:
        raise UserError(f"{n_inputs} inputs x {n} samples is more than this app rolls out at once (8192).")
    return _batch(ckpt.key, int(n_inputs), int(n), int(seed), int(n_sup))


@st.cache_resource(max_entries=16, show_spinner=False)
def _batch(key: str, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    return views.batch(key.rsplit("@", 1)[0], n_inputs=n_inputs, n=n, seed=seed, n_sup=n_sup)


def widths(n_max: int) -> list[int]:
    ws = [2 ** i for i in range(int(math.log2(max(1, n_max))) + 1)]
    return ws if ws[-1] == n_max else ws + [n_max]


def selection_curves(b: dict, ns: list[int]) -> dict:
    """Vote / LPRM / pass@n accuracy (and coverage) when only the first n samples of a batch exist."""
    return analysis.selection_curves(b["answers"], b["values"], b["valid"], ns, b["n_targets"])


def picks(b: dict) -> tuple[np.ndarray, np.ndarray]:
    samples, values = torch.as_tensor(b["answers"]), torch.as_tensor(b["values"])
    return majority_vote(samples).numpy(), best_of_n(values).numpy()


def coverage_curve(task, x: torch.Tensor, answers: torch.Tensor, ns: list[int]) -> list[int]:
    """Distinct valid answers among the first n of `answers` (B, S), for each n."""
    valid = task.is_correct(x[None].expand(len(answers), -1), answers).tolist()
    seen, found, out = set(), [], []
    for a, v in zip(answers.tolist(), valid):
        if v:
            seen.add(tuple(a))
        found.append(len(seen))
    return [found[min(n, len(found)) - 1] for n in ns]
