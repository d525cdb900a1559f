"""`python -m gram bench ...`: numbers, not assertions. Speed and learning speed are measured here."""
from __future__ import annotations

import json
import resource
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import Config


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(dtype: torch.dtype, n: int = 512, m: int = 8192, reps: int = 10) -> float:
    """This machine's measured matmul throughput (FLOP/s) for an (m x n) @ (n x n) product."""
    a, b = torch.randn(m, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * n * n * reps / (time.perf_counter() - t0)


def paper_config(task: str = "nqueens8") -> Config:
    from .train import default_config
    cfg = default_config(task)
    m = cfg.model
    m.D, m.n_heads, m.n_layers, m.K, m.T, m.mlp_ratio = 512, 8, 2, 4, 3, 4.0
    cfg.train.batch = 64
    return cfg


def time_train(cfg: Config, steps: int = 5, warmup: int = 2) -> dict:
    from .rollout import resolve_dtype
    from .train import Trainer
    tr = Trainer(cfg)
    for _ in range(warmup):
        tr.train_step()
    with FlopCounterMode(display=False) as fc:
        tr.train_step()
    flops = fc.get_total_flops()
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    dt = (time.perf_counter() - t0) / steps
    dtype = resolve_dtype(cfg.train.dtype, tr.device)
    peak = matmul_peak(torch.bfloat16 if dtype == "bf16" else torch.float32)
    m = cfg.model
    return {"D": m.D, "layers": m.n_layers, "K": m.K, "T": m.T, "batch": cfg.train.batch, "dtype": dtype,
            "parameters": sum(p.numel() for p in tr.model.parameters()),
            "seconds_per_step": round(dt, 4),
            "samples_x_sup_steps_per_s": round(cfg.train.batch / dt, 1),
            "gflop_per_step": round(flops / 1e9, 2), "achieved_gflops": round(flops / dt / 1e9, 1),
            "matmul_peak_gflops": round(peak / 1e9, 1), "mfu": round(flops / dt / peak, 3),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def cmd_train(args) -> None:
    from .train import default_config
    rows = []
    for name, cfg in (("default", default_config(args.task)), ("paper", paper_config(args.task))):
        cfg = cfg.override(args.set or [])
        row = {"config": name, "task": args.task, **time_train(cfg, steps=args.steps)}
        print(json.dumps(row), flush=True)
        rows.append(row)


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: training speed, learning speed, sampling")
    bs = b.add_subparsers(dest="bench", required=True)
    t = bs.add_parser("train", help="training throughput, peak memory and MFU at the default and paper sizes")
    t.add_argument("--task", default="nqueens8")
    t.add_argument("--steps", type=int, default=5)
    t.add_argument("--set", action="append", metavar="KEY=VALUE")
    t.set_defaults(func=cmd_train)
    from .learn import add_parser as add_learn
    add_learn(bs)
    from .scale import add_bench_parser
    add_bench_parser(bs)
