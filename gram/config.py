"""Configs: plain dataclasses, serialised to JSON, overridable with `key=value` strings."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("gram", "noise", "deterministic", "flat")
POSTERIOR_INPUTS = ("token", "block")


@dataclass
class ModelConfig:
    """Shape of the network. Task-dependent sizes (seq_len, vocab, codec) are filled in by the task."""

    mode: str = "gram"  # gram | noise | deterministic | flat (see model.py)
    D: int = 64  # latent width
    n_heads: int = 4
    n_layers: int = 2  # per stack: f_L and f_H each have n_layers blocks
    mlp_ratio: float = 2.0  # SwiGLU hidden = mlp_ratio * D
    mixer: str = "attn"  # attn | mlp (sequence-MLP mixer, the paper's Sudoku core)
    K: int = 2  # low-level updates per transition
    T: int = 2  # high-level transitions per supervision step
    # How y enters the posterior q(eps | u, y):
    #   token: position i of q sees only u_i and y_i (a per-position MLP)
    #   block: one attention block over u + Emb(y), so q sees all of y at every position
    posterior_input: str = "token"
    # Do the guidance heads (hence the KL) back-propagate into f_L/f_H? The KL's gradient scales as
    # 1/sigma^2 and, flowing into the core, it swamped the cross-entropy's (gradient norm ~90 vs ~1 at
    # sigma 0.1): the core then learnt far slower than a deterministic one. False stops it at u; the
    # ELBO's value is unchanged, only who learns from which term (like KL balancing).
    kl_into_core: bool = False
    sigma_min: float = 1e-3  # guidance scale is bounded in [sigma_min, sigma_max]
    sigma_max: float = 1.0
    sigma_init: float = 0.1  # initial prior/posterior scale (mean heads start at zero)
    noise_sigma: float = 0.1  # fixed scale of `noise` mode
    # filled in from the task
    seq_len: int = 0
    vocab: int = 0
    codec: str = "tokens"  # tokens | patch (conv patches over a square image, MNIST)
    image_side: int = 0  # for codec=patch: pixels per side
    patch: int = 2  # for codec=patch: pixels per side of the square patch one latent position holds
    n_puzzles: int = 0  # >0: a learned per-puzzle embedding (ARC)

    @property
    def n_positions(self) -> int:
        """L, the latent positions: one per token, or one per patch for codec=patch."""
        return (self.image_side // self.patch) ** 2 if self.codec == "patch" else self.seq_len

    def parameter_bound(self) -> int:
        """An upper bound of GRAM's parameter count from the sizes alone (generous: several times the true
        count), so that a loader can refuse an absurd config before building it. The exact check, the
        weights' shapes against the built model, comes after."""
        D, L = self.D, self.n_positions
        block = 4 * D * D + 3 * D * max(1, int(self.mlp_ratio * D)) + L * L + 8 * D  # mixer, SwiGLU, norms
        stacks = 4 * max(1, self.n_layers) * block  # f_L, f_H, prior, posterior
        tokens = (max(1, self.vocab) * max(1, self.patch) ** 2 * 3 + L + self.n_puzzles + 16) * D
        return 4 * (stacks + tokens + 16 * D * D)


