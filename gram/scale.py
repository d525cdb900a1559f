"""Inference-time scaling from the command line.

`python -m gram scale`: accuracy and coverage against width (N sampled trajectories, picked by majority
vote or by the LPRM value) and depth (supervision steps, or ACT halting), on a checkpoint's held-out
inputs. One draw (gram.evaluate.draw) of max(widths) trajectories to max(depths) steps per input serves every
cell of the table, ACT's included: width n reads the first n trajectories and depth d reads the record at step
d, so the curves are nested and an answer at (n, d) is the same trajectory's answer in every column.
Trajectory j of input i uses seed + i * N + j, as `gram.rollout.sample` does, so any cell can be replayed.

`python -m gram bench sample`: wall time of N = 1 and N = 64 trajectories on one puzzle, the cost of the
per-trajectory noise streams, and the memory of a full trace.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from .budget import check, rollout_cost
from .cards import inference
from .checkpoint import load_checkpoint
from .cli import probability
from .evaluate import curves, draw
from .rollout import HALT_AT, NoiseStreams, rollout
from .tasks import get_task

COLUMNS = ("depth", "width", "vote", "lprm", "oracle", "mean", "coverage", "distinct", "steps")


def scale_table(model, task, split, widths: list[int], depths: list[int], act: bool = False, seed: int = 0,
                rows_per_batch: int = 2048, dtype: str = "auto", log=None, halt_at: float = HALT_AT) -> list[dict]:
    """One row per (depth, width): vote / lprm accuracy, oracle (pass@n), mean per-sample accuracy,
    coverage of all valid answers, distinct answers per input, mean supervision steps used.
    act=True adds rows at depth 'act': each trajectory stops once its P(halt) passes halt_at (at most
    max(depths) steps), read off the same trajectories."""
    N, depth_max, P = max(widths), max(depths), len(split)
    cost = rollout_cost(model.cfg, P * N, depth_max, record="steps", latents="pooled", chunk=rows_per_batch,
                        answers=len(depths) + 4, what="the scale table", width=f"{N:,} trajectories x {P:,} inputs")
    check(cost, hint="Lower --widths, --depths or --limit.")
    sets = draw(model, task, split, N, depths=depths, act=act, halt_at=halt_at, seed=seed, dtype=dtype,
                chunk=rows_per_batch, log=log)
    rows = []
    for d, s in sets.items():
        c = curves(s, widths)
        for i, n in enumerate(widths):
            steps = d if d != "act" else s.first(n).steps.float().mean().item()
            rows.append({"depth": d, "width": n, **{k: c[k][i] for k in COLUMNS[2:-1]}, "steps": steps})
    return rows


def format_table(rows: list[dict]) -> str:
    head = " ".join(f"{c:>8}" for c in COLUMNS)
    cell = lambda v: f"{v:8.3f}" if isinstance(v, float) else f"{v!s:>8}"
    return "\n".join([head] + [" ".join(cell(r[c]) for c in COLUMNS) for r in rows])


def figure(rows: list[dict], title: str):
    """Accuracy and coverage against width (one line per depth), accuracy against depth at the widest N."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 3, subplot_titles=("accuracy vs width", "coverage vs width", "accuracy vs depth"))
    depths = list(dict.fromkeys(r["depth"] for r in rows))
    dash = {"vote": "solid", "lprm": "dash", "oracle": "dot"}
    for i, d in enumerate(depths):
        rs = [r for r in rows if r["depth"] == d]
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        w = [r["width"] for r in rs]
        for k, style in dash.items():
            fig.add_trace(go.Scatter(x=w, y=[r[k] for r in rs], name=f"depth {d} {k}", legendgroup=str(d),
                                     line=dict(color=color, dash=style)), 1, 1)
        fig.add_trace(go.Scatter(x=w, y=[r["coverage"] for r in rs], name=f"depth {d} coverage", legendgroup=str(d),
                                 line=dict(color=color)), 1, 2)
    widest = max(r["width"] for r in rows)
    at = sorted((r for r in rows if r["width"] == widest), key=lambda r: r["steps"])
    for k, style in dash.items():  # ACT sits at its mean number of steps
        fig.add_trace(go.Scatter(x=[r["steps"] for r in at], y=[r[k] for r in at], mode="lines+markers",
                                 text=[str(r["depth"]) for r in at], name=f"N={widest} {k}",
                                 line=dict(color="black", dash=style)), 1, 3)
    fig.update_xaxes(type="log", dtick=math.log10(2), title_text="trajectories N", row=1, col=1)
    fig.update_xaxes(type="log", dtick=math.log10(2), title_text="trajectories N", row=1, col=2)
    fig.update_xaxes(title_text="supervision steps", row=1, col=3)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title=title, height=480, width=1400, hovermode="x unified")
    return fig


def _ints(text: str) -> list[int]:
    try:
        out = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not out or out[0] < 1:
        raise ValueError(f"expected positive integers, got {text!r}")
    return out


