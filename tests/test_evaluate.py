"""gram.evaluate: the metrics of a hand-made sample set, and the draw: the same answers as `sample` however it is
chunked, every depth of one rollout, and ACT read off that rollout equal to a halting rollout."""
from __future__ import annotations

import pytest
import torch

from gram import evaluate
from gram.config import ModelConfig
from gram.evaluate import SampleSet, draw
from gram.model import GRAM
from gram.rollout import rollout, sample
from gram.tasks import get_task


def hand_made() -> SampleSet:
    """Two inputs x 4 samples, one-token answers. Input 0: answers 1 (invalid), 2, 2, 3, of 3 valid answers;
    input 1: 5, 5, 5, 5, all valid, its only answer."""
    answers = torch.tensor([[1, 2, 2, 3], [5, 5, 5, 5]])[..., None]
    valid = torch.tensor([[False, True, True, True], [True, True, True, True]])
    values = torch.tensor([[0.9, 0.1, 0.2, 0.8], [0.5, 0.5, 0.5, 0.5]])
    return SampleSet(answers, valid, values, n_targets=torch.tensor([3, 1]))


def test_metrics_of_a_hand_made_sample_set():
    s = hand_made()
    assert evaluate.accuracy(s) == 7 / 8
    assert evaluate.pass_at(s) == 1.0
    assert evaluate.vote(s) == 1.0  # input 0: answer 2 has two votes
    assert evaluate.lprm(s) == 0.5  # input 0: the value head prefers the invalid sample
    assert evaluate.distinct(s) == (3 + 1) / 2
    assert evaluate.coverage(s) == (2 / 3 + 1) / 2
    assert evaluate.multi_coverage(s) == 2 / 3  # input 1 has one answer: not counted
    assert s.first_seen.tolist() == [[True, True, False, True], [True, False, False, False]]


def test_widths_read_the_first_samples():
    c = evaluate.curves(hand_made(), [1, 2, 3, 4])
    assert c["vote"] == [0.5, 0.5, 1.0, 1.0]  # width 2: the tie 1 vs 2 goes to the first (invalid) answer
    assert c["oracle"] == [0.5, 1.0, 1.0, 1.0]
    assert c["distinct"] == [1.0, 1.5, 1.5, 2.0]
    assert c["coverage"] == pytest.approx([0.5, (1 / 3 + 1) / 2, (1 / 3 + 1) / 2, (2 / 3 + 1) / 2])
    with pytest.raises(ValueError, match="widths"):
        evaluate.curves(hand_made(), [5])


def test_width_curves_on_a_constructed_case():
    # one input, 4 samples: answers 1 (invalid), 2 (valid), 2 (valid), 3 (valid); 3 valid answers exist
    s = SampleSet(torch.tensor([[[a, a, a] for a in (1, 2, 2, 3)]]), torch.tensor([[False, True, True, True]]),
                  torch.tensor([[0.9, 0.1, 0.2, 0.8]]), torch.tensor([3]))
    c = evaluate.curves(s, [1, 2, 3, 4])
    assert c["vote"] == [0.0, 0.0, 1.0, 1.0]  # width 2: tie 1 vs 2 goes to the first (invalid) answer
    assert c["lprm"] == [0.0, 0.0, 0.0, 0.0]  # the value head prefers the invalid sample throughout
    assert c["oracle"] == [0.0, 1.0, 1.0, 1.0]
    assert c["distinct"] == [1.0, 2.0, 2.0, 3.0]
    assert c["coverage"] == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3])
    assert evaluate.found(s).tolist() == [2] and evaluate.found(s.first(2)).tolist() == [1]
    assert {k: v.tolist() for k, v in evaluate.picks(s).items()} == {"vote": [1], "lprm": [0]}


def test_width_curves_are_monotone_where_they_must_be():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 3, (20, 32, 2), generator=g)
    s = SampleSet(a, a[..., 0] > 0, torch.rand(20, 32, generator=g), torch.full((20,), 6))
    c = evaluate.curves(s, [1, 2, 4, 8, 16, 32])
    for k in ("oracle", "coverage", "distinct"):
        assert all(x <= y for x, y in zip(c[k], c[k][1:])), k
    assert all(0 <= v <= 1 for k in ("vote", "lprm", "oracle", "mean", "coverage") for v in c[k])


def tiny() -> GRAM:
    torch.manual_seed(0)
    m = GRAM(ModelConfig(mode="gram", D=32, n_heads=2, n_layers=1, K=1, T=2, seq_len=64, vocab=3)).eval()
    with torch.no_grad():
        m.prior.proj.weight.normal_(0, 0.05)
        m.halt_head.weight.normal_(0, 0.5)  # halting probabilities that differ between trajectories and steps
    return m


@pytest.fixture(scope="module")
def inputs():
    task = get_task("nqueens8")
    return task, task.split("test").subset(torch.arange(3))


def test_draw_gives_the_answers_of_sample_however_it_is_chunked(inputs):
    task, split = inputs
    m = tiny()
    expected, values = sample(m, split.inputs, 4, seed=7, n_sup=3, dtype="fp32")
    for chunk in (5, 4096):
        sets = draw(m, task, split, 4, depths=[1, 3], seed=7, dtype="fp32", chunk=chunk)
        assert torch.equal(sets[3].answers, expected) and torch.equal(sets[3].values, values)
        assert torch.equal(sets[1].answers, sample(m, split.inputs, 4, seed=7, n_sup=1, dtype="fp32")[0])
        assert sets[3].steps.unique().tolist() == [3]


def test_act_read_off_the_trace_equals_a_halting_rollout(inputs):
    task, split = inputs
    m = tiny()
    x = split.inputs.repeat_interleave(4, 0)
    halts = rollout(m, x, n_sup=4, seed=7, dtype="fp32").halt
    halt_at = halts[0].median().item()  # some trajectories halt at the first step, the others later or never
    act = draw(m, task, split, 4, depths=[4], act=True, halt_at=halt_at, seed=7, dtype="fp32", chunk=5)["act"]
    ref = rollout(m, x, n_sup=4, seed=7, halt=True, halt_at=halt_at, record="none", dtype="fp32")
    assert torch.equal(act.answers.reshape(12, -1), ref.final)
    assert torch.equal(act.values.reshape(12), ref.final_value)
    assert torch.equal(act.steps.reshape(12), ref.halted_at)
    assert len(act.steps.unique()) > 1


def test_metrics_report_what_eval_prints(inputs):
    task, split = inputs
    s = draw(tiny(), task, split, 4, depths=[2], seed=0, dtype="fp32")[2]
    m = evaluate.metrics(task, s, widths=[1, 4])
    assert m["n_examples"] == 3 and m["samples"] == 4
    assert m["accuracy"] == evaluate.accuracy(s) == m["curves"]["mean"][-1]
    assert m["coverage"] == m["curves"]["coverage"][-1] and m["accuracy_vote"] == m["curves"]["vote"][-1]
