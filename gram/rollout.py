"""Inference: prior (or posterior) rollouts of many trajectories, recorded in one Trace.

Every figure, metric and CLI command reads a Trace; nothing recomputes a rollout on its own.
Each trajectory owns a random stream (its seed), so any row of a batch can be replayed alone, and a
branch can restart from any recorded step with the same prefix.

Memory: a record point stores h in float16, either full (L, D) or pooled over positions (D) -- the
documented reduction -- plus per-cell probabilities and, for the guidance, per-position summaries
(RMS over D of the mean and the sample, mean sigma) unless noise="full".
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import torch

from .model import GRAM


@dataclass
class Trace:
    seeds: list[int]  # (B,) one random stream per trajectory
    sup: torch.Tensor  # (R,) supervision step (1-based) of each record point
    trans: torch.Tensor  # (R,) transition within that step (1..T)
    h: torch.Tensor  # (R, B, L, D) or (R, B, D) float16
    pred: torch.Tensor  # (R, B, S) decoded argmax
    probs: torch.Tensor  # (R, B, S, V) float16
    value: torch.Tensor  # (R, B) LPRM value in [0, 1]
    halt: torch.Tensor  # (R, B) halting probability
    noise: dict = field(default_factory=dict)  # 'mu', 'sigma', 'eps': (R, B, L) summaries or (R, B, L, D)
    final: torch.Tensor | None = None  # (B, S) answer of each trajectory (at its halting step under ACT)
    final_value: torch.Tensor | None = None  # (B,)
    halted_at: torch.Tensor | None = None  # (B,) supervision step each trajectory stopped at
    state: tuple | None = None  # (h, l) full precision at the end, to continue from

    @property
    def n_records(self) -> int:
        return len(self.sup)

    def nbytes(self) -> int:
        tensors = [self.h, self.pred, self.probs, self.value, self.halt, *self.noise.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def row(self, b: int) -> "Trace":
        """Trajectory b alone, as a Trace of batch 1."""
        pick = lambda t: None if t is None else t[:, b:b + 1]
        return Trace([self.seeds[b]], self.sup, self.trans, pick(self.h), pick(self.pred), pick(self.probs),
                     pick(self.value), pick(self.halt), {k: pick(v) for k, v in self.noise.items()},
                     None if self.final is None else self.final[b:b + 1],
                     None if self.final_value is None else self.final_value[b:b + 1],
                     None if self.halted_at is None else self.halted_at[b:b + 1], None)


class NoiseStreams:
    """One torch.Generator per trajectory: row b's noise depends only on seeds[b]."""

    def __init__(self, seeds: list[int]):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def draw(self, shape) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self.gens])


@functools.cache
def native_bf16() -> bool:
    """Does this CPU multiply bf16 natively? (Without it, bf16 autocast is far slower than fp32.)"""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: str = "cpu") -> str:
    if dtype != "auto":
        return dtype
    return "bf16" if device.startswith("cuda") or native_bf16() else "fp32"