def cmd_scale(args) -> None:
    model, cfg, card = load_checkpoint(args.checkpoint)
    task = get_task(cfg.train.task)
    split = task.split("test", cfg.train.seed).sample(args.limit)
    widths = _ints(args.widths)
    d = inference(card, cfg.train.n_sup)  # the card's settings: depths up to the one it was read at
    top = d["n_sup"]
    depths = _ints(args.depths) if args.depths else sorted({1, top, *[2 ** i for i in range(12) if 2 ** i < top]})
    halt_at = d["halt_at"] if args.halt_at is None else args.halt_at
    t0 = time.perf_counter()
    rows = scale_table(model, task, split, widths, depths, act=args.act, seed=args.seed, dtype=args.dtype,
                       log=lambda s: print(s, file=sys.stderr, flush=True), halt_at=halt_at)
    meta = {"checkpoint": str(args.checkpoint), "task": task.name, "mode": cfg.model.mode, "inputs": len(split),
            "widths": widths, "depths": depths, "act": args.act, "halt_at": halt_at, "seed": args.seed,
            "seconds": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    with open(out / "scale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    title = f"{task.name} ({cfg.model.mode}), {len(split)} held-out inputs, {Path(args.checkpoint).name}"
    figure(rows, title).write_html(out / "scale.html", include_plotlyjs=True)  # inline plotly.js: works offline
    print(format_table(rows))
    print(json.dumps({**meta, "out": str(out)}), flush=True)


# --- bench sample -------------------------------------------------------------------------------
def _model_for_bench(checkpoint: str | None):
    """The shipped checkpoint when present; else the default N-Queens-8 recipe, untrained: speed and
    memory depend on the shapes, not on the weights."""
    path = Path(checkpoint) if checkpoint else Path("checkpoints/nqueens8")
    if checkpoint or (path / "model.safetensors").is_file():
        model, cfg, _ = load_checkpoint(path)
        return model, cfg, str(path)
    from .model import GRAM
    from .train import bind_task, default_config
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


def cmd_bench_sample(args) -> None:
    model, cfg, source = _model_for_bench(args.checkpoint)
    task = get_task(cfg.train.task)
    x = task.split("test", cfg.train.seed).inputs[:1]
    T = cfg.model.T
    n_sup = math.ceil(args.transitions / T)
    check(rollout_cost(cfg.model, args.n, n_sup, record="transitions", what="the benchmark"),
          hint="Lower --n or --transitions.")
    run = lambda n, record="none": rollout(model, x.expand(n, -1), n_sup=n_sup, seed=0, record=record, dtype=args.dtype)
    run(1)  # warm-up: first calls pay for allocation and kernel selection
    t1 = _timed(lambda: run(1), args.reps)
    tn = _timed(lambda: run(args.n), args.reps)
    streams = NoiseStreams(list(range(args.n)))
    t_noise = _timed(lambda: [streams.draw((model.L, model.cfg.D)) for _ in range(n_sup * T)], args.reps)
    t0 = time.perf_counter()
    tr = run(args.n, "transitions")
    t_trace = time.perf_counter() - t0
    res = {"source": source, "task": task.name, "D": cfg.model.D, "L": model.L, "T": T, "n_sup": n_sup,
           "transitions": n_sup * T, "threads": torch.get_num_threads(), "device": "cpu",
           "seconds_N1": round(t1, 3), f"seconds_N{args.n}": round(tn, 3), "ratio": round(tn / t1, 1),
           "goal_ratio": 8.0, "noise_draw_seconds": round(t_noise, 3), "noise_share": round(t_noise / tn, 4),
           f"seconds_N{args.n}_full_trace": round(t_trace, 3), "trace_mb": round(tr.nbytes() / 2**20, 1),
           "trace_shape_h": list(tr.h.shape), "trace_budget_mb": 200}
    print(f"N=1: {t1:.3f} s   N={args.n}: {tn:.3f} s ({tn / t1:.1f}x, goal <= 8x)   noise streams: {t_noise:.3f} s "
          f"({100 * t_noise / tn:.1f}% of N={args.n})   trace {args.n} x {n_sup * T} transitions: "
          f"{res['trace_mb']} MB (budget 200 MB)", file=sys.stderr)
    print(json.dumps(res), flush=True)


def add_parser(sub) -> None:
    s = sub.add_parser("scale", help="accuracy and coverage against width (vote / LPRM) and depth (steps / ACT)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--widths", default="1,2,4,8,16,32,64", help="comma-separated numbers of trajectories")
    s.add_argument("--depths", help="comma-separated supervision steps (default: powers of 2 up to the card's depth)")
    s.add_argument("--act", action="store_true", help="also ACT halting (at most max(depths) steps)")
    s.add_argument("--halt-at", type=probability, help=f"ACT threshold on P(halt) (default: the card's, else {HALT_AT})")
    s.add_argument("--limit", type=int, default=32, help="M held-out inputs, drawn at random (seeded)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"))
    s.add_argument("--out", default="runs/scale", help="directory for scale.json, scale.csv, scale.html")
    s.set_defaults(func=cmd_scale)


def add_bench_parser(bs) -> None:
    b = bs.add_parser("sample", help="sampling: N=1 vs N=64 trajectories on one puzzle, noise cost, trace memory")
    b.add_argument("--checkpoint", help="default: checkpoints/nqueens8 if present, else an untrained model")
    b.add_argument("--n", type=int, default=64)
    b.add_argument("--transitions", type=int, default=48)
    b.add_argument("--reps", type=int, default=3)
    b.add_argument("--dtype", default="auto", choices=("auto", "bf16", "fp32"))
    b.set_defaults(func=cmd_bench_sample)
