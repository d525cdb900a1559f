"""Trajectory analysis over Traces: projections, spread, answers per step, commitment.

Everything here reads what a rollout recorded (gram.rollout.Trace); the metrics of sampled answers (width
curves, coverage, vote and LPRM picks) are gram.evaluate's, which `compare_models` calls.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import evaluate
from .rollout import Trace


def _states(h) -> torch.Tensor:
    """A Trace or its h (R, B, ...) -> (R, B, F) float32 features: full latents flattened, pooled as they are."""
    h = h.h if isinstance(h, Trace) else torch.as_tensor(h)
    if h.numel() == 0:
        raise ValueError("the trace recorded no states (rollout with record='steps' or 'transitions')")
    return h.reshape(h.shape[0], h.shape[1], -1).float()


@dataclass
class Projection:
    coords: np.ndarray  # (R, B, k) every recorded state on the fixed axes
    explained: np.ndarray  # (k,) share of the total variance along each axis, in [0, 1]
    mean: torch.Tensor  # (F,) the centre of the fitted states
    axes: torch.Tensor  # (k', F) orthonormal principal axes, k' <= k (none when every state is the same point)

    def project(self, h) -> np.ndarray:
        """Other states (a branch, another run) on the same axes: (R', B', ...) -> (R', B', k)."""
        X = _states(h)
        out = np.zeros((*X.shape[:2], self.coords.shape[-1]), np.float32)
        out[..., :len(self.axes)] = ((X - self.mean) @ self.axes.T).numpy()
        return out


def _principal_axes(X: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k right singular vectors and values of the centred (n, F) matrix X: an exact SVD when X is small,
    else a seeded randomized SVD (Halko et al.: a range finder with power iterations, as scikit-learn's PCA
    does for large inputs, without its import, which costs seconds before a page's first paint). Signs are
    fixed so the largest loading of each axis is positive: the same states always give the same picture."""
    if min(X.shape) <= 512:
        _, S, Vt = torch.linalg.svd(X, full_matrices=False)
    else:
        Q = torch.randn(X.shape[1], k + 10, generator=torch.Generator().manual_seed(seed), dtype=X.dtype)
        for _ in range(7):
            Q = torch.linalg.qr(X.T @ torch.linalg.qr(X @ Q).Q).Q
        _, S, Vt = torch.linalg.svd(torch.linalg.qr(X @ Q).Q.T @ X, full_matrices=False)
    Vt = Vt[:k] * torch.sign(Vt[:k].gather(1, Vt[:k].abs().argmax(1, keepdim=True)))
    return Vt, S[:k]


def pca(h, k: int = 2, seed: int = 0) -> Projection:
    """PCA fitted once over all states of a trace (every record point of every trajectory), so the axes
    stay fixed while a step scrubber moves and distances mean the same at every step."""
    X = _states(h)
    R, B, F = X.shape
    flat = X.reshape(R * B, F).double()
    mean = flat.mean(0)
    centred = flat - mean
    coords, explained = np.zeros((R, B, k), np.float32), np.zeros(k)
    total = float((centred ** 2).sum())
    if total <= 0:  # a deterministic run on one input: every state is the same point
        return Projection(coords, explained, mean.float(), torch.zeros(0, F))
    # fewer states or features than k: the missing axes stay zero, so callers always get k columns
    axes, S = _principal_axes(centred, min(k, R * B, F), seed)
    got = len(axes)
    coords[..., :got] = (centred @ axes.T).reshape(R, B, got).numpy()
    explained[:got] = np.clip((S ** 2 / total).numpy(), 0.0, 1.0)
    return Projection(coords, explained, mean.float(), axes.float())


def per_step_spread(trace: Trace) -> np.ndarray:
    """(R,) mean pairwise Euclidean distance between the trajectories' h at each record point (0 for one
    trajectory). Trajectories that explore apart show a growing spread; a collapse to one answer shrinks it."""
    X = _states(trace)
    if X.shape[1] < 2:
        return np.zeros(X.shape[0])
    return np.array([torch.pdist(X[r]).mean().item() for r in range(X.shape[0])])


