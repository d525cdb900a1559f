"""`python -m gram bench ...`: numbers, not assertions. Speed and learning speed are measured here."""
from __future__ import annotations

import json
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import Config


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
    from .train import default_config
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


def cmd_train(args) -> None:
    from .train import default_config
    sizes = {"default": lambda: default_config(args.task), "paper": lambda: paper_config(args.task)}
    for name in args.sizes.split(","):
        if name not in sizes:
            raise ValueError(f"--sizes: unknown size {name!r} (default, paper)")
        cfg = sizes[name]().override(args.set or [])
        row = {"config": name, "task": args.task, **time_train(cfg, steps=args.steps, profile=args.profile)}
        print(json.dumps(row), flush=True)


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: training speed, learning speed, sampling")
    bs = b.add_subparsers(dest="bench", required=True)
    t = bs.add_parser("train", help="training throughput, peak memory and MFU at the default and paper sizes")
    t.add_argument("--task", default="nqueens8")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--sizes", default="default,paper", help="comma-separated: default (the task's recipe), paper")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field, e.g. compile=true")
    t.add_argument("--profile", action="store_true", help="also profile 2 steps: top ops (stderr), phase shares")
    t.set_defaults(func=cmd_train)
    from .learn import add_parser as add_learn
    add_learn(bs)
    from .scale import add_bench_parser
    add_bench_parser(bs)
