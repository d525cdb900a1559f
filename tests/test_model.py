"""The model: shapes of every mode, the Gaussian KL, KL balancing, truncated gradients, shared transition,
initialisation of the guidance heads."""
from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from gram.config import ModelConfig
from gram.model import GRAM, balanced_kl, gaussian_kl
from gram.tasks import get_task
from gram.train import Trainer, bind_task

B, S, D = 3, 64, 32


def tiny_model(mode: str = "gram", *extra: str, seed: int = 0) -> GRAM:
    cfg = bind_task(tiny_config(f"mode={mode}", *extra), get_task("nqueens8"))
    torch.manual_seed(seed)
    return GRAM(cfg.model)


def board_batch(b: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    s = get_task("nqueens8").split("train")
    return s.inputs[s.owner[:b]], s.targets[:b]


# --- shapes -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["gram", "noise", "deterministic", "flat"])
def test_shapes_every_mode(mode):
    m = tiny_model(mode)
    x, y = board_batch()
    e_x = m.embed_input(x)
    assert e_x.shape == (B, S, D)
    h, l = m.init_state(B)
    assert h.shape == (B, S, D)
    assert (l is None) == (mode == "flat")
    if l is not None:
        assert l.shape == (B, S, D)
    assert torch.equal(h[0, 0], m.h0) and torch.equal(h[2, 5], m.h0)  # z0 is one fixed vector, broadcast
    y_e = m.embed_target(y) if mode == "gram" else None
    noise = torch.randn(B, S, D)
    st = m.transition(h, l, e_x, noise=noise, y_e=y_e)
    assert st.h.shape == st.u.shape == (B, S, D)
    assert st.h.dtype == torch.float32
    if mode == "flat":
        assert st.l is None and st.eps is None
    else:
        assert st.l.shape == (B, S, D)
    if mode in ("gram", "noise"):
        assert st.eps.shape == st.mu.shape == st.sigma.shape == (B, S, D)
        torch.testing.assert_close(st.h, st.u + st.eps)
    if mode == "noise":
        torch.testing.assert_close(st.eps, m.cfg.noise_sigma * noise)
        assert st.prior is None and st.posterior is None
    if mode == "gram":
        assert st.prior[0].shape == st.prior[1].shape == (B, S, D)
        assert st.posterior[0].shape == st.posterior[1].shape == (B, S, D)
    if mode == "deterministic":
        assert st.eps is None and torch.equal(st.h, st.u)
    logits = m.decode(st.h)
    assert logits.shape == (B, S, 3)
    q_halt, v = m.heads(st.h)
    assert q_halt.shape == v.shape == (B,)
    assert "h0" in m.state_dict() and "l0" in m.state_dict()  # z0 is saved with the weights


@pytest.mark.parametrize("mode", ["gram", "noise", "deterministic", "flat"])
def test_modes_are_one_network(mode):
    """The modes differ only by the guidance modules (and f_L for flat): the rest has the same names/shapes."""
    base = {k: v.shape for k, v in tiny_model("deterministic").state_dict().items()}
    other = {k: v.shape for k, v in tiny_model(mode).state_dict().items()}
    own = {k for k in other if k.startswith(("prior.", "posterior."))}
    assert bool(own) == (mode == "gram")
    shared = set(other) - own
    if mode == "flat":
        assert not any(k.startswith("f_L.") for k in other)
        assert shared == {k for k in base if not k.startswith("f_L.")}
    else:
        assert shared == set(base)
    assert all(other[k] == base[k] for k in shared)


def test_no_noise_means_deterministic_step():
    """Without noise (or in deterministic mode) a transition is a pure function of the state."""
    m = tiny_model("gram")
    x, _ = board_batch()
    e_x = m.embed_input(x)
    h, l = m.init_state(B)
    a, b = m.transition(h, l, e_x), m.transition(h, l, e_x)
    assert torch.equal(a.h, b.h) and torch.equal(a.h, a.u) and a.eps is None


def test_posterior_rows_are_picked_per_row():
    m = tiny_model("gram")
    with torch.no_grad():  # give the prior and posterior different, non-zero means
        for head in (m.prior.proj, m.posterior.head.proj):
            head.weight.normal_(0, 0.3)
    x, y = board_batch()
    e_x, y_e = m.embed_input(x), m.embed_target(y)
    h, l = m.init_state(B)
    noise = torch.randn(B, S, D)
    pick = torch.tensor([True, False, True])
    st = m.transition(h, l, e_x, noise=noise, y_e=y_e, use_posterior=pick)
    mu_p, s_p = st.prior
    mu_q, s_q = st.posterior
    for b in range(B):
        mu, s = (mu_q, s_q) if pick[b] else (mu_p, s_p)
        torch.testing.assert_close(st.eps[b], mu[b] + s[b] * noise[b])
    assert not torch.allclose(mu_p, mu_q)


def test_mlp_mixer_shapes():
    m = tiny_model("gram", "mixer=mlp")
    x, y = board_batch()
    h, l = m.init_state(B)
    st = m.transition(h, l, m.embed_input(x), noise=torch.randn(B, S, D), y_e=m.embed_target(y))
    assert st.h.shape == (B, S, D) and m.decode(st.h).shape == (B, S, 3)


@pytest.mark.parametrize("mode,posterior_input", [("gram", "token"), ("gram", "block"), ("noise", "token"),
                                                   ("deterministic", "token"), ("flat", "token")])
def test_patch_codec_shapes(mode, posterior_input):
    """MNIST-style codec: a 28x28 image of tokens <-> 14x14 = 196 latent patches."""
    cfg = ModelConfig(mode=mode, D=16, n_heads=2, n_layers=1, K=1, T=1, seq_len=784, vocab=3, codec="patch",
                      image_side=28, posterior_input=posterior_input)
    m = GRAM(cfg)
    assert m.L == 196
    x = torch.randint(0, 3, (2, 784))
    e_x = m.embed_input(x)
    assert e_x.shape == (2, 196, 16)
    h, l = m.init_state(2)
    y_e = m.embed_target(torch.randint(0, 3, (2, 784))) if mode == "gram" else None
    st = m.transition(h, l, e_x, noise=torch.randn(2, 196, 16), y_e=y_e)
    assert st.h.shape == (2, 196, 16)
    assert m.decode(st.h).shape == (2, 784, 3)
    assert all(t.shape == (2,) for t in m.heads(st.h))


def test_patch_size():
    """patch=4: 7x7 = 49 latent positions, each decoding its own 4x4 pixels; a patch must divide the side."""
    cfg = ModelConfig(D=16, n_heads=2, n_layers=1, K=1, T=1, seq_len=784, vocab=3, codec="patch", image_side=28, patch=4)
    m = GRAM(cfg)
    assert m.L == 49 and m.embed_input(torch.randint(0, 3, (2, 784))).shape == (2, 49, 16)
    h = torch.zeros(2, 49, 16)
    h[0, 8] = torch.randn(16)  # latent (1, 1) holds pixels rows 4-7, columns 4-7
    changed = (m.decode(h)[0] != m.decode(torch.zeros_like(h))[0]).any(-1).view(28, 28).nonzero()
    assert changed[:, 0].unique().tolist() == [4, 5, 6, 7] and changed[:, 1].unique().tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="must divide"):
        GRAM(ModelConfig(seq_len=784, vocab=3, codec="patch", image_side=28, patch=3))


