"""Nothing lost: saves are all or nothing, a run resumes exactly after any interruption, an existing run is
never overwritten by accident, one writer per run, and a config is refused before it allocates."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

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


def test_resume_is_exact_after_random_interruptions(tmp_path):
    """A real run killed at random moments (SIGKILL, SIGTERM, SIGINT), resumed each time, ends bit for bit
    where the uninterrupted run ends: weights, EMA, optimiser moments, carry and RNG states."""
    steps = ["--steps", "60"]
    ref = tmp_path / "ref"
    r = run_gram(*RUN, *steps, "--out", ref)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    rng = random.Random(0)
    interrupted = 0
    for attempt in range(30):
        started = (run / "resume.json").is_file()
        p = _popen(*(["train", "--out", run, "--resume"] if started else [*RUN, *steps, "--out", run]))
        try:
            # a start takes ~5 s here, 60 steps ~3 s: kills land in start-up, steps and saves alike; the
            # window grows so that the run gets to finish
            out, err = p.communicate(timeout=rng.uniform(3.0, 6.0 + attempt))
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
    from gram.train import default_config

    with pytest.raises(ValueError, match=message):
        default_config("nqueens7").override([setting]).validate()


def test_wrong_types_in_a_config_file_are_refused_before_training(tmp_path):
    from gram.train import default_config

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
