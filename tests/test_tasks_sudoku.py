"""Sudoku and unconditional Sudoku: solver, generator, validity, augmentations, CSV, text, training."""
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gram.evaluate import SampleSet, metrics
from gram.tasks import get_task
from gram.tasks.sudoku import (BLANK, Sudoku, apply_augmentation, dig, dig_all, draw_grid, generate_puzzle,
                               has_solution_without, invert_augmentation, keeps_givens, random_augmentations, random_grid,
                               read_extreme_csv, solve, valid_grids)

PUZZLE = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
SOLUTION = "534678912672195348198342567859761423426853791713924856961537284287419635345286179"


def grid_tokens(text):
    return torch.tensor([BLANK if ch == "." else int(ch) + 1 for ch in text])


def reference_valid(tokens):
    digits = [t - 1 for t in tokens]
    units = [[r * 9 + c for c in range(9)] for r in range(9)] + [[r * 9 + c for r in range(9)] for c in range(9)]
    units += [[(br + r) * 9 + bc + c for r in range(3) for c in range(3)] for br in (0, 3, 6) for bc in (0, 3, 6)]
    return all(sorted(digits[i] for i in u) == list(range(1, 10)) for u in units)


@pytest.fixture(scope="module")
def task():
    return get_task("sudoku")


def test_solver_unique_and_multiple():
    sols, nodes = solve([0 if ch == "." else int(ch) for ch in PUZZLE])
    assert ["".join(map(str, s)) for s in sols] == [SOLUTION]
    assert len(solve([0] * 81, limit=2)[0]) == 2
    broken = [5, 5] + [0] * 79
    assert solve(broken) == ([], 0)


def test_generator_invariants():
    rng = random.Random(7)
    for clues in (36, 28):
        puzzle, solution, rating = generate_puzzle(rng, clues)
        assert sum(d > 0 for d in puzzle) >= clues
        sols, nodes = solve(puzzle)
        assert sols == [solution] and nodes == rating
        assert all(p in (0, s) for p, s in zip(puzzle, solution))
        assert reference_valid([d + 1 for d in solution])


def test_min_rating_knob():
    t = Sudoku("hard", n_train=2, n_test=2, n_aug=2, clues=24, min_rating=3)
    x = t.split("test").inputs
    ratings = [solve([v - 1 if v > 1 else 0 for v in row])[1] for row in x.tolist()]
    assert min(ratings) >= 3


def test_splits(task):
    train, test = task.split("train"), task.split("test")
    assert (len(train), len(test)) == (2048 * 32, 64)
    assert torch.equal(test.inputs, task._all(0)[1].inputs)  # the test split alone is the head of the full stream
    assert task.is_correct(train.inputs[train.owner], train.targets).all()
    assert task.is_correct(test.inputs[test.owner], test.targets).all()
    assert not {tuple(r) for r in train.targets.tolist()} & {tuple(r) for r in test.targets.tolist()}
    for x, y in zip(test.inputs[:5].tolist(), test.targets[:5].tolist()):  # unique solutions
        sols, _ = solve([v - 1 if v > 1 else 0 for v in x])
        assert [[d + 1 for d in s] for s in sols] == [y]
    assert torch.equal(task.split("test", 0).inputs, Sudoku().split("test", 0).inputs)  # deterministic


def test_hard_puzzles_in_the_stream_and_reported_apart():
    mixed = Sudoku("sudoku_mixed", n_test=16, hard_clues=22)
    test = mixed.split("test")
    givens = (test.inputs > BLANK).sum(1)
    assert (givens[0::2] == 30).all() and (givens[1::2] <= 27).all()  # every second puzzle dug towards 22
    assert torch.equal(test.inputs[0], get_task("sudoku").split("test").inputs[0])  # the same grids as the stream's
    assert mixed.is_correct(test.inputs[test.owner], test.targets).all()
    samples = test.targets[:, None].expand(-1, 2, -1).clone()
    samples[1::4, 1] = BLANK  # one of two samples wrong on every second hard puzzle (the vote's tie: the first)
    m = metrics(mixed, SampleSet.of(mixed, test, samples))
    hard = int((givens <= 26).sum())
    assert m["puzzles_hard"] == hard and m["puzzles_medium"] == 16 - hard and m["accuracy_vote_hard"] == 1.0
    assert m["accuracy_medium"] == 1.0 and m["accuracy_hard"] == pytest.approx(1 - 0.5 * 4 / hard)
    uncond = get_task("sudoku_uncond")  # its one blank input is no puzzle: no level is reported
    blank = uncond.split("test")
    assert not any(k.startswith("puzzles_") for k in metrics(uncond, SampleSet.of(uncond, blank, blank.targets[None, :2])))


