"""Plotly figures for the pages, as plain dicts (`Spec`). Each takes plain arrays/tensors; none runs a model.

Boards are drawn per task as people know it (`board_traces`, one place, read by every figure and by the
stepping figures of app.stepfig). The tests check every figure of every page against Plotly's schema.
"""
from __future__ import annotations

import base64
import io
import math
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go

from gram import style as house
from gram.style import BAD, DET, FONT, GRAM, INK, LPRM, MUTED, VOTE  # noqa: F401 (the pages' colours)

PROB_SCALE = [[0, "#f8fafc"], [0.5, "#c4b5fd"], [1, "#5b21b6"]]

TEMPLATE = house.APP_TEMPLATE
AXES_MARGIN = {"l": 62, "b": 52}  # room for tick labels and an axis title on the left and below


def _compact(title: str | None, legend: bool) -> dict:
    """A page's figure: thin margins, a clear background, the legend in a row above the plot."""
    top = (40 if title else 10) + (30 if legend else 0)  # the title, then the legend row, then the plot
    return {"margin": {"l": 10, "r": 10, "t": top, "b": 10}, "showlegend": legend,
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            **({"legend": {"orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0, "xanchor": "left"}}
               if legend else {})}


class Spec(go.Figure):
    """A figure made of plain dicts. st.plotly_chart validates a dict by building a Figure from it, which costs
    more than drawing it (a view of 48 frames: more than the rollout, docs/recipe.md); a Figure it passes on as its
    to_dict()."""

    def __init__(self, spec: dict):
        super().__init__()
        self._spec = spec  # go.Figure refuses public attributes it does not know

    @property
    def spec(self) -> dict:
        return self._spec

    def to_dict(self) -> dict:
        return self._spec


def layout(title: str | None = None, height: int = 360, legend: bool = False) -> dict:
    """The house layout of a page's figure."""
    return {"template": TEMPLATE, **house.layout(title, height, **_compact(title, legend))}


def figure(data: list[dict], title: str | None = None, height: int = 360, legend: bool = False,
           margin: dict | None = None, **fields) -> Spec:
    """A figure of trace dicts with the house layout; margin adds to its thin margins (AXES_MARGIN for axis
    titles), fields are more layout (axes, shapes, annotations)."""
    lay = layout(title, height, legend)
    lay["margin"].update(margin or {})
    lay.update(fields)
    return Spec({"data": data, "layout": lay})


def axis(title: str = "", **fields) -> dict:
    """An axis's layout: its title, and the fields that are not None."""
    return {**({"title": {"text": title}} if title else {}), **{k: v for k, v in fields.items() if v is not None}}


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


def label_color(label: str) -> str:
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


def board_traces(task, pred, probs=None, given=None, xa: str = "x", ya: str = "y", small: bool = False) -> list[dict]:
    """One board as trace dicts on axes (xa, ya), drawn as people know the task (Task.board): N-Queens as a
    chessboard with P(queen) and the queens (given amber, attacking red, with the lines they attack along), Sudoku as digits (given amber, clashing
    red) over the decoder's confidence, graph colouring as the graph (nodes in their colours, clashing edges
    red), images in grey, ARC grids in the ARC palette. Always the same number of traces for a task, so that
    animation frames can replace them. small: one board of many (Sudoku's digits drawn at fewer pixels)."""
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
    gv = np.asarray(given) if given is not None else np.zeros(S)
    colour = np.where(bad, 2, np.where(gv > 1, 1, 0))  # DIGIT_COLOURS: ink, given, clash
    cells = {"type": "heatmap", "z": _r(conf.reshape(rows, cols), 2), "zmin": 0, "zmax": 1, "showscale": False,
             "hovertemplate": "confidence %{z:.2f}<extra></extra>", **ax}
    if kind == "sudoku":  # token t is the digit t - 1 (1: blank); the drawing is an image, the cells above it only hover
        digits = np.where(pred > 1, pred - 1, 0).reshape(rows, cols)
        return [{**cells, "colorscale": CLEAR},
                sudoku_image(digits, colour.reshape(rows, cols), conf.reshape(rows, cols), DIGIT_PX[small], ax)]
    return [{**cells, "colorscale": PROB_SCALE, "xgap": 1, "ygap": 1},
            {"type": "scatter", "mode": "text", "x": [i % cols for i in range(S)], "y": [i // cols for i in range(S)],
             "text": [str(int(t)) for t in pred], "hoverinfo": "skip", "showlegend": False,
             "textfont": {"size": 13, "color": [DIGIT_COLOURS[c] for c in colour]}, **ax}]


# --- a Sudoku board as one small image ---------------------------------------------------------------------
# 81 digits as SVG text cost ~15 ms of every redraw of a board (a step of Generation's 12 boards: ~150 ms); one image
# per board draws in well under a millisecond, and a frame changes its source (docs/recipe.md). Plotly draws images
# beneath heat maps, so the cells' colours are in the image too
DIGIT_PX = {False: 32, True: 14}  # a cell's side in pixels: a board on its own (Recursion's), one of many (galleries)
DIGIT_COLOURS = [INK, GIVEN, CLASH]
LEVELS = 4  # alpha levels of the glyphs' anti-aliasing
SHADES = 8  # levels of the cells' confidence (PALE, white to violet)
CLEAR = [[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]]
assert 1 + SHADES * (1 + len(DIGIT_COLOURS) * (LEVELS - 1)) <= 256  # the image's palette indices are bytes


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[k:k + 2], 16) for k in (1, 3, 5)], np.float64)


