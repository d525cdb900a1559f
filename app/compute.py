"""Cached calls into the library for the pages. No model logic lives here: every number comes from
gram.rollout / gram.select / gram.tasks (and gram.analysis when it is present); this module only
caches results per (checkpoint, input, width, seed) and turns library errors into messages.

Caches: models and traces with st.cache_resource (tensors, shared by all sessions, bounded);
batch evaluations (plain arrays) with st.cache_data persisted to disk, so a page reopened after a
server restart is instant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from gram.checkpoint import CheckpointError, load_checkpoint
from gram.rollout import Trace, rollout, sample
from gram.select import best_of_n, majority_vote
from gram.tasks import get_task

try:  # the analysis module is written alongside the app; use it when it has landed
    from gram import analysis as _analysis
except ImportError:  # pragma: no cover - depends on the library's progress
    _analysis = None

try:
    from gram.rollout import branch as _branch
except ImportError:  # pragma: no cover
    _branch = None

MAX_WIDTH = 128  # trajectories a page rolls out at once
TRACE_BUDGET = 1.5e9  # bytes a single recorded trace may take


class UserError(ValueError):
    """Something the user can fix; pages show it with st.error."""


torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@st.cache_resource(max_entries=8, show_spinner=False)
def _load(key: str):
    path = key.rsplit("@", 1)[0]
    return load_checkpoint(path)


def load(ckpt, task_name: str | None = None):
    """(model, cfg, card) of a Ckpt, or UserError with a clear message (wrong task, unreadable files)."""
    if ckpt is None:
        raise UserError("No checkpoint selected.")
    try:
        model, cfg, card = _load(ckpt.key)
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
    L = (m.image_side // 2) ** 2 if m.codec == "patch" else m.seq_len
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
    model, cfg, _ = _load(key)
    xt = torch.tensor(x, dtype=torch.long)[None].expand(n, -1).contiguous()
    return rollout(model, xt, n_sup=n_sup, seed=seed, temperature=temperature, record=record, latents=latents,
                   halt=halt)


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


def branch(ckpt, x: torch.Tensor, *, seed: int, at_record: int, m: int, n_sup: int, temperature: float = 1.0,
           branch_seed: int = 1000) -> tuple[Trace, int]:
    """M continuations of trajectory `seed` from the end of the supervision step holding record `at_record`
    of its transition-level trace. Returns (trace of the M branches, the supervision step branched from)."""
    model, cfg, _ = load(ckpt)
    T = cfg.model.T
    step = at_record // T + 1  # supervision step of that record (1-based); branch after it completes
    step = min(step, n_sup - 1)
    if step < 1 or m < 1:
        raise UserError("Pick a step before the last one to branch from.")
    check_width(cfg, m, n_sup - step)
    with torch.inference_mode():
        if _branch is not None:
            try:  # the library's branch: the prefix replayed once and shared by the M continuations
                return _branch(model, x, seed, step, m, n_sup=n_sup, temperature=temperature,
                               record="transitions"), step
            except TypeError:
                pass  # an older signature: the same thing through the Trace API
        seeds = [branch_seed + seed * 1000 + j for j in range(m)]
        prefix = rollout(model, x[None], n_sup=step, seeds=[seed], temperature=temperature, record="none")
        h, l = prefix.state
        start = (h.expand(m, -1, -1), None if l is None else l.expand(m, -1, -1))
        tr = rollout(model, x[None].expand(m, -1), n_sup=n_sup - step, seeds=seeds, temperature=temperature,
                     record="transitions", start=start, start_step=step)
    return tr, step


# --- projections ------------------------------------------------------------------------------
@dataclass
class Projection:
    coords: np.ndarray  # (R, N, k)
    explained: np.ndarray  # (k,) explained-variance ratio of each axis


def pca(h: torch.Tensor, k: int = 3) -> Projection:
    """PCA fitted once on every state of the run (all records, all trajectories): fixed axes."""
    R, N = h.shape[:2]
    if _analysis is not None and hasattr(_analysis, "pca"):
        try:
            res = _analysis.pca(h, k=k)
            coords = res.coords if hasattr(res, "coords") else res[0]
            expl = res.explained if hasattr(res, "explained") else res[1]
            return Projection(np.asarray(coords, dtype=np.float32).reshape(R, N, -1), np.asarray(expl))
        except Exception:
            pass
    X = h.reshape(R * N, -1).float()
    X = X - X.mean(0, keepdim=True)
    k = max(1, min(k, X.shape[0], X.shape[1]))
    total = X.pow(2).sum()
    if total <= 0:
        return Projection(np.zeros((R, N, k), np.float32), np.zeros(k))
    if min(X.shape) <= 256:
        U, S, V = torch.linalg.svd(X, full_matrices=False)
        V = V.T
    else:
        U, S, V = torch.svd_lowrank(X, q=min(k + 8, min(X.shape)), niter=3)
    coords = (X @ V[:, :k]).numpy()
    expl = (S[:k] ** 2 / total).numpy()
    return Projection(coords.reshape(R, N, k), expl)


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
    """Every valid answer of x when x is one of the task's inputs (train or test), else None."""
    t = _known(task_name, seed).get(tuple(x.tolist()))
    return None if t is None else [get_task(task_name).format_output(y) for y in t]


