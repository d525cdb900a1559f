"""Training by the truncated ELBO surrogate, with deep supervision and a carry.

The carry holds `batch` samples, each with its latent state and how many supervision steps it has
done. One optimiser step = one supervision step of the whole carry:
    T-1 transitions without gradient, then one with gradient;
    loss = CE(Dec(h_T), y) + beta * KL_bal(q || p)     (gram mode; the last transition only)
then the state is detached and carried on. A sample leaves after n_sup steps and a fresh one takes its
row (an "epoch" is never used here; progress is counted in optimiser steps).

In gram mode a share `prior_frac` of the rows is rolled out from the prior instead of the posterior:
those rows carry no core loss; they train the halting and LPRM heads on states like inference sees,
and their accuracy, logged beside the posterior rows', shows at once if the posterior leaks y.
"""
from __future__ import annotations

import copy
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, check_state, read_json, read_tensors, save_checkpoint, write_json, write_tensors
from .config import Config
from .model import GRAM, balanced_kl, count_parameters, gaussian_kl
from .rollout import _autocast, sample
from .tasks import PAD, Task, get_task


def default_config(task_name: str) -> Config:
    """The recipe for a task: global defaults, then the task's preferences."""
    task = get_task(task_name)
    cfg = Config()
    cfg.train.task = task_name
    for k, v in task.model_defaults.items():
        setattr(cfg.model, k, v)
    for k, v in task.train_defaults.items():
        setattr(cfg.train, k, v)
    return cfg


def bind_task(cfg: Config, task: Task) -> Config:
    """Fill the task-dependent model fields (sequence length, vocabulary, codec)."""
    m = cfg.model
    m.seq_len, m.vocab, m.codec, m.image_side = task.seq_len, task.vocab, task.codec, task.image_side
    m.n_puzzles = getattr(task, "n_puzzles", 0)
    return cfg.validate()


def detect_leak(history: list[dict], patience: int, gap: float = 0.5) -> bool:
    """The posterior is right and the prior is not, for `patience` evaluations in a row: q is passing y
    to the decoder through the noise (a private channel) instead of guiding a reasoning prior."""
    evals = [r for r in history if "prior_accuracy" in r and "posterior_accuracy" in r]
    if len(evals) < patience:
        return False
    return all(r["posterior_accuracy"] - r["prior_accuracy"] >= gap for r in evals[-patience:])


LEAK_WARNING = ("warning: the posterior (which sees the answer) is right but the prior (what inference uses) is "
                "not, for {n} evaluations in a row: the guidance is leaking y instead of teaching the prior. "
                "Raise beta, or use posterior_input=token.")


