"""Selection rules on constructed cases, PCA, spread, distinct answers, model comparison."""
import numpy as np
import pytest
import torch

from gram.analysis import accuracy_by_step, compare_models, distinct_per_step, pca, per_step_spread
from gram.config import ModelConfig
from gram.model import GRAM
from gram.rollout import rollout
from gram.select import best_of_n, majority_vote
from gram.tasks import get_task


def answers(*rows):
    """Each row a list of answers; an answer is a small int expanded to a 3-token sequence."""
    return torch.tensor([[[a, a, a] for a in r] for r in rows])


def test_majority_vote_picks_the_most_frequent_answer_and_breaks_ties_by_first_appearance():
    s = answers([1, 2, 2, 3], [4, 5, 5, 4], [7, 8, 9, 9], [6, 6, 6, 6], [3, 1, 2, 0])
    # 2 wins; 4 and 5 tie -> 4 appeared first (index 0); 9 wins; all the same -> 0; all distinct -> 0
    assert majority_vote(s).tolist() == [1, 0, 2, 0, 0]


def test_best_of_n_takes_the_highest_value_and_ties_go_to_the_lowest_index():
    v = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.2, 0.5], [0.4, 0.4, 0.4]])
    assert best_of_n(v).tolist() == [1, 0, 0]


def tiny(mode="gram"):
    torch.manual_seed(0)
    m = GRAM(ModelConfig(mode=mode, D=32, n_heads=2, n_layers=1, K=1, T=2, seq_len=64, vocab=3)).eval()
    if m.prior is not None:
        with torch.no_grad():
            m.prior.proj.weight.normal_(0, 0.05)
    return m


def test_pca_shapes_and_explained_variance():
    x = get_task("nqueens8").split("test").inputs[:1].expand(6, -1)
    tr = rollout(tiny(), x, n_sup=3, record="transitions", dtype="fp32")
    for h in (tr, rollout(tiny(), x, n_sup=3, latents="pooled", dtype="fp32").h):
        p = pca(h, k=3)
        R = h.h.shape[0] if hasattr(h, "h") else h.shape[0]
        assert p.coords.shape == (R, 6, 3) and p.explained.shape == (3,)
        assert ((p.explained >= 0) & (p.explained <= 1)).all() and p.explained.sum() <= 1 + 1e-6
        assert np.all(np.diff(p.explained) <= 1e-9)
        assert np.allclose(p.project(h), p.coords, atol=1e-4)  # the fitted axes are reusable
    det = rollout(tiny("deterministic"), x[:1], n_sup=1, record="steps", dtype="fp32")
    assert pca(det, k=2).coords.shape == (1, 1, 2)  # one state: no variance, zeros, no crash


def test_spread_distinct_and_accuracy_per_step():
    task = get_task("nqueens8")
    x = task.split("test").inputs[0]
    tr = rollout(tiny(), x.expand(5, -1), n_sup=3, record="steps", dtype="fp32")
    sp, dist, acc = per_step_spread(tr), distinct_per_step(tr), accuracy_by_step(task, x, tr)
    assert sp.shape == dist.shape == acc.shape == (3,)
    assert (sp > 0).all() and ((dist >= 1) & (dist <= 5)).all() and ((acc >= 0) & (acc <= 1)).all()
    det = rollout(tiny("deterministic"), x.expand(4, -1), n_sup=2, record="steps", dtype="fp32")
    assert per_step_spread(det).tolist() == [0.0, 0.0] and distinct_per_step(det).tolist() == [1, 1]


def test_compare_models_gram_against_deterministic():
    task = get_task("nqueens8")
    split = task.split("test").subset(torch.arange(2))
    res = compare_models(tiny(), tiny("deterministic"), task, split, n=4, n_sup=2)
    assert set(res) == {"gram", "deterministic"}
    assert res["deterministic"]["distinct"] == 1.0
    assert res["gram"]["curves"]["n"] == [1, 2, 4]


@pytest.mark.parametrize("n,F", [(40, 30), (2048, 640)])  # the exact SVD and the randomized one
def test_pca_agrees_with_scikit_learn(n, F):
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 4, generator=g) * torch.tensor([5.0, 3.0, 2.0, 1.0])
    X = z @ torch.randn(4, F, generator=g) + 0.1 * torch.randn(n, F, generator=g)
    p = pca(X.reshape(n // 8, 8, F), k=3)
    ref = PCA(3).fit(X.numpy())
    assert np.allclose(p.explained, ref.explained_variance_ratio_, atol=1e-4)
    ours, theirs = p.coords.reshape(n, 3), ref.transform(X.numpy())
    assert np.allclose(np.abs(ours), np.abs(theirs), atol=1e-2 * np.abs(theirs).max())
    assert (pca(X.reshape(n // 8, 8, F), k=3).coords == p.coords).all()  # same states, same picture
