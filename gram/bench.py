"""`python -m gram bench ...`: numbers, not assertions. Training speed and sampling speed are measured here
(learning speed in gram.learn)."""
from __future__ import annotations

import math
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .budget import check, rollout_cost
from .checkpoint import load_checkpoint
from .config import Config
from .rollout import NoiseStreams, rollout
from .tasks import get_task


def reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: "5" resets the process's peak resident set size (VmHWM)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def peak_memory_mb(device: str) -> float:
    """Peak tensor memory on a GPU; peak resident set size of the process on the CPU (since the last reset
    where Linux allows one, else since the process started)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_peak(dtype: torch.dtype, device: str = "cpu", sizes: tuple | None = None, m: int | None = None,
                repeats: int = 5) -> dict:
    """This machine's matmul throughput (FLOP/s) for (m x n) @ (n x n) products: the best of `repeats` timings
    per size (the best is the least disturbed by other processes), and the median of all, for the spread.
    A GPU needs far bigger products than a CPU to reach its peak."""
    cuda = device.startswith("cuda")
    sizes = sizes or ((1024, 4096, 8192) if cuda else (256, 512, 1024))
    m = m or (8192 if cuda else 4096)
    work = 2e13 if cuda else 4e9  # FLOP per timing: long enough to time, short enough on a loaded CPU
    rates = {}
    for n in sizes:
        a, b = torch.randn(m, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        reps = max(1, int(work / (2 * m * n * n)))
        a @ b
        timings = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                a @ b
            _sync(device)
            timings.append(2 * m * n * n * reps / (time.perf_counter() - t0))
        rates[n] = timings
    every = sorted(r for v in rates.values() for r in v)
    return {"peak": max(every), "median": every[len(every) // 2],
            "by_size_gflops": {n: round(max(v) / 1e9, 1) for n, v in rates.items()}}


def paper_config(task: str = "nqueens8") -> Config:
    """The paper's size: D = 512, 8 heads, 2 + 2 attention layers, SwiGLU width 8/3 D (TRM's), K = 4, T = 3
    (batch 64 per step here)."""
    from .recipes import default_config
    cfg = default_config(task)
    m = cfg.model
    m.D, m.n_heads, m.n_layers, m.K, m.T, m.mlp_ratio, m.mixer = 512, 8, 2, 4, 3, 8 / 3, "attn"
    cfg.train.batch = 64
    return cfg


PHASES = ("refill", "forward", "loss", "backward", "optimizer")  # the record_function labels of Trainer._step


def profile_steps(tr, steps: int = 2, top: int = 15) -> dict:
    """torch.profiler over a few optimiser steps: the top ops table (to stderr) and each phase's share."""
    from torch.profiler import ProfilerActivity, profile
    cuda = tr.device.startswith("cuda")
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(steps):
            tr._floats([tr._step()])
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    print(events.table(sort_by=key, row_limit=top), file=sys.stderr, flush=True)
    span = {e.key: e.cpu_time_total for e in events if e.key in PHASES}
    total = sum(span.values()) or 1
    return {"phase_share": {k: round(v / total, 3) for k, v in span.items()},
            "top_ops": [{"op": e.key, "share": round(getattr(e, key) / max(1, sum(getattr(x, key) for x in events)), 3)}
                        for e in sorted(events, key=lambda e: -getattr(e, key)) if e.key not in PHASES][:8]}