# at most 59 blanks (22 givens, the deepest the generator digs): with fewer givens, proving that a wrong digit has no
# solution can take the reference solver minutes; derandomized, so every run checks the same puzzles in the same time
@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.integers(30, 59))
def test_bitboard_uniqueness_test_agrees_with_the_solver(seed, blanks):
    rng = random.Random(seed)
    solution, cells = draw_grid(rng)
    puzzle = list(solution)
    for i in cells[:blanks]:
        puzzle[i] = 0
    i = cells[0]
    others = [e for e in range(1, 10) if e != solution[i]]  # a solution without its digit: one of the others fits
    assert has_solution_without(puzzle, i, solution[i]) == any(solve(puzzle[:i] + [e] + puzzle[i + 1:], 1)[0] for e in others)


def test_parallel_dig_gives_the_same_puzzles():
    rng = random.Random(4)
    jobs = [(*draw_grid(rng), 22 if k % 2 else 30) for k in range(6)]
    assert dig_all(jobs, parallel_from=1) == [dig(*j) for j in jobs]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_augmentations_keep_validity_and_invert(seed):
    gen = torch.Generator().manual_seed(seed)
    grid = torch.tensor(random_grid(random.Random(seed))) + 1
    puzzle = torch.where(torch.rand(81, generator=gen) < 0.5, grid, BLANK)
    aug = tuple(a[0] for a in random_augmentations(1, gen))
    g2, p2 = apply_augmentation(aug, grid), apply_augmentation(aug, puzzle)
    assert valid_grids(g2[None]).item() and keeps_givens(p2[None], g2[None]).item()
    inv = invert_augmentation(aug)
    assert torch.equal(apply_augmentation(inv, g2), grid) and torch.equal(apply_augmentation(inv, p2), puzzle)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 80), st.integers(0, 80), st.integers(1, 9))
def test_validity_matches_reference(seed, i, j, digit):
    grid = torch.tensor(random_grid(random.Random(seed))) + 1
    mutated = grid.clone()
    mutated[i], mutated[j] = grid[j], grid[i]
    mutated[(i + j) % 81] = digit + 1 if seed % 2 else mutated[(i + j) % 81]
    for g in (grid, mutated):
        assert valid_grids(g[None]).item() == reference_valid(g.tolist())


def test_blank_or_pad_is_never_valid():
    grid = torch.tensor([int(ch) + 1 for ch in SOLUTION])
    for bad in (BLANK, 0):
        g = grid.clone()
        g[40] = bad
        assert not valid_grids(g[None]).item()


def test_givens_must_be_kept(task):
    x, y = task.parse(PUZZLE), grid_tokens(SOLUTION)
    assert task.is_correct(x[None], y[None]).item()
    other = torch.tensor(random_grid(random.Random(1))) + 1
    assert valid_grids(other[None]).item() and not task.is_correct(x[None], other[None]).item()


def test_text(task):
    x = task.parse(PUZZLE)
    assert task.format_input(x) == PUZZLE
    rows = "\n".join(PUZZLE.replace(".", "0")[r * 9:(r + 1) * 9] for r in range(9))
    assert torch.equal(task.parse(rows), x)
    assert torch.equal(task.parse(" / ".join(rows.splitlines())), x)
    assert torch.equal(task.parse(" | ".join(PUZZLE[i:i + 3] for i in range(0, 81, 3))), x)
    assert task.format_output(grid_tokens(SOLUTION)) == SOLUTION
    assert task.format_output(x) == PUZZLE.replace(".", "0")