def known_targets(task_name: str, seed: int, x: torch.Tensor) -> list[torch.Tensor] | None:
    return _known(task_name, seed).get(tuple(x.tolist()))


@st.cache_resource(max_entries=8, show_spinner=False)
def _known(task_name: str, seed: int) -> dict:
    task = get_task(task_name)
    out: dict = {}
    for name in ("test", "train"):
        s = task.split(name, seed)
        for q, o in enumerate(s.owner.tolist()):
            out.setdefault(tuple(s.inputs[o].tolist()), []).append(s.targets[q])
    return out


# --- batches ---------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner=False, persist="disk")
def _batch(key: str, task_name: str, split_seed: int, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    model, cfg, _ = _load(key)
    task = get_task(task_name)
    sub = task.split("test", split_seed).sample(n_inputs, seed=1234)
    samples, values = sample(model, sub.inputs, n, seed=seed, n_sup=n_sup, puzzle=sub.puzzle)
    P = len(sub)
    valid = task.is_correct(sub.inputs.repeat_interleave(n, 0), samples.reshape(P * n, -1)).view(P, n)
    # answers: the samples in canonical form, what a vote counts (graph colouring: not colour names)
    return {"inputs": sub.inputs.numpy(), "samples": samples.numpy(), "answers": task.canonical_samples(samples).numpy(),
            "values": values.float().numpy(), "valid": valid.numpy(), "n_targets": sub.n_targets().numpy()}


def batch(ckpt, task_name: str, *, n_inputs: int, n: int, seed: int, n_sup: int) -> dict:
    """N samples for each of n_inputs held-out inputs (a fixed, seeded subset of the test split)."""
    _, cfg, _ = load(ckpt, task_name)
    if n * n_inputs > 8192:
        raise UserError(f"{n_inputs} inputs x {n} samples is more than this app rolls out at once (8192).")
    return _batch(ckpt.key, task_name, cfg.train.seed, int(n_inputs), int(n), int(seed), int(n_sup))


def widths(n_max: int) -> list[int]:
    ws = [2 ** i for i in range(int(math.log2(max(1, n_max))) + 1)]
    return ws if ws[-1] == n_max else ws + [n_max]


def selection_curves(b: dict, ns: list[int]) -> dict:
    """Accuracy of majority vote and of best-of-N by LPRM value when only the first n samples exist."""
    if _analysis is not None and hasattr(_analysis, "selection_curves"):
        try:
            return _analysis.selection_curves(b["answers"], b["values"], b["valid"], ns)
        except Exception:
            pass
    samples, values, valid = torch.as_tensor(b["answers"]), torch.as_tensor(b["values"]), torch.as_tensor(b["valid"])
    vote, lprm, any_ok = [], [], []
    for n in ns:
        iv = majority_vote(samples[:, :n])
        il = best_of_n(values[:, :n])
        vote.append(valid[:, :n].gather(1, iv[:, None]).float().mean().item())
        lprm.append(valid[:, :n].gather(1, il[:, None]).float().mean().item())
        any_ok.append(valid[:, :n].any(1).float().mean().item())
    return {"n": ns, "vote": vote, "lprm": lprm, "oracle": any_ok}


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


def spread(tr: Trace) -> tuple[np.ndarray, np.ndarray]:
    """Per record: RMS distance of the N trajectories' h from their mean, and the number of distinct answers."""
    if _analysis is not None and hasattr(_analysis, "per_step_spread") and hasattr(_analysis, "distinct_per_step"):
        try:
            return np.asarray(_analysis.per_step_spread(tr)), np.asarray(_analysis.distinct_per_step(tr))
        except Exception:
            pass
    h = tr.h.float().reshape(tr.h.shape[0], tr.h.shape[1], -1)
    rms = (h - h.mean(1, keepdim=True)).pow(2).sum(-1).mean(1).sqrt().numpy()
    distinct = np.array([len({tuple(r) for r in tr.pred[k].tolist()}) for k in range(tr.pred.shape[0])])
    return rms, distinct
