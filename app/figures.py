"""Plotly figures for the pages. Each takes plain arrays/tensors and returns a go.Figure; none runs a model.

Boards are drawn per task family: N-Queens as a chessboard with per-cell P(queen) and queen glyphs,
Sudoku as a 9x9 digit grid, images (MNIST) as greyscale pixels, anything else as a strip of tokens.
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

FONT = "Inter, 'Source Sans Pro', 'Helvetica Neue', Arial, sans-serif"
INK = "#1f2937"
MUTED = "#6b7280"
GRAM = "#7c3aed"  # violet: GRAM
DET = "#f59e0b"  # amber: deterministic
VOTE = "#0ea5e9"
LPRM = "#10b981"
BAD = "#9ca3af"
QUALITATIVE = ["#7c3aed", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#ec4899", "#14b8a6", "#8b5cf6", "#84cc16",
               "#f97316", "#06b6d4", "#a855f7", "#22c55e", "#eab308", "#3b82f6", "#d946ef", "#64748b", "#b45309"]
PROB_SCALE = [[0, "#f8fafc"], [0.5, "#c4b5fd"], [1, "#5b21b6"]]
LATENT_SCALE = "RdBu_r"


def style(fig: go.Figure, title: str | None = None, height: int = 360, legend: bool = True) -> go.Figure:
    top = (40 if title else 10) + (30 if legend else 0)  # the title, then the legend row, then the plot
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=10, r=10, t=top, b=10),
                      font=dict(family=FONT, size=14, color=INK), showlegend=legend,
                      title=dict(text=title, x=0.01, y=1 - 12 / height, yref="container", yanchor="top",
                                 font=dict(size=17)) if title else None,
                      legend=dict(orientation="h", yanchor="bottom", y=1.01, x=0, xanchor="left"),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    return fig


def label_color(label: str, palette_index: dict | None = None) -> str:
    if label == "invalid":
        return BAD
    try:
        k = int(label.split()[-1]) - 1
    except ValueError:
        k = abs(hash(label))
    return QUALITATIVE[k % len(QUALITATIVE)]


# --- boards ---------------------------------------------------------------------------------
def grid_shape(task, S: int) -> tuple[int, int]:
    n = getattr(task, "n", None)
    if n and n * n == S:
        return n, n
    side = getattr(task, "image_side", 0)
    if side and side * side == S:
        return side, side
    r = int(math.isqrt(S))
    return (r, r) if r * r == S else (1, S)


def _kind(task) -> str:
    name = getattr(task, "name", "")
    if name.startswith("nqueens"):
        return "queens"
    if getattr(task, "codec", "") == "patch" or name.startswith("mnist"):
        return "image"
    if name.startswith("sudoku"):
        return "sudoku"
    return "tokens"


def _board_traces(task, pred, probs=None, given=None, showscale=False):
    """Traces for one board: pred (S,) tokens, probs (S, V) or None, given (S,) input tokens or None."""
    pred = np.asarray(pred)
    S = len(pred)
    rows, cols = grid_shape(task, S)
    kind = _kind(task)
    traces = []
    if kind == "queens":
        pq = np.asarray(probs, dtype=np.float32)[:, 2] if probs is not None else (pred == 2).astype(np.float32)
        z = pq.reshape(rows, cols)
        checker = (np.add.outer(np.arange(rows), np.arange(cols)) % 2) * 0.04
        traces.append(go.Heatmap(z=z + checker * (z < 0.05), zmin=0, zmax=1, colorscale=PROB_SCALE, showscale=showscale,
                                 colorbar=dict(title="P(queen)", thickness=10, len=0.8) if showscale else None,
                                 customdata=z, hovertemplate="row %{y}, col %{x}<br>P(queen) = %{customdata:.2f}<extra></extra>",
                                 xgap=1.5, ygap=1.5))
        q = np.nonzero(pred == 2)[0]
        g = set(np.nonzero(np.asarray(given) == 2)[0].tolist()) if given is not None else set()
        new = [i for i in q if i not in g]
        old = sorted(g)  # the given queens are part of the puzzle: always drawn
        for cells, color, name in ((new, "#111827", "placed"), (old, "#b45309", "given")):
            if cells:
                traces.append(go.Scatter(x=[i % cols for i in cells], y=[i // cols for i in cells], mode="text",
                                         text=["\u265b"] * len(cells), textfont=dict(size=22, color=color),
                                         hoverinfo="skip", name=name, showlegend=False))
        return traces, rows, cols
    if kind == "image":
        if probs is not None and np.asarray(probs).shape[-1] >= 3:
            z = np.asarray(probs, dtype=np.float32)[:, 2]
        else:
            z = (pred == pred.max()).astype(np.float32) if pred.max() > 0 else pred.astype(np.float32)
        traces.append(go.Heatmap(z=z.reshape(rows, cols), zmin=0, zmax=1, colorscale="Greys", showscale=False,
                                 hoverinfo="skip"))
        return traces, rows, cols
    conf = np.asarray(probs, dtype=np.float32).max(-1) if probs is not None else np.ones(S, np.float32)
    text = [str(int(t) - 1) if kind == "sudoku" and int(t) > 1 else ("" if kind == "sudoku" else str(int(t)))
            for t in pred]
    gv = np.asarray(given) if given is not None else np.zeros(S)
    traces.append(go.Heatmap(z=conf.reshape(rows, cols), zmin=0, zmax=1, colorscale=PROB_SCALE, showscale=showscale,
                             hovertemplate="confidence %{z:.2f}<extra></extra>", xgap=1, ygap=1))
    traces.append(go.Scatter(x=[i % cols for i in range(S)], y=[i // cols for i in range(S)], mode="text",
                             text=text, hoverinfo="skip", showlegend=False,
                             textfont=dict(size=14, color=["#b45309" if gv[i] > 1 else INK for i in range(S)])))
    return traces, rows, cols


def _board_axes(fig, rows, cols, row=None, col=None, kind="queens"):
    kw = {} if row is None else dict(row=row, col=col)
    fig.update_xaxes(showgrid=False, zeroline=False, showticklabels=False, range=[-0.5, cols - 0.5],
                     constrain="domain", **kw)
    fig.update_yaxes(showgrid=False, zeroline=False, showticklabels=False, range=[rows - 0.5, -0.5],
                     scaleanchor="x" if row is None else None, **kw)


def board(task, pred, probs=None, given=None, title=None, height=360, showscale=True) -> go.Figure:
    traces, rows, cols = _board_traces(task, pred, probs, given, showscale=showscale)
    fig = go.Figure(traces)
    _board_axes(fig, rows, cols)
    return style(fig, title, height=height, legend=False)


def board_grid(task, boards: list, titles: list[str] | None = None, given=None, probs: list | None = None,
               ncols: int = 6, height_per_row: int = 150, title=None) -> go.Figure:
    """Small multiples: many boards (e.g. a gallery of solutions, or one sample per cell of a grid)."""
    n = max(1, len(boards))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.08 if titles else 0.02)
    for i, b in enumerate(boards):
        r, c = i // ncols + 1, i % ncols + 1
        traces, rows, cols = _board_traces(task, b, None if probs is None else probs[i], given)
        for t in traces:
            fig.add_trace(t, row=r, col=c)
        _board_axes(fig, rows, cols, r, c)
    for i in range(1, nrows * ncols + 1):
        fig.layout[f"yaxis{'' if i == 1 else i}"].scaleanchor = f"x{'' if i == 1 else i}"
    fig.update_annotations(font=dict(size=12, color=MUTED))
    return style(fig, title, height=max(180, nrows * height_per_row + (50 if title else 10)), legend=False)


# --- latents --------------------------------------------------------------------------------
def latent_heatmap(h, title: str, diff: bool = False, height: int = 300, zmax: float | None = None) -> go.Figure:
    """h (L, D): positions down, latent dims across."""
    h = np.asarray(h, dtype=np.float32)
    zmax = zmax or float(np.percentile(np.abs(h), 99) or 1.0)
    fig = go.Figure(go.Heatmap(z=h, zmin=-zmax, zmax=zmax, colorscale="PuOr_r" if diff else LATENT_SCALE,
                               colorbar=dict(thickness=10, len=0.8),
                               hovertemplate="position %{y}, dim %{x}: %{z:.2f}<extra></extra>"))
    fig.update_xaxes(title="latent dimension", showgrid=False)
    fig.update_yaxes(title="position (cell)", showgrid=False, autorange="reversed")
    return style(fig, title, height=height, legend=False)


def step_lines(x_labels: list[str], series: dict[str, np.ndarray], current: int | None, title: str,
               ytitle: str = "", yrange=(0, 1), colors: dict | None = None, height: int = 280) -> go.Figure:
    fig = go.Figure()
    for i, (name, y) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(range(len(y))), y=np.asarray(y, dtype=np.float32), mode="lines+markers",
                                 name=name, line=dict(width=3, color=(colors or {}).get(name, QUALITATIVE[i])),
                                 marker=dict(size=5), customdata=x_labels,
                                 hovertemplate="step %{customdata}: %{y:.3f}<extra>" + name + "</extra>"))
    if current is not None:
        fig.add_vline(x=current, line=dict(color=INK, width=2, dash="dot"))
    n = len(x_labels)
    every = max(1, n // 10)
    fig.update_xaxes(title="step (supervision.transition)", tickvals=list(range(0, n, every)),
                     ticktext=x_labels[::every], showgrid=False)
    fig.update_yaxes(title=ytitle, range=list(yrange) if yrange else None)
    return style(fig, title, height=height)


# --- trajectories ---------------------------------------------------------------------------
def pca_figure(coords: np.ndarray, explained: np.ndarray, labels: list[str], step: int, dims: int = 2,
               selected: int | None = None, title: str = "", height: int = 520) -> go.Figure:
    """coords (R, N, k): one line per trajectory coloured by its final answer, a marker at `step`."""
    R, N, k = coords.shape
    dims = min(dims, k)
    fig = go.Figure()
    shown = set()
    order = sorted(range(N), key=lambda j: (labels[j] != "invalid", j))  # invalid first, drawn underneath
    for j in order:
        lab = labels[j]
        col = label_color(lab)
        first = lab not in shown
        shown.add(lab)
        width = 5 if j == selected else 1.6
        opacity = 1.0 if (selected is None or j == selected) else 0.55
        common = dict(mode="lines", name=lab, legendgroup=lab, showlegend=first, opacity=opacity,
                      line=dict(color=col, width=width), hovertemplate=f"trajectory {j}: {lab}<extra></extra>")
        if dims == 3:
            fig.add_trace(go.Scatter3d(x=coords[:, j, 0], y=coords[:, j, 1], z=coords[:, j, 2], **common))
        else:
            fig.add_trace(go.Scatter(x=coords[:, j, 0], y=coords[:, j, 1], **common))
    s = max(0, min(step, R - 1))
    mk = dict(size=[14 if j == selected else 8 for j in range(N)], color=[label_color(labels[j]) for j in range(N)],
              line=dict(color=INK, width=1.5))
    name = f"step {s + 1}"
    if dims == 3:
        mk["size"] = [8 if j == selected else 4 for j in range(N)]
        fig.add_trace(go.Scatter3d(x=coords[s, :, 0], y=coords[s, :, 1], z=coords[s, :, 2], mode="markers", marker=mk,
                                   name=name, customdata=list(range(N)),
                                   hovertemplate="trajectory %{customdata}<extra></extra>"))
        fig.add_trace(go.Scatter3d(x=coords[:1, :, 0].ravel(), y=coords[:1, :, 1].ravel(), z=coords[:1, :, 2].ravel(),
                                   mode="markers", marker=dict(size=5, color=INK, symbol="diamond"), name="start"))
        ax = lambda i: f"PC{i + 1} ({100 * explained[i]:.1f}%)"
        fig.update_layout(scene=dict(xaxis_title=ax(0), yaxis_title=ax(1), zaxis_title=ax(2),
                                     aspectmode="cube"))
    else:
        fig.add_trace(go.Scatter(x=coords[s, :, 0], y=coords[s, :, 1], mode="markers", marker=mk, name=name,
                                 customdata=list(range(N)), hovertemplate="trajectory %{customdata}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[coords[0, :, 0].mean()], y=[coords[0, :, 1].mean()], mode="markers",
                                 marker=dict(size=12, color=INK, symbol="diamond"), name="start z0"))
        pad = lambda a: (float(a.min()) - 0.05 * float(np.ptp(a) or 1), float(a.max()) + 0.05 * float(np.ptp(a) or 1))
        fig.update_xaxes(title=f"PC1 ({100 * explained[0]:.1f}% of variance)", range=pad(coords[..., 0]), zeroline=False)
        fig.update_yaxes(title=f"PC2 ({100 * explained[1]:.1f}% of variance)" if k > 1 else "",
                         range=pad(coords[..., 1]) if k > 1 else None, zeroline=False)
    return style(fig, title, height=height)


# --- curves ---------------------------------------------------------------------------------
def curves(x, series: dict[str, list], title: str, xtitle: str, ytitle: str, colors: dict | None = None,
           log_x: bool = False, yrange=None, height: int = 340, dash: dict | None = None) -> go.Figure:
    fig = go.Figure()
    for i, (name, y) in enumerate(series.items()):
        xs = x[name] if isinstance(x, dict) else x
        fig.add_trace(go.Scatter(x=list(xs), y=list(y), mode="lines+markers", name=name,
                                 line=dict(width=3, color=(colors or {}).get(name, QUALITATIVE[i % len(QUALITATIVE)]),
                                           dash=(dash or {}).get(name, "solid")), marker=dict(size=7)))
    xs_all = sorted({v for name in series for v in (x[name] if isinstance(x, dict) else x)})
    fig.update_xaxes(title=xtitle, type="log" if log_x else "linear",
                     tickvals=xs_all if log_x else None, ticktext=[str(v) for v in xs_all] if log_x else None)
    fig.update_yaxes(title=ytitle, range=list(yrange) if yrange else None)
    return style(fig, title, height=height)


def training_figure(history: list[dict]) -> go.Figure:
    """Loss, true KL and accuracies against optimiser steps (two rows, shared x)."""
    steps = [r for r in history if "loss" in r]
    evals = [r for r in history if "prior_accuracy" in r]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss and true KL (nats/position)", "accuracy"),
                        horizontal_spacing=0.1)
    if steps:
        xs = [r["step"] for r in steps]
        fig.add_trace(go.Scatter(x=xs, y=_smooth([r["loss"] for r in steps]), name="loss", line=dict(color=INK, width=2.5)),
                      row=1, col=1)
        if "ce" in steps[0]:
            fig.add_trace(go.Scatter(x=xs, y=_smooth([r["ce"] for r in steps]), name="cross-entropy",
                                     line=dict(color=VOTE, width=2)), row=1, col=1)
        if any("kl" in r for r in steps):
            fig.add_trace(go.Scatter(x=xs, y=_smooth([r.get("kl", np.nan) for r in steps]), name="true KL",
                                     line=dict(color=GRAM, width=2, dash="dot")), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=_smooth([r["train_accuracy"] for r in steps]), name="train acc (posterior)",
                                 line=dict(color=GRAM, width=2)), row=1, col=2)
        if any("train_prior_accuracy" in r for r in steps):
            fig.add_trace(go.Scatter(x=xs, y=_smooth([r.get("train_prior_accuracy", np.nan) for r in steps]),
                                     name="train acc (prior)", line=dict(color=DET, width=2)), row=1, col=2)
    if evals:
        xs = [r["step"] for r in evals]
        fig.add_trace(go.Scatter(x=xs, y=[r["prior_accuracy"] for r in evals], name="held-out prior acc",
                                 mode="lines+markers", line=dict(color=LPRM, width=3), marker=dict(size=8)), row=1, col=2)
        fig.add_trace(go.Scatter(x=xs, y=[r.get("posterior_accuracy", np.nan) for r in evals],
                                 name="held-out posterior acc", mode="lines+markers",
                                 line=dict(color=GRAM, width=2, dash="dash"), marker=dict(size=7)), row=1, col=2)
    fig.update_xaxes(title="optimiser step")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    style(fig, None, height=420)
    fig.update_layout(margin=dict(t=40, b=10), legend=dict(orientation="h", yanchor="top", y=-0.18, x=0, xanchor="left"))
    return fig


def _smooth(y: list, k: int = 9) -> list:
    if len(y) < k:
        return y
    a = np.asarray(y, dtype=np.float64)
    out = np.convolve(np.nan_to_num(a), np.ones(k) / k, mode="valid")
    return list(np.concatenate([a[: k - 1], out]))


def disagreement_bars(n_same: int, n_vote_only: int, n_lprm_only: int, n_both_wrong: int) -> go.Figure:
    cats = ["both right", "only vote right", "only LPRM right", "both wrong"]
    vals = [n_same, n_vote_only, n_lprm_only, n_both_wrong]
    fig = go.Figure(go.Bar(x=cats, y=vals, marker_color=[LPRM, VOTE, GRAM, BAD], text=vals, textposition="auto"))
    fig.update_yaxes(title="puzzles")
    return style(fig, "what the two selectors pick, puzzle by puzzle", height=300, legend=False)


def animated_grid(task, probs_seq, step_names: list[str], ncols: int = 4, title: str | None = None,
                  height_per_row: int = 170) -> go.Figure:
    """An animation over recursion depth: probs_seq (R, N, S, V), one heat-map panel per sample, one frame per
    step, with play/pause buttons and a step slider (Plotly frames: runs in the browser, no server round trip)."""
    probs_seq = np.asarray(probs_seq, dtype=np.float32)
    R, N, S, V = probs_seq.shape
    rows, cols = grid_shape(task, S)
    kind = _kind(task)
    chan = 2 if kind in ("queens", "image") and V > 2 else None

    def z(r, j):
        p = probs_seq[r, j]
        v = p[:, chan] if chan is not None else p.argmax(-1) / max(1, V - 1)
        return v.reshape(rows, cols)

    ncols = min(ncols, N)
    nrows = math.ceil(N / ncols)
    fig = make_subplots(rows=nrows, cols=ncols, horizontal_spacing=0.02, vertical_spacing=0.03)
    scale = "Greys" if kind == "image" else PROB_SCALE
    for j in range(N):
        fig.add_trace(go.Heatmap(z=z(0, j), zmin=0, zmax=1, colorscale=scale, showscale=False, xgap=1 if kind != "image" else 0,
                                 ygap=1 if kind != "image" else 0, hoverinfo="skip"), row=j // ncols + 1, col=j % ncols + 1)
        _board_axes(fig, rows, cols, j // ncols + 1, j % ncols + 1)
    fig.frames = [go.Frame(data=[go.Heatmap(z=z(r, j)) for j in range(N)], name=step_names[r]) for r in range(R)]
    fig.update_layout(
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.02, xanchor="left", yanchor="top",
                          direction="left", buttons=[
                              dict(label="\u25b6 play", method="animate",
                                   args=[None, dict(frame=dict(duration=350, redraw=True), fromcurrent=True)]),
                              dict(label="\u23f8 pause", method="animate",
                                   args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")])])],
        sliders=[dict(active=0, x=0.18, len=0.82, y=-0.02, yanchor="top", currentvalue=dict(prefix="step "),
                      steps=[dict(method="animate", label=s, args=[[s], dict(mode="immediate", frame=dict(duration=0,
                                                                                                          redraw=True))])
                             for s in step_names])])
    for i in range(1, nrows * ncols + 1):
        fig.layout[f"yaxis{'' if i == 1 else i}"].scaleanchor = f"x{'' if i == 1 else i}"
    return style(fig, title, height=nrows * height_per_row + 110, legend=False)