@pytest.mark.parametrize("text, msg", [
    (PUZZLE[:-1], "81 cells, got 80"),
    (PUZZLE + "1", "81 cells, got 82"),
    (PUZZLE[:-1] + "x", "unknown character"),
    ("55" + PUZZLE[2:], "repeat 5 in row 1"),
    ("5" + "." * 26 + "5" + "." * 53, "repeat 5 in column 1"),
    ("5" + "." * 9 + "5" + "." * 70, "repeat 5 in box 1"),
    ("", "81 cells, got 0"),
])
def test_bad_puzzle_text(task, text, msg):
    with pytest.raises(ValueError, match=msg):
        task.parse(text)


def write_csv(path, rows, header="source,question,answer,rating"):
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_extreme_csv(tmp_path):
    good = [f"src,{PUZZLE},{SOLUTION},12", f"src,{'.' * 81},{SOLUTION},0"]
    write_csv(tmp_path / "train.csv", good)
    write_csv(tmp_path / "test.csv", good[:1])
    x, y, rating = read_extreme_csv(tmp_path / "train.csv")
    assert x.shape == y.shape == (2, 81) and rating.tolist() == [12, 0]
    assert torch.equal(x[0], grid_tokens(PUZZLE)) and torch.equal(y[0], grid_tokens(SOLUTION))
    assert len(read_extreme_csv(tmp_path / "train.csv", rows=1)[0]) == 1
    t = Sudoku(csv_dir=str(tmp_path))
    assert len(t.split("train")) == 2 and len(t.split("test")) == 1
    assert "Sudoku-Extreme" in t.recipe()["source"]


@pytest.mark.parametrize("rows, header, msg", [
    ([f"s,{PUZZLE},{SOLUTION},1"], "source,question,answer", "header"),
    ([f"s,{PUZZLE},{SOLUTION}"], None, "4 fields"),
    ([f"s,{PUZZLE[:-1]},{SOLUTION},1"], None, "81 cells"),
    ([f"s,{PUZZLE},{SOLUTION[:-1]}x,1"], None, "81 cells"),
    ([f"s,{PUZZLE},{SOLUTION},hard"], None, "integer"),
    ([f"s,{PUZZLE},{SOLUTION[1:]}{SOLUTION[0]},1"], None, "not a valid grid"),
    ([f"s,{'1' + PUZZLE[1:]},{SOLUTION},1"], None, "not a valid grid"),
    ([], None, "no puzzles"),
])
def test_bad_csv(tmp_path, rows, header, msg):
    path = write_csv(tmp_path / "x.csv", rows, header or "source,question,answer,rating")
    with pytest.raises(ValueError, match=msg):
        read_extreme_csv(path)


def test_uncond():
    t = get_task("sudoku_uncond")
    train, test = t.split("train"), t.split("test")
    assert len(test) == 1 and (test.inputs == BLANK).all()
    assert len(train.targets) == 512 * 32 and valid_grids(train.targets).all()
    assert len(train.targets.unique(dim=0)) == len(train.targets)
    # the clue curriculum: half the rows blank, the others show 1..train_clues cells of their own grid
    x = train.inputs[train.owner]
    givens = (x > BLANK).sum(1)
    assert 0.45 < (givens == 0).float().mean() < 0.55 and givens.max() == t.train_clues
    assert keeps_givens(x, train.targets).all()
    assert torch.equal(t.parse(""), t.empty_input())
    assert t.unconditional and not get_task("sudoku").unconditional  # no vote among all-distinct boards
    with pytest.raises(ValueError, match="unconditional"):
        t.parse(PUZZLE)
    grids = test.targets[:3]
    junk = grids[0].clone()
    junk[0] = BLANK
    samples = torch.stack([grids[0], grids[0], grids[1], junk])[None]
    m = metrics(t, SampleSet.of(t, test, samples))
    assert m["validity"] == 0.75 and m["distinct"] == 0.75 and m["accuracy"] == 0.75


@pytest.mark.parametrize("name", ["sudoku", "sudoku_uncond"])
def test_tiny_training_run(name):
    from gram.recipes import default_config
    from gram.train import Trainer

    cfg = default_config(name).override(["D=32", "n_layers=1", "batch=8", "n_sup=2", "eval_samples=8"])
    assert cfg.model.mixer == "mlp"
    tr = Trainer(cfg)
    logs = [tr.train_step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(l["loss"])) for l in logs)
    assert 0 <= tr.evaluate()["prior_accuracy"] <= 1