@lru_cache(maxsize=2)
def _glyphs(px: int) -> np.ndarray:
    """(10, px, px) alpha levels 0..LEVELS-1 of the digits 1-9 centred in a cell's first px - 1 pixels (its last
    row and column are the gap between cells, sudoku_image's); 0 is blank."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=round(px * 0.7))
    out = np.zeros((10, px, px), np.uint8)
    for d in range(1, 10):
        im = Image.new("L", (px, px), 0)
        ImageDraw.Draw(im).text(((px - 1) / 2, (px - 1) / 2), str(d), fill=255, font=font, anchor="mm")
        out[d] = np.rint(np.asarray(im, np.float64) / 255 * (LEVELS - 1)).astype(np.uint8)
    return out


@lru_cache(maxsize=1)
def _palette() -> tuple[list[int], bytes]:
    """Entry 0 transparent (the gaps); then per shade of the cell its colour and each digit colour blended over it
    at each glyph level."""
    rgb = [0, 0, 0]
    lo, hi = _rgb(PALE[0][1]), _rgb(PALE[-1][1])
    for b in range(SHADES):
        cell = lo + (hi - lo) * b / (SHADES - 1)
        rgb += np.rint(cell).astype(int).tolist()
        for c in DIGIT_COLOURS:
            for level in range(1, LEVELS):
                rgb += np.rint(cell + (_rgb(c) - cell) * level / (LEVELS - 1)).astype(int).tolist()
    return rgb, bytes([0] + [255] * (len(rgb) // 3 - 1))


def sudoku_image(digits: np.ndarray, colour: np.ndarray, conf: np.ndarray, px: int, ax: dict) -> dict:
    """digits (rows, cols) 0-9 (0: blank) in DIGIT_COLOURS[colour] on cells shaded by conf, px pixels a cell, as an
    image trace over the board's cells."""
    from PIL import Image

    rows, cols = digits.shape
    level = _glyphs(px)[digits]  # (rows, cols, px, px)
    shade = np.clip(np.rint(np.asarray(conf, np.float64) * (SHADES - 1)), 0, SHADES - 1).astype(np.int64)
    index = 1 + shade[:, :, None, None] * (1 + len(DIGIT_COLOURS) * (LEVELS - 1)) + \
        np.where(level > 0, 1 + colour[:, :, None, None] * (LEVELS - 1) + level - 1, 0)
    index[:, :, -1, :] = 0
    index[:, :, :, -1] = 0
    im = Image.fromarray(index.astype(np.uint8).transpose(0, 2, 1, 3).reshape(rows * px, cols * px), mode="P")
    rgb, alpha = _palette()
    im.putpalette(rgb)
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=alpha, compress_level=3)  # level 6 saves 10% at twice the time
    d = 1 / px  # a pixel in cells; x0/y0 are the first pixel's centre
    return {"type": "image", "source": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
            "x0": -0.5 + d / 2, "y0": -0.5 + d / 2, "dx": d, "dy": d, "zsmooth": "fast", "hoverinfo": "skip", **ax}