def time_train(cfg: Config, steps: int = 5, warmup: int = 2, profile: bool = False) -> dict:
    """Seconds per optimiser step (each step timed alone: median, best and worst), FLOPs per step counted by
    torch.utils.flop_counter, and MFU against the matmul peak this machine shows right now."""
    from .rollout import resolve_dtype
    from .train import Trainer
    tr = Trainer(cfg)
    dev = tr.device
    reset_peak_memory(dev)
    for _ in range(warmup):  # first steps allocate (and compile, with compile=true)
        tr.train_step()
    with FlopCounterMode(display=False) as fc:
        tr.train_step()
    flops = fc.get_total_flops()
    times = []
    for _ in range(steps):
        _sync(dev)
        t0 = time.perf_counter()
        tr.train_step()  # reads its log back: the step has finished on the device
        times.append(time.perf_counter() - t0)
    times.sort()
    med, best = times[len(times) // 2], times[0]
    dtype = resolve_dtype(cfg.train.dtype, dev)
    peak = matmul_peak(torch.bfloat16 if dtype == "bf16" else torch.float32, dev)
    m, B = cfg.model, cfg.train.batch
    row = {"D": m.D, "heads": m.n_heads, "layers": m.n_layers, "K": m.K, "T": m.T, "batch": B, "dtype": dtype,
           "compile": cfg.train.compile, "device": dev, "threads": torch.get_num_threads(),
           "parameters": sum(p.numel() for p in tr.model.parameters()),
           "seconds_per_step": round(med, 4), "seconds_per_step_best": round(best, 4),
           "seconds_per_step_worst": round(times[-1], 4),
           "samples_x_sup_steps_per_s": round(B / med, 2),
           "gflop_per_step": round(flops / 1e9, 2), "gflop_per_sample_sup_step": round(flops / B / 1e9, 3),
           "achieved_gflops": round(flops / med / 1e9, 1),
           "matmul_peak_gflops": round(peak["peak"] / 1e9, 1), "matmul_median_gflops": round(peak["median"] / 1e9, 1),
           "matmul_by_size_gflops": peak["by_size_gflops"],
           "mfu": round(flops / med / peak["peak"], 3), "mfu_best": round(flops / best / peak["peak"], 3),
           "peak_memory_mb": round(peak_memory_mb(dev), 1)}
    if profile:
        row.update(profile_steps(tr))
    return row


# --- sampling ------------------------------------------------------------------------------------
def model_for_bench(checkpoint: str | None):
    """The shipped checkpoint when present; else the default N-Queens-8 recipe, untrained: speed and
    memory depend on the shapes, not on the weights."""
    path = Path(checkpoint) if checkpoint else Path("checkpoints/nqueens8")
    if checkpoint or (path / "model.safetensors").is_file():
        model, cfg, _ = load_checkpoint(path)
        return model, cfg, str(path)
    from .model import GRAM
    from .recipes import default_config
    from .train import bind_task
    cfg = bind_task(default_config("nqueens8"), get_task("nqueens8"))
    torch.manual_seed(0)
    return GRAM(cfg.model).eval(), cfg, "untrained nqueens8 default"


def _timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_sampling(checkpoint: str | None, n: int = 64, transitions: int = 48, reps: int = 3, dtype: str = "auto") -> dict:
    """Wall time of 1 and of n trajectories on one puzzle (the median of `reps`), the cost of the
    per-trajectory noise streams, and the memory of a full trace of n trajectories."""
    model, cfg, source = model_for_bench(checkpoint)
    task = get_task(cfg.train.task)
    x = task.split("test", cfg.train.seed).inputs[:1]
    T = cfg.model.T
    n_sup = math.ceil(transitions / T)
    check(rollout_cost(cfg.model, n, n_sup, record="transitions", what="the benchmark"),
          hint="Lower --n or --transitions.")
    run = lambda rows, record="none": rollout(model, x.expand(rows, -1), n_sup=n_sup, seed=0, record=record, dtype=dtype)
    run(1)  # warm-up: first calls pay for allocation and kernel selection
    t1 = _timed(lambda: run(1), reps)
    tn = _timed(lambda: run(n), reps)
    streams = NoiseStreams(list(range(n)))
    t_noise = _timed(lambda: [streams.draw((model.L, model.cfg.D)) for _ in range(n_sup * T)], reps)
    t0 = time.perf_counter()
    tr = run(n, "transitions")
    t_trace = time.perf_counter() - t0
    return {"source": source, "task": task.name, "D": cfg.model.D, "L": model.L, "T": T, "n_sup": n_sup,
            "transitions": n_sup * T, "threads": torch.get_num_threads(), "device": "cpu",
            "seconds_N1": round(t1, 3), f"seconds_N{n}": round(tn, 3), "ratio": round(tn / t1, 1),
            "goal_ratio": 8.0, "noise_draw_seconds": round(t_noise, 3), "noise_share": round(t_noise / tn, 4),
            f"seconds_N{n}_full_trace": round(t_trace, 3), "trace_mb": round(tr.nbytes() / 2**20, 1),
            "trace_shape_h": list(tr.h.shape), "trace_budget_mb": 200}
