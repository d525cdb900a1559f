"""GRAM: a generative recursive reasoning model, in one file.

Latent state z = (h, l), each (B, L, D). One high-level transition:

    repeat K times:  l <- f_L(l + h + e_x)          # deterministic low-level refinement
    u   = f_H(h + l)                                 # deterministic high-level proposal
    eps ~ N(mu_p(u), sigma_p(u)^2)                   # prior guidance (inference)
    eps ~ N(mu_q(u, y), sigma_q(u, y)^2)             # posterior guidance (training; sees y)
    h   = u + eps                                    # noise enters h only

The decoder reads h only. Modes of the same network:
    gram           learned guidance (prior and posterior), the paper's model
    noise          eps ~ N(0, noise_sigma^2): stochasticity without a learned mean
    deterministic  eps = 0: a TRM/HRM-like recursion
    flat           no h/l split, no noise: a Looped Transformer, h <- f_H(h + e_x) K+1 times
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), eps=1e-6)


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Attention(nn.Module):
    def __init__(self, D: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.out = nn.Linear(D, D, bias=False)

    def forward(self, x):  # (B, L, D)
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, H, L, D/H), fused, non-causal
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class SequenceMLP(nn.Module):
    """MLP-Mixer style token mixing: a SwiGLU across the sequence axis (the paper's Sudoku core)."""

    def __init__(self, L: int, ratio: float):
        super().__init__()
        self.mlp = SwiGLU(L, max(1, int(L * ratio)))

    def forward(self, x):  # (B, L, D)
        return self.mlp(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    """Post-norm block: every block, hence every stack, ends normalised (an un-normalised
    f_L/f_H is what made the KL blow up to NaN for others)."""

    def __init__(self, cfg: ModelConfig, L: int):
        super().__init__()
        self.mix = Attention(cfg.D, cfg.n_heads) if cfg.mixer == "attn" else SequenceMLP(L, cfg.mlp_ratio)
        self.mlp = SwiGLU(cfg.D, int(cfg.D * cfg.mlp_ratio))

    def forward(self, x):
        x = rms_norm(x + self.mix(x))
        return rms_norm(x + self.mlp(x))


class Stack(nn.Sequential):
    def __init__(self, cfg: ModelConfig, L: int):
        super().__init__(*[Block(cfg, L) for _ in range(cfg.n_layers)])


class Guidance(nn.Module):
    """A diagonal Gaussian over eps, from features (B, L, D): mean head zero-initialised so training
    starts from the deterministic update; sigma bounded to [sigma_min, sigma_max] by a sigmoid."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.D, 2 * cfg.D)
        self.lo, self.hi = cfg.sigma_min, cfg.sigma_max
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        p = (cfg.sigma_init - self.lo) / (self.hi - self.lo)
        with torch.no_grad():
            self.proj.bias[cfg.D:] = math.log(p / (1 - p))

    def forward(self, feats):
        mu, s = self.proj(feats).float().chunk(2, dim=-1)
        return mu, self.lo + (self.hi - self.lo) * torch.sigmoid(s)


class Posterior(nn.Module):
    """q(eps | u, y), parameterised as a residual on the prior (as in NVAE): mu_q = mu_p(u) + delta(u, y).
    delta starts at zero, so q starts equal to p; the KL then measures only what q adds for y, and the
    prior's own drift costs nothing. How y enters is `posterior_input` (see ModelConfig)."""

    def __init__(self, cfg: ModelConfig, L: int):
        super().__init__()
        self.mix = Block(cfg, L) if cfg.posterior_input == "block" else SwiGLU(cfg.D, int(cfg.D * cfg.mlp_ratio))
        self.residual = cfg.posterior_input == "token"
        self.head = Guidance(cfg)

    def forward(self, u, y_e, mu_p):
        z = rms_norm(u + y_e)
        delta, sigma = self.head(rms_norm(z + self.mix(z)) if self.residual else self.mix(z))
        return mu_p + delta, sigma


class TokenCodec(nn.Module):
    """Tokens in, tokens out: embedding scaled by sqrt(D), a linear decoder."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.scale = math.sqrt(cfg.D)
        self.embed_x = nn.Embedding(cfg.vocab, cfg.D)
        self.embed_y = nn.Embedding(cfg.vocab, cfg.D)
        self.decoder = nn.Linear(cfg.D, cfg.vocab, bias=False)
        for e in (self.embed_x, self.embed_y):
            nn.init.normal_(e.weight, std=1 / self.scale)

    def encode(self, tokens, which):  # (B, S) -> (B, L=S, D)
        return self.scale * (self.embed_x if which == "x" else self.embed_y)(tokens)

    def decode(self, h):  # (B, L, D) -> (B, S, vocab)
        return self.decoder(h)


class PatchCodec(nn.Module):
    """A square image of tokens (B, S*S) <-> (S/p)^2 latent patches by pxp (transposed) convolutions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.patch < 1 or cfg.image_side % cfg.patch:
            raise ValueError(f"patch={cfg.patch} must divide image_side={cfg.image_side}")
        self.side, self.vocab, self.p = cfg.image_side, cfg.vocab, cfg.patch
        self.embed_x = nn.Conv2d(cfg.vocab, cfg.D, self.p, stride=self.p)
        self.embed_y = nn.Conv2d(cfg.vocab, cfg.D, self.p, stride=self.p)
        self.decoder = nn.ConvTranspose2d(cfg.D, cfg.vocab, self.p, stride=self.p)
        for c in (self.embed_x, self.embed_y):  # a one-hot patch sums p^2 weights: unit-scale features
            nn.init.normal_(c.weight, std=1 / self.p)
            nn.init.zeros_(c.bias)

    def encode(self, tokens, which):  # (B, S*S) -> (B, (S/p)^2, D)
        B, S = tokens.shape[0], self.side
        onehot = F.one_hot(tokens.view(B, S, S), self.vocab).permute(0, 3, 1, 2).to(self.embed_x.weight.dtype)
        return (self.embed_x if which == "x" else self.embed_y)(onehot).flatten(2).transpose(1, 2)

    def decode(self, h):  # (B, (S/p)^2, D) -> (B, S*S, vocab)
        B, L, D = h.shape
        s = self.side // self.p
        return self.decoder(h.transpose(1, 2).reshape(B, D, s, s)).flatten(2).transpose(1, 2)


@dataclass
class Step:
    """What one transition produced (the caller decides what to keep)."""

    h: torch.Tensor
    l: torch.Tensor | None
    u: torch.Tensor
    eps: torch.Tensor | None = None  # the sampled guidance
    mu: torch.Tensor | None = None  # mean and scale of the distribution eps came from
    sigma: torch.Tensor | None = None
    prior: tuple | None = None  # (mu_p, sigma_p), gram mode
    posterior: tuple | None = None  # (mu_q, sigma_q), gram mode with a target


class GRAM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.seq_len < 1 or cfg.vocab < 2:
            raise ValueError("ModelConfig.seq_len and vocab come from the task; build the config with a task")
        self.cfg = cfg
        self.flat = cfg.mode == "flat"
        self.codec = PatchCodec(cfg) if cfg.codec == "patch" else TokenCodec(cfg)
        self.L = cfg.n_positions
        D = cfg.D
        self.pos = nn.Parameter(torch.randn(self.L, D) / math.sqrt(D))
        self.puzzle = nn.Embedding(cfg.n_puzzles, D) if cfg.n_puzzles else None
        if self.puzzle is not None:
            nn.init.zeros_(self.puzzle.weight)  # puzzles start indistinguishable, learn to differ
        # z0 = (h0, l0): drawn once from N(0, I), then fixed and saved with the weights
        self.register_buffer("h0", torch.randn(D))
        self.register_buffer("l0", torch.randn(D))
        self.f_H = Stack(cfg, self.L)
        self.f_L = None if self.flat else Stack(cfg, self.L)
        self.prior = Guidance(cfg) if cfg.mode == "gram" else None
        self.posterior = Posterior(cfg, self.L) if cfg.mode == "gram" else None
        self.halt_head = nn.Linear(D, 1)  # ACT: q_halt, read from the LPRM's per-position features (see heads)
        self.value_head = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, 1))  # LPRM v(h)
        nn.init.constant_(self.halt_head.bias, -2.0)  # start by continuing

    def param_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: weight decay on the network's matrices, none on the embeddings (token or patch
        encoders, positions, puzzles), which a decay would pull towards zero for every row a batch leaves
        unused, nor on biases and other vectors. Order within each group: self.parameters()."""
        embeddings = [self.codec.embed_x, self.codec.embed_y, self.pos] + ([self.puzzle] if self.puzzle is not None else [])
        no_decay = {id(p) for e in embeddings for p in ([e] if isinstance(e, nn.Parameter) else e.parameters())}
        decay = lambda p: p.ndim >= 2 and id(p) not in no_decay
        return [{"params": [p for p in self.parameters() if decay(p)], "weight_decay": weight_decay},
                {"params": [p for p in self.parameters() if not decay(p)], "weight_decay": 0.0}]

    @property
    def stochastic(self) -> bool:
        return self.cfg.mode in ("gram", "noise")

    # --- the pieces of the recursion -------------------------------------------------------
    def embed_input(self, x, puzzle=None):  # (B, S) tokens -> e_x (B, L, D), computed once per rollout
        e = self.codec.encode(x, "x") + math.sqrt(self.cfg.D) * self.pos
        if self.puzzle is not None and puzzle is not None:
            e = e + math.sqrt(self.cfg.D) * self.puzzle(puzzle)[:, None]
        return e / math.sqrt(2)

    def embed_target(self, y):  # (B, S) -> (B, L, D): what the posterior reads
        return self.codec.encode(y, "y")

    def init_state(self, B: int):
        h = self.h0.expand(B, self.L, -1).clone()
        l = None if self.flat else self.l0.expand(B, self.L, -1).clone()
        return h, l

    def transition(self, h, l, e_x, noise=None, y_e=None, use_posterior=None) -> Step:
        """One high-level transition. `noise` is a standard normal (B, L, D), drawn by the caller so that
        each trajectory can own its random stream. `use_posterior` (B,) bool picks rows steered by q."""
        if self.flat:
            for _ in range(self.cfg.K + 1):
                h = self.f_H(h + e_x)
            return Step(h=h, l=None, u=h)
        for _ in range(self.cfg.K):
            l = self.f_L(l + h + e_x)
        u = self.f_H(h + l)
        if self.cfg.mode == "deterministic" or noise is None:
            return Step(h=u, l=l, u=u)
        if self.cfg.mode == "noise":
            sigma = torch.full_like(noise, self.cfg.noise_sigma)
            mu = torch.zeros_like(noise)
            step = Step(h=u, l=l, u=u)
        else:
            g = u if self.cfg.kl_into_core else u.detach()  # see ModelConfig.kl_into_core
            mu, sigma = prior = self.prior(g)
            step = Step(h=u, l=l, u=u, prior=prior)
            if y_e is not None:
                step.posterior = self.posterior(g, y_e, prior[0])
                if use_posterior is None:
                    mu, sigma = step.posterior
                else:
                    pick = use_posterior.view(-1, 1, 1)
                    mu, sigma = torch.where(pick, step.posterior[0], mu), torch.where(pick, step.posterior[1], sigma)
        eps = mu + sigma * noise  # reparameterised
        step.h, step.eps, step.mu, step.sigma = u.float() + eps, eps, mu, sigma  # the state stays fp32
        return step

    def decode(self, h):  # (B, L, D) -> logits (B, S, vocab)
        return self.codec.decode(h)

    def heads(self, h):
        """Halting logit and LPRM value logit, read from a detached h: the heads never train the core.
        Both are a soft minimum over positions of a per-position score: an answer is right only if every
        part of it is. (Pooling h first hid which cells were wrong: on graph colouring-8 the refitted LPRM's
        pick scored 77% pooled first, 87% scored per position.) q_halt is a linear read-out of the LPRM's
        per-position features, detached so that fitting it leaves v as it was. Read off position 0 alone,
        as HRM does with its puzzle token, it halted most samples too early: ACT to depth 16 scored 67% on
        N-Queens-8 against 95% at a fixed depth 4; see gram.heads."""
        soft_min = lambda score: -torch.logsumexp(-score.squeeze(-1), 1)  # (B, L, 1) -> (B,)
        feats = self.value_head[:2](h.detach())  # (B, L, D)
        return soft_min(self.halt_head(feats.detach())), soft_min(self.value_head[2](feats))


def gaussian_kl(mu_q, sigma_q, mu_p, sigma_p):
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)), elementwise, closed form."""
    return torch.log(sigma_p / sigma_q) + (sigma_q**2 + (mu_q - mu_p) ** 2) / (2 * sigma_p**2) - 0.5


