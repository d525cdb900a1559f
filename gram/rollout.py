"""Inference: prior (or posterior) rollouts of many trajectories, recorded in one Trace.

Every figure, metric and CLI command reads a Trace; nothing recomputes a rollout on its own.
Each trajectory owns a random stream (its seed), so any row of a batch can be replayed alone, and a
branch can restart from any recorded step with the same prefix.

Memory: a record point stores h in float16, either full (L, D) or pooled over positions (D) -- the
documented reduction: the mean over positions is what the LPRM head reads -- plus per-cell
probabilities and, for the guidance, per-position summaries (RMS over D of the mean and the sample,
mean sigma) unless noise="full", which adds three more tensors of h's size. `python -m gram bench sample`
measures a full trace's memory (docs/recipe.md).
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .model import GRAM, gaussian_kl

RECORDED = ("h", "pred", "probs", "value", "halt", "live")  # (R, B, ...) tensors, one slice per record point
# ACT halts a trajectory once P(this step's answer is right) > HALT_AT. The paper's 0.5 halts as soon as an
# answer is more likely right than not, which is too soon: below a fixed depth's accuracy (the sweep of 0.5 /
# 0.9 / 0.99: docs/recipe.md, "Numbers behind the defaults")
HALT_AT = 0.9


class NoiseStreams:
    """One torch.Generator per trajectory: row b's noise depends only on seeds[b] and on how many draws
    it made before. Drawn on the CPU so that a seed means the same noise on every device. The loop over
    rows is a small share of a transition (`python -m gram bench sample` measures it: docs/recipe.md)."""

    def __init__(self, seeds: list[int]):
        self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def draw(self, shape) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in self.gens])

    def take(self, rows: list[int]) -> "NoiseStreams":
        """Copies of the streams of `rows` (repeats allowed), each at its current position."""
        out = NoiseStreams([])
        for b in rows:
            g = torch.Generator()
            g.set_state(self.gens[b].get_state())
            out.gens.append(g)
        return out

    def __len__(self) -> int:
        return len(self.gens)


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
    live: torch.Tensor  # (R, B) bool: the row had not halted yet (halted rows repeat their last state)
    # 'mu', 'sigma', 'eps': (R, B, L) summaries or (R, B, L, D); 'kl': (R, B, L) KL(q || p) summed over D, per
    # position, when the posterior steered (its mean over positions is the training loss's KL)
    noise: dict = field(default_factory=dict)
    final: torch.Tensor | None = None  # (B, S) answer of each trajectory (at its halting step under ACT)
    final_value: torch.Tensor | None = None  # (B,)
    halted_at: torch.Tensor | None = None  # (B,) supervision step each trajectory stopped at
    state: tuple | None = None  # (h, l) full precision at the end, to continue from
    streams: NoiseStreams | None = None  # the random streams at the end, to continue from

    @property
    def n_records(self) -> int:
        return len(self.sup)

    def nbytes(self) -> int:
        """Memory held by the recorded tensors and the end state."""
        tensors = [getattr(self, k) for k in RECORDED] + list(self.noise.values()) + [t for t in self.state or () if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    def rows(self, idx) -> "Trace":
        """Trajectories idx (a list of row indices, repeats allowed) as a Trace."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda t: t[:, idx] if t.numel() else t  # a trace recorded with record='none' has no records
        first = lambda t: None if t is None else t[idx]
        return Trace([self.seeds[i] for i in idx.tolist()], self.sup, self.trans,
                     **{k: pick(getattr(self, k)) for k in RECORDED}, noise={k: pick(v) for k, v in self.noise.items()},
                     final=first(self.final), final_value=first(self.final_value), halted_at=first(self.halted_at),
                     state=None if self.state is None else tuple(first(t) for t in self.state),
                     streams=None if self.streams is None else self.streams.take(idx.tolist()))

    def row(self, b: int) -> "Trace":
        """Trajectory b alone, as a Trace of batch 1."""
        return self.rows([b])

    def at(self, n: int, t: int | None = None) -> int:
        """Index of the record point at supervision step n, transition t (default: the step's last)."""
        hit = (self.sup == n) & (self.trans == (self.trans[self.sup == n].max() if t is None else t))
        if not hit.any():
            raise ValueError(f"no record at supervision step {n}, transition {t}")
        return int(hit.nonzero()[0])

    def ends(self) -> list[int]:
        """Indices of the record points that end a supervision step (its last transition), in order."""
        return (self.trans == self.trans.max()).nonzero().flatten().tolist()

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The record as a flat dict of tensors (for safetensors): everything but the end state and the random
        streams, which only a continuation needs (a branch replays its prefix from the seed instead)."""
        out = {"seeds": torch.tensor(self.seeds, dtype=torch.long), "sup": self.sup, "trans": self.trans,
               **{k: getattr(self, k) for k in RECORDED}, **{f"noise.{k}": v for k, v in self.noise.items()}}
        for k in ("final", "final_value", "halted_at"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "Trace":
        return cls(t["seeds"].tolist(), t["sup"], t["trans"], **{k: t[k] for k in RECORDED},
                   noise={k[6:]: v for k, v in t.items() if k.startswith("noise.")},
                   final=t.get("final"), final_value=t.get("final_value"), halted_at=t.get("halted_at"))

    def act_stop(self, b: int = 0, halt_at: float = HALT_AT) -> int | None:
        """Index of the record point where ACT halts trajectory b: the end of the first supervision step whose
        P(halt) passes halt_at (the rule rollout(halt=True) applies), or None if it never does."""
        past = [k for k in self.ends() if self.halt[k, b] > halt_at]
        return past[0] if past else None


def concat(a: Trace, b: Trace) -> Trace:
    """Trace a followed by trace b (b continues a row by row): records joined, the end taken from b."""
    cat = lambda u, v: torch.cat([u, v]) if u.numel() and v.numel() else (u if u.numel() else v)
    return Trace(b.seeds, cat(a.sup, b.sup), cat(a.trans, b.trans), **{k: cat(getattr(a, k), getattr(b, k)) for k in RECORDED},
                 noise={k: cat(a.noise.get(k, torch.zeros(0)), v) for k, v in b.noise.items()}, final=b.final,
                 final_value=b.final_value, halted_at=b.halted_at, state=b.state, streams=b.streams)


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


def _heads(model: GRAM, h: torch.Tensor):
    """model.heads on a batch padded to a multiple of 16 rows. The heads multiply (B, D) matrices, and the
    CPU BLAS sums a row in another order when B is small or leaves a ragged tail (measured: B = 1..3, 17,
    257 ... differ in the last bit from the same rows inside a large batch); padding keeps a trajectory's
    values bit-identical whether it runs alone or in any batch. The core's (B, L, D) products were
    invariant in every case measured."""
    B = len(h)
    pad = torch.cat([h, h[:1].expand(-B % 16, *h.shape[1:])])
    return tuple(t[:B] for t in model.heads(pad))


@torch.inference_mode()
def rollout(model: GRAM, x: torch.Tensor, *, n_sup: int = 16, seeds: list[int] | None = None, seed: int = 0,
            temperature: float = 1.0, halt: bool = False, halt_at: float = HALT_AT, record: str = "steps", latents: str = "full",
            noise: str = "summary", y: torch.Tensor | None = None, puzzle: torch.Tensor | None = None,
            start: tuple | None = None, start_step: int = 0, streams: NoiseStreams | None = None,
            dtype: str = "auto", on_step: Callable[[int], None] | None = None) -> Trace:
    """Roll out B = len(x) trajectories for n_sup supervision steps of T transitions.

    x (B, S) inputs; seeds one per row (default seed, seed+1, ...); temperature scales the standard
    normal behind eps (0 follows the mean guidance); halt=True stops each row when sigmoid(q_halt) > halt_at
    (ACT) and freezes it; record 'steps' (end of each supervision step), 'transitions' (every one) or
    'none'; latents 'full' (L, D) or 'pooled' (D, the mean over positions); noise 'summary' or 'full';
    y given: the posterior steers (what the guidance learned). Continue a rollout exactly with
    start=trace.state, start_step=its last step and streams=trace.streams (new streams branch off).
    on_step(n) runs after each supervision step n; it may raise to abandon the rollout (the app does when the
    view's user has left).
    """
    if record not in ("steps", "transitions", "none") or latents not in ("full", "pooled") or noise not in ("summary", "full"):
        raise ValueError(f"bad record/latents/noise option: {record!r}, {latents!r}, {noise!r}")
    model.eval()
    B, T = len(x), model.cfg.T
    seeds = list(range(seed, seed + B)) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != B or (streams is not None and len(streams) != B):
        raise ValueError(f"need one seed (and stream) per trajectory: {len(seeds)} seeds for {B} inputs")
    if model.stochastic and streams is None:
        streams = NoiseStreams(seeds)
    dev = x.device.type
    with _autocast(dtype, dev):
        e_x = model.embed_input(x, puzzle)
        y_e = model.embed_target(y) if y is not None and model.posterior is not None else None
    h, l = model.init_state(B) if start is None else (start[0].clone().float(), None if start[1] is None else start[1].clone().float())
    rec = {k: [] for k in ("sup", "trans", *RECORDED, "mu", "sigma", "eps", "kl")}
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    halted_at = torch.full((B,), start_step + n_sup, dtype=torch.long)
    final = final_value = None
    for n in range(start_step + 1, start_step + n_sup + 1):
        for t in range(1, T + 1):
            eps_std = None
            if model.stochastic:
                eps_std = (temperature * streams.draw((model.L, model.cfg.D))).to(x.device, non_blocking=True)
            with _autocast(dtype, dev):
                step = model.transition(h, l, e_x, noise=eps_std, y_e=y_e)
            keep = done.view(-1, 1, 1)
            h = torch.where(keep, h, step.h.float())
            l = None if step.l is None else torch.where(keep, l, step.l.float())
            if record == "transitions" or t == T:  # the last transition always decodes: answers and ACT need it
                with _autocast(dtype, dev):
                    logits = model.decode(h).float()
                    q_halt, v = _heads(model, h)
                pred = logits.argmax(-1)
                value, p_halt = torch.sigmoid(v.float()), torch.sigmoid(q_halt.float())
                if record == "transitions" or (record == "steps" and t == T):
                    rec["sup"].append(n)
                    rec["trans"].append(t)
                    rec["h"].append((h if latents == "full" else h.mean(1)).half())
                    rec["pred"].append(pred)
                    rec["probs"].append(logits.softmax(-1).half())
                    rec["value"].append(value)
                    rec["halt"].append(p_halt)
                    rec["live"].append(~done)
                    if step.eps is not None:
                        full = noise == "full"
                        rec["mu"].append((step.mu if full else step.mu.pow(2).mean(-1).sqrt()).half())
                        rec["sigma"].append((step.sigma if full else step.sigma.mean(-1)).half())
                        rec["eps"].append((step.eps if full else step.eps.pow(2).mean(-1).sqrt()).half())
                    if step.posterior is not None:
                        rec["kl"].append(gaussian_kl(*step.posterior, *step.prior).sum(-1))  # (B, L): per position
        # end of a supervision step: ACT decision on the rows still running
        final = pred if final is None else torch.where(done[:, None], final, pred)
        final_value = value if final_value is None else torch.where(done, final_value, value)
        if halt:
            stop = ~done & (p_halt > halt_at)
            halted_at[stop.cpu()] = n
            done |= stop
        if on_step is not None:
            on_step(n)
        if halt and done.all():
            break
    stack = lambda k, like: torch.stack(rec[k]) if rec[k] else like
    empty = torch.zeros(0)
    return Trace(
        seeds=seeds, sup=torch.tensor(rec["sup"], dtype=torch.long), trans=torch.tensor(rec["trans"], dtype=torch.long),
        h=stack("h", empty.half()), pred=stack("pred", empty.long()), probs=stack("probs", empty.half()),
        value=stack("value", empty), halt=stack("halt", empty), live=stack("live", empty.bool()),
        noise={k: torch.stack(rec[k]) for k in ("mu", "sigma", "eps", "kl") if rec[k]},
        final=final, final_value=final_value, halted_at=halted_at, state=(h, l), streams=streams,
    )


def posterior_rollout(model: GRAM, x: torch.Tensor, y: torch.Tensor, **kw) -> Trace:
    """The rollout steered by the posterior q(eps | u, y) given targets y (B, S): where the guidance
    learned to push each step. trace.noise['kl'] says how far q is from the prior at every record; a
    posterior that is right while the prior is wrong with a tiny KL is the private channel of DESIGN 4."""
    if model.posterior is None:
        raise ValueError(f"a {model.cfg.mode} model has no posterior; only gram mode learns one")
    return rollout(model, x, y=y, **kw)


def branch_seeds(seed: int, at_step: int, M: int) -> list[int]:
    """Seeds of M continuations of trajectory `seed` after step `at_step`: fixed by the three numbers and
    apart from the trajectory seeds seed, seed+1, ... (a tuple of ints hashes the same in every run)."""
    return [hash((seed, at_step, j)) & (2**63 - 1) for j in range(M)]


def branch(model: GRAM, x: torch.Tensor, seed: int | Trace, at_step: int, M: int, *, n_sup: int = 16,
           seeds: list[int] | None = None, row: int = 0, **kw) -> Trace:
    """Replay trajectory `seed` (or row `row` of a Trace) on input x (S,) to supervision step at_step, then
    sample M continuations to step n_sup. The prefix is computed once and copied into every row, so the
    branches share it exactly and differ only after at_step; the replay equals the recorded trajectory
    because a row's noise depends only on its seed. Continuation j uses seeds[j] (default branch_seeds).
    Pass the options the trajectory was recorded with (temperature, dtype, record...) in kw; branching
    uses a fixed depth (no ACT)."""
    if isinstance(seed, Trace):
        seed = seed.seeds[row]
    if kw.get("halt"):
        raise ValueError("branch uses a fixed depth: halt=True is not supported")
    if not 0 <= at_step <= n_sup:
        raise ValueError(f"at_step must be in [0, n_sup={n_sup}], got {at_step}")
    seeds = branch_seeds(seed, at_step, M) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != M:
        raise ValueError(f"need {M} continuation seeds, got {len(seeds)}")
    x = x.view(1, -1)
    puzzle = kw.pop("puzzle", None)
    prefix = rollout(model, x, n_sup=at_step, seeds=[seed], puzzle=puzzle, **kw).rows([0] * M)
    rest = rollout(model, x.expand(M, -1), n_sup=n_sup - at_step, seeds=seeds, start=prefix.state, start_step=at_step,
                   puzzle=None if puzzle is None else puzzle.view(1).expand(M), **kw)
    return concat(prefix, rest)


def fold(x: torch.Tensor, n: int, *, seed: int, chunk: int, puzzle: torch.Tensor | None = None):
    """Width folded into the batch: n trajectories of every input of x (P, S), `chunk` rows at a time, as
    (rows (b, S), their seeds, their puzzle ids or None). Trajectory j of input i uses seed + i * n + j, so any
    one can be replayed alone."""
    flat = x.repeat_interleave(n, 0)
    pz = None if puzzle is None else puzzle.repeat_interleave(n, 0)
    for a in range(0, len(flat), chunk):
        b = min(len(flat), a + chunk)
        yield flat[a:b], list(range(seed + a, seed + b)), None if pz is None else pz[a:b]


def sample(model: GRAM, x: torch.Tensor, n: int, *, seed: int = 0, n_sup: int = 16, halt: bool = False, halt_at: float = HALT_AT,
           puzzle: torch.Tensor | None = None, dtype: str = "auto", chunk: int = 4096,
           temperature: float = 1.0, on_step: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """N answers per input, width folded into the batch (fold). x (P, S) -> samples (P, N, S), values (P, N).
    temperature scales the prior's noise (below 1: samples nearer the prior's mean, fewer errors, less spread)."""
    P, S = x.shape
    outs, vals = [], []
    for rows, seeds, pz in fold(x, n, seed=seed, chunk=chunk, puzzle=puzzle):
        tr = rollout(model, rows, n_sup=n_sup, seeds=seeds, halt=halt, halt_at=halt_at, record="none", puzzle=pz,
                     dtype=dtype, temperature=temperature, on_step=on_step)
        outs.append(tr.final)
        vals.append(tr.final_value)
    return torch.cat(outs).view(P, n, S), torch.cat(vals).view(P, n)