def board(task, pred, probs=None, given=None, title=None, height=360) -> Spec:
    lay = layout(title, height)
    xa, ya = board_axes(lay, 1, [0, 1], [0, 1], board_ranges(task, len(pred)))
    return Spec({"data": board_traces(task, pred, probs, given, xa, ya), "layout": lay})


def board_editor(task, x, pending: int | None = None, height: int = 380) -> Spec:
    """The input x as a board with a click target on every cell (on every node of a graph): clicking one selects
    it, which the page turns into an edit (Task.edit). Cells that break a rule are drawn red."""
    x = np.asarray(x)
    fig = board(task, x, None, x, height=height)
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
        if t["type"] in ("heatmap", "image"):  # cell (pixel) k's centre at x0 + k dx
            t.update(x0=move(t.get("x0", 0), x0, at[0]), y0=move(t.get("y0", 0), y0, at[1]),
                     dx=t.get("dx", 1) * scale, dy=t.get("dy", 1) * scale)
        else:
            t.update(x=move(t["x"], x0, at[0]), y=move(t["y"], y0, at[1]))
        out.append(t)
    return out


class Mosaic:
    """Slots of one size on the axis pair x/y, in rows of `ncols`, with room for a title above each: the layout of
    a gallery (and of the stepping figures' rows of boards). `box(k)` is slot k's top-left corner, `titles(texts)`
    the slots' titles as one text trace."""

    def __init__(self, lay: dict, n: int, ncols: int, size: tuple[float, float], xdom, ydom, titled: bool = True,
                 gap: float = 0.12, unit: float | None = None):
        self.ncols = max(1, min(ncols, n))
        nrows = math.ceil(max(1, n) / self.ncols)
        self.w, self.h = size
        self.gx, self.gy = gap * self.w, (0.3 if titled else gap) * self.h
        if unit:  # gaps of whole cells: the boards' cells lie on one grid, so merge_boards can tile their heat maps
            # (rounded up between rows: the titles' room never shrinks)
            self.gx, self.gy = max(unit, round(self.gx / unit) * unit), max(unit, math.ceil(self.gy / unit) * unit)
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

    def titles(self, texts: list[str], size: int = 12, color: str = MUTED) -> dict:
        """The first len(texts) slots' titles as one text trace: Plotly lays out each annotation on its own at
        every redraw, so titles that change with the step cost less as one trace's points (docs/recipe.md)."""
        boxes = [self.box(k) for k in range(len(texts))]
        return {"type": "scatter", "mode": "text", "x": [x + self.w / 2 for x, _ in boxes], "y": [y for _, y in boxes],
                "text": list(texts), "textposition": "top center", "textfont": {"size": size, "color": color},
                "cliponaxis": False, "hoverinfo": "skip", "showlegend": False, "xaxis": "x", "yaxis": "y"}


def cell_unit(task) -> float | None:
    """A board's cell in its own coordinates (a Mosaic's `unit`); None for a graph, drawn without cells."""
    return None if _kind(task) == "graph" else 1.0