def balanced_kl(q, p, alpha: float):
    """DreamerV2 KL balancing: alpha * KL(sg(q) || p) + (1 - alpha) * KL(q || sg(p)).
    Same value as the true KL; only the gradients are split (the prior moves to q faster than q to p)."""
    (mu_q, s_q), (mu_p, s_p) = q, p
    to_prior = gaussian_kl(mu_q.detach(), s_q.detach(), mu_p, s_p)
    to_post = gaussian_kl(mu_q, s_q, mu_p.detach(), s_p.detach())
    return alpha * to_prior + (1 - alpha) * to_post


def elbo(logits, y, *, pad: int, beta: float, kl_balance: float, prior=None, posterior=None):
    """The truncated ELBO surrogate of one supervision step, per row, in fp32.

    logits (B, S, V) decoded from h_T; y (B, S) targets, positions holding `pad` carry no loss; prior and
    posterior the (mu, sigma) pairs (B, L, D) of the step's guidance, gram mode only. Returns (loss, ce, kl),
    each (B,): ce the cross-entropy averaged over target positions, kl the true KL(q || p) summed over D and
    averaged over positions (for logs, no gradient), loss = ce + beta * balanced KL (ce without guidance)."""
    mask = (y != pad).float()
    ce = (F.cross_entropy(logits.transpose(1, 2), y, reduction="none") * mask).sum(1) / mask.sum(1).clamp(min=1)
    if posterior is None:
        return ce, ce, None
    kl_bal = balanced_kl(posterior, prior, kl_balance).sum(-1).mean(-1)
    kl = gaussian_kl(*posterior, *prior).sum(-1).mean(-1).detach()
    return ce + beta * kl_bal, ce, kl


def head_losses(q_halt, v, correct, reward):
    """Per-row losses of the two heads (B,): q_halt (a logit) against "this answer is right", the LPRM value v
    (a logit) against the task's reward. Returns (halt, value)."""
    bce = lambda logit, target: F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    return bce(q_halt, correct), bce(v, reward)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
