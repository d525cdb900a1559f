"""Plotly figures for the pages. Each takes plain arrays/tensors and returns a go.Figure; none runs a model.

Boards are drawn per task as people know it (`board_traces`, one place, read by every figure and by the
stepping figures of app.stepfig).
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from gram import style as house
from gram.style import BAD, DET, FONT, GRAM, INK, LPRM, MUTED, VOTE  # noqa: F401 (the pages' colours)

PROB_SCALE = [[0, "#f8fafc"], [0.5, "#c4b5fd"], [1, "#5b21b6"]]
LATENT_SCALE = "RdBu_r"


# the house template as every figure's default, set once (gram.style.apply then skips naming it per figure)
pio.templates.default = house.TEMPLATE
TEMPLATE = pio.templates[house.TEMPLATE].to_plotly_json()  # the same for Spec figures


def _compact(title: str | None, legend: bool) -> dict:
    """A page's figure: thin margins, a clear background, the legend in a row above the plot."""
    top = (40 if title else 10) + (30 if legend else 0)  # the title, then the legend row, then the plot
    return {"margin": {"l": 10, "r": 10, "t": top, "b": 10}, "showlegend": legend,
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            **({"legend": {"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0, "xanchor": "left"}}
               if legend else {})}


def style(fig: go.Figure, title: str | None = None, height: int = 360, legend: bool = True) -> go.Figure:
    return house.apply(fig, title, height, **_compact(title, legend))


class Spec(go.Figure):
    """A figure made of plain dicts (board views here, the stepping figures of app.stepfig; tests check them
    against Plotly's schema). st.plotly_chart validates a dict by building a Figure from it, which for a gallery
    of 24 boards or a view of 48 frames costs more than the rollout (docs/recipe.md); a Figure it passes on as its
    to_dict()."""

    def __init__(self, spec: dict):
        super().__init__()
        self._spec = spec  # go.Figure refuses public attributes it does not know

    @property
    def spec(self) -> dict:
        return self._spec

    def to_dict(self) -> dict:
        return self._spec


def layout(title: str | None = None, height: int = 360) -> dict:
    """style()'s layout as a dict, for Spec figures (no legend)."""
    return {"template": TEMPLATE, **house.layout(title, height, **_compact(title, False))}


def board_axes(lay: dict, k: int, xdom, ydom, ranges: tuple[list, list]) -> tuple[str, str]:
    """Axes x{k}/y{k} of a dict layout for a board in the given domains, with square cells."""
    xs = "" if k == 1 else str(k)
    lay[f"xaxis{xs}"] = {"domain": list(xdom), "anchor": f"y{xs}", "showgrid": False, "zeroline": False,
                         "showticklabels": False, "range": ranges[0], "constrain": "domain"}
    lay[f"yaxis{xs}"] = {"domain": list(ydom), "anchor": f"x{xs}", "showgrid": False, "zeroline": False,
                         "showticklabels": False, "range": ranges[1], "scaleanchor": f"x{xs}", "constrain": "domain"}
    return f"x{xs}", f"y{xs}"


def panel_title(text: str, xdom, ytop: float, size: int = 13, color: str = INK) -> dict:
    """A panel's title as a layout annotation, centred above its domain."""
    return {"text": text, "x": (xdom[0] + xdom[1]) / 2, "y": ytop, "xref": "paper", "yref": "paper",
            "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": size, "color": color}}


def label_color(label: str, palette_index: dict | None = None) -> str:
    if label == "invalid":
        return BAD
    try:
        k = int(label.split()[-1]) - 1
    except ValueError:
        k = abs(hash(label))
    return house.color(k)


# --- boards: one drawing per kind of task (Task.board), as trace dicts ------------------------------
# Plotly.js knows only a few colour scales by name (Python expands the others when it validates, which the
# stepping figures skip), so every scale here is explicit
PALE = [[0, "#ffffff"], [1, "#ddd6fe"]]  # Sudoku confidence: light enough for the digits on top
GREYS = [[0, "#ffffff"], [1, "#000000"]]
CLASH = "#dc2626"  # a cell, queen or edge that breaks a rule
GIVEN = "#b45309"
NODE_COLOURS = ["#7c3aed", "#0ea5e9", "#f59e0b"]  # graph colouring's three colours
ARC_PALETTE = ["#000000", "#0074d9", "#ff4136", "#2ecc40", "#ffdc00", "#aaaaaa", "#f012be", "#ff851b", "#7fdbff",
               "#870c25"]  # the ARC-AGI colours 0-9


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
    return getattr(task, "board", "tokens")


def board_ranges(task, S: int) -> tuple[list, list]:
    """x and y axis ranges of a board (y downwards: row 0 on top)."""
    if _kind(task) == "graph":
        return [-1.3, 1.3], [1.3, -1.3]
    rows, cols = grid_shape(task, S)
    return [-0.5, cols - 0.5], [rows - 0.5, -0.5]


def _r(a, nd: int = 3):
    """Rounded plain lists: JSON numbers, not 17-digit floats (a stepping figure carries many)."""
    return np.round(np.asarray(a, dtype=np.float64), nd).tolist()


def _clashes(task, pred, given) -> np.ndarray:
    import torch

    if given is None or not hasattr(task, "clashes") or _uncoloured_input(task, pred, given):
        return np.zeros(len(pred), bool)
    return task.clashes(torch.as_tensor(np.asarray(given)), torch.as_tensor(np.asarray(pred))).numpy()


def _uncoloured_input(task, pred, given) -> bool:
    """A graph drawn as its own input (the Tour's puzzle, the editor): it has no colours yet, so nothing clashes.
    Other tasks' inputs can break a rule (two given queens on a line) and are drawn so."""
    return _kind(task) == "graph" and np.array_equal(np.asarray(pred), np.asarray(given))


def _attacks(queens: list[int], cols: int) -> tuple[list, list]:
    """Line segments (x, y with None between) along every row, column and diagonal that holds more than one of
    the queens (cell indices), from its first queen to its last: the lines along which they attack."""
    on: dict = {}
    for i in queens:
        r, c = divmod(i, cols)
        for line in (("row", r), ("col", c), ("diag", r - c), ("anti", r + c)):
            on.setdefault(line, []).append((c, r))
    xs, ys = [], []
    for cells in on.values():
        if len(cells) > 1:
            (x0, y0), (x1, y1) = min(cells), max(cells)
            xs += [x0, x1, None]
            ys += [y0, y1, None]
    return xs, ys


def board_traces(task, pred, probs=None, given=None, xa: str = "x", ya: str = "y") -> list[dict]:
    """One board as trace dicts on axes (xa, ya), drawn as people know the task (Task.board): N-Queens as a
    chessboard with P(queen) and the queens (given amber, attacking red, with the lines they attack along), Sudoku as digits (given amber, clashing
    red) over the decoder's confidence, graph colouring as the graph (nodes in their colours, clashing edges
    red), images in grey, ARC grids in the ARC palette. Always the same number of traces for a task, so that
    animation frames can replace them."""
    pred = np.asarray(pred)
    S = len(pred)
    rows, cols = grid_shape(task, S)
    kind = _kind(task)
    ax = {"xaxis": xa, "yaxis": ya}
    bad = _clashes(task, pred, given)
    if kind == "queens":
        pq = np.asarray(probs, dtype=np.float32)[:, 2] if probs is not None else (pred == 2).astype(np.float32)
        z = pq.reshape(rows, cols)
        checker = (np.add.outer(np.arange(rows), np.arange(cols)) % 2) * 0.04
        g = set(np.nonzero(np.asarray(given) == 2)[0].tolist()) if given is not None else set()
        q = np.nonzero(pred == 2)[0].tolist()
        glyphs = lambda cells: {"type": "scatter", "mode": "text", "x": [i % cols for i in cells],
                                "y": [i // cols for i in cells], "text": ["\u265b"] * len(cells),
                                "textfont": {"size": 20, "color": [CLASH if bad[i] else GIVEN if i in g else "#111827"
                                                                   for i in cells]},
                                "hoverinfo": "skip", "showlegend": False, **ax}
        lx, ly = _attacks(q, cols)
        return [{"type": "heatmap", "z": _r(z + checker * (z < 0.05)), "zmin": 0, "zmax": 1, "colorscale": PROB_SCALE,
                 "showscale": False, "customdata": _r(z, 2), "xgap": 1.5, "ygap": 1.5,
                 "hovertemplate": "P(queen) = %{customdata:.2f}<extra></extra>", **ax},
                glyphs(q),  # the queens second: the browser test reads them there
                {"type": "scatter", "mode": "lines", "x": lx, "y": ly, "line": {"color": CLASH, "width": 3},
                 "opacity": 0.45, "hoverinfo": "skip", "showlegend": False, **ax}]
    if kind == "image":
        # token 2 is a pixel on (P(on) is its column); a blank input (all PAD) is a white canvas
        z = (np.asarray(probs, dtype=np.float32)[:, 2] if probs is not None and np.asarray(probs).shape[-1] >= 3
             else (pred == 2).astype(np.float32))
        return [{"type": "heatmap", "z": _r(z.reshape(rows, cols), 2), "zmin": 0, "zmax": 1, "colorscale": GREYS,
                 "showscale": False, "hoverinfo": "skip", **ax}]
    if kind == "graph":
        n, n_pairs = task.n, task.n_pairs
        angle = 2 * np.pi * np.arange(n) / n - np.pi / 2  # a fixed circle: the same place for a node at every step
        px, py = np.cos(angle), np.sin(angle)
        import torch

        gx = None if given is None else torch.as_tensor(np.asarray(given))
        edges = task.edges(gx) if gx is not None else []
        clash = [] if gx is None or _uncoloured_input(task, pred, given) else \
            [tuple(e) for e in task.clash_edges(gx, torch.as_tensor(pred)).T.tolist()]
        slot = pred[n_pairs:]
        colour = [int(t) - 4 if 4 <= int(t) < 4 + len(NODE_COLOURS) else -1 for t in slot]

        def lines(pairs, color, width):
            xs, ys = [], []
            for i, j in pairs:
                xs += [float(px[i]), float(px[j]), None]
                ys += [float(py[i]), float(py[j]), None]
            return {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "line": {"color": color, "width": width},
                    "hoverinfo": "skip", "showlegend": False, **ax}

        conf = np.asarray(probs, dtype=np.float32)[n_pairs:].max(-1) if probs is not None else np.ones(n)
        return [lines(edges, "#cbd5e1", 2), lines(clash, CLASH, 4),
                {"type": "scatter", "mode": "markers+text", "x": _r(px), "y": _r(py), "text": [str(k) for k in range(n)],
                 "textfont": {"color": ["white" if c >= 0 else INK for c in colour], "size": 12},
                 "customdata": _r(conf, 2), "showlegend": False,
                 "marker": {"size": 26, "color": [NODE_COLOURS[c] if c >= 0 else "#e5e7eb" for c in colour],
                            "opacity": [float(0.35 + 0.65 * c) for c in conf],
                            "line": {"width": [3 if bad[n_pairs + k] else 1 for k in range(n)],
                                     "color": [CLASH if bad[n_pairs + k] else "#111827" for k in range(n)]}},
                 "hovertemplate": "node %{text}: confidence %{customdata:.2f}<extra></extra>", **ax}]
    if kind == "grid":
        z = np.where(pred >= 2, pred - 2, np.nan).reshape(rows, cols)
        scale = [[k / 9, c] for k, c in enumerate(ARC_PALETTE)]
        return [{"type": "heatmap", "z": [[None if v != v else int(v) for v in row] for row in z], "zmin": 0, "zmax": 9,
                 "colorscale": scale, "showscale": False, "xgap": 0.5, "ygap": 0.5,
                 "hovertemplate": "colour %{z}<extra></extra>", **ax}]
    conf = np.asarray(probs, dtype=np.float32).max(-1) if probs is not None else np.ones(S, np.float32)
    sudoku = kind == "sudoku"
    text = [(str(int(t) - 1) if int(t) > 1 else "") if sudoku else str(int(t)) for t in pred]
    gv = np.asarray(given) if given is not None else np.zeros(S)
    return [{"type": "heatmap", "z": _r(conf.reshape(rows, cols), 2), "zmin": 0, "zmax": 1,
             "colorscale": PALE if sudoku else PROB_SCALE, "showscale": False, "xgap": 1, "ygap": 1,
             "hovertemplate": "confidence %{z:.2f}<extra></extra>", **ax},
            {"type": "scatter", "mode": "text", "x": [i % cols for i in range(S)], "y": [i // cols for i in range(S)],
             "text": text, "hoverinfo": "skip", "showlegend": False,
             "textfont": {"size": 13, "color": [CLASH if bad[i] else GIVEN if gv[i] > 1 else INK for i in range(S)]},
             **ax}]


def board(task, pred, probs=None, given=None, title=None, height=360, showscale=True) -> Spec:
    lay = layout(title, height)
    xa, ya = board_axes(lay, 1, [0, 1], [0, 1], board_ranges(task, len(pred)))
    return Spec({"data": board_traces(task, pred, probs, given, xa, ya), "layout": lay})


def board_editor(task, x, pending: int | None = None, height: int = 380) -> Spec:
    """The input x as a board with a click target on every cell (on every node of a graph): clicking one selects
    it, which the page turns into an edit (Task.edit). Cells that break a rule are drawn red."""
    x = np.asarray(x)
    fig = board(task, x, None, x, height=height, showscale=False)
    if _kind(task) == "graph":
        angle = 2 * np.pi * np.arange(task.n) / task.n - np.pi / 2
        px, py, ids = np.cos(angle), np.sin(angle), list(range(task.n))
        size = [40 if k == pending else 30 for k in ids]
        line = [4 if k == pending else 0 for k in ids]
    else:
        rows, cols = grid_shape(task, len(x))
        ids = list(range(len(x)))
        px, py = np.array([i % cols for i in ids]), np.array([i // cols for i in ids])
        size, line = 34 if len(x) <= 64 else 24, 0
    fig.spec["data"].append({"type": "scatter", "x": _r(px), "y": _r(py), "mode": "markers", "customdata": ids,
                             "showlegend": False, "hovertemplate": "click to edit<extra></extra>",
                             "marker": {"size": size, "color": "rgba(0,0,0,0.01)",
                                        "line": {"width": line, "color": CLASH}}})
    fig.spec["layout"].update(clickmode="event+select", dragmode=False)
    return fig


def place(traces: list[dict], ranges: tuple[list, list], at: tuple[float, float], scale: float = 1.0) -> list[dict]:
    """A board's traces, drawn in its own coordinates (its axis `ranges`, y downwards), moved onto a shared axis
    pair: scaled by `scale`, its top-left corner at `at`. Many boards on one axis pair draw several times faster
    than a subplot each (docs/recipe.md)."""
    (x0, _), (_, y0) = ranges

    def move(v, origin: float, start: float):
        a = np.round(start + (np.asarray(v, dtype=np.float64) - origin) * scale, 4)  # None (a line's break): nan
        return a.item() if a.ndim == 0 else [None if u != u else u for u in a.tolist()]

    out = []
    for t in traces:
        t = dict(t)
        if t["type"] == "heatmap":  # cell k's centre at x0 + k dx
            t.update(x0=move(t.get("x0", 0), x0, at[0]), y0=move(t.get("y0", 0), y0, at[1]),
                     dx=t.get("dx", 1) * scale, dy=t.get("dy", 1) * scale)
        else:
            t.update(x=move(t["x"], x0, at[0]), y=move(t["y"], y0, at[1]))
        out.append(t)
    return out


class Mosaic:
    """Slots of one size on the axis pair x/y, in rows of `ncols`, with room for a title above each: the layout of
    a gallery (and of the stepping figures' rows of boards). `box(k)` is slot k's top-left corner, `title(k, text)`
    its title as an annotation in data coordinates."""

    def __init__(self, lay: dict, n: int, ncols: int, size: tuple[float, float], xdom, ydom, titled: bool = True,
                 gap: float = 0.12):
        self.ncols = max(1, min(ncols, n))
        nrows = math.ceil(max(1, n) / self.ncols)
        self.w, self.h = size
        self.gx, self.gy = gap * self.w, (0.3 if titled else gap) * self.h
        self.top = self.gy if titled else 0.0
        lay["xaxis"] = {"domain": list(xdom), "anchor": "y", "visible": False, "constrain": "domain",
                        "range": [-self.gx / 2, self.ncols * (self.w + self.gx) - self.gx / 2]}
        # y downwards, as on every board; the slots keep their shape and sit at the top of the domain
        lay["yaxis"] = {"domain": list(ydom), "anchor": "x", "visible": False, "constrain": "domain",
                        "constraintoward": "top", "scaleanchor": "x",
                        "range": [self.top + nrows * (self.h + self.gy) - self.gy / 2, 0]}

    def box(self, k: int) -> tuple[float, float]:
        r, c = divmod(k, self.ncols)
        return c * (self.w + self.gx), self.top + r * (self.h + self.gy)

    def title(self, k: int, text: str, size: int = 12, color: str = MUTED) -> dict:
        x, y = self.box(k)
        return {"text": text, "x": x + self.w / 2, "y": y, "xref": "x", "yref": "y", "xanchor": "center",
                "yanchor": "bottom", "showarrow": False, "font": {"size": size, "color": color}}


def board_size(task, S: int) -> tuple[float, float]:
    """A board's width and height in its own coordinates."""
    (x0, x1), (y1, y0) = board_ranges(task, S)
    return x1 - x0, y1 - y0


def board_grid(task, boards: list, titles: list[str] | None = None, given=None, probs: list | None = None,
               ncols: int = 6, height_per_row: int = 150, title=None) -> Spec:
    """Small multiples: many boards (e.g. a gallery of solutions, or one sample per cell of a grid), on one axis
    pair."""
    n = max(1, len(boards))
    nrows = math.ceil(n / min(ncols, n))
    lay = layout(title, max(180, nrows * height_per_row + (50 if title else 10)))
    S = len(boards[0]) if len(boards) else task.seq_len
    grid = Mosaic(lay, n, ncols, board_size(task, S), [0, 1], [0, 1], titled=bool(titles))
    data = []
    for i, b in enumerate(boards):
        data += place(board_traces(task, b, None if probs is None else probs[i], given), board_ranges(task, len(b)),
                      grid.box(i))
    lay["annotations"] = [grid.title(i, t) for i, t in enumerate(titles or [])]
    return Spec({"data": data, "layout": lay})


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
                                 name=name, line=dict(width=3, color=(colors or {}).get(name, house.color(i))),
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
                                 line=dict(width=3, color=(colors or {}).get(name, house.color(i)),
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


# --- commitment ---------------------------------------------------------------------------------------
def answer_sankey(flow: dict, step_names: list[str], title: str, height: int = 380) -> go.Figure:
    """gram.analysis.answer_flow as a Sankey: columns are record points, bands are trajectories."""
    records = sorted({n["record"] for n in flow["nodes"]})
    col = {r: k / max(1, len(records) - 1) for k, r in enumerate(records)}
    nodes = flow["nodes"]
    fig = go.Figure(go.Sankey(
        arrangement="snap",
        node=dict(label=[f"{n['label']} ({n['count']})" for n in nodes], pad=12, thickness=14,
                  x=[0.001 + 0.998 * col[n["record"]] for n in nodes],
                  color=[label_color(n["label"]) if n["label"] != "not valid yet" else BAD for n in nodes],
                  customdata=[step_names[n["record"]] for n in nodes],
                  hovertemplate="step %{customdata}: %{label}<extra></extra>"),
        link=dict(source=[lk["source"] for lk in flow["links"]], target=[lk["target"] for lk in flow["links"]],
                  value=[lk["value"] for lk in flow["links"]], color="rgba(124,58,237,0.18)")))
    for r in records:
        fig.add_annotation(x=col[r], y=-0.02, yanchor="top", xref="paper", yref="paper", text=f"step {step_names[r]}",
                           showarrow=False, font=dict(size=12, color=MUTED))
    style(fig, title, height=height, legend=False)
    fig.update_layout(margin=dict(b=34))
    return fig


def commit_strip(steps: np.ndarray, labels: list[str], step_names: list[str], title: str, height: int = 260) -> go.Figure:
    """A dot per answer and step at which trajectories ending on that answer stopped changing it, coloured by
    the answer, its area growing with how many did (many samples share few steps)."""
    groups: dict = {}
    for j in np.argsort(steps, kind="stable"):
        groups.setdefault((labels[j], int(steps[j])), []).append(int(j))
    keys = list(groups)
    fig = go.Figure(go.Scatter(x=[k[1] for k in keys], y=[k[0] for k in keys], mode="markers",
                               marker=dict(size=[9 + 4 * math.sqrt(len(groups[k]) - 1) for k in keys],
                                           color=[label_color(k[0]) for k in keys], line=dict(color=INK, width=1)),
                               customdata=[[len(groups[k]), step_names[k[1]], ", ".join(map(str, groups[k][:12]))
                                            + (" ..." if len(groups[k]) > 12 else "")] for k in keys],
                               hovertemplate="%{customdata[0]} settle at step %{customdata[1]}: "
                                             "trajectories %{customdata[2]}<extra></extra>"))
    n = len(step_names)
    every = max(1, n // 10)
    fig.update_xaxes(title="step its answer stops changing", range=[-0.5, n - 0.5], tickvals=list(range(0, n, every)),
                     ticktext=step_names[::every])
    fig.update_yaxes(title="", type="category")
    return style(fig, title, height=height, legend=False)


def disagreement_map(d: np.ndarray, step_names: list[str], title: str, height: int = 300) -> go.Figure:
    """gram.analysis.disagreement (R, S): steps down, cells across."""
    fig = go.Figure(go.Heatmap(z=_r(d, 2), zmin=0, zmax=float(max(0.05, d.max())), colorscale="Oranges",
                               colorbar=dict(thickness=10, len=0.8, title="split"),
                               y=step_names, hovertemplate="step %{y}, cell %{x}: %{z:.2f} disagree<extra></extra>"))
    fig.update_xaxes(title="cell (position in the answer)", showgrid=False)
    fig.update_yaxes(title="step", showgrid=False, autorange="reversed", type="category")
    return style(fig, title, height=height, legend=False)
