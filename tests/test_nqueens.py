"""N-Queens data: all solutions, the split, every completion stored and valid, text in and out."""
from __future__ import annotations

import pytest
import torch

from gram.evaluate import SampleSet, metrics
from gram.tasks import get_task
from gram.tasks.nqueens import EMPTY, QUEEN, NQueens, solutions


def boards_of(task: NQueens) -> torch.Tensor:
    sols = solutions(task.n)
    b = torch.full((len(sols), task.seq_len), EMPTY, dtype=torch.long)
    for s, cols in enumerate(sols):
        b[s, [r * task.n + c for r, c in enumerate(cols)]] = QUEEN
    return b


def brute_force_valid(n: int, board: list[list[int]]) -> bool:
    queens = [(r, c) for r in range(n) for c in range(n) if board[r][c]]
    if len(queens) != n:
        return False
    for i, (r1, c1) in enumerate(queens):
        for r2, c2 in queens[i + 1:]:
            if r1 == r2 or c1 == c2 or abs(r1 - r2) == abs(c1 - c2):
                return False
    return True


@pytest.mark.parametrize("n,count", [(4, 2), (5, 10), (6, 4), (7, 40), (8, 92), (10, 724)])
def test_solution_counts(n, count):
    sols = solutions(n)
    assert len(sols) == count == len(set(sols))
    for cols in sols[:: max(1, count // 50)]:
        assert brute_force_valid(n, [[int(c == col) for c in range(n)] for col in cols])


@pytest.mark.parametrize("name", ["nqueens8", "nqueens10"])
def test_all_solutions_are_correct_boards(name):
    task = get_task(name)
    b = boards_of(task)
    empty = torch.full_like(b, EMPTY)
    assert task.is_correct(empty, b).all()


@pytest.mark.parametrize("name", ["nqueens8", "nqueens10"])
def test_split_disjoint_by_input_and_complete(name):
    task = get_task(name)
    train, test = task.split("train"), task.split("test")
    tr = {tuple(r) for r in train.inputs.tolist()}
    te = {tuple(r) for r in test.inputs.tolist()}
    assert len(tr) == len(train) and len(te) == len(test)  # inputs are unique
    assert not tr & te  # no input in both
    assert abs(len(te) / (len(tr) + len(te)) - 0.15) < 0.002
    # the union is every input: every solution with k queens removed, k in task.remove
    n_queens = (torch.cat([train.inputs, test.inputs]) == QUEEN).sum(1)
    assert set(n_queens.tolist()) == {task.n - k for k in task.remove}
    b = boards_of(task)
    expected = set()
    import itertools
    for cols in solutions(task.n)[:: 7 if task.n == 10 else 1]:
        for k in task.remove:
            for kept in itertools.combinations(range(task.n), task.n - k):
                x = [EMPTY] * task.seq_len
                for r in kept:
                    x[r * task.n + cols[r]] = QUEEN
                expected.add(tuple(x))
    assert expected <= tr | te
    if task.n == 8:
        assert expected == tr | te
    assert len(b) == len(solutions(task.n))


def test_split_is_seeded():
    task = get_task("nqueens8")
    a, b = task.split("test", 0), task.split("test", 0)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    c = task.split("test", 1)
    assert not torch.equal(a.inputs, c.inputs)
    with pytest.raises(ValueError, match="split"):
        task.split("validation")


@pytest.mark.parametrize("name", ["nqueens8", "nqueens10"])
@pytest.mark.parametrize("which", ["train", "test"])
def test_every_completion_stored_and_valid(name, which):
    """Every stored target is a valid completion keeping the given queens, and every valid completion
    of every input (found by brute force over all solutions) is stored, once."""
    task = get_task(name)
    s = task.split(which)
    x = s.inputs[s.owner]
    assert task.is_correct(x, s.targets).all()
    assert ((x == QUEEN) <= (s.targets == QUEEN)).all()  # keeps the given queens
    assert ((s.targets == QUEEN).sum(1) == task.n).all()
    # brute force: solution j completes input i iff it holds all of i's queens
    b = (boards_of(task) == QUEEN).float()
    given = (s.inputs == QUEEN).float()
    contains = (given @ b.T) == given.sum(1, keepdim=True)  # (P, n_solutions)
    assert torch.equal(contains.sum(1), s.n_targets())
    match = ((s.targets == QUEEN).float() @ b.T) == task.n  # (Q, n_solutions): which solution each target is
    assert (match.sum(1) == 1).all()
    sol = match.float().argmax(1)
    stored = torch.zeros(contains.shape, dtype=torch.long)
    stored.index_put_((s.owner, sol), torch.ones_like(sol), accumulate=True)
    assert stored.max() == 1, "a completion is stored twice"
    assert torch.equal(stored.bool(), contains)
    assert (s.n_targets() >= 1).all()
    assert (s.n_targets() > 1).any()  # the task is multi-solution


def test_is_correct_rejects_bad_boards():
    task = get_task("nqueens8")
    s = task.split("test")
    x, y = s.inputs[s.owner[0]], s.targets[0]
    assert task.is_correct(x[None], y[None]).item()
    given = torch.nonzero(x == QUEEN).flatten()
    free_queen = torch.nonzero((y == QUEEN) & (x != QUEEN)).flatten()
    moved = y.clone()
    moved[free_queen[0]] = EMPTY  # 7 queens
    assert not task.is_correct(x[None], moved[None]).item()
    extra = y.clone()
    extra[torch.nonzero(y == EMPTY).flatten()[0]] = QUEEN  # 9 queens
    assert not task.is_correct(x[None], extra[None]).item()
    # a different valid solution that drops a given queen is not a completion of x
    other = torch.full_like(x, EMPTY)
    for sol in boards_of(task):
        if sol[given[0]] != QUEEN:
            other = sol
            break
    assert task.is_correct(torch.full_like(x, EMPTY)[None], other[None]).item()
    assert not task.is_correct(x[None], other[None]).item()
    pad = y.clone()
    pad[pad == EMPTY] = 0  # pad counts as empty
    assert task.is_correct(x[None], pad[None]).item()


def test_metrics_on_perfect_and_bad_samples():
    task = get_task("nqueens8")
    s = task.split("test").subset(torch.arange(30))
    n = 4
    samples = torch.stack([s.targets[torch.nonzero(s.owner == i).flatten()].repeat(n, 1)[:n] for i in range(len(s))])
    m = metrics(task, SampleSet.of(task, s, samples, torch.rand(len(s), n)))
    assert m["n_examples"] == 30 and m["samples"] == n
    assert m["accuracy"] == 1.0 and m["exact_match"] == 1.0 and m["accuracy_vote"] == 1.0
    expect_cov = sum(min(n, int(k)) / int(k) for k in s.n_targets()) / len(s)
    assert m["coverage"] == pytest.approx(expect_cov)
    bad = metrics(task, SampleSet.of(task, s, s.inputs[:, None].repeat(1, n, 1)))  # the input itself is incomplete
    assert bad["accuracy"] == 0.0 and bad["coverage"] == 0.0 and bad["distinct"] == 1.0


# --- text ---------------------------------------------------------------------------------------------------
def test_format_parse_round_trip():
    task = get_task("nqueens8")
    s = task.split("test")
    for x in s.inputs[:50]:
        text = task.format_input(x)
        assert len(text.split("/")) == 8 and set(text) <= set("./Q")
        assert torch.equal(task.parse(text), x)
        assert torch.equal(task.parse(text.replace("/", "\n")), x)  # N lines works too
        assert torch.equal(task.parse("\n" + text.replace("/", " \n ").lower() + "\n"), x)
    for y in s.targets[:20]:
        assert torch.equal(task.parse(task.format_output(y)), y)
    t10 = get_task("nqueens10")
    x10 = t10.split("test").inputs[0]
    assert torch.equal(t10.parse(t10.format_input(x10)), x10)


@pytest.mark.parametrize("text,match", [
    ("Q......./......../......../......../......../......../......./........", "8 rows of 8"),  # short row
    ("Q......./......../......../......../......../......../........", "8 rows of 8"),  # 7 rows
    ("Q......./......../......../......../......../......../......../......../........", "8 rows of 8"),  # 9 rows
    ("", "8 rows of 8"),
    ("Q......./......../......../....x.../......../......../......../........", "unknown character"),
    ("Q......./......../......../....1.../......../......../......../........", "unknown character"),
    ("Q.....Q./......../......../......../......../......../......../........", "attack"),  # same row
    ("Q......./......../......../......../Q......./......../......../........", "attack"),  # same column
    ("Q......./......../......../...Q..../......../......../......../........", "attack"),  # diagonal
    ("......Q./......../....Q.../......../......../......../......../........", "attack"),  # anti-diagonal
])
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match):
        get_task("nqueens8").parse(text)


def test_parse_error_names_the_clash():
    with pytest.raises(ValueError) as e:
        get_task("nqueens8").parse("Q......./......../..Q...../......../......../......../......../........")
    assert "(0, 0)" in str(e.value) and "(2, 2)" in str(e.value)


def test_wrong_size_for_nqueens10():
    t = get_task("nqueens8")
    with pytest.raises(ValueError, match="10 rows of 10"):
        get_task("nqueens10").parse(t.format_input(t.split("test").inputs[0]))


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        get_task("nqueens9")


def test_split_sample_is_seeded_spread_and_keeps_all_answers():
    split = get_task("nqueens8").split("test")
    a, b = split.sample(50, seed=3), split.sample(50, seed=3)
    assert torch.equal(a.inputs, b.inputs) and len(a) == 50
    assert not torch.equal(a.inputs, split.inputs[:50])  # not the first inputs, which share their queens
    assert a.n_targets().sum() == sum(int(split.n_targets()[(split.inputs == x).all(1)].item()) for x in a.inputs)
    assert split.sample(None) is split and split.sample(10_000) is split