def test_model_needs_task_sizes():
    with pytest.raises(ValueError, match="task"):
        GRAM(ModelConfig())


# --- the KL ---------------------------------------------------------------------------------------------------
def test_gaussian_kl_closed_form():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    s_q, s_p = torch.rand(5, 7, generator=g) + 0.05, torch.rand(5, 7, generator=g) + 0.05
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, s_q), torch.distributions.Normal(mu_p, s_p))
    torch.testing.assert_close(gaussian_kl(mu_q, s_q, mu_p, s_p), ref)
    assert torch.all(gaussian_kl(mu_q, s_q, mu_q, s_q).abs() < 1e-6)  # KL(p || p) = 0
    assert torch.all(gaussian_kl(mu_q, s_q, mu_p, s_p) >= 0)


def test_balanced_kl_value_and_gradient_split():
    g = torch.Generator().manual_seed(1)
    leaves = [torch.randn(4, 6, generator=g) for _ in range(2)] + [torch.rand(4, 6, generator=g) + 0.1 for _ in range(2)]
    mu_q, mu_p, s_q, s_p = [t.clone().requires_grad_(True) for t in leaves]
    true = gaussian_kl(mu_q, s_q, mu_p, s_p)
    bal = balanced_kl((mu_q, s_q), (mu_p, s_p), 0.8)
    torch.testing.assert_close(bal, true)  # same value as the true KL
    g_true = torch.autograd.grad(true.sum(), [mu_q, s_q, mu_p, s_p])
    g_bal = torch.autograd.grad(bal.sum(), [mu_q, s_q, mu_p, s_p])
    # the posterior gets 0.2 of the true gradient, the prior 0.8
    torch.testing.assert_close(g_bal[0], 0.2 * g_true[0])
    torch.testing.assert_close(g_bal[1], 0.2 * g_true[1])
    torch.testing.assert_close(g_bal[2], 0.8 * g_true[2])
    torch.testing.assert_close(g_bal[3], 0.8 * g_true[3])


