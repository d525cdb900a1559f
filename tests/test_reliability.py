"""Nothing lost: saves are all or nothing, a run resumes exactly after any interruption, an existing run is
never overwritten by accident, one writer per run, and a config is refused before it allocates."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, TINY, run_gram
from gram import checkpoint as ck
from gram.checkpoint import CheckpointError, RunLock, load_checkpoint, recover, save_dir

RUN = ["train", "--task", "nqueens7", *[a for s in TINY + ["ckpt_every=3", "eval_every=10", "eval_samples=4"]
                                         for a in ("--set", s)]]


def _popen(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "gram", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(d):
    return {**{f"m.{k}": v for k, v in load_file(str(d / "model.safetensors")).items()},
            **{f"r.{k}": v for k, v in load_file(str(d / "resume.safetensors")).items()}}


def _saved_step(run) -> int:
    try:
        return json.loads((run / "resume.json").read_text())["step"]
    except (OSError, ValueError, KeyError):  # no save yet, or the moment between a save's two renames
        return -1


def test_resume_is_exact_after_random_interruptions(tmp_path):
    """A real run killed at random moments (SIGKILL, SIGTERM, SIGINT), resumed each time, ends bit for bit
    where the uninterrupted run ends: weights, EMA, optimiser moments, carry and RNG states."""
    steps = ["--steps", "60"]
    ref = tmp_path / "ref"
    t0 = time.perf_counter()
    r = run_gram(*RUN, *steps, "--out", ref)
    t_ref = time.perf_counter() - t0  # start-up and 60 steps: 2-8 s, by machine
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    rng = random.Random(0)
    interrupted = 0
    for attempt in range(30):
        started = (run / "resume.json").is_file()
        p = _popen(*(["train", "--out", run, "--resume"] if started else [*RUN, *steps, "--out", run]))
        try:
            if attempt < 2:  # the first two kills land in the steps or a save: after the run saves once more
                before, deadline = _saved_step(run), time.perf_counter() + 120
                while p.poll() is None and _saved_step(run) in (before, -1) and time.perf_counter() < deadline:
                    time.sleep(0.005)
                window = rng.uniform(0.0, 0.1)
            else:  # then anywhere, start-up included, in a window that grows so that the run gets to finish
                window = rng.uniform(0.2, 1.0 + 0.2 * attempt) * t_ref
            out, err = p.communicate(timeout=window)
        except subprocess.TimeoutExpired:
            p.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT]))
            out, err = p.communicate()
            interrupted += 1
            assert "Traceback" not in err, err[-2000:]
            continue
        assert p.returncode == 0, err[-2000:]
        break
    else:
        pytest.fail("the run never finished")
    assert interrupted >= 2  # the test means something only if it did interrupt
    a, b = _state(ref), _state(run)
    assert set(a) == set(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ[:5]
    assert json.loads((run / "resume.json").read_text())["step"] == 60


def test_a_failing_save_keeps_the_last_complete_one(tiny_copy, monkeypatch):
    before = load_file(str(tiny_copy / "model.safetensors"))
    calls, real = [], ck.save_file

    def failing(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")  # the disk fills during the second file
        return real(tensors, path, metadata)

    monkeypatch.setattr(ck, "save_file", failing)
    with pytest.raises(OSError):
        save_dir(tiny_copy, {"model.safetensors": {"w": torch.zeros(2)}, "resume.safetensors": {"w": torch.ones(2)}},
                 {"card.json": {"task": "x"}})
    monkeypatch.undo()
    after = load_file(str(tiny_copy / "model.safetensors"))
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert not list(tiny_copy.parent.glob(".ckpt.saving-*"))  # no staging left behind
    load_checkpoint(tiny_copy)


def test_a_kill_between_the_renames_is_recovered(tiny_copy, monkeypatch):
    """The swap is two renames; a kill after the first leaves no checkpoint folder for a moment. The next
    reader finishes the swap with the complete new save."""
    real = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here
        return real(a, b)

    card = json.loads((tiny_copy / "card.json").read_text())
    monkeypatch.setattr(ck.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        save_dir(tiny_copy, {}, {"card.json": {**card, "steps": 12345}})
    monkeypatch.undo()
    assert not tiny_copy.exists()
    _, _, loaded = load_checkpoint(tiny_copy)  # the loader recovers
    assert loaded["steps"] == 12345 and (tiny_copy / "model.safetensors").is_file()
    assert not list(tiny_copy.parent.glob(".ckpt.*-*"))


def test_an_incomplete_staging_folder_is_never_read(tiny_copy):
    stage = tiny_copy.parent / f".{tiny_copy.name}.saving-999999-abcdef"
    stage.mkdir()
    (stage / "card.json").write_text("{}")  # no completion marker: a writer died mid-save
    recover(tiny_copy)
    assert json.loads((tiny_copy / "card.json").read_text()) != {}
    assert not stage.exists()  # its writer is gone: cleaned up


def test_an_existing_run_is_not_overwritten(tiny_copy):
    before = (tiny_copy / "model.safetensors").read_bytes()
    r = run_gram(*RUN, "--out", tiny_copy)
    assert r.returncode == 2 and "--resume" in r.stderr and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert (tiny_copy / "model.safetensors").read_bytes() == before
    r = run_gram("train", "--out", tiny_copy, "--resume", "--set", "beta=3")
    assert r.returncode == 2 and "refused" in r.stderr
    r = run_gram(*RUN, "--steps", "2", "--out", tiny_copy, "--overwrite")
    assert r.returncode == 0, r.stderr


def test_one_writer_per_run(tmp_path):
    lock = RunLock(tmp_path / "run").acquire()
    with pytest.raises(CheckpointError, match="another process"):
        RunLock(tmp_path / "run").acquire()
    r = run_gram(*RUN, "--out", tmp_path / "run")
    assert r.returncode == 2 and "another process" in r.stderr
    lock.release()
    RunLock(tmp_path / "run").acquire().release()


def test_an_inflated_config_is_refused_before_it_is_built(tiny_copy):
    cfg = json.loads((tiny_copy / "config.json").read_text())
    cfg["model"]["D"], cfg["model"]["n_heads"] = 16384, 4
    (tiny_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="parameters"):
        load_checkpoint(tiny_copy)


def test_non_finite_weights_are_refused(tiny_copy):
    from safetensors.torch import save_file

    t = load_file(str(tiny_copy / "model.safetensors"))
    t["h0"] = torch.full_like(t["h0"], float("nan"))
    save_file(t, str(tiny_copy / "model.safetensors"))
    with pytest.raises(CheckpointError, match="finite"):
        load_checkpoint(tiny_copy)


@pytest.mark.parametrize("setting, message", [("D=0", "D must be"), ("n_heads=0", "n_heads must be"),
                                              ("warmup=-1", "warmup"), ("clip=nan", "finite"), ("beta=-1", "beta"),
                                              ("kl_balance=5", "kl_balance"), ("ema=2", "ema"),
                                              ("eval_every=0", "eval_every"), ("ckpt_every=0", "ckpt_every")])
def test_one_validation_refuses_nonsense(setting, message):
    from gram.recipes import default_config

    with pytest.raises(ValueError, match=message):
        default_config("nqueens7").override([setting]).validate()


def test_wrong_types_in_a_config_file_are_refused_before_training(tmp_path):
    from gram.recipes import default_config

    cfg = default_config("nqueens7").to_dict()
    cfg["model"]["n_layers"] = True
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    r = run_gram("train", "--config", tmp_path / "c.json", "--out", tmp_path / "run")
    assert r.returncode == 2 and "n_layers" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_errors_are_one_bounded_line(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("Q" * 200_000 + "\n")
    r = run_gram("sample", "--checkpoint", ROOT / "checkpoints" / "nqueens7", "--input-file", f)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr) < 1000
    r = run_gram("sample", "--checkpoint", ROOT / "checkpoints" / "nqueens7", "--input-file", tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


# --- budgets before work -------------------------------------------------------------------------
def _edited(tiny_copy, section, **fields):
    cfg = json.loads((tiny_copy / "config.json").read_text())
    cfg[section].update(fields)
    (tiny_copy / "config.json").write_text(json.dumps(cfg))
    return tiny_copy


def _refused(r, *words):
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line
    for w in ("refused", *words):
        assert w in r.stderr, r.stderr


def test_a_billion_samples_are_refused_before_anything_is_allocated(tiny_checkpoint):
    import time

    t0 = time.perf_counter()
    r = run_gram("sample", "--checkpoint", tiny_checkpoint, "--samples", 10**9, "--input", "Q" + "." * 63)
    seconds = time.perf_counter() - t0
    _refused(r, "1,000,000,000 samples", "GB of memory", "operations", "--samples")
    assert seconds < 30  # the start of Python and torch (~3 s here); the check itself takes under a millisecond
    _refused(run_gram("eval", "--checkpoint", tiny_checkpoint, "--samples", 10**9), "--limit")
    _refused(run_gram("scale", "--checkpoint", tiny_checkpoint, "--widths", f"1,{10**9}", "--out", tiny_checkpoint.parent / "s"),
             "the scale table")


@pytest.mark.parametrize("section, field", [("model", "T"), ("train", "n_sup")])
def test_a_config_of_a_billion_steps_is_refused_not_run(tiny_copy, section, field):
    """eval reads the card's depth, else the config's n_sup; T multiplies every step."""
    (tiny_copy / "card.json").write_text(json.dumps({**json.loads((tiny_copy / "card.json").read_text()),
                                                      "inference": {}, "metrics": {}}))
    _edited(tiny_copy, section, **{field: 10**9})
    r = run_gram("eval", "--checkpoint", tiny_copy, "--limit", "2")
    _refused(r, "operations", "1,000,000,000")
    _refused(run_gram("scale", "--checkpoint", tiny_copy, "--limit", "2", "--depths", "1", "--out", tiny_copy.parent / "s")
             if field == "T" else run_gram("sample", "--checkpoint", tiny_copy, "--input", "Q" + "." * 63), "operations")


def test_training_is_refused_before_the_model_is_built(tmp_path):
    r = run_gram(*RUN, "--set", "T=1000000000", "--out", tmp_path / "run")
    _refused(r, "a training step", "1,000,000,000 transitions")
    r = run_gram(*RUN, "--set", "eval_samples=100000000", "--set", "n_sup=1000000", "--out", tmp_path / "run")
    _refused(r, "the held-out evaluation", "eval_samples")
    r = run_gram(*RUN, "--set", "D=16384", "--set", "n_heads=4", "--out", tmp_path / "run")
    assert r.returncode == 2 and "parameters" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_a_memory_bomb_under_a_memory_limit_is_refused(tiny_checkpoint):
    """Under `ulimit -v` 4 GiB the ceiling is 3.2 GB: 3 million samples (6.6 GB planned, within the work ceiling)
    are refused with the numbers, not left to the allocator."""
    import re
    import resource

    limit = 4 * 2**30
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "gram", "sample", "--checkpoint", str(tiny_checkpoint), "--samples",
                        "3000000", "--input", "Q" + "." * 63], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    _refused(r, "GB of memory")
    assert float(re.search(r"more than the ([\d.]+) GB allowed", r.stderr).group(1)) <= 0.75 * limit / 1e9 + 0.05


def test_budget_estimates_bound_measured_memory_and_scale_with_the_sizes():
    from gram import budget
    from gram.recipes import default_config
    from gram.train import bind_task
    from gram.tasks import get_task

    m = bind_task(default_config("nqueens8"), get_task("nqueens8")).model
    one = budget.sampling_cost(m, 1, 1000, 4)
    assert budget.sampling_cost(m, 1, 2000, 4).flops == pytest.approx(2 * one.flops, rel=1e-3)
    assert budget.sampling_cost(m, 1, 1000, 8).flops == pytest.approx(2 * one.flops, rel=1e-3)
    assert budget.rollout_cost(m, 16, 4, record="transitions").bytes > budget.rollout_cost(m, 16, 4).bytes
    assert budget.check(one) is one
    with pytest.raises(budget.BudgetError, match="more than the 1.0 MB allowed"):
        budget.check(one, memory=1e6)


# --- command-line leftovers ----------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_temperature_must_be_finite_and_not_negative(tiny_checkpoint, value):
    r = run_gram("sample", "--checkpoint", tiny_checkpoint, "--input", "Q" + "." * 63, "--temperature", value)
    assert r.returncode == 2 and "finite number >= 0" in r.stderr and not r.stdout


def test_an_empty_input_file_is_an_error(tiny_checkpoint, tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("\n  \n")
    r = run_gram("sample", "--checkpoint", tiny_checkpoint, "--input-file", f)
    assert r.returncode == 2 and "no inputs" in r.stderr and str(f) in r.stderr and not r.stdout


JUNK_CARD = {"parameters": "many", "steps": "x", "inference": [1, 2], "wall_seconds": "slow",
             "metrics": {"test_20_samples": {"samples": 20, "accuracy": "high", "n_sup": 4},
                         "held_out_prior_accuracy_1_sample": "x"}}


def test_card_fields_are_type_checked_in_one_place():
    from gram.cards import check_card

    card, problems = check_card({"task": "nqueens8", "mode": "gram", **JUNK_CARD})
    assert card == {"task": "nqueens8", "mode": "gram", "metrics": {}}
    assert len(problems) == 6 and any("parameters must be a whole number" in p for p in problems)
    assert any("metrics.test_20_samples.accuracy must be a finite number, got 'high'" in p for p in problems)
    assert check_card({"task": "t", "metrics": [1]}) == ({"task": "t"}, ["metrics must be an object, got [1]"])
    good = json.loads((ROOT / "checkpoints" / "nqueens8" / "card.json").read_text())
    assert check_card(good) == (good, [])


def test_a_junk_card_is_refused_by_eval_card_and_results(tiny_copy, tmp_path):
    card = {**json.loads((tiny_copy / "card.json").read_text()), **JUNK_CARD}
    (tiny_copy / "card.json").write_text(json.dumps(card))
    before = (tiny_copy / "card.json").read_text()
    r = run_gram("eval", "--checkpoint", tiny_copy, "--limit", "2", "--samples", "2", "--card")
    assert r.returncode == 2 and "parameters must be" in r.stderr and "Traceback" not in r.stderr and not r.stdout
    assert (tiny_copy / "card.json").read_text() == before  # refused before the work, the card untouched
    root = tmp_path / "cks"
    root.mkdir()
    os.rename(tiny_copy, root / "nqueens8")
    r = run_gram("results", "--checkpoints", root)
    assert r.returncode == 2 and "card.json" in r.stderr and "steps must be" in r.stderr and "Traceback" not in r.stderr