@dataclass
class Carry:
    x: torch.Tensor  # (B, S)
    y: torch.Tensor  # (B, S)
    puzzle: torch.Tensor  # (B,)
    h: torch.Tensor  # (B, L, D)
    l: torch.Tensor | None
    n: torch.Tensor  # (B,) supervision steps done
    prior: torch.Tensor  # (B,) bool: rolled out from the prior (heads only)

    def tensors(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


class Trainer:
    def __init__(self, cfg: Config, out: str | Path | None = None, device: str | None = None):
        self.task = get_task(cfg.train.task)
        self.cfg = bind_task(cfg, self.task)
        self.out = Path(out) if out else None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        t = self.cfg.train
        torch.manual_seed(t.seed)
        self.model = GRAM(self.cfg.model).to(self.device)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and "embed" not in n and n != "pos"
                 and "puzzle" not in n]
        rest = [p for n, p in self.model.named_parameters() if not any(p is q for q in decay)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                      {"params": rest, "weight_decay": 0.0}], lr=t.lr, betas=(0.9, 0.95))
        self.train_split = self.task.split("train", t.seed)
        self.test_split = self.task.split("test", t.seed)
        self.data_gen = torch.Generator().manual_seed(t.seed)
        self.noise_gen = torch.Generator().manual_seed(t.seed + 1)
        eval_idx = torch.randperm(len(self.test_split), generator=torch.Generator().manual_seed(t.seed + 2))
        self.eval_split = self.test_split.subset(eval_idx[: t.eval_samples].sort().values)
        self.step, self.wall, self.history, self.carry = 0, 0.0, [], None
        self.leak_warned = False

    # --- one optimiser step ------------------------------------------------------------------
    def _refill(self) -> Carry:
        t, m, s = self.cfg.train, self.model, self.train_split
        B = t.batch
        if self.carry is None:
            h, l = m.init_state(B)
            tokens = lambda: torch.zeros(B, s.inputs.shape[1], dtype=torch.long, device=self.device)
            self.carry = Carry(tokens(), tokens(), torch.zeros(B, dtype=torch.long, device=self.device), h, l,
                               torch.full((B,), t.n_sup, device=self.device),
                               torch.zeros(B, dtype=torch.bool, device=self.device))
        c = self.carry
        fresh = c.n >= t.n_sup
        k = int(fresh.sum())
        if k:
            pair = torch.randint(len(s.targets), (k,), generator=self.data_gen)
            c.x[fresh] = s.inputs[s.owner[pair]].to(c.x.device)
            c.y[fresh] = s.targets[pair].to(c.y.device)
            if s.puzzle is not None:
                c.puzzle[fresh] = s.puzzle[s.owner[pair]].to(c.puzzle.device)
            h0, l0 = m.init_state(k)
            c.h[fresh] = h0
            if c.l is not None:
                c.l[fresh] = l0
            c.n[fresh] = 0
            if m.cfg.mode == "gram":
                c.prior[fresh] = (torch.rand(k, generator=self.data_gen) < t.prior_frac).to(self.device)
        return c

    def _noise(self, c: Carry):
        if not self.model.stochastic:
            return None
        return torch.randn(c.h.shape, generator=self.noise_gen).to(self.device)

    def _lr(self) -> float:
        t = self.cfg.train
        if self.step < t.warmup:
            return t.lr * (self.step + 1) / t.warmup
        if t.schedule == "cosine":
            p = min(1.0, (self.step - t.warmup) / max(1, t.steps - t.warmup))
            return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))
        return t.lr

    def train_step(self) -> dict:
        t, m = self.cfg.train, self.model
        m.train()
        c = self._refill()
        gram = m.cfg.mode == "gram"
        use_post = ~c.prior
        with _autocast(t.dtype, self.device):
            e_x = m.embed_input(c.x, c.puzzle if m.puzzle is not None else None)
            y_e = m.embed_target(c.y) if gram else None
            h, l = c.h, c.l
            with torch.no_grad():
                for _ in range(m.cfg.T - 1):
                    st = m.transition(h, l, e_x, noise=self._noise(c), y_e=y_e, use_posterior=use_post)
                    h, l = st.h, st.l
            st = m.transition(h, l, e_x, noise=self._noise(c), y_e=y_e, use_posterior=use_post)
            logits = m.decode(st.h).float()
            q_halt, v = m.heads(st.h)
        mask = (c.y != PAD).float()
        ce = (F.cross_entropy(logits.transpose(1, 2), c.y, reduction="none") * mask).sum(1) / mask.sum(1).clamp(min=1)
        core = use_post.float() if gram else torch.ones_like(ce)
        heads_rows = c.prior.float() if gram and t.prior_frac > 0 else torch.ones_like(ce)
        loss_rows = ce
        logs = {}
        if gram:
            kl_bal = balanced_kl(st.posterior, st.prior, t.kl_balance).sum(-1).mean(-1)  # (B,): sum over D, mean over positions
            kl_true = gaussian_kl(*st.posterior, *st.prior).sum(-1).mean(-1).detach()
            loss_rows = ce + t.beta * kl_bal
            logs["kl"] = _masked_mean(kl_true, core)
            logs["sigma_p"] = st.prior[1].mean().item()
            logs["sigma_q"] = _masked_mean(st.posterior[1].mean((1, 2)), core)
        loss_core = (loss_rows * core).sum() / core.sum().clamp(min=1)
        pred = logits.argmax(-1)
        correct = self.task.is_correct(c.x, pred).float()
        reward = self.task.reward(c.x, pred).float()
        head_loss = (F.binary_cross_entropy_with_logits(q_halt.float(), correct, reduction="none")
                     + F.binary_cross_entropy_with_logits(v.float(), reward, reduction="none"))
        loss_heads = (head_loss * heads_rows).sum() / heads_rows.sum().clamp(min=1)
        for g in self.opt.param_groups:
            g["lr"] = self._lr()
        self.opt.zero_grad(set_to_none=True)
        (loss_core + loss_heads).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.parameters(), t.clip)
        self.opt.step()
        self._update_ema()
        c.h, c.l = st.h.detach().float(), None if st.l is None else st.l.detach().float()
        c.n += 1
        self.step += 1
        logs.update(step=self.step, loss=loss_core.item(), ce=_masked_mean(ce.detach(), core),
                    train_accuracy=_masked_mean(correct, core), head_loss=loss_heads.item(),
                    grad_norm=float(grad_norm), lr=self._lr())
        if gram and t.prior_frac > 0:
            logs["train_prior_accuracy"] = _masked_mean(correct, c.prior.float())
        return logs

    @torch.no_grad()
    def _update_ema(self):
        d = min(self.cfg.train.ema, (1 + self.step) / (10 + self.step))
        for pe, p in zip(self.ema.parameters(), self.model.parameters()):
            pe.lerp_(p.detach(), 1 - d)
        for be, b in zip(self.ema.buffers(), self.model.buffers()):
            be.copy_(b)

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Prior rollouts (one sample, the EMA weights) on held-out inputs, and the posterior steered by a
        held-out target: their gap is the leak."""
        t, s = self.cfg.train, self.eval_split
        samples, _ = sample(self.ema, s.inputs, 1, seed=10_000 + self.step, n_sup=t.n_sup, dtype=t.dtype,
                            puzzle=s.puzzle)
        prior_acc = self.task.is_correct(s.inputs, samples[:, 0]).float().mean().item()
        out = {"step": self.step, "prior_accuracy": prior_acc}
        if self.model.cfg.mode == "gram":
            from .rollout import rollout
            first = torch.zeros(len(s), dtype=torch.long)
            first.scatter_(0, s.owner.flip(0), torch.arange(len(s.owner) - 1, -1, -1))  # first target of each input
            tr = rollout(self.ema, s.inputs, n_sup=t.n_sup, seed=20_000 + self.step, y=s.targets[first],
                         record="none", dtype=t.dtype, puzzle=s.puzzle)
            out["posterior_accuracy"] = self.task.is_correct(s.inputs, tr.final).float().mean().item()
        else:
            out["posterior_accuracy"] = prior_acc
        return out

    # --- the loop -----------------------------------------------------------------------------
    def fit(self, steps: int | None = None, callback: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, max_seconds: float | None = None,
            warn: Callable[[str], None] | None = None) -> list[dict]:
        """Train until `steps` (default cfg.train.steps) optimiser steps in total, or max_seconds of training
        time (evaluation excluded), or should_stop(). Calls callback(log) after every step and evaluation."""
        t = self.cfg.train
        steps = t.steps if steps is None else steps
        start_wall, spent = self.wall, 0.0
        while self.step < steps and not (should_stop and should_stop()):
            if max_seconds is not None and spent >= max_seconds:
                break
            t0 = time.perf_counter()
            log = self.train_step()
            spent += time.perf_counter() - t0
            self.wall = start_wall + spent
            log["wall"] = self.wall
            self.history.append(log)
            if callback:
                callback(log)
            if self.step % t.eval_every == 0 or self.step == steps:
                self._eval_and_log(callback, warn)
            if self.out and (self.step % t.ckpt_every == 0 or self.step == steps):
                self.save()
        if self.history and "prior_accuracy" not in self.history[-1]:
            self._eval_and_log(callback, warn)
        if self.out:
            self.save()
        return self.history

    def _eval_and_log(self, callback, warn):
        ev = self.evaluate()
        ev["wall"] = self.wall
        recent = [r for r in self.history[-50:] if "train_accuracy" in r]
        if recent:
            ev["train_accuracy"] = sum(r["train_accuracy"] for r in recent) / len(recent)
        self.history.append(ev)
        if callback:
            callback(ev)
        if self.model.cfg.mode == "gram" and not self.leak_warned and detect_leak(self.history, self.cfg.train.leak_patience):
            self.leak_warned = True
            (warn or print)(LEAK_WARNING.format(n=self.cfg.train.leak_patience))

    # --- checkpoints --------------------------------------------------------------------------
    def card(self) -> dict:
        evals = [r for r in self.history if "prior_accuracy" in r]
        return {
            "task": self.task.name,
            "data": self.task.recipe(self.cfg.train.seed),
            "mode": self.model.cfg.mode,
            "steps": self.step,
            "wall_seconds": round(self.wall, 1),
            "device": _device_name(self.device),
            "parameters": count_parameters(self.model),
            "metrics": {"held_out_prior_accuracy_1_sample": evals[-1]["prior_accuracy"]} if evals else {},
            "metrics_note": f"prior accuracy on {len(self.eval_split)} held-out inputs at the last training evaluation; "
                            "run `python -m gram eval --checkpoint DIR --card` for the full test split",
        }

    def save(self, out: str | Path | None = None) -> Path:
        d = Path(out or self.out)
        save_checkpoint(d, self.ema, self.cfg, self.card())
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        opt_state = self.opt.state_dict()
        scalars = {}
        for i, st in opt_state["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"opt.{i}.{k}"] = v
                else:
                    scalars[f"{i}.{k}"] = v
        if self.carry is not None:
            tensors.update({f"carry.{k}": v for k, v in self.carry.tensors().items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.data"] = self.data_gen.get_state()
        tensors["rng.noise"] = self.noise_gen.get_state()
        write_tensors(d / "resume.safetensors", tensors)
        write_json(d / "resume.json", {"step": self.step, "wall": self.wall, "history": self.history,
                                       "opt_scalars": scalars, "leak_warned": self.leak_warned})
        return d

    @classmethod
    def resume(cls, directory: str | Path, device: str | None = None) -> "Trainer":
        """Continue exactly where a checkpoint's training stopped (weights, EMA, optimiser, carry, RNG)."""
        from .checkpoint import load_config
        d = Path(directory)
        cfg = load_config(d)
        tr = cls(cfg, out=d, device=device)
        tensors = read_tensors(d / "resume.safetensors")
        meta = read_json(d / "resume.json")
        part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        for name, module in (("model.", tr.model), ("ema.", tr.ema)):
            sd = part(name)
            check_state(module, sd, d / "resume.safetensors")
            module.load_state_dict(sd)
        opt_sd = tr.opt.state_dict()
        state: dict = {}
        for k, v in part("opt.").items():
            i, key = k.split(".", 1)
            state.setdefault(int(i), {})[key] = v
        for k, v in meta.get("opt_scalars", {}).items():
            i, key = k.split(".", 1)
            state.setdefault(int(i), {})[key] = v
        opt_sd["state"] = state
        try:
            tr.opt.load_state_dict(opt_sd)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{d / 'resume.safetensors'}: optimiser state does not fit the model: {e}") from None
        carry = part("carry.")
        if carry:
            tr.carry = Carry(l=carry.pop("l", None), **carry)
        torch.set_rng_state(tensors["rng.torch"])
        tr.data_gen.set_state(tensors["rng.data"])
        tr.noise_gen.set_state(tensors["rng.noise"])
        tr.step, tr.wall, tr.history = int(meta["step"]), float(meta["wall"]), list(meta["history"])
        tr.leak_warned = bool(meta.get("leak_warned", False))
        return tr


def _masked_mean(x: torch.Tensor, w: torch.Tensor) -> float:
    return ((x * w).sum() / w.sum().clamp(min=1)).item()


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