def distinct_per_step(trace: Trace) -> np.ndarray:
    """(R,) number of distinct decoded answers among the trajectories at each record point."""
    return np.array([len(torch.unique(p, dim=0)) for p in trace.pred])


def valid_by_step(task, x: torch.Tensor, trace: Trace) -> np.ndarray:
    """(R, B) whether each trajectory's decoded answer is valid at each record point. x is the input of every
    row (B, S), or one input (S,) shared by all rows."""
    B = trace.pred.shape[1]
    x = x.expand(B, -1) if x.dim() == 1 else x
    return np.stack([task.is_correct(x, p).numpy() for p in trace.pred])


def accuracy_by_step(task, x: torch.Tensor, trace: Trace) -> np.ndarray:
    """(R,) share of trajectories whose decoded answer is valid at each record point: accuracy against depth."""
    return valid_by_step(task, x, trace).mean(1)


def compare_models(a, b, task, split, n: int = 20, n_sup: int = 16, seed: int = 0, ns: list[int] | None = None) -> dict:
    """Two models (e.g. GRAM and its deterministic twin) on the same inputs, seeds and width, keyed by mode
    ('gram', 'deterministic'; 'a', 'b' when the modes match). Per model: gram.evaluate.metrics at width n with
    the width curves. A deterministic recursion gives one answer per input however often it is sampled, so
    its coverage stops at 1 / (valid answers): what GRAM's noise buys."""
    ns = ns or sorted({1, n, *[2 ** i for i in range(1, n.bit_length()) if 2 ** i < n]})
    names = ("a", "b") if a.cfg.mode == b.cfg.mode else (a.cfg.mode, b.cfg.mode)
    out = {}
    for name, model in zip(names, (a, b)):
        s = evaluate.draw(model, task, split, n, depths=[n_sup], seed=seed)[n_sup]
        out[name] = {"mode": model.cfg.mode, **evaluate.metrics(task, s, widths=ns)}
    return out


def h_change(trace: Trace, b: int = 0, h0: torch.Tensor | None = None) -> np.ndarray:
    """(R, L) how far trajectory b's h moved at each record point, per position: ||h_r - h_{r-1}|| over D
    (the first record against h0, the initial state, when given; else 0). Needs full latents (L, D)."""
    h = trace.h[:, b].float()
    if h.dim() != 3:
        raise ValueError("h_change needs full latents (a rollout with latents='full')")
    prev = torch.cat([(h0.float().expand_as(h[:1]) if h0 is not None else h[:1]), h[:-1]])
    return (h - prev).norm(dim=-1).numpy()


def varying_dims(trace: Trace, b: int = 0, k: int = 24) -> np.ndarray:
    """Indices of the k latent dimensions of h that vary most over trajectory b's record points and positions,
    in index order: the columns worth drawing when D is too wide to show whole."""
    h = trace.h[:, b].float()
    var = h.reshape(-1, h.shape[-1]).var(0)
    return np.sort(var.topk(min(k, len(var))).indices.numpy())


def align_steps(trace: Trace, other: Trace) -> np.ndarray:
    """(R,) for each record point of `trace`, the record of `other` at the same supervision step and the same
    transition (its last one where other has fewer transitions per step; its last record past its end)."""
    T2 = int(other.trans.max())
    pos = {(int(s), int(t)): k for k, (s, t) in enumerate(zip(other.sup.tolist(), other.trans.tolist()))}
    return np.array([pos.get((int(s), min(int(t), T2)), len(other.sup) - 1)
                     for s, t in zip(trace.sup.tolist(), trace.trans.tolist())])


# --- guidance: where and how much the learned noise explores ------------------------------------------
# noise='full' traces hold (R, B, L, D): reduced over D as rollout's summaries are
_SUMMARY = {"mu": lambda t: t.pow(2).mean(-1).sqrt(), "sigma": lambda t: t.mean(-1),
            "eps": lambda t: t.pow(2).mean(-1).sqrt()}


