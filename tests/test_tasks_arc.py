"""ARC-AGI: canvas encoding, augmentations and inverses, splits, voting / pass@2, text, training."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gram.evaluate import SampleSet, metrics
from gram.tasks import get_task
from gram.tasks.arc import END, PAD, augment, augmentations, decode, dihedral, encode, invert


@pytest.fixture(scope="module")
def task():
    return get_task("arc1_mini")


grids = st.tuples(st.integers(1, 30), st.integers(1, 30)).flatmap(
    lambda hw: arrays(np.int64, hw, elements=st.integers(0, 9)))


@settings(max_examples=60, deadline=None)
@given(grids)
def test_encode_decode_round_trip(grid):
    tokens = torch.from_numpy(encode(grid, 30))
    assert np.array_equal(decode(tokens, 30), grid)
    canon = get_task("arc1").canonical(tokens[None])[0]
    assert torch.equal(canon, tokens)
    h, w = grid.shape
    board = tokens.view(30, 30)
    assert (board[h:, w:] == PAD).all()
    if h < 30:
        assert (board[h, :w] == END).all()


@settings(max_examples=60, deadline=None)
@given(grids, st.integers(0, 7))
def test_augmentations_invert_exactly(grid, k):
    augs = augmentations(8, 0)
    assert augs[0][0] == 0 and np.array_equal(augs[0][1], np.arange(10))
    assert len({(d, tuple(c)) for d, c in augs}) == 8
    aug = augs[k]
    out = augment(grid, aug)
    assert sorted(out.shape) == sorted(grid.shape)
    assert np.array_equal(invert(out, aug), grid)
    assert np.array_equal(out == 0, dihedral(grid == 0, aug[0]))  # background stays 0


def test_canonical_clears_garbage(task):
    grid = np.array([[1, 2], [3, 4]])
    tokens = torch.from_numpy(encode(grid, 10))
    noisy = tokens.clone().view(10, 10)
    noisy[5:, 5:] = 7  # colours far outside the answer's rectangle
    noisy[2, 0] = 0  # a pad where the end marker should be
    assert torch.equal(task.canonical(noisy.flatten()[None])[0], tokens)
    assert task.is_correct(task.split("test").inputs[:0], noisy.flatten()[None][:0]).numel() == 0


def test_splits(task):
    train, test = task.split("train"), task.split("test")
    assert task.n_puzzles == (len(task.train_tasks) + len(task.eval_tasks)) * task.n_aug == 32 * 8
    for s in (train, test):
        assert s.puzzle.max() < task.n_puzzles and len(s.targets) == len(s)
        assert task.is_correct(s.inputs, s.targets).all()
        assert torch.equal(task.canonical(s.targets), s.targets)
    key = lambda s: {(p, tuple(x)) for p, x in zip(s.puzzle.tolist(), s.inputs.tolist())}
    assert not key(train) & key(test)
    test_tasks = set((test.puzzle // task.n_aug).tolist())
    assert min(test_tasks) >= len(task.train_tasks)  # test inputs come from the evaluation tasks
    assert set(((test.puzzle % task.n_aug)).tolist()) == set(range(task.n_aug))
    wrong = test.targets.clone()
    wrong[:, 0] = torch.where(wrong[:, 0] == 2, 3, 2)
    assert not task.is_correct(test.inputs, wrong).any()
    full = get_task("arc1")
    assert len(full.train_tasks) == len(full.eval_tasks) == 400 and full.seq_len == 900 and full.vocab == 12
    assert len(get_task("arc2").train_tasks) == 1000


def test_voting_and_pass_at_2(task):
    s = task.split("test")
    n_groups = metrics(task, SampleSet.of(task, s, s.targets[:, None]))["test_inputs"]
    right = metrics(task, SampleSet.of(task, s, s.targets[:, None]))
    assert right["pass@1"] == right["pass@2"] == 1 and right["exact_match"] == 1
    # each row: its own augmented copy of one shared wrong answer twice, the truth once. Votes over all
    # augmentations agree on the wrong answer (top 1) and on the truth (top 2) only if the inverse is right.
    wrong_rows = []
    for i in range(len(s)):
        aug = task.puzzle_augmentation(int(s.puzzle[i]))
        truth = invert(decode(s.targets[i], task.canvas), aug)
        other = truth.copy()
        other[0, 0] = (other[0, 0] + 1) % 10
        wrong_rows.append(torch.from_numpy(encode(augment(other, aug), task.canvas)))
    wrong = torch.stack(wrong_rows)
    m = metrics(task, SampleSet.of(task, s, torch.stack([wrong, wrong, s.targets], 1)))
    assert m["pass@1"] == 0 and m["pass@2"] == 1 and m["test_inputs"] == n_groups
    junk = torch.zeros_like(s.targets)
    assert metrics(task, SampleSet.of(task, s, junk[:, None]))["pass@2"] == 0


def test_text(task):
    s = task.split("test")
    for x in s.inputs[:20]:
        assert torch.equal(task.parse(task.format_input(x)), x)
    tid = task.eval_tasks[0].id
    assert torch.equal(task.parse(f"{tid}: 01/23"), task.parse("01\n23"))
    assert int(task.puzzle_of(f"{tid}: 01/23")) == len(task.train_tasks) * task.n_aug
    assert task.puzzle_of("01/23") is None
    assert task.format_output(torch.zeros(100, dtype=torch.long)) == ""


@pytest.mark.parametrize("text, msg", [
    ("", "rows of colour digits"),
    ("01/2x", "unknown character"),
    ("012/34", "equal lengths"),
    ("0" * 11, "does not fit"),
    ("/".join(["0"] * 11), "does not fit"),
])
def test_bad_text(task, text, msg):
    with pytest.raises(ValueError, match=msg):
        task.parse(text)


def test_unknown_task_id(task):
    with pytest.raises(ValueError, match="unknown ARC task id"):
        task.puzzle_of("nosuchid: 01/23")


def test_tiny_training_run():
    from gram.recipes import default_config
    from gram.train import Trainer

    cfg = default_config("arc1_mini").override(["D=32", "n_layers=1", "batch=8", "n_sup=2", "eval_samples=8"])
    tr = Trainer(cfg)
    assert tr.model.puzzle is not None and tr.model.puzzle.num_embeddings == 256
    logs = [tr.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(l["loss"])) for l in logs)
    assert tr.carry.puzzle.max() > 0  # puzzle ids reach the model
    assert 0 <= tr.evaluate()["prior_accuracy"] <= 1
