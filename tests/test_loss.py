"""The training objective on its own (gram.model.elbo, head_losses) with hand-made tensors of known value, and
the optimiser groups the model chooses."""
from __future__ import annotations

import math

import pytest
import torch

from gram.config import ModelConfig
from gram.model import GRAM, elbo, head_losses

PAD = 0


def test_cross_entropy_averages_over_target_positions_only():
    logits = torch.zeros(3, 3, 4)  # uniform over 4 tokens: log 4 a position
    logits[1, :, 2] = 10.0  # row 1 is sure of token 2
    y = torch.tensor([[1, 2, PAD], [2, 2, 2], [PAD, PAD, PAD]])
    loss, ce, kl = elbo(logits, y, pad=PAD, beta=5.0, kl_balance=0.8)
    sure = math.log(1 + 3 * math.exp(-10))
    assert ce.tolist() == pytest.approx([math.log(4), sure, 0.0], abs=1e-6)  # the pad position adds nothing; no target: 0
    assert kl is None and torch.equal(loss, ce)  # without guidance the loss is the cross-entropy alone


def gaussians(L=3, D=2):
    """q = N(1, 1), p = N(0, 1) in every element: KL 0.5 an element, so 1.0 summed over D = 2."""
    mu_q, mu_p = torch.ones(1, L, D, requires_grad=True), torch.zeros(1, L, D, requires_grad=True)
    return (mu_q, torch.ones(1, L, D)), (mu_p, torch.ones(1, L, D))


def test_kl_is_summed_over_d_and_averaged_over_positions():
    q, p = gaussians()
    logits, y = torch.zeros(1, 3, 4), torch.tensor([[1, 1, 1]])
    loss, ce, kl = elbo(logits, y, pad=PAD, beta=2.0, kl_balance=0.8, prior=p, posterior=q)
    assert kl.tolist() == pytest.approx([1.0]) and not kl.requires_grad  # the true KL, logged
    assert loss.tolist() == pytest.approx([math.log(4) + 2.0 * 1.0])  # balancing keeps the KL's value


def test_kl_balance_splits_the_gradient_between_prior_and_posterior():
    q, p = gaussians()
    alpha, beta = 0.8, 2.0
    loss, _, _ = elbo(torch.zeros(1, 3, 4), torch.tensor([[1, 1, 1]]), pad=PAD, beta=beta, kl_balance=alpha,
                      prior=p, posterior=q)
    loss.sum().backward()
    # d KL / d mu_q = (mu_q - mu_p) / sigma_p^2 = 1 an element, then / 3 positions
    assert torch.allclose(q[0].grad, torch.full((1, 3, 2), (1 - alpha) * beta / 3))  # q moves by 1 - alpha
    assert torch.allclose(p[0].grad, torch.full((1, 3, 2), -alpha * beta / 3))  # p moves towards q by alpha


def test_head_losses_are_binary_cross_entropies_per_row():
    q_halt = torch.tensor([0.0, 0.0, 20.0])
    v = torch.tensor([0.0, -20.0, 0.0])
    halt, value = head_losses(q_halt, v, correct=torch.tensor([1.0, 0.0, 1.0]), reward=torch.tensor([0.5, 0.0, 1.0]))
    assert halt.tolist() == pytest.approx([math.log(2), math.log(2), 0.0], abs=1e-8)
    assert value.tolist() == pytest.approx([math.log(2), 0.0, math.log(2)], abs=1e-8)


@pytest.mark.parametrize("codec,n_puzzles", [("tokens", 0), ("tokens", 5), ("patch", 0)])
def test_weight_decay_on_the_matrices_never_on_embeddings(codec, n_puzzles):
    cfg = ModelConfig(D=16, n_heads=2, n_layers=1, seq_len=16, vocab=3, codec=codec, image_side=4, patch=2,
                      n_puzzles=n_puzzles)
    m = GRAM(cfg)
    decay, rest = m.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    ids = lambda ps: [id(p) for p in ps]
    assert sorted(ids(decay["params"]) + ids(rest["params"])) == sorted(ids(m.parameters()))  # a partition
    embeddings = [m.pos, *m.codec.embed_x.parameters(), *m.codec.embed_y.parameters(),
                  *(m.puzzle.parameters() if m.puzzle is not None else ())]
    assert not set(ids(embeddings)) & set(ids(decay["params"]))
    assert all(p.ndim >= 2 for p in decay["params"])
    linears = [mod.weight for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert set(ids(linears)) <= set(ids(decay["params"]))  # every matrix of the network decays
