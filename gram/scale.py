"""Inference-time scaling (`python -m gram scale`): accuracy and coverage against width (N sampled
trajectories, picked by majority vote or by the LPRM value) and depth (supervision steps, or ACT halting), on
a checkpoint's held-out inputs. One draw (gram.evaluate.draw) of max(widths) trajectories to max(depths) steps per input serves every
cell of the table, ACT's included: width n reads the first n trajectories and depth d reads the record at step
d, so the curves are nested and an answer at (n, d) is the same trajectory's answer in every column.
Trajectory j of input i uses seed + i * N + j, as `gram.rollout.fold` folds them, so any cell can be replayed.
"""
from __future__ import annotations

import math

from .budget import check, rollout_cost
from .evaluate import curves, draw
from .rollout import HALT_AT

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
    from plotly.subplots import make_subplots

    from . import style as house

    fig = make_subplots(1, 3, subplot_titles=("accuracy vs width", "coverage vs width", "accuracy vs depth"))
    depths = list(dict.fromkeys(r["depth"] for r in rows))
    dash = {"vote": "solid", "lprm": "dash", "oracle": "dot"}
    for i, d in enumerate(depths):
        rs = [r for r in rows if r["depth"] == d]
        color = house.color(i)
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
                                 line=dict(color=house.INK, dash=style)), 1, 3)
    fig.update_xaxes(type="log", dtick=math.log10(2), title_text="trajectories N", row=1, col=1)
    fig.update_xaxes(type="log", dtick=math.log10(2), title_text="trajectories N", row=1, col=2)
    fig.update_xaxes(title_text="supervision steps", row=1, col=3)
    fig.update_yaxes(range=[0, 1.02])
    return house.apply(fig, title, height=480, width=1400, hovermode="x unified")
