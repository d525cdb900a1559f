"""Graph colouring: generation invariants, the conflict checker, text round trips, a tiny training run."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gram.evaluate import SampleSet, metrics
from gram.tasks import get_task
from gram.tasks.graph_coloring import BLANK, COLOUR0, EDGE, canonicalise, enumerate_colourings


@pytest.fixture(scope="module")
def task():
    return get_task("graph_coloring8")


def brute_force(task, x):
    """Every canonical proper colouring of one graph, by trying all 3^n colourings."""
    edges = [(i, j) for (i, j), t in zip(task.pairs.T.tolist(), x[: task.n_pairs].tolist()) if t == EDGE]
    found = set()
    for c in itertools.product(range(3), repeat=task.n):
        if all(c[i] != c[j] for i, j in edges):
            found.add(tuple(canonicalise(torch.tensor([c]))[0].tolist()))
    return found


def test_split_sizes_and_disjoint(task):
    train, test = task.split("train"), task.split("test")
    assert (len(train), len(test)) == (7002, 255)
    keys = lambda s: {tuple(r) for r in s.inputs.tolist()}
    assert len(keys(train)) == 7002 and len(keys(test)) == 255  # unique graphs
    assert not keys(train) & keys(test)
    assert (train.n_targets() >= 1).all() and (train.n_targets() <= task.max_colourings).all()


def test_targets_valid_canonical_unique(task):
    s = task.split("test")
    x = s.inputs[s.owner]
    assert task.is_correct(x, s.targets).all()
    assert torch.equal(task.canonical(s.targets), s.targets)  # stored in canonical form
    rows = {(o, tuple(t)) for o, t in zip(s.owner.tolist(), s.targets.tolist())}
    assert len(rows) == len(s.targets)
    assert (s.targets[:, : task.n_pairs] == 0).all()  # no loss on the adjacency part


def test_enumeration_is_complete(task):
    s = task.split("test")
    for i in range(20):
        mine = {tuple((t[task.n_pairs:] - COLOUR0).tolist()) for t in s.targets[s.owner == i]}
        assert mine == brute_force(task, s.inputs[i])


def test_deterministic_and_seeded():
    a = get_task("graph_coloring8")._all.__wrapped__(get_task("graph_coloring8"), 0)[1]
    b = get_task("graph_coloring8").split("test", 0)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(get_task("graph_coloring8").split("test", 1).inputs, b.inputs)


def test_graph_coloring10_sizes():
    t = get_task("graph_coloring10")
    assert (len(t.split("train")), len(t.split("test"))) == (13465, 192)
    assert t.seq_len == 45 + 10


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=8, max_size=8), st.permutations([0, 1, 2]))
def test_canonical_is_invariant_to_colour_permutation(colours, perm):
    c = torch.tensor([colours])
    permuted = torch.tensor([perm])[0][c]
    assert torch.equal(canonicalise(c), canonicalise(permuted))
    assert canonicalise(c)[0, 0] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=28, max_size=28), st.lists(st.integers(0, 2), min_size=8, max_size=8))
def test_conflicts_match_definition(upper, colours):
    task = get_task("graph_coloring8")
    edges = [(i, j) for (i, j), e in zip(task.pairs.T.tolist(), upper) if e]
    x = task.parse("8: " + " ".join(f"{i}-{j}" for i, j in edges))
    pred = x.clone()
    pred[task.n_pairs:] = torch.tensor(colours) + COLOUR0
    want = sum(colours[i] == colours[j] for i, j in edges)
    assert task.conflicts(x[None], pred[None]).item() == want
    assert task.is_correct(x[None], pred[None]).item() == (want == 0)
    assert task.format_output(pred) == "".join(map(str, colours))


def test_uncoloured_slot_is_wrong(task):
    x = task.parse("8: 0-1")
    pred = x.clone()
    pred[task.n_pairs:] = COLOUR0
    pred[task.n_pairs + 2] = COLOUR0 + 1
    pred[task.n_pairs] = BLANK  # node 0 has no colour
    assert not task.is_correct(x[None], pred[None]).item()
    assert task.conflicts(x[None], pred[None]).item() == 1
    assert task.format_output(pred)[0] == "?"


def test_text_round_trip(task):
    s = task.split("test")
    for x in s.inputs[:50]:
        assert torch.equal(task.parse(task.format_input(x)), x)
    assert torch.equal(task.parse("8: 1-0, 0-1"), task.parse("8: 0-1"))


@pytest.mark.parametrize("text, msg", [
    ("0-1 1-2", "n: i-j"),
    ("x: 0-1", "n: i-j"),
    ("9: 0-1", "8 nodes"),
    ("8: 0-8", "out of range"),
    ("8: 3-3", "self-loop"),
    ("8: 0-1 2", "malformed"),
    ("8: 0_1", "malformed"),
    ("8: a-b", "malformed"),
])
def test_bad_graph_text(task, text, msg):
    with pytest.raises(ValueError, match=msg):
        task.parse(text)


def test_enumerate_matches_bruteforce_on_random_graphs():
    gen = torch.Generator().manual_seed(3)
    n = 6
    upper = torch.rand(30, 15, generator=gen) < 0.5
    iu = torch.triu_indices(n, n, 1)
    adj = torch.zeros(30, n, n, dtype=torch.bool)
    adj[:, iu[0], iu[1]] = upper
    g, col = enumerate_colourings(adj)
    for k in range(30):
        edges = [(i, j) for (i, j), e in zip(iu.T.tolist(), upper[k].tolist()) if e]
        brute = {tuple(canonicalise(torch.tensor([c]))[0].tolist()) for c in itertools.product(range(3), repeat=n)
                 if all(c[i] != c[j] for i, j in edges)}
        assert {tuple(r) for r in col[g == k].tolist()} == brute


def test_metrics(task):
    s = task.split("test").subset(torch.arange(5))
    first = torch.stack([s.targets[s.owner == i][0] for i in range(5)])
    # sample 0: a right answer with colours renamed; sample 1: all nodes colour 0
    renamed = first.clone()
    slots = renamed[:, task.n_pairs:]
    renamed[:, task.n_pairs:] = torch.where(slots == COLOUR0, COLOUR0 + 2, torch.where(slots == COLOUR0 + 2, COLOUR0, slots))
    renamed[:, : task.n_pairs] = 1  # garbage where no answer is expected
    mono = s.inputs.clone()
    mono[:, task.n_pairs:] = COLOUR0
    samples = torch.stack([renamed, mono], 1)
    values = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])  # the LPRM errs on graph 2
    m = metrics(task, SampleSet.of(task, s, samples, values))
    edges = (s.inputs[:, : task.n_pairs] == EDGE).sum(1).float()
    assert m["accuracy"] == 0.5 and m["exact_match"] == 0.5
    assert m["conflicts_total"] == pytest.approx(edges.sum().item() / 2)
    assert m["conflicts_per_graph"] == pytest.approx(edges.mean().item() / 2)
    assert m["accuracy_lprm"] == pytest.approx(0.8)
    assert m["conflicts_per_graph_lprm"] == pytest.approx(edges[2].item() / 5)
    assert m["coverage"] == pytest.approx((1 / s.n_targets().float()).mean().item())


def test_tiny_training_run():
    from gram.recipes import default_config
    from gram.train import Trainer

    cfg = default_config("graph_coloring8").override(["D=32", "n_layers=1", "batch=8", "n_sup=2", "eval_samples=8"])
    tr = Trainer(cfg)
    logs = [tr.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(l["loss"])) for l in logs)
    assert 0 <= tr.evaluate()["prior_accuracy"] <= 1


def test_width_curves_vote_on_answers_not_colour_names(task):
    """Two renamings of one colouring and one other valid colouring: the vote must see two votes for the
    first answer (compare_models and scale_table canonicalise, as SampleSet.of does)."""
    from gram.evaluate import SampleSet, curves
    s = task.split("test")
    i = int(torch.nonzero(s.n_targets() >= 2).flatten()[0])
    a, b = s.targets[s.owner == i][:2]
    renamed = a.clone()
    slots = renamed[task.n_pairs:]
    renamed[task.n_pairs:] = torch.where(slots == COLOUR0, COLOUR0 + 1, torch.where(slots == COLOUR0 + 1, COLOUR0, slots))
    samples = task.canonical_samples(torch.stack([b, renamed, a])[None])
    assert torch.equal(samples[0, 1], samples[0, 2]) and not torch.equal(samples[0, 0], samples[0, 1])
    valid = torch.tensor([[True, True, True]])
    c = curves(SampleSet(samples, valid, torch.zeros(1, 3), s.n_targets()[i:i + 1]), [3])
    assert c["distinct"] == [2.0]


def test_clashes_mark_conflicting_edges_and_the_input_is_drawn_without(task):
    """What the app draws red: both ends of an edge whose nodes share a colour (or lack one) in an answer, and
    nothing on the input graph drawn as itself (no colours yet)."""
    from app import figures

    sp = task.split("test", 0)
    x, y = sp.inputs[0], sp.targets[0]
    assert not task.clashes(x, y).any()  # a valid colouring
    i, j = task.edges(x)[0]
    bad = y.clone()
    bad[task.n_pairs + j] = bad[task.n_pairs + i]
    assert (i, j) in [tuple(e) for e in task.clash_edges(x, bad).T.tolist()]
    hit = task.clashes(x, bad).nonzero().flatten().tolist()
    assert task.n_pairs + i in hit and task.n_pairs + j in hit
    blank = x.clone()  # a prediction with no colour at all is wrong everywhere, and drawn so
    assert task.clashes(x, blank).sum() == len(set(sum(task.edges(x), ())))
    red = lambda pred: figures.board_traces(task, pred.numpy(), None, x.numpy())[1]["x"]  # the clash segments
    assert red(x) == [] and red(bad) != []