def _autocast(dtype: str, device: str = "cpu"):
    if resolve_dtype(dtype, device) == "bf16":
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def rollout(model: GRAM, x: torch.Tensor, *, n_sup: int = 16, seeds: list[int] | None = None, seed: int = 0,
            temperature: float = 1.0, halt: bool = False, record: str = "steps", latents: str = "full",
            noise: str = "summary", y: torch.Tensor | None = None, puzzle: torch.Tensor | None = None,
            start: tuple | None = None, start_step: int = 0, dtype: str = "auto") -> Trace:
    """Roll out B = len(x) trajectories for n_sup supervision steps of T transitions.

    x (B, S) inputs; seeds one per row (default seed, seed+1, ...); temperature scales the standard
    normal behind eps (0 follows the mean guidance); halt=True stops each row when sigmoid(q_halt) > 0.5
    (ACT) and freezes it; record 'steps' (end of each supervision step), 'transitions' (every one) or
    'none'; y given: the posterior steers (what the guidance learned); start=(h, l), start_step: continue
    a trajectory (branching) instead of starting from z0.
    """
    model.eval()
    B, T = len(x), model.cfg.T
    seeds = list(range(seed, seed + B)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != B:
        raise ValueError(f"need one seed per trajectory: {len(seeds)} seeds for {B} inputs")
    streams = NoiseStreams(seeds) if model.stochastic else None
    dev = x.device.type
    with _autocast(dtype, dev):
        e_x = model.embed_input(x, puzzle)
        y_e = model.embed_target(y) if y is not None and model.posterior is not None else None
    h, l = model.init_state(B) if start is None else (start[0].clone().float(), None if start[1] is None else start[1].clone().float())
    rec = {k: [] for k in ("sup", "trans", "h", "pred", "probs", "value", "halt", "mu", "sigma", "eps")}
    done = torch.zeros(B, dtype=torch.bool)
    halted_at = torch.full((B,), start_step + n_sup, dtype=torch.long)
    final = final_value = None
    for n in range(start_step + 1, start_step + n_sup + 1):
        for t in range(1, T + 1):
            eps_std = None if streams is None else temperature * streams.draw((model.L, model.cfg.D)).to(x.device)
            with _autocast(dtype, dev):
                step = model.transition(h, l, e_x, noise=eps_std, y_e=y_e)
            keep = done.view(-1, 1, 1)
            h = torch.where(keep, h, step.h.float())
            l = None if step.l is None else torch.where(keep, l, step.l.float())
            last = t == T
            if record == "transitions" or (record == "steps" and last) or last:
                with _autocast(dtype, dev):
                    logits = model.decode(h).float()
                    q_halt, v = model.heads(h)
                probs, pred = logits.softmax(-1), logits.argmax(-1)
                value, p_halt = torch.sigmoid(v.float()), torch.sigmoid(q_halt.float())
                if record == "transitions" or (record == "steps" and last):
                    rec["sup"].append(n)
                    rec["trans"].append(t)
                    rec["h"].append((h if latents == "full" else h.mean(1)).half())
                    rec["pred"].append(pred)
                    rec["probs"].append(probs.half())
                    rec["value"].append(value)
                    rec["halt"].append(p_halt)
                    if step.eps is not None:
                        full = noise == "full"
                        rec["mu"].append((step.mu if full else step.mu.pow(2).mean(-1).sqrt()).half())
                        rec["sigma"].append((step.sigma if full else step.sigma.mean(-1)).half())
                        rec["eps"].append((step.eps if full else step.eps.pow(2).mean(-1).sqrt()).half())
        # end of a supervision step: ACT decision on the (possibly frozen) rows
        final = pred if final is None else torch.where(done[:, None], final, pred)
        final_value = value if final_value is None else torch.where(done, final_value, value)
        if halt:
            stop = ~done & (p_halt > 0.5)
            halted_at[stop] = n
            done |= stop
            if done.all():
                break
    stack = lambda k, like: torch.stack(rec[k]) if rec[k] else like
    empty = torch.zeros(0)
    return Trace(
        seeds=seeds, sup=torch.tensor(rec["sup"], dtype=torch.long), trans=torch.tensor(rec["trans"], dtype=torch.long),
        h=stack("h", empty), pred=stack("pred", empty.long()), probs=stack("probs", empty), value=stack("value", empty),
        halt=stack("halt", empty), noise={k: torch.stack(rec[k]) for k in ("mu", "sigma", "eps") if rec[k]},
        final=final, final_value=final_value, halted_at=halted_at, state=(h, l),
    )


def sample(model: GRAM, x: torch.Tensor, n: int, *, seed: int = 0, n_sup: int = 16, halt: bool = False,
           puzzle: torch.Tensor | None = None, dtype: str = "auto", chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """N answers per input, width folded into the batch. x (P, S) -> samples (P, N, S), values (P, N).
    Trajectory j of input i uses seed + i * n + j, so any one can be replayed alone."""
    P, S = x.shape
    flat = x.repeat_interleave(n, 0)
    pz = None if puzzle is None else puzzle.repeat_interleave(n, 0)
    outs, vals = [], []
    for a in range(0, P * n, chunk):
        b = min(P * n, a + chunk)
        tr = rollout(model, flat[a:b], n_sup=n_sup, seeds=list(range(seed + a, seed + b)), halt=halt, record="none",
                     puzzle=None if pz is None else pz[a:b], dtype=dtype)
        outs.append(tr.final)
        vals.append(tr.final_value)
    return torch.cat(outs).view(P, n, S), torch.cat(vals).view(P, n)
