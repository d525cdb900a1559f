"""Rollout traces: replay, batch-row equality, continuation, branching, ACT, posterior, memory."""
import math

import pytest
import torch

from gram.config import ModelConfig
from gram.model import GRAM
from gram.rollout import branch, concat, posterior_rollout, rollout, sample


def tiny(mode="gram", seed=0) -> GRAM:
    torch.manual_seed(seed)
    m = GRAM(ModelConfig(mode=mode, D=32, n_heads=2, n_layers=1, K=1, T=2, seq_len=16, vocab=3)).eval()
    if m.prior is not None:  # a trained prior has a mean that depends on u; zero-init would hide replay bugs
        with torch.no_grad():
            m.prior.proj.weight.normal_(0, 0.05)
    return m


def inputs(B=1, seed=0):
    return torch.randint(1, 3, (B, 16), generator=torch.Generator().manual_seed(seed))


def assert_same(a, b):
    for k in ("h", "pred", "probs", "value", "halt", "live"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert a.noise.keys() == b.noise.keys()
    for k in a.noise:
        assert torch.equal(a.noise[k], b.noise[k]), k
    assert torch.equal(a.final, b.final) and torch.equal(a.state[0], b.state[0])


def test_trace_records_every_transition_with_all_fields():
    m, x = tiny(), inputs(3)
    tr = rollout(m, x, n_sup=4, record="transitions", dtype="fp32")
    R, B = 4 * m.cfg.T, 3
    assert tr.sup.tolist() == [1, 1, 2, 2, 3, 3, 4, 4] and tr.trans.tolist() == [1, 2] * 4
    assert tr.h.shape == (R, B, 16, 32) and tr.h.dtype == torch.float16
    assert tr.pred.shape == (R, B, 16) and tr.probs.shape == (R, B, 16, 3)
    assert torch.allclose(tr.probs.float().sum(-1), torch.ones(R, B, 16), atol=1e-2)
    assert tr.value.shape == tr.halt.shape == tr.live.shape == (R, B)
    assert ((tr.value >= 0) & (tr.value <= 1)).all()
    assert {k: v.shape for k, v in tr.noise.items()} == {k: (R, B, 16) for k in ("mu", "sigma", "eps")}
    assert tr.at(3) == 5 and tr.at(3, 1) == 4
    pooled = rollout(m, x, n_sup=4, record="steps", latents="pooled", noise="full", dtype="fp32")
    assert pooled.h.shape == (4, B, 32) and pooled.noise["eps"].shape == (4, B, 16, 32)
    assert pooled.nbytes() < tr.nbytes() + 3 * tr.h.numel() * 2


def test_same_seed_replays_identical_trace_and_other_seed_differs():
    m, x = tiny(), inputs(4)
    a = rollout(m, x, n_sup=3, seed=7, record="transitions", dtype="fp32")
    assert_same(a, rollout(m, x, n_sup=3, seed=7, record="transitions", dtype="fp32"))
    assert not torch.equal(a.h, rollout(m, x, n_sup=3, seed=8, record="transitions", dtype="fp32").h)


def test_replayed_row_equals_its_row_in_the_batch():
    m = tiny()
    x = inputs(1).expand(8, -1)
    batch = rollout(m, x, n_sup=3, seed=100, record="transitions", dtype="fp32")
    alone = rollout(m, x[:1], n_sup=3, seeds=[batch.seeds[5]], record="transitions", dtype="fp32")
    assert_same(batch.row(5), alone)
    samples, _ = sample(m, x[:1], 8, seed=100, n_sup=3, dtype="fp32")
    assert torch.equal(samples[0], batch.final)


def test_continuing_from_a_trace_equals_one_long_rollout():
    m, x = tiny(), inputs(2)
    whole = rollout(m, x, n_sup=5, seed=3, record="transitions", dtype="fp32")
    head = rollout(m, x, n_sup=2, seed=3, record="transitions", dtype="fp32")
    tail = rollout(m, x, n_sup=3, seeds=head.seeds, start=head.state, start_step=2, streams=head.streams,
                   record="transitions", dtype="fp32")
    assert_same(concat(head, tail), whole)


def test_branch_shares_its_prefix_exactly_and_differs_after():
    m, x = tiny(), inputs(1)
    orig = rollout(m, x, n_sup=6, seeds=[42], record="transitions", dtype="fp32")
    br = branch(m, x[0], orig, at_step=3, M=5, n_sup=6, record="transitions", dtype="fp32")
    assert br.h.shape[:2] == (12, 5) and br.sup.tolist() == orig.sup.tolist()
    pre = br.sup <= 3
    for k in ("h", "pred", "value"):
        got, want = getattr(br, k)[pre], getattr(orig, k)[pre]
        assert torch.equal(got, want.expand_as(got)), k  # identical to the recorded trajectory, in every branch
    after = br.h[~pre].float()
    assert (after[:, 1:] - after[:, :1]).abs().amax() > 0  # continuations differ after the branch point
    again = branch(m, x[0], 42, at_step=3, M=1, n_sup=6, seeds=br.seeds[2:3], record="transitions", dtype="fp32")
    assert_same(again, br.row(2))  # one continuation replays alone
    assert branch(m, x[0], 42, at_step=0, M=2, n_sup=2, dtype="fp32").h.shape[:2] == (2, 2)


@pytest.mark.parametrize("bias,stop", [(50.0, 1), (-50.0, 5)])
def test_act_stops_where_the_halting_head_says(bias, stop):
    m, x = tiny(), inputs(3)
    with torch.no_grad():
        m.halt_head.weight.zero_()
        m.halt_head.bias.fill_(bias)
    tr = rollout(m, x, n_sup=5, halt=True, dtype="fp32")
    assert tr.halted_at.tolist() == [stop] * 3 and tr.n_records == stop
    assert torch.equal(tr.final, tr.pred[stop - 1])


def test_act_halts_where_p_halt_passes_the_threshold():
    """q_halt is a soft minimum over positions: a constant per-position score b gives b - log L."""
    m, x = tiny(), inputs(2)
    with torch.no_grad():
        m.halt_head.weight.zero_()
        m.halt_head.bias.fill_(math.log(m.L) + math.log(0.7 / 0.3))  # P(halt) = 0.7 at every step
    assert rollout(m, x, n_sup=4, halt=True, halt_at=0.5, dtype="fp32").halted_at.tolist() == [1, 1]
    tr = rollout(m, x, n_sup=4, halt=True, halt_at=0.9, dtype="fp32")
    assert tr.halted_at.tolist() == [4, 4] and torch.allclose(tr.halt, torch.tensor(0.7), atol=1e-4)
    full = rollout(m, x, n_sup=4, record="transitions", dtype="fp32")  # ACT's stop read off a full trace
    stop = full.act_stop(1, halt_at=0.5)
    assert (full.sup[stop], full.trans[stop]) == (1, m.cfg.T) and full.act_stop(1, halt_at=0.9) is None


def test_act_freezes_halted_rows_only():
    m, x = tiny(), inputs(2)
    with torch.no_grad():
        m.halt_head.weight.zero_()
        m.halt_head.bias.fill_(-50.0)
    tr = rollout(m, x, n_sup=4, halt=True, dtype="fp32")
    assert tr.live.all() and tr.halted_at.tolist() == [4, 4]
    with torch.no_grad():
        m.halt_head.bias.fill_(50.0)
    one = rollout(m, x[:1], n_sup=4, halt=True, dtype="fp32")
    assert one.halted_at.tolist() == [1]


def test_posterior_rollout_records_kl_and_deterministic_mode_has_no_noise():
    m, x = tiny(), inputs(2)
    tr = posterior_rollout(m, x, x, n_sup=2, dtype="fp32")
    assert tr.noise["kl"].shape == (2, 2, tr.h.shape[2]) and (tr.noise["kl"] >= 0).all()
    det = tiny("deterministic")
    with pytest.raises(ValueError):
        posterior_rollout(det, x, x)
    d = rollout(det, x, n_sup=2, dtype="fp32")
    assert d.noise == {} and d.streams is None


def test_on_step_runs_after_every_supervision_step_and_may_stop_the_rollout():
    seen = []
    tr = rollout(tiny(), inputs(2), n_sup=3, on_step=seen.append)
    assert seen == [1, 2, 3] and len(tr.sup) == 3

    def stop(n):
        if n == 2:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        sample(tiny(), inputs(2), 4, n_sup=5, on_step=stop)