def merge_boards(boards: list[list[dict]]) -> list[dict]:
    """Boards on one axis pair (each its task's board_traces, moved by `place` into a Mosaic with `unit` gaps) as one
    trace per part: the heat maps tiled into one, the scatters joined. Plotly's work per trace dominates a redraw of
    many small boards (12 N-Queens boards step ~40% faster as 3 traces than as 36: docs/recipe.md). Images (Sudoku's
    digits) stay one per board: each is a single element already."""
    out = []
    for parts in zip(*boards):  # board_traces gives every board of a task the same parts
        kind = parts[0]["type"]
        out += list(parts) if kind == "image" else [_tile(parts) if kind == "heatmap" else _join(parts)]
    return out


def _join(parts):
    """Scatter traces as one: their per-point lists end to end (a line trace's segments end in None already)."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: _join([p[k] for p in parts]) for k in first}
    return [v for p in parts for v in p] if isinstance(first, list) else first


def _tile(parts: list[dict]) -> dict:
    """Heat maps whose cells lie on one grid (cell k of each at x0 + k dx) as one heat map, blank between them."""
    dx, dy = parts[0].get("dx", 1), parts[0].get("dy", 1)
    X0, Y0 = min(p["x0"] for p in parts), min(p["y0"] for p in parts)
    at = [((p["x0"] - X0) / dx, (p["y0"] - Y0) / dy) for p in parts]
    if any(abs(v - round(v)) > 1e-6 for a in at for v in a):
        raise ValueError("heat maps off one grid: lay the boards out in a Mosaic with unit=cell_unit(task)")
    at = [(round(c), round(r)) for c, r in at]
    rows = max(r + len(p["z"]) for (_, r), p in zip(at, parts))
    cols = max(c + len(p["z"][0]) for (c, _), p in zip(at, parts))
    out = {**parts[0], "x0": X0, "y0": Y0, "hoverongaps": False}
    for key in ("z", "customdata"):
        if key in out:
            grid = [[None] * cols for _ in range(rows)]
            for (c, r), p in zip(at, parts):
                for i, line in enumerate(p[key]):
                    grid[r + i][c:c + len(line)] = line
            out[key] = grid
    return out


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
    grid = Mosaic(lay, n, ncols, board_size(task, S), [0, 1], [0, 1], titled=bool(titles), unit=cell_unit(task))
    data = merge_boards([place(board_traces(task, b, None if probs is None else probs[i], given, small=True),
                               board_ranges(task, len(b)), grid.box(i)) for i, b in enumerate(boards)])
    return Spec({"data": data + ([grid.titles(titles)] if titles else []), "layout": lay})


# --- per-step curves ---------------------------------------------------------------------------
def step_ticks(step_names: list[str], n: int = 10) -> dict:
    """About n of the step names as an x axis's ticks (the axis counts record points)."""
    every = max(1, len(step_names) // n)
    return {"tickvals": list(range(0, len(step_names), every)), "ticktext": step_names[::every]}


def step_lines(x_labels: list[str], panels: list[dict], height: int = 280) -> Spec:
    """Per-step curves in panels side by side on one figure (a figure fewer to draw per panel), each panel a dict:
    title, series {name: y per step}, and optionally ytitle, yrange (default (0, 1); None: automatic), colors.
    No legend: a panel's title names its curves, and the hover each one's name."""
    gap = 0.1  # paper width between panels: the right panel's tick labels
    w = (1 - gap * (len(panels) - 1)) / len(panels)
    data, lay, n_series = [], {"annotations": []}, 0
    for k, p in enumerate(panels):
        xs, dom = "" if k == 0 else str(k + 1), [k * (w + gap), k * (w + gap) + w]
        for name, y in p["series"].items():
            data.append({"type": "scatter", "x": list(range(len(y))), "y": _r(y), "mode": "lines+markers", "name": name,
                         "xaxis": f"x{xs}", "yaxis": f"y{xs}", "marker": {"size": 5},
                         "line": {"width": 3, "color": p.get("colors", {}).get(name, house.color(n_series))},
                         "customdata": x_labels, "hovertemplate": "step %{customdata}: %{y:.3f}<extra>" + name + "</extra>"})
            n_series += 1
        lay[f"xaxis{xs}"] = axis("step (supervision.transition)", showgrid=False, domain=dom, anchor=f"y{xs}",
                                 **step_ticks(x_labels))
        lay[f"yaxis{xs}"] = axis(p.get("ytitle", ""), range=p.get("yrange", (0, 1)), anchor=f"x{xs}")
        lay["annotations"].append(panel_title(p["title"], dom, 1.0, size=15))
    return figure(data, None, height, margin={**AXES_MARGIN, "t": 34}, **lay)


# --- trajectories ---------------------------------------------------------------------------
def pca_figure(coords: np.ndarray, explained: np.ndarray, labels: list[str], title: str = "", height: int = 520) -> Spec:
    """coords (R, N, k): one line per trajectory coloured by its final answer, a marker where each ends."""
    R, N, k = coords.shape
    shown, data = set(), []
    for j in sorted(range(N), key=lambda j: (labels[j] != "invalid", j)):  # invalid first, drawn underneath
        lab = labels[j]
        data.append({"type": "scatter", "x": _r(coords[:, j, 0]), "y": _r(coords[:, j, 1] if k > 1 else np.zeros(R)),
                     "mode": "lines", "name": lab, "legendgroup": lab, "showlegend": lab not in shown, "opacity": 0.55,
                     "line": {"color": label_color(lab), "width": 1.6},
                     "hovertemplate": f"trajectory {j}: {lab}<extra></extra>"})
        shown.add(lab)
    end = coords[-1]
    data.append({"type": "scatter", "x": _r(end[:, 0]), "y": _r(end[:, 1] if k > 1 else np.zeros(N)), "mode": "markers",
                 "name": f"step {R}", "customdata": list(range(N)), "hovertemplate": "trajectory %{customdata}<extra></extra>",
                 "marker": {"size": 8, "color": [label_color(lab) for lab in labels], "line": {"color": INK, "width": 1.5}}})
    data.append({"type": "scatter", "x": [float(coords[0, :, 0].mean())],
                 "y": [float(coords[0, :, 1].mean()) if k > 1 else 0.0], "mode": "markers", "name": "start z0",
                 "marker": {"size": 12, "color": INK, "symbol": "diamond"}})

    def pad(a):
        m = 0.05 * float(np.ptp(a) or 1)
        return [float(a.min()) - m, float(a.max()) + m]

    return figure(data, title, height, legend=True, margin=AXES_MARGIN,
                  xaxis=axis(f"PC1 ({100 * explained[0]:.1f}% of variance)", range=pad(coords[..., 0]), zeroline=False),
                  yaxis=axis(f"PC2 ({100 * explained[1]:.1f}% of variance)" if k > 1 else "",
                             range=pad(coords[..., 1]) if k > 1 else None, zeroline=False))


# --- curves and bars ------------------------------------------------------------------------
def curves(x, series: dict[str, list], title: str, xtitle: str, ytitle: str, colors: dict | None = None,
           log_x: bool = False, yrange=None, height: int = 340, dash: dict | None = None,
           target: tuple[float, str] | None = None) -> Spec:
    """One line per series against x (a list, or one per series); target (y, text) draws a dashed line at y."""
    xs_of = lambda name: list(x[name] if isinstance(x, dict) else x)
    data = [{"type": "scatter", "x": xs_of(name), "y": _r(y), "mode": "lines+markers", "name": name,
             "line": {"width": 3, "color": (colors or {}).get(name, house.color(i)),
                      "dash": (dash or {}).get(name, "solid")}, "marker": {"size": 7}}
            for i, (name, y) in enumerate(series.items())]
    xs_all = sorted({v for name in series for v in xs_of(name)})
    fields = {}
    if target is not None:
        fields["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": target[0], "y1": target[0],
                             "line": {"dash": "dash", "color": MUTED}}]
        fields["annotations"] = [{"text": target[1], "xref": "paper", "x": 1, "y": target[0], "xanchor": "right",
                                  "yanchor": "bottom", "showarrow": False, "font": {"color": MUTED}}]
    return figure(data, title, height, legend=True, margin=AXES_MARGIN,
                  xaxis=axis(xtitle, type="log" if log_x else "linear", tickvals=xs_all if log_x else None,
                             ticktext=[str(v) for v in xs_all] if log_x else None),
                  yaxis=axis(ytitle, range=yrange), **fields)


