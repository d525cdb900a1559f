"""The guidance a trace recorded, per position and per step (gram.analysis.guidance, guidance_per_step): on
hand-made traces with known values, and on a real rollout against the summaries it records itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gram import analysis
from gram.rollout import Trace, rollout


def hand_trace(noise: dict, R: int = 2, B: int = 1, L: int = 2) -> Trace:
    z = torch.zeros(R, B)
    return Trace(list(range(B)), torch.arange(1, R + 1), torch.ones(R, dtype=torch.long), torch.zeros(R, B, L, 1),
                 torch.zeros(R, B, L, dtype=torch.long), torch.zeros(R, B, L, 3), z, z, z.bool(), noise=noise)


def test_summaries_are_read_as_they_are_and_averaged_per_step():
    sigma = torch.tensor([[[0.2, 0.4]], [[0.1, 0.3]]])  # (R=2, B=1, L=2)
    mu = torch.tensor([[[1.0, 3.0]], [[0.0, 2.0]]])
    eps = torch.tensor([[[2.0, 2.0]], [[4.0, 0.0]]])
    kl = torch.tensor([[[0.5, 1.5]], [[0.0, 0.25]]])
    tr = hand_trace({"eps": eps.half(), "kl": kl, "mu": mu.half(), "sigma": sigma.half()})  # as safetensors sorts
    g = analysis.guidance(tr)
    assert list(g) == ["sigma", "mu", "eps", "kl"] and g["sigma"].shape == (2, 2)
    assert np.allclose(g["mu"], [[1, 3], [0, 2]]) and np.allclose(g["kl"], [[0.5, 1.5], [0, 0.25]])
    s = analysis.guidance_per_step(tr)
    assert np.allclose(s["sigma"], [0.3, 0.2], atol=1e-3)
    assert np.allclose(s["mu"], [2.0, 1.0]) and np.allclose(s["eps"], [2.0, 2.0])
    assert np.allclose(s["kl"], [2.0, 0.25])  # KL is the step's total over positions, not its mean


def test_full_noise_is_reduced_over_d_as_rollout_summarises():
    D = 4
    mu = torch.zeros(1, 2, 2, D)
    mu[0, 1, 0] = torch.tensor([3.0, 4.0, 0.0, 0.0])  # row 1, position 0: RMS over D = 5 / 2
    sigma = torch.full((1, 2, 2, D), 0.5)
    sigma[0, 1, 1] = torch.tensor([0.1, 0.2, 0.3, 0.4])  # mean 0.25
    eps = torch.ones(1, 2, 2, D) * 2  # RMS 2 everywhere
    tr = hand_trace({"mu": mu, "sigma": sigma, "eps": eps}, R=1, B=2)
    g = analysis.guidance(tr, b=1)
    assert np.allclose(g["mu"], [[2.5, 0.0]]) and np.allclose(g["sigma"], [[0.5, 0.25]])
    assert np.allclose(g["eps"], [[2.0, 2.0]])
    assert np.allclose(analysis.guidance(tr, b=0)["mu"], 0)  # another row: its own values
    assert np.allclose(analysis.guidance_per_step(tr, b=1)["mu"], [1.25])


def test_a_mode_without_noise_has_no_guidance():
    tr = hand_trace({})
    assert analysis.guidance(tr) == {} and analysis.guidance_per_step(tr) == {}


def test_a_real_rollout_full_and_summary_agree_and_the_noise_scale_moves_eps(tiny_checkpoint):
    from gram.checkpoint import load_checkpoint
    from gram.tasks import get_task

    model, cfg, _ = load_checkpoint(tiny_checkpoint)
    x = get_task(cfg.train.task).split("test", 0).inputs[:1]
    kw = dict(n_sup=2, seed=3, record="transitions")
    summary = analysis.guidance(rollout(model, x, **kw))
    full = analysis.guidance(rollout(model, x, noise="full", **kw))
    for k in ("mu", "sigma", "eps"):
        assert np.allclose(summary[k], full[k], atol=2e-2 * max(1.0, float(np.abs(full[k]).max()))), k
    # eps = mu + sigma * (noise scale) * N(0, 1): at scale 0 the sample is the mean
    cold = analysis.guidance(rollout(model, x, temperature=0.0, **kw))
    assert np.allclose(cold["eps"], cold["mu"], atol=1e-2)
    hot = analysis.guidance_per_step(rollout(model, x, temperature=2.0, **kw))
    assert hot["eps"].mean() > analysis.guidance_per_step(rollout(model, x, temperature=0.0, **kw))["eps"].mean()


def test_posterior_kl_per_step_is_its_per_position_sum(tiny_checkpoint):
    from gram.checkpoint import load_checkpoint
    from gram.rollout import posterior_rollout
    from gram.tasks import get_task

    model, cfg, _ = load_checkpoint(tiny_checkpoint)
    split = get_task(cfg.train.task).split("test", 0)
    tr = posterior_rollout(model, split.inputs[:1], split.targets[:1], n_sup=2, seed=0, record="transitions")
    per_pos = analysis.guidance(tr)["kl"]
    assert per_pos.shape == (tr.n_records, model.L) and (per_pos >= -1e-6).all()
    assert np.allclose(analysis.guidance_per_step(tr)["kl"], per_pos.sum(1), rtol=1e-5)
    assert pytest.approx(float(tr.noise["kl"][0, 0].sum())) == float(analysis.guidance_per_step(tr)["kl"][0])