# --- the truncated gradient -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["gram", "deterministic", "flat"])
def test_gradient_reaches_only_the_last_transition(mode, monkeypatch):
    """In a training step the first T-1 transitions run without gradient and leave no graph; the last one
    starts from a state with no graph behind it; the carried state is detached."""
    tr = Trainer(tiny_config(f"mode={mode}", "T=3", "batch=4"))
    calls = []
    orig = tr.model.transition

    def spy(h, l, e_x, **kw):
        st = orig(h, l, e_x, **kw)
        calls.append({"grad_enabled": torch.is_grad_enabled(), "h_in_graph": h.requires_grad or h.grad_fn is not None,
                      "l_in_graph": l is not None and (l.requires_grad or l.grad_fn is not None),
                      "out_graph": st.h.grad_fn is not None})
        return st

    monkeypatch.setattr(tr.model, "transition", spy)
    for _ in range(2):  # the second step starts from the carried state
        calls.clear()
        tr.train_step()
        assert [c["grad_enabled"] for c in calls] == [False, False, True]
        assert [c["out_graph"] for c in calls] == [False, False, True]
        assert not any(c["h_in_graph"] or c["l_in_graph"] for c in calls)
        assert tr.carry.h.grad_fn is None and not tr.carry.h.requires_grad
        assert tr.carry.l is None or (tr.carry.l.grad_fn is None and not tr.carry.l.requires_grad)


def test_gradient_reaches_the_core_through_the_last_transition():
    """Sanity for the test above: the loss of one step does train f_L and f_H (and the guidance in gram mode)."""
    tr = Trainer(tiny_config("mode=gram", "T=2", "batch=8", "prior_frac=0"))
    seen = {}
    for name, p in tr.model.named_parameters():
        p.register_hook(lambda g, name=name: seen.__setitem__(name, g.abs().sum().item()))
    tr.train_step()
    assert any(k.startswith("f_L.") and v > 0 for k, v in seen.items())
    assert any(k.startswith("f_H.") and v > 0 for k, v in seen.items())
    assert any(k.startswith("posterior.") for k in seen) and any(k.startswith("prior.") for k in seen)


def test_heads_do_not_train_the_core():
    m = tiny_model("gram")
    x, _ = board_batch()
    h, l = m.init_state(B)
    st = m.transition(h, l, m.embed_input(x), noise=torch.randn(B, S, D))
    q_halt, v = m.heads(st.h)
    (q_halt.sum() + v.sum()).backward()
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith(("f_L.", "f_H.", "codec.", "pos")))
    assert m.halt_head.weight.grad is not None and m.value_head[0].weight.grad is not None


# --- prior and posterior share the transition -------------------------------------------------------
def test_prior_and_posterior_share_u():
    m = tiny_model("gram")
    seen = {}
    m.prior.register_forward_pre_hook(lambda mod, args: seen.__setitem__("prior", args[0]))
    m.posterior.register_forward_pre_hook(lambda mod, args: seen.__setitem__("posterior", args[0]))
    x, y = board_batch()
    h, l = m.init_state(B)
    st = m.transition(h, l, m.embed_input(x), noise=torch.randn(B, S, D), y_e=m.embed_target(y))
    assert seen["prior"] is seen["posterior"]  # one deterministic proposal u for both
    assert torch.equal(seen["prior"], st.u)  # (detached from the core unless kl_into_core)
    # and it is the deterministic update: the same u as a noise-free transition from the same state
    torch.testing.assert_close(st.u, m.transition(h, l, m.embed_input(x)).h)
    # the posterior is what steers h when y is given
    mu_q, s_q = st.posterior
    torch.testing.assert_close(st.mu, mu_q)
    torch.testing.assert_close(st.sigma, s_q)


# --- initialisation -----------------------------------------------------------------------------------------
def test_mean_heads_start_at_zero_and_sigma_is_bounded():
    m = tiny_model("gram")
    c = m.cfg
    u = 10 * torch.randn(B, S, D)
    y_e = m.embed_target(board_batch()[1])
    zero = torch.zeros(B, S, D)
    for mu, sigma in (m.prior(u), m.posterior(u, y_e, zero)):
        assert torch.all(mu == 0)
        torch.testing.assert_close(sigma, torch.full_like(sigma, c.sigma_init))
    assert torch.all(m.prior.proj.weight == 0)
    # after the heads are trained to extremes, sigma stays inside [sigma_min, sigma_max]
    with torch.no_grad():
        for proj in (m.prior.proj, m.posterior.head.proj):
            proj.weight.normal_(0, 100.0)
    for mu, sigma in (m.prior(u), m.posterior(u, y_e, zero)):
        assert torch.all(sigma >= c.sigma_min) and torch.all(sigma <= c.sigma_max)
        assert sigma.min() < 2 * c.sigma_min and sigma.max() > c.sigma_max / 2  # the bounds are reached
        assert torch.isfinite(mu).all()


def test_gram_starts_as_the_deterministic_update_plus_noise():
    """Zero-initialised means: the first gram transition is u + sigma_init * noise."""
    m = tiny_model("gram")
    x, y = board_batch()
    h, l = m.init_state(B)
    noise = torch.randn(B, S, D)
    st = m.transition(h, l, m.embed_input(x), noise=noise, y_e=m.embed_target(y))
    torch.testing.assert_close(st.h, st.u + m.cfg.sigma_init * noise)