def bars(x: list, y, colors: list[str], title: str, xtitle: str = "", ytitle: str = "", yrange=None,
         height: int = 300, hovertemplate: str | None = None, text: bool = False) -> Spec:
    """One bar per category, each in its colour; text writes each bar's value on it."""
    bar = {"type": "bar", "x": [str(v) for v in x], "y": _r(y), "marker": {"color": colors},
           **({"text": _r(y), "textposition": "auto"} if text else {}),
           **({"hovertemplate": hovertemplate} if hovertemplate else {})}
    # the categories' labels turn when crowded: this axis keeps its automargin to make room for them
    return figure([bar], title, height, margin={**AXES_MARGIN, "b": 52 if xtitle else 30},
                  xaxis=axis(xtitle, type="category", automargin=True),
                  yaxis=axis(ytitle, range=yrange))


def disagreement_bars(n_same: int, n_vote_only: int, n_lprm_only: int, n_both_wrong: int) -> Spec:
    return bars(["both right", "only vote right", "only LPRM right", "both wrong"],
                [n_same, n_vote_only, n_lprm_only, n_both_wrong], [LPRM, VOTE, GRAM, BAD],
                "what the two selectors pick, puzzle by puzzle", ytitle="puzzles", text=True)


def training_figure(history: list[dict]) -> Spec:
    """Loss, true KL and accuracies against optimiser steps, side by side."""
    steps = [r for r in history if "loss" in r]
    evals = [r for r in history if "prior_accuracy" in r]
    line = lambda xs, y, name, color, width=2, dash="solid", axes=2, **kw: {
        "type": "scatter", "x": xs, "y": _r(y, 4), "name": name, "line": {"color": color, "width": width, "dash": dash},
        "xaxis": "x" if axes == 1 else "x2", "yaxis": "y" if axes == 1 else "y2", **kw}
    data = []
    if steps:
        xs = [r["step"] for r in steps]
        data.append(line(xs, _smooth([r["loss"] for r in steps]), "loss", INK, 2.5, axes=1))
        if "ce" in steps[0]:
            data.append(line(xs, _smooth([r["ce"] for r in steps]), "cross-entropy", VOTE, axes=1))
        if any("kl" in r for r in steps):
            data.append(line(xs, _smooth([r.get("kl", np.nan) for r in steps]), "true KL", GRAM, dash="dot", axes=1))
        data.append(line(xs, _smooth([r["train_accuracy"] for r in steps]), "train acc (posterior)", GRAM))
        if any("train_prior_accuracy" in r for r in steps):
            data.append(line(xs, _smooth([r.get("train_prior_accuracy", np.nan) for r in steps]), "train acc (prior)", DET))
    if evals:
        xs = [r["step"] for r in evals]
        data.append(line(xs, [r["prior_accuracy"] for r in evals], "held-out prior acc", LPRM, 3,
                         mode="lines+markers", marker={"size": 8}))
        data.append(line(xs, [r.get("posterior_accuracy", np.nan) for r in evals], "held-out posterior acc", GRAM,
                         dash="dash", mode="lines+markers", marker={"size": 7}))
    left, right = [0, 0.45], [0.55, 1]
    fig = figure(data, None, 420, legend=True, margin={"l": 50, "t": 40, "b": 10},
                 xaxis=axis("optimiser step", domain=left, anchor="y"), yaxis=axis(anchor="x"),
                 xaxis2=axis("optimiser step", domain=right, anchor="y2"), yaxis2=axis(anchor="x2", range=[0, 1.02]),
                 annotations=[panel_title("loss and true KL (nats/position)", left, 1.0, 14),
                              panel_title("accuracy", right, 1.0, 14)])
    fig.spec["layout"]["legend"] = {"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0, "xanchor": "left"}
    return fig


def _smooth(y: list, k: int = 9) -> list:
    if len(y) < k:
        return y
    a = np.asarray(y, dtype=np.float64)
    out = np.convolve(np.nan_to_num(a), np.ones(k) / k, mode="valid")
    return list(np.concatenate([a[: k - 1], out]))


# --- commitment ---------------------------------------------------------------------------------------
def flow_bands(flow: dict, step_names: list[str], title: str, height: int = 380) -> Spec:
    """gram.analysis.answer_flow as a Sankey diagram drawn with scatter traces (the app's plotly.js bundle has no
    Sankey): a column per record point, a bar per answer there as tall as its trajectories, and a band per link
    as thick as the trajectories that move along it. Every column stacks its answers in the last column's order
    (most trajectories first; answers gone by then below), and a bar's bands leave in the order of where they
    arrive, so bands cross where trajectories change their answer, not where the order does."""
    nodes, links = flow["nodes"], flow["links"]
    records = sorted({n["record"] for n in nodes})
    col = {r: k for k, r in enumerate(records)}
    n = max(1, sum(nd["count"] for nd in nodes if nd["record"] == records[0]))
    pad, w = 0.06 * n, 0.06  # between bars (in trajectories), a bar's width (in columns)
    final = sorted((nd for nd in nodes if nd["record"] == records[-1]), key=lambda nd: -nd["count"])
    rank = {nd["label"]: k for k, nd in enumerate(final)}
    top, fill = {}, {}  # a node's top; per column, how far its bars reach
    for i, nd in sorted(enumerate(nodes), key=lambda p: (col[p[1]["record"]], rank.get(p[1]["label"], len(rank)), p[0])):
        c = col[nd["record"]]
        top[i] = fill.get(c, 0.0)
        fill[c] = top[i] + nd["count"] + pad
    out_at, in_at = dict(top), dict(top)  # where a node's next band leaves and arrives
    curve = np.linspace(0, 1, 16)
    ease = curve * curve * (3 - 2 * curve)
    bx, by = [], []
    for lk in sorted(links, key=lambda lk: (top[lk["source"]], top[lk["target"]])):
        s, t, v = lk["source"], lk["target"], lk["value"]
        x0, x1 = col[nodes[s]["record"]] + w / 2, col[nodes[t]["record"]] - w / 2
        y0, y1 = out_at[s], in_at[t]
        out_at[s] += v
        in_at[t] += v
        xs, ys = x0 + (x1 - x0) * curve, y0 + (y1 - y0) * ease
        bx += _r(np.concatenate([xs, xs[::-1]])) + [None]
        by += _r(np.concatenate([ys, ys[::-1] + v])) + [None]
    data = [{"type": "scatter", "x": bx, "y": by, "mode": "lines", "fill": "toself", "line": {"width": 0},
             "fillcolor": "rgba(124,58,237,0.18)", "hoverinfo": "skip", "showlegend": False}]
    colour = lambda nd: label_color(nd["label"]) if nd["label"] != "not valid yet" else BAD
    for c in dict.fromkeys(colour(nd) for nd in nodes):  # the bars, one trace per colour
        mine = [i for i, nd in enumerate(nodes) if colour(nd) == c]
        xs = [v for i in mine for v in _bar(col[nodes[i]["record"]], w)]
        ys = [v for i in mine for v in (top[i], top[i], top[i] + nodes[i]["count"], top[i] + nodes[i]["count"], top[i], None)]
        data.append({"type": "scatter", "x": xs, "y": ys, "mode": "lines", "fill": "toself", "fillcolor": c,
                     "line": {"width": 0, "color": c}, "hoverinfo": "skip", "showlegend": False})
    last = len(records) - 1
    for side, keep in (("middle right", lambda k: k < last), ("middle left", lambda k: k == last)):
        mine = [i for i, nd in enumerate(nodes) if keep(col[nd["record"]])]
        data.append({"type": "scatter", "mode": "text", "textposition": side, "cliponaxis": False,
                     "x": [col[nodes[i]["record"]] + (w if side == "middle right" else -w) for i in mine],
                     "y": [top[i] + nodes[i]["count"] / 2 for i in mine],
                     "text": [f"{nodes[i]['label']} ({nodes[i]['count']})" for i in mine],
                     "customdata": [step_names[nodes[i]["record"]] for i in mine], "textfont": {"size": 12},
                     "hovertemplate": "step %{customdata}: %{text}<extra></extra>", "showlegend": False})
    return figure(data, title, height, margin={"b": 34},
                  xaxis={"range": [-0.1, max(1, last) + 0.1], "tickvals": list(range(len(records))),
                         "ticktext": [f"step {step_names[r]}" for r in records], "showgrid": False, "zeroline": False,
                         "tickfont": {"size": 12, "color": MUTED}},
                  yaxis={"visible": False, "autorange": "reversed"})


def _bar(x: float, w: float) -> list:
    return [x - w / 2, x + w / 2, x + w / 2, x - w / 2, x - w / 2, None]


def commit_strip(steps: np.ndarray, labels: list[str], step_names: list[str], title: str, height: int = 260) -> Spec:
    """A dot per answer and step at which trajectories ending on that answer stopped changing it, coloured by
    the answer, its area growing with how many did (many samples share few steps)."""
    groups: dict = {}
    for j in np.argsort(steps, kind="stable"):
        groups.setdefault((labels[j], int(steps[j])), []).append(int(j))
    keys = list(groups)
    dots = {"type": "scatter", "x": [k[1] for k in keys], "y": [k[0] for k in keys], "mode": "markers",
            "marker": {"size": [9 + 4 * math.sqrt(len(groups[k]) - 1) for k in keys],
                       "color": [label_color(k[0]) for k in keys], "line": {"color": INK, "width": 1}},
            "customdata": [[len(groups[k]), step_names[k[1]], ", ".join(map(str, groups[k][:12]))
                            + (" ..." if len(groups[k]) > 12 else "")] for k in keys],
            "hovertemplate": "%{customdata[0]} settle at step %{customdata[1]}: trajectories %{customdata[2]}<extra></extra>"}
    n = len(step_names)
    widest = max((len(k[0]) for k in keys), default=4)  # the category labels on the left: their room
    return figure([dots], title, height, margin={**AXES_MARGIN, "l": 16 + 8 * widest},
                  xaxis=axis("step its answer stops changing", range=[-0.5, n - 0.5], **step_ticks(step_names)),
                  yaxis=axis(type="category"))


def disagreement_map(d: np.ndarray, step_names: list[str], title: str, height: int = 300) -> Spec:
    """gram.analysis.disagreement (R, S): steps down, cells across."""
    heat = {"type": "heatmap", "z": _r(d, 2), "zmin": 0, "zmax": float(max(0.05, d.max())),
            "colorscale": [[0, "#fff5eb"], [0.5, "#fd8d3c"], [1, "#7f2704"]],
            "colorbar": {"thickness": 10, "len": 0.8, "title": {"text": "split"}}, "y": step_names,
            "hovertemplate": "step %{y}, cell %{x}: %{z:.2f} disagree<extra></extra>"}
    return figure([heat], title, height, margin={**AXES_MARGIN, "l": 16 + 8 * max(map(len, step_names), default=3) + 24},
                  xaxis=axis("cell (position in the answer)", showgrid=False),
                  yaxis=axis("step", showgrid=False, autorange="reversed", type="category"))
