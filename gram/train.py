"""Training by the truncated ELBO surrogate, with deep supervision and a carry.

The carry holds `batch` samples, each with its latent state and how many supervision steps it has
done. One optimiser step = one supervision step of the whole carry:
    T-1 transitions without gradient, then one with gradient;
    loss = CE(Dec(h_T), y) + beta * KL_bal(q || p)     (gram mode; the last transition only; gram.model.elbo)
then the state is detached and carried on. A sample leaves after n_sup steps and a fresh one takes its
row (an "epoch" is never used here; progress is counted in optimiser steps).

One script for one device or many: under `torchrun --nproc_per_node=K` each process holds batch/K rows
of the carry and DDP averages the gradients. Every rank draws the whole global batch's data and noise
from the same generators and keeps its own rows, and the loss is normalised by global row counts, so K
processes train the same model as one process with the same batch (to float rounding). Rank 0 evaluates,
reports and writes checkpoints; a checkpoint holds the global carry, so it resumes on any K.

Speed: the step runs without host-device round trips (logs stay tensors until fit() reads them back in
batches; the carry's step counters live on the host), on CUDA in bf16 autocast with losses and KL in fp32,
and optionally under torch.compile (TrainConfig.compile). `python -m gram bench train --profile` shows
where the time goes.

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
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.profiler import record_function

from . import distributed
from .budget import check_training
from .checkpoint import CheckpointError, check_state, read_json, read_tensors, recover, save_checkpoint, warm_start
from .config import Config
from .heads import fit_heads
from .model import GRAM, count_parameters, elbo, head_losses
from .rollout import _autocast, resolve_dtype, sample
from .tasks import PAD, Task, get_task


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
    return all(r["posterior_accuracy"] - r["prior_accuracy"] >= gap - 1e-9 for r in evals[-patience:])


LEAK_WARNING = ("warning: the posterior (which sees the answer) is right but the prior (what inference uses) is "
                "not, for {n} evaluations in a row: the guidance is leaking y instead of teaching the prior. "
                "Raise beta, or use posterior_input=token.")


@dataclass
class Carry:
    """This process's rows of the carry. `n` stays on the host: deciding when rows turn over must not
    wait for the device."""
    x: torch.Tensor  # (B, S)
    y: torch.Tensor  # (B, S)
    puzzle: torch.Tensor  # (B,)
    h: torch.Tensor  # (B, L, D)
    l: torch.Tensor | None
    n: torch.Tensor  # (B,) supervision steps done, on the CPU
    prior: torch.Tensor  # (B,) bool: rolled out from the prior (heads only)

    def tensors(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}


class Supervision(nn.Module):
    """One supervision step of the recursion as a module, so that DDP (and torch.compile) see it whole:
    the embeddings once, T-1 transitions without gradient, the last with gradient, the decoder, the heads."""

    def __init__(self, model: GRAM, dtype: str, device: str):
        super().__init__()
        self.model, self.dtype, self.device = model, dtype, device

    def forward(self, x, y, puzzle, h, l, use_posterior, noise: list | None) -> dict:
        m = self.model
        with _autocast(self.dtype, self.device):
            e_x = m.embed_input(x, puzzle)
            y_e = m.embed_target(y) if m.posterior is not None else None
            draw = lambda t: None if noise is None else noise[t]
            with torch.no_grad():
                for t in range(m.cfg.T - 1):
                    st = m.transition(h, l, e_x, noise=draw(t), y_e=y_e, use_posterior=use_posterior)
                    h, l = st.h, st.l
            st = m.transition(h, l, e_x, noise=draw(m.cfg.T - 1), y_e=y_e, use_posterior=use_posterior)
            logits = m.decode(st.h).float()
            q_halt, v = m.heads(st.h)
        return {"h": st.h, "l": st.l, "logits": logits, "q_halt": q_halt.float(), "v": v.float(),
                "prior": st.prior, "posterior": st.posterior}


class Trainer:
    def __init__(self, cfg: Config, out: str | Path | None = None, device: str | None = None, init: bool = True):
        """init=False skips TrainConfig.init (resume() loads the run's own weights instead)."""
        self.world = distributed.setup(device)
        self.device = self.world.device
        self.task = get_task(cfg.train.task)
        self.cfg = bind_task(cfg, self.task)
        check_training(self.cfg)  # memory and work of a step and an evaluation, before anything is built
        self.out = Path(out) if out else None
        t = self.cfg.train
        self.rows = self.world.rows(t.batch)
        torch.manual_seed(t.seed)  # the same initial weights on every rank
        self.model = GRAM(self.cfg.model).to(self.device)
        if t.init and init:
            warm_start(self.model, t.init)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.opt = torch.optim.AdamW(self.model.param_groups(t.weight_decay), lr=t.lr, betas=(0.9, 0.95))
        step = Supervision(self.model, resolve_dtype(t.dtype, self.device), self.device)
        if self.world.size > 1:
            # the h0/l0 buffers never change: no need to sync them every step. static_graph: the same
            # parameters take part every step (embed_y sits unused outside gram mode, which DDP then allows)
            step = DDP(step, device_ids=[self.device] if self.device.startswith("cuda") else None,
                       forward_sync_buffers=False, static_graph=True)
        self.supervise = torch.compile(step) if t.compile else step
        self.train_split = self.task.split("train", t.seed)
        self.test_split = self.task.split("test", t.seed)
        self.data_gen = torch.Generator().manual_seed(t.seed)  # the data lives on the CPU
        # the noise is drawn where it is used: each rank draws the global batch's noise (free on a GPU, where
        # the CPU could not keep up) and keeps its rows
        self.noise_gen = torch.Generator(self.device).manual_seed(t.seed + 1)
        self.eval_split = self.test_split.sample(t.eval_samples, seed=t.seed + 2)
        self.step, self.wall, self.history, self.carry = 0, 0.0, [], None
        self.leak_warned = False
        # reading a log back waits for the device: on a GPU, fit() does it once every 16 steps; on the CPU
        # there is nothing to wait for, so every step reports at once
        self.log_every = 1 if self.device == "cpu" else 16

    # --- one optimiser step ------------------------------------------------------------------
    def _refill(self) -> Carry:
        t, m, s, dev = self.cfg.train, self.model, self.train_split, self.device
        b = self.rows.stop - self.rows.start
        if self.carry is None:
            h, l = m.init_state(b)
            tokens = lambda: torch.zeros(b, s.inputs.shape[1], dtype=torch.long, device=dev)
            self.carry = Carry(tokens(), tokens(), torch.zeros(b, dtype=torch.long, device=dev), h, l,
                               torch.full((b,), t.n_sup), torch.zeros(b, dtype=torch.bool, device=dev))
        c = self.carry
        fresh = c.n >= t.n_sup
        if fresh.any():
            # Rows enter together and step together, so every rank turns its rows over at the same step. Each
            # draws the whole global batch from the shared stream and keeps its own rows.
            pair = torch.randint(len(s.targets), (t.batch,), generator=self.data_gen)[self.rows]
            on = lambda v: v.to(dev, non_blocking=True)
            keep = on(~fresh)
            c.x = torch.where(keep[:, None], c.x, on(s.inputs[s.owner[pair]]))
            c.y = torch.where(keep[:, None], c.y, on(s.targets[pair]))
            if s.puzzle is not None:
                c.puzzle = torch.where(keep, c.puzzle, on(s.puzzle[s.owner[pair]]))
            h0, l0 = m.init_state(b)
            c.h = torch.where(keep[:, None, None], c.h, h0)
            if c.l is not None:
                c.l = torch.where(keep[:, None, None], c.l, l0)
            c.n[fresh] = 0
            if m.cfg.mode == "gram":
                prior = torch.rand(t.batch, generator=self.data_gen)[self.rows] < t.prior_frac
                c.prior = torch.where(keep, c.prior, on(prior))
        return c

    def _noise(self) -> list | None:
        """T standard normals of the carry's shape, this rank's rows of the global batch's draws."""
        m = self.model
        if not m.stochastic:
            return None
        shape = (self.cfg.train.batch, m.L, m.cfg.D)
        return [torch.randn(shape, generator=self.noise_gen, device=self.device)[self.rows] for _ in range(m.cfg.T)]

    def _lr(self) -> float:
        t = self.cfg.train
        if self.step < t.warmup:
            return t.lr * (self.step + 1) / t.warmup
        if t.schedule == "constant":
            return t.lr
        # both decays end at 0.1 lr; wsd's starts late so the fast phase keeps its high rate
        start = t.warmup if t.schedule == "cosine" else max(t.warmup, t.steps - t.decay)
        p = min(1.0, max(0, self.step - start) / max(1, t.steps - start))
        return t.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    def _step(self) -> dict:
        """One optimiser step. Returns the log with its numbers still on the device (see _floats)."""
        t, m, w = self.cfg.train, self.model, self.world
        m.train()
        gram = m.cfg.mode == "gram"
        with record_function("refill"):
            c = self._refill()
            noise = self._noise()
        with record_function("forward"):
            out = self.supervise(c.x, c.y, c.puzzle if m.puzzle is not None else None, c.h, c.l, ~c.prior, noise)
        with record_function("loss"):  # in fp32, whatever the autocast dtype
            logits = out["logits"]
            loss_rows, ce, kl = elbo(logits, c.y, pad=PAD, beta=t.beta, kl_balance=t.kl_balance,
                                     prior=out["prior"], posterior=out["posterior"])
            pred = logits.argmax(-1)
            correct = self.task.is_correct(c.x, pred).float()
            halt_loss, value_loss = head_losses(out["q_halt"], out["v"], correct, self.task.reward(c.x, pred).float())
            head_loss = halt_loss + value_loss
            # which rows train what: in gram mode the prior's rows train only the heads (and prior_ce)
            core = (~c.prior).float() if gram else torch.ones_like(ce)
            heads_rows = c.prior.float() if gram and t.prior_frac > 0 else torch.ones_like(ce)
            # sums over this rank's rows; one all-reduce makes them global (the loss's denominators and the logs)
            sums = {"rows": core.sum(), "heads_rows": heads_rows.sum(), "ce": (ce * core).sum(),
                    "correct": (correct * core).sum(), "head_loss": (head_loss * heads_rows).sum()}
            if gram:
                s_p, s_q = out["prior"][1], out["posterior"][1]
                prior_rows = c.prior.float()
                sums.update(kl=(kl * core).sum(), sigma_p=s_p.sum(), sigma_p_n=torch.tensor(float(s_p.numel()), device=s_p.device),
                            sigma_q=(s_q.mean((1, 2)) * core).sum(), prior_rows=prior_rows.sum(),
                            prior_correct=(correct * prior_rows).sum(), prior_ce=(ce * prior_rows).sum())
            sums["loss"] = (loss_rows * core).sum()
            total = dict(zip(sums, w.all_reduce(torch.stack(list(sums.values())).detach())))
            loss = sums["loss"] / total["rows"].clamp(min=1) + sums["head_loss"] / total["heads_rows"].clamp(min=1)
            if gram and t.prior_ce > 0:
                loss = loss + t.prior_ce * sums["prior_ce"] / total["prior_rows"].clamp(min=1)
            if w.size > 1:
                loss = loss * w.size  # DDP averages the ranks' gradients; the global loss is their sum
        lr = self._lr()
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            grad_norm = torch.nn.utils.clip_grad_norm_(m.parameters(), t.clip)
            self.opt.step()
            self._update_ema()
        c.h, c.l = out["h"].detach().float(), None if out["l"] is None else out["l"].detach().float()
        c.n += 1
        self.step += 1
        mean = lambda num, den: total[num] / total[den].clamp(min=1)
        logs = {"loss": mean("loss", "rows"), "ce": mean("ce", "rows")}
        if gram:
            logs.update(kl=mean("kl", "rows"), sigma_p=mean("sigma_p", "sigma_p_n"), sigma_q=mean("sigma_q", "rows"))
        logs.update(train_accuracy=mean("correct", "rows"))
        if gram and t.prior_frac > 0:
            logs["train_prior_accuracy"] = mean("prior_correct", "prior_rows")
        logs.update(head_loss=mean("head_loss", "heads_rows"), grad_norm=grad_norm)
        return {"step": self.step, **logs, "lr": lr}

    @staticmethod
    def _floats(logs: list[dict]) -> list[dict]:
        """Logs with device numbers -> plain floats, in one transfer (one wait for the device)."""
        if not logs:
            return []
        keys = [k for k, v in logs[0].items() if torch.is_tensor(v)]
        values = torch.stack([torch.stack([r[k] for k in keys]) for r in logs]).float().cpu().tolist()
        return [{**r, **dict(zip(keys, v))} for r, v in zip(logs, values)]

    def train_step(self) -> dict:
        """One optimiser step; returns its log as floats."""
        return self._floats([self._step()])[0]

    @torch.no_grad()
    def _update_ema(self):
        d = min(self.cfg.train.ema, (1 + self.step) / (10 + self.step))
        torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()), 1 - d)
        for be, b in zip(self.ema.buffers(), self.model.buffers()):
            be.copy_(b)

    # --- evaluation ---------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Prior rollouts (one sample, the EMA weights) on held-out inputs, and the posterior steered by a
        held-out target: their gap is the leak."""
        t, s, dev = self.cfg.train, self.eval_split, self.device
        x = s.inputs.to(dev)
        puzzle = None if s.puzzle is None else s.puzzle.to(dev)
        samples, _ = sample(self.ema, x, 1, seed=10_000 + self.step, n_sup=t.n_sup, dtype=t.dtype, puzzle=puzzle)
        prior_acc = self.task.is_correct(s.inputs, samples[:, 0].cpu()).float().mean().item()
        out = {"step": self.step, "prior_accuracy": prior_acc}
        if self.model.cfg.mode == "gram":
            from .rollout import rollout
            first = torch.zeros(len(s), dtype=torch.long)
            first.scatter_(0, s.owner.flip(0), torch.arange(len(s.owner) - 1, -1, -1))  # first target of each input
            tr = rollout(self.ema, x, n_sup=t.n_sup, seed=20_000 + self.step, y=s.targets[first].to(dev),
                         record="none", dtype=t.dtype, puzzle=puzzle)
            out["posterior_accuracy"] = self.task.is_correct(s.inputs, tr.final.cpu()).float().mean().item()
        else:
            out["posterior_accuracy"] = prior_acc
        return out

    # --- the loop -----------------------------------------------------------------------------
    def fit(self, steps: int | None = None, callback: Callable[[dict], None] | None = None,
            should_stop: Callable[[], bool] | None = None, max_seconds: float | None = None,
            warn: Callable[[str], None] | None = None) -> list[dict]:
        """Train until `steps` (default cfg.train.steps) optimiser steps in total, or max_seconds of training
        time (evaluation excluded), or should_stop(). Calls callback(log) after every step (on a GPU in
        batches of `log_every`) and evaluation. Under torchrun every rank must call fit() alike; rank 0 alone
        evaluates and calls back."""
        t = self.cfg.train
        steps = t.steps if steps is None else steps
        start_wall, spent = self.wall, 0.0
        pending: list[dict] = []
        stopped = False
        while self.step < steps:
            if should_stop and should_stop():
                stopped = True
                break
            if max_seconds is not None and spent >= max_seconds:
                break
            t0 = time.perf_counter()
            pending.append(self._step())
            spent += time.perf_counter() - t0
            self.wall = start_wall + spent
            pending[-1]["wall"] = self.wall
            evaluate = self.step % t.eval_every == 0 or self.step == steps
            save = self.out and (self.step % t.ckpt_every == 0 or self.step == steps)
            if len(pending) >= self.log_every or evaluate or save:
                self._report(pending, callback)
                pending = []
            if evaluate and self.world.main:
                self._eval_and_log(callback, warn)
            if save:
                self.save()
        self._report(pending, callback)
        if self.world.main and self.history and "prior_accuracy" not in self.history[-1]:
            self._eval_and_log(callback, warn)
        if self.out:
            self.save(final=not stopped)  # stopped from outside: a plain save, to be resumed (heads refit at the end)
        return self.history

    def _report(self, pending: list[dict], callback) -> None:
        for log in self._floats(pending):
            self.history.append(log)
            if callback and self.world.main:
                callback(log)

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
        device = _device_name(self.device)
        return {
            "task": self.task.name,
            "data": self.task.recipe(self.cfg.train.seed),
            "mode": self.model.cfg.mode,
            "steps": self.step,
            "wall_seconds": round(self.wall, 1),
            "device": device if self.world.size == 1 else f"{self.world.size} x {device}",
            "parameters": count_parameters(self.model),
            # config.json holds the whole recipe, seed included; with a constant learning rate, stopping
            # at step N equals a run of N steps (evaluation and saving draw from no training stream)
            "command": f"python -m gram train --config {self.out or 'DIR'}/config.json --steps {self.step} --out DIR",
            "metrics": {"held_out_prior_accuracy_1_sample": evals[-1]["prior_accuracy"]} if evals else {},
            "metrics_note": f"prior accuracy on {len(self.eval_split)} held-out inputs at the last training evaluation; "
                            "run `python -m gram eval --checkpoint DIR --card` for the full test split",
        } | ({"init": self.cfg.train.init} if self.cfg.train.init else {})  # steps and wall time count this run only

    def save(self, out: str | Path | None = None, final: bool = False) -> Path:
        """Write the checkpoint and everything needed to resume. Under torchrun every rank must call it (the
        carry is gathered from all of them); rank 0 writes. final (the end of fit()): with head_steps > 0 the
        checkpoint's heads are refitted on a copy of the EMA; the resume state keeps the EMA as trained, so
        a resumed run goes on exactly as if it had never stopped."""
        d = Path(out or self.out)
        carry = {} if self.carry is None else {f"carry.{k}": self.world.gather_rows(v) for k, v in self.carry.tensors().items()}
        if not self.world.main:
            return d
        t, model, card = self.cfg.train, self.ema, self.card()
        if final and t.head_steps:
            model = copy.deepcopy(self.ema)
            card["heads"] = fit_heads(model, self.task, self.train_split, t.head_steps, seed=t.seed, dtype=t.dtype,
                                     inputs=t.head_inputs)
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
        tensors.update(carry)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.data"] = self.data_gen.get_state()
        tensors["rng.noise"] = self.noise_gen.get_state()
        # one save: the checkpoint and its resume state always belong to the same step
        return save_checkpoint(d, model, self.cfg, card, extra_tensors={"resume.safetensors": tensors},
                               extra_json={"resume.json": {"step": self.step, "wall": self.wall, "history": self.history,
                                                           "opt_scalars": scalars, "leak_warned": self.leak_warned}})

    @classmethod
    def resume(cls, directory: str | Path, device: str | None = None) -> "Trainer":
        """Continue exactly where a checkpoint's training stopped (weights, EMA, optimiser, carry, RNG), with
        any number of processes that divides the batch."""
        from .checkpoint import load_config
        d = Path(directory)
        recover(d)  # a save that a kill interrupted between its renames
        cfg = load_config(d)
        tr = cls(cfg, out=d, device=device, init=False)
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
            mine = {k: v[tr.rows] if k == "n" else v[tr.rows].to(tr.device) for k, v in carry.items()}
            tr.carry = Carry(l=mine.pop("l", None), **mine)
        torch.set_rng_state(tensors["rng.torch"])
        tr.data_gen.set_state(tensors["rng.data"])
        try:
            tr.noise_gen.set_state(tensors["rng.noise"])
        except RuntimeError:  # saved on another kind of device, whose generator differs: the noise stream restarts
            tr.noise_gen.manual_seed(cfg.train.seed + 1 + int(meta["step"]))
        tr.step, tr.wall, tr.history = int(meta["step"]), float(meta["wall"]), list(meta["history"])
        tr.leak_warned = bool(meta.get("leak_warned", False))
        return tr


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
