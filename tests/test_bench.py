"""`bench train`: its JSON contract (throughput, FLOPs, MFU against a measured matmul peak, memory, profile)."""
from __future__ import annotations

import json

from conftest import run_gram

from gram.bench import matmul_peak
from gram.rollout import resolve_dtype


def test_matmul_peak_is_measured():
    import torch
    p = matmul_peak(torch.float32, sizes=(64, 128), m=256, repeats=2)
    assert p["peak"] >= p["median"] > 0
    assert set(p["by_size_gflops"]) == {64, 128}


def test_bench_train_json_contract():
    r = run_gram("bench", "train", "--sizes", "default", "--steps", "2", "--profile", "--set", "D=32",
                 "--set", "n_heads=2", "--set", "n_layers=1", "--set", "batch=8", "--set", "n_sup=2")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(ln) for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert [row["config"] for row in rows] == ["default"]
    row = rows[0]
    assert row["D"] == 32 and row["batch"] == 8 and row["dtype"] == resolve_dtype("auto", "cpu")
    assert 0 < row["seconds_per_step_best"] <= row["seconds_per_step"] <= row["seconds_per_step_worst"]
    assert row["samples_x_sup_steps_per_s"] > 0 and row["gflop_per_step"] > 0 and row["peak_memory_mb"] > 0
    assert 0 < row["mfu"] <= row["mfu_best"] and row["matmul_peak_gflops"] >= row["matmul_median_gflops"] > 0
    assert set(row["phase_share"]) == {"refill", "forward", "loss", "backward", "optimizer"}
    assert abs(sum(row["phase_share"].values()) - 1) < 0.01
    assert row["top_ops"] and "Self CPU" in r.stderr  # the profiler's table


def test_bench_train_rejects_an_unknown_size():
    r = run_gram("bench", "train", "--sizes", "huge")
    assert r.returncode == 2 and "huge" in r.stderr