@dataclass
class TrainConfig:
    task: str = "nqueens8"
    seed: int = 0
    steps: int = 2000  # optimiser steps; one optimiser step = one supervision step of a batch
    batch: int = 64
    n_sup: int = 4  # supervision steps a sample stays in the carry before it is replaced
    lr: float = 2e-3
    warmup: int = 100
    # constant | cosine (after warm-up) | wsd (warm-up, stable, then a cosine over the last `decay` steps)
    schedule: str = "constant"
    decay: int = 500  # wsd: steps of the final decay
    weight_decay: float = 0.1  # matrices only; never embeddings, norms or biases
    clip: float = 1.0
    ema: float = 0.995
    beta: float = 1.0  # weight of the balanced KL (KL summed over D, averaged over positions)
    kl_balance: float = 0.8  # DreamerV2 balancing: weight on KL(sg(q) || p)
    prior_frac: float = 0.25  # gram mode: share of the carry rolled out from the prior to train the heads
    # gram mode: weight of the cross-entropy on those prior rows, added to the ELBO (0 = the paper's loss).
    # On a unique-answer task (Sudoku) q has nothing to say but the answer, and at a beta low enough to learn
    # fast it says it (the private channel); this term trains the core on the rollouts inference will make.
    # On multi-answer tasks it pulls the prior toward one arbitrary answer: leave it at 0 there
    prior_ce: float = 0.0
    # a checkpoint directory whose weights start this run (tensors it lacks keep their fresh initialisation):
    # e.g. a deterministic run's core, then GRAM on top, so q meets a core that already reasons ("" = none)
    init: str = ""
    head_steps: int = 0  # >0: the saved model's halting and LPRM heads are refitted at the end (gram.heads)
    head_inputs: int = 1024  # training inputs (x 4 samples) whose prior rollouts that refit learns from
    # autocast dtype of the recursion: auto | bf16 | fp32. auto = bf16 on CUDA and on CPUs with native bf16
    # matmuls (AVX-512 BF16 / AMX), else fp32: on an AVX2-only CPU bf16 matmuls run ~10x slower than fp32
    dtype: str = "auto"
    compile: bool = False  # torch.compile the supervision step (minutes of compiling first; see bench train)
    eval_every: int = 250
    eval_samples: int = 256  # held-out inputs scored during training (prior, 1 sample)
    ckpt_every: int = 500
    leak_patience: int = 3  # evaluations in a row with posterior right / prior wrong before warning


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if not isinstance(d, dict) or set(d) - {"model", "train"}:
            raise ValueError(f"config must have the sections 'model' and 'train', got {sorted(d) if isinstance(d, dict) else type(d).__name__}")
        return cls(model=_build(ModelConfig, d.get("model", {})), train=_build(TrainConfig, d.get("train", {})))

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d)

    def override(self, assignments: list[str]) -> "Config":
        """Apply `section.key=value` or `key=value` (searched in model, then train) strings."""
        d = self.to_dict()
        for a in assignments:
            if "=" not in a:
                raise ValueError(f"--set expects key=value, got {a!r}")
            key, value = a.split("=", 1)
            section, _, name = key.rpartition(".")
            sections = [section] if section else [s for s in ("model", "train") if name in d[s]]
            if not sections or section not in ("", "model", "train") or name not in d[sections[0]]:
                raise ValueError(f"unknown config key {key!r}")
            old = d[sections[0]][name]
            d[sections[0]][name] = _parse_like(old, value, key)
        return Config.from_dict(d)

    def validate(self) -> "Config":
        """The one check every config passes, from --config, --set, a checkpoint or an upload: types, then
        ranges. Raises ValueError naming the field."""
        m, t = self.model, self.train
        check_types(self)
        for section in (m, t):
            for f in dataclasses.fields(section):
                v = getattr(section, f.name)
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{f.name} must be a finite number, got {v}")
        for name in ("D", "n_heads"):
            if getattr(m, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(m, name)}")
        if not 0 < t.ema < 1:
            raise ValueError(f"ema must be in (0, 1), got {t.ema}")
        if not 0 <= t.kl_balance <= 1:
            raise ValueError(f"kl_balance must be in [0, 1], got {t.kl_balance}")
        for name in ("beta", "warmup", "weight_decay"):
            if getattr(t, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(t, name)}")
        for name in ("lr", "clip"):
            if not getattr(t, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(t, name)}")
        for name in ("eval_every", "ckpt_every", "eval_samples"):
            if getattr(t, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(t, name)}")
        if not 0 <= t.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {t.seed}")
        if m.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {m.mode!r}")
        if m.posterior_input not in POSTERIOR_INPUTS:
            raise ValueError(f"posterior_input must be one of {POSTERIOR_INPUTS}, got {m.posterior_input!r}")
        if m.mixer not in ("attn", "mlp"):
            raise ValueError(f"mixer must be attn or mlp, got {m.mixer!r}")
        if m.D % m.n_heads:
            raise ValueError(f"D={m.D} must be divisible by n_heads={m.n_heads}")
        if not 0 < m.sigma_min < m.sigma_init < m.sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_init < sigma_max")
        for name in ("K", "T", "n_layers"):
            if getattr(m, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("steps", "batch", "n_sup"):
            if getattr(t, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if t.dtype not in ("auto", "bf16", "fp32"):
            raise ValueError(f"dtype must be auto, bf16 or fp32, got {t.dtype!r}")
        if t.schedule not in ("constant", "cosine", "wsd"):
            raise ValueError(f"schedule must be constant, cosine or wsd, got {t.schedule!r}")
        if t.schedule == "wsd" and t.decay < 1:
            raise ValueError("decay must be >= 1")
        if t.head_steps < 0 or t.head_inputs < 1:
            raise ValueError("need head_steps >= 0 and head_inputs >= 1")
        if not 0 <= t.prior_frac < 1:
            raise ValueError("prior_frac must be in [0, 1)")
        if t.prior_ce < 0 or (t.prior_ce > 0 and t.prior_frac == 0):
            raise ValueError("prior_ce must be >= 0, and needs prior_frac > 0 (the rows it trains on)")
        return self


def check_types(cfg: Config) -> None:
    """JSON can hold a string or a float where the config wants an int: refuse it before it reaches a layer.
    Each field must have the type of its default (an int is fine for a float; None defaults are not checked)."""
    for section in (cfg.model, cfg.train):
        defaults = type(section)()
        for f in dataclasses.fields(section):
            default, got = getattr(defaults, f.name), getattr(section, f.name)
            if default is None:
                continue
            want = (int, float) if type(default) is float else (list, tuple) if isinstance(default, (list, tuple)) \
                else type(default)
            if not isinstance(got, want) or (isinstance(got, bool) and not isinstance(default, bool)):
                raise ValueError(f"{f.name} must be {type(default).__name__}, got {got!r}")


def _build(cls, d: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**d)


def _parse_like(old, value: str, key: str):
    try:
        if isinstance(old, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return value.lower() in ("true", "1")
        return type(old)(value)
    except ValueError:
        raise ValueError(f"{key}: cannot read {value!r} as {type(old).__name__}") from None
