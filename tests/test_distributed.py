"""Data-parallel training: `torchrun --nproc_per_node=2 -m gram train` (gloo, CPU) trains the same model as one
process with the same global batch, writes one checkpoint, and resumes with any number of processes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_config

from gram.checkpoint import read_tensors
from gram.train import Trainer

# fp32: equal-to-rounding holds for fp32 sums; bf16 autocast (auto on CPUs with native bf16) rounds each rank's
# matmuls to 8 bits of mantissa, which the tolerances below are not meant to absorb
TINY_DDP = ["D=16", "n_heads=2", "n_layers=1", "batch=8", "n_sup=2", "eval_samples=8", "warmup=2", "dtype=fp32"]


def torchrun(*args: str, nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                        "-m", "gram", "train", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def single(steps: int, *extra: str, out=None) -> Trainer:
    tr = Trainer(tiny_config(*TINY_DDP, *extra, f"steps={steps}"), out=out)
    tr.fit()
    return tr


def snapshot(tr: Trainer) -> dict:
    """What a resume file holds of a Trainer in memory: weights, EMA, optimiser moments, the global carry."""
    out = {**{f"model.{k}": v for k, v in tr.model.state_dict().items()},
           **{f"ema.{k}": v for k, v in tr.ema.state_dict().items()},
           **{f"carry.{k}": v for k, v in tr.carry.tensors().items()}}
    for i, st in tr.opt.state_dict()["state"].items():
        out.update({f"opt.{i}.{k}": v for k, v in st.items() if torch.is_tensor(v)})
    return out


def assert_close(saved: dict, ref: dict):
    assert set(ref) <= set(saved)
    for k, v in ref.items():
        # the ranks sum their gradients in another order than one process does: equal to float rounding (a
        # different data or noise stream moves the weights by ~lr = 1e-3 and the carry by O(1))
        torch.testing.assert_close(saved[k], v.cpu(), rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_two_processes_train_like_one(tmp_path):
    sets = [a for s in TINY_DDP for a in ("--set", s)]
    torchrun("--task", "nqueens8", *sets, "--steps", "3", "--out", str(tmp_path / "ddp"))
    one = single(3)
    assert_close(read_tensors(tmp_path / "ddp" / "resume.safetensors"), snapshot(one))
    ddp = Trainer.resume(tmp_path / "ddp")  # the history rank 0 wrote: the global logs, step by step
    steps = lambda tr: [r for r in tr.history if "loss" in r]
    assert len(steps(ddp)) == len(steps(one)) == 3
    for a, b in zip(steps(ddp), steps(one)):
        assert a.keys() == b.keys()
        for k in a.keys() - {"wall"}:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k


def test_resume_across_process_counts(tmp_path):
    """Deterministic mode (embed_y unused: DDP must allow it). One process saves, two continue, then one
    continues the two's checkpoint: like one uninterrupted run throughout."""
    single(2, "mode=deterministic", out=tmp_path / "run")
    torchrun("--out", str(tmp_path / "run"), "--resume", "--steps", "4")
    assert_close(read_tensors(tmp_path / "run" / "resume.safetensors"), snapshot(single(4, "mode=deterministic")))
    tr = Trainer.resume(tmp_path / "run")
    assert tr.step == 4
    tr.fit(steps=5)
    assert_close(snapshot(tr), snapshot(single(5, "mode=deterministic")))


def test_batch_must_split_evenly():
    from gram.distributed import World
    assert World(rank=1, size=2).rows(8) == slice(4, 8)
    with pytest.raises(ValueError, match="divisible"):
        World(rank=0, size=3).rows(8)