def guidance(trace: Trace, b: int = 0) -> dict[str, np.ndarray]:
    """Trajectory b's guidance, (R, L) per record point and position: 'sigma' (its scale, mean over D), 'mu'
    and 'eps' (the size of its mean and of the sampled noise, RMS over D) and, where a posterior steered,
    'kl' (KL(q || p) summed over D). {} for a mode without noise."""
    out = {}
    for k in ("sigma", "mu", "eps", "kl"):  # one order, however the trace was stored
        if k in trace.noise:
            v = trace.noise[k][:, b].float()
            out[k] = (_SUMMARY[k](v) if v.dim() == 3 and k in _SUMMARY else v).numpy()
    return out


def guidance_per_step(trace: Trace, b: int = 0) -> dict[str, np.ndarray]:
    """(R,) per record point: guidance()'s sigma, mu and eps averaged over positions, and KL(q || p) summed
    over them (the step's whole KL; the training loss weighs its mean)."""
    return {k: v.sum(1) if k == "kl" else v.mean(1) for k, v in guidance(trace, b).items()}


# --- commitment: when and where trajectories decide ---------------------------------------------------
def canonical(trace: Trace, task) -> Trace:
    """The trace with its decoded answers (every record's and the final ones) in the task's canonical form
    (Task.canonical: a colouring's colours renamed to one representative, positions that carry no answer
    blanked), so that commitment, disagreement and distinct answers count answers, not their spellings."""
    pred = trace.pred  # (R, B, S), or empty for a trace recorded with record='none'
    return replace(trace, pred=task.canonical(pred.flatten(0, 1)).view_as(pred) if pred.numel() else pred,
                   final=None if trace.final is None else task.canonical(trace.final))


def commit_steps(trace: Trace) -> np.ndarray:
    """(B,) for each trajectory, the first record point from which its decoded answer never changes again
    (0: it never changed; R - 1: it changed at the very last record)."""
    pred = trace.pred  # (R, B, S)
    changed = (pred[1:] != pred[:-1]).any(-1)  # (R - 1, B): the answer moved into record r + 1
    R = len(pred)
    last = torch.where(changed, torch.arange(1, R)[:, None], torch.zeros_like(changed, dtype=torch.long))
    return last.max(0).values.numpy()


def disagreement(trace: Trace) -> np.ndarray:
    """(R, S) per record point and cell, the share of trajectories whose token differs from the most common
    one there: 0 where all agree, near 1 - 1/V where they split evenly. The cells that decide between answers."""
    pred = trace.pred  # (R, B, S)
    B = pred.shape[1]
    V = int(pred.max()) + 1
    counts = torch.zeros(*pred.shape[::2], V).scatter_add_(-1, pred.transpose(1, 2), torch.ones(pred.transpose(1, 2).shape))
    return (1 - counts.max(-1).values / B).numpy()


def answer_flow(trace: Trace, records: list[int], names=None) -> dict:
    """Which trajectories share an answer at each of the given record points, as a Sankey diagram's nodes and
    links: a node per (record, answer name) with its trajectory count, a link per pair of consecutive nodes
    that trajectories move between. names(answer tuple) names an answer (answers with one name are one node;
    default: 'answer k' in order seen)."""
    seen: dict = {}
    name = names or (lambda a: seen.setdefault(a, f"answer {len(seen) + 1}"))
    nodes, index, groups = [], {}, []
    for r in records:
        g = [name(tuple(row)) for row in trace.pred[r].tolist()]
        for a in g:
            if (r, a) not in index:
                index[(r, a)] = len(nodes)
                nodes.append({"record": r, "label": a, "count": 0})
            nodes[index[(r, a)]]["count"] += 1
        groups.append(g)
    links: dict = {}
    for k in range(1, len(records)):
        for a, b in zip(groups[k - 1], groups[k]):
            key = (index[(records[k - 1], a)], index[(records[k], b)])
            links[key] = links.get(key, 0) + 1
    return {"nodes": nodes, "links": [{"source": s, "target": t, "value": v} for (s, t), v in links.items()]}
