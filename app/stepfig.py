"""Figures that step in the browser: every record point of one Trace is an animation frame, with the
figure's own step slider and play button, so moving through the recursion sends nothing to the server.

All panels of a view live in one figure (subplots), so they step together: a frame updates the traces it
names (boards, markers, heat maps, titles as text traces). Figures are built as plain dicts, not validated
graph objects: a view of 48 steps has hundreds of traces, and validation would cost more than the rollout.
"""
from __future__ import annotations

import math

import numpy as np

from app import figures
from app.figures import (FONT, INK, MUTED, Mosaic, _r, board_axes, board_ranges, board_size, board_traces, grid_shape,
                         merge_boards, panel_title, place)

# Plotly.js knows only a few colour scales by name (the Python names are expanded by validation, which these
# dict figures skip): every scale here is explicit
ORANGES = [[0, "#fff7ed"], [0.5, "#fdba74"], [1, "#c2410c"]]
PURPLES = [[0, "#faf5ff"], [0.5, "#c4b5fd"], [1, "#5b21b6"]]
LATENT = [[0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1, "#b2182b"]]
MAX_FRAMES = 64  # steps carried by a figure: longer traces keep every k-th step and the last
LATENT_DIMS = 24  # latent dimensions shown in h heat maps: those that vary most over the run
# the guidance's per-step curves (gram.analysis.guidance_per_step's keys): name, colour (sigma_p in the violet of
# its per-cell map)
GUIDE = {"sigma": ("σ_p", "#7c3aed"), "mu": ("|μ_p|", "#0ea5e9"), "eps": ("|ε|", "#ec4899"),
         "kl": ("total KL(q || p)", "#dc2626")}


def frame_steps(R: int, limit: int = MAX_FRAMES) -> list[int]:
    """Record points a figure carries: all of them, or every k-th one and the last."""
    if R <= limit:
        return list(range(R))
    k = math.ceil(R / limit)
    out = list(range(0, R, k))
    return out if out[-1] == R - 1 else out + [R - 1]


def cell_map(values, shape: tuple[int, int], xa: str, ya: str, scale, zrange: tuple[float, float], what: str) -> dict:
    """A per-position quantity drawn on the board's (or the image's patch) grid, on a colour range fixed for
    the whole run (so a colour means the same at every step)."""
    return {"type": "heatmap", "z": _r(np.asarray(values, dtype=np.float32).reshape(shape)), "zmin": zrange[0],
            "zmax": zrange[1],
            "colorscale": scale, "showscale": False, "xgap": 1, "ygap": 1, "xaxis": xa, "yaxis": ya,
            "hovertemplate": f"{what} %{{z:.3f}}<extra></extra>"}


def position_shape(task, L: int) -> tuple[int, int]:
    """The grid the model's L latent positions lie on: the board's cells, or the image's patches."""
    if L == task.seq_len:
        return grid_shape(task, L)
    r = int(math.isqrt(L))
    return (r, r) if r * r == L else (1, L)


# --- layout helpers ------------------------------------------------------------------------------------
def _axis(domain, anchor: str, **kw) -> dict:
    return {"domain": list(domain), "anchor": anchor, "showgrid": False, "zeroline": False, **kw}


def _grid_ranges(rows: int, cols: int) -> tuple[list, list]:
    return [-0.5, cols - 0.5], [rows - 0.5, -0.5]


def player(labels: list[str], steps: list[int], active: int, prefix: str = "step ", duration: int = 450) -> dict:
    """Layout entries for a play/pause button and a slider over the frames of `steps` (named by labels),
    starting at step `active` (or the nearest carried one before it)."""
    start = max([k for k, i in enumerate(steps) if i <= active] or [0])
    step = lambda name: {"method": "animate", "label": name,
                         "args": [[name], {"mode": "immediate", "frame": {"duration": 0, "redraw": True},
                                           "transition": {"duration": 0}}]}
    return {
        "updatemenus": [{"type": "buttons", "showactive": False, "x": 0, "y": -0.06, "xanchor": "left", "yanchor": "top",
                         "direction": "left", "pad": {"t": 28, "r": 8},
                         "buttons": [{"label": "\u25b6 play", "method": "animate",
                                      # immediate: play starts even while a slider step is still being drawn
                                      "args": [None, {"mode": "immediate", "frame": {"duration": duration, "redraw": True},
                                                      "fromcurrent": True, "transition": {"duration": 0}}]},
                                     {"label": "\u275a\u275a pause", "method": "animate",
                                      "args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate"}]}]}],
        "sliders": [{"active": start, "x": 0.2, "len": 0.8, "y": -0.06, "yanchor": "top", "pad": {"t": 20},
                     "currentvalue": {"prefix": prefix, "font": {"size": 14, "color": INK}},
                     "steps": [step(labels[i]) for i in steps]}],
    }


def _base_layout(height: int, title: str | None = None) -> dict:
    return {"template": figures.TEMPLATE, "height": height, "font": {"family": FONT, "size": 13, "color": INK},
            "margin": {"l": 10, "r": 10, "t": 60 if title else 34, "b": 120}, "showlegend": False,
            "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)",
            **({"title": {"text": title, "x": 0.01, "font": {"size": 16}}} if title else {})}


def _frames(steps, labels, data_of, traces: list[int], drawn: list[dict]) -> list[dict]:
    """One frame per carried step. Of the traces it names (drawn: as first drawn) only the keys that change at all
    travel (a board's cell positions, colour scale, hover text stay with the drawn trace, which Plotly merges each
    frame into), and after the first frame only what changed since the frame before: each later frame names the one
    before as its baseframe, and Plotly computes a frame on top of its baseframe's (testkit.frames does the same),
    so a board that has settled travels once, not 65 times. What a step changes is always trace data (titles are
    text traces), never the layout."""
    datas = [data_of(i) for i in steps]
    # the type stays: a frame's trace without one reads as a scatter to Plotly's schema
    changing = [{"type"} | {k for d in datas for k, v in d[j].items() if v != drawn[j].get(k)}
                for j in range(len(drawn))]
    out, last_state = [], None
    for i, data in zip(steps, datas):
        state = [{k: v for k, v in t.items() if k in keep} for t, keep in zip(data, changing)]
        if last_state is None:
            f = {"name": labels[i], "data": state, "traces": traces}
        else:
            moved = [(j, {k: v for k, v in t.items() if k == "type" or v != was.get(k)})
                     for j, (t, was) in enumerate(zip(state, last_state))]
            moved = [(j, t) for j, t in moved if len(t) > 1]
            f = {"name": labels[i], "baseframe": out[-1]["name"], "data": [t for _, t in moved],
                 "traces": [traces[j] for j, _ in moved]}
        out.append(f)
        last_state = state
    return out


# --- Recursion: one trajectory, its partner, where h changes, where the prior explores, the heads ----------
def recursion(task, x: np.ndarray, rec: dict, labels: list[str], active: int, titles: dict) -> dict:
    """rec holds per record point (R, ...): pred, probs, dh (|change of h| per position), sigma (the prior's
    scale per position, or None), h (positions x LATENT_DIMS), value, halt; guide, the guidance's size per step
    (gram.analysis.guidance_per_step: sigma, mu, eps; {} without noise); guide_kl, the posterior's total KL per
    step (or None); and the partner's pred/probs/halt aligned to the same steps (or None). titles: panel name ->
    function of the step index -> text."""
    R = len(labels)
    steps = frame_steps(R)
    S = len(x)
    L = rec["dh"].shape[1]
    prow, pcol = position_shape(task, L)
    layout = _base_layout(700)
    top, mid = (0.50, 1.0), (0.0, 0.40)
    # the two boards and the two per-position maps, in square slots that fit the board, on one axis pair
    E = max(board_size(task, S))
    row = Mosaic(layout, 4, 4, (E, E), (0.0, 1.0), top, gap=0.25)  # room for the panels' titles
    b_ranges, m_ranges = board_ranges(task, S), _grid_ranges(prow, pcol)
    on_board = lambda traces, k: place(traces, b_ranges, row.box(k))
    on_map = lambda trace, k: place([trace], m_ranges, row.box(k), E / max(prow, pcol))
    latent, guide_dom, heads = (0.0, 0.26), (0.34, 0.62), (0.73, 1.0)  # room for the KL axis on the right
    ticks = figures.step_ticks(labels, 6)
    layout["xaxis5"] = _axis(latent, "y5", title={"text": "latent dimension (the most varying)"},
                             showticklabels=False)
    layout["yaxis5"] = _axis(mid, "x5", title={"text": "position"}, autorange="reversed", showticklabels=False)
    layout["xaxis6"] = _axis(heads, "y6", title={"text": "step (supervision.transition)"}, **ticks)
    layout["yaxis6"] = _axis(mid, "x6", range=[0, 1.02], title={"text": "probability"})
    # in GUIDE's order; KL is the partner's (guide_kl)
    guide = {k: rec["guide"][k] for k in ("sigma", "mu", "eps") if k in (rec.get("guide") or {})}
    guide_kl = rec.get("guide_kl")
    g_top = 1.08 * max(float(np.max(v)) for v in guide.values()) + 1e-6 if guide else 1.0
    layout["xaxis7"] = _axis(guide_dom, "y7", title={"text": "step (supervision.transition)"},
                             range=[-0.2, max(R - 1, 1) + 0.2], **ticks)
    layout["yaxis7"] = _axis(mid, "x7", range=[0, g_top], title={"text": "mean over positions"},
                             showticklabels=bool(guide))
    if guide_kl is not None:  # its own scale, in its colour (no title: the heads' axis is next to it)
        layout["yaxis8"] = _axis(mid, "x7", range=[0, 1.08 * float(np.max(guide_kl)) + 1e-6], overlaying="y7",
                                 side="right", tickfont={"color": GUIDE["kl"][1]})
    partner = rec.get("p_pred") is not None
    sigma = rec.get("sigma")
    dh_range = (0.0, float(np.percentile(rec["dh"], 99)) or 1.0)
    # sigma_p varies little around its mean: its own range over the run shows where it is larger
    s_range = (float(np.percentile(sigma, 1)), float(np.percentile(sigma, 99)) + 1e-6) if sigma is not None else (0, 1)
    h_max = float(np.percentile(np.abs(rec["h"]), 99)) or 1.0
    curves = [(*GUIDE[k], v, "y7") for k, v in guide.items()] + \
        ([(*GUIDE["kl"], guide_kl, "y8")] if guide_kl is not None else [])

    def guide_values(i: int) -> str:
        return " · ".join(f"<span style='color:{colour}'>{name} {float(v[i]):.3g}</span>"
                          for name, colour, v, _ in curves)

    def dynamic(i: int) -> list[dict]:
        out = on_board(board_traces(task, rec["pred"][i], rec["probs"][i], x), 0)
        out += on_board(board_traces(task, rec["p_pred"][i], rec["p_probs"][i], x) if partner
                        else board_traces(task, x, None, x), 1)
        out += on_map(cell_map(rec["dh"][i], (prow, pcol), "x", "y", ORANGES, dh_range, "|Δh|"), 2)
        out += on_map(cell_map(sigma[i] if sigma is not None else np.zeros(L), (prow, pcol), "x", "y", PURPLES,
                               s_range, "σ_p"), 3)
        out.append({"type": "heatmap", "z": _r(rec["h"][i], 2), "zmin": -h_max, "zmax": h_max,
                    "colorscale": LATENT, "showscale": False, "xaxis": "x5", "yaxis": "y5",
                    "hovertemplate": "position %{y}, dim %{x}: %{z:.2f}<extra></extra>"})
        # what changes with the step is text traces' points, not annotations (Mosaic.titles says why)
        out.append(row.titles([titles[name](i) for name in ("board", "partner", "dh", "sigma")], size=13, color=INK))
        out.append({"type": "scatter", "mode": "text", "x": [(R - 1) / 2], "y": [g_top], "text": [guide_values(i)],
                    "textposition": "top center", "textfont": {"size": 12, "color": MUTED}, "cliponaxis": False,
                    "hoverinfo": "skip", "xaxis": "x7", "yaxis": "y7"})
        for xa, ya, top in (("x6", "y6", 1.02), ("x7", "y7", g_top)):  # the step marker, in both step plots
            out.append({"type": "scatter", "x": [i, i], "y": [0, top], "mode": "lines", "xaxis": xa, "yaxis": ya,
                        "line": {"color": INK, "width": 2, "dash": "dot"}, "hoverinfo": "skip"})
        return out

    first = dynamic(active)
    n_dyn = len(first)
    xs = list(range(R))
    static = [{"type": "scatter", "x": xs, "y": _r(rec["value"]), "name": "LPRM value", "mode": "lines+markers",
               "line": {"color": figures.LPRM, "width": 3}, "marker": {"size": 4}, "xaxis": "x6", "yaxis": "y6",
               "customdata": labels, "hovertemplate": "step %{customdata}: %{y:.3f}<extra>LPRM value</extra>"},
              {"type": "scatter", "x": xs, "y": _r(rec["halt"]), "name": "P(halt)", "mode": "lines+markers",
               "line": {"color": figures.GRAM, "width": 3}, "marker": {"size": 4}, "xaxis": "x6", "yaxis": "y6",
               "customdata": labels, "hovertemplate": "step %{customdata}: %{y:.3f}<extra>P(halt)</extra>"}]
    if partner:
        static.append({"type": "scatter", "x": xs, "y": _r(rec["p_halt"]), "name": "P(halt), partner",
                       "mode": "lines", "line": {"color": figures.DET, "width": 2}, "xaxis": "x6", "yaxis": "y6",
                       "customdata": labels, "hovertemplate": "step %{customdata}: %{y:.3f}<extra>partner P(halt)</extra>"})
    for name, colour, v, ya in curves:  # named in the panel's title, with their values at the shown step
        static.append({"type": "scatter", "x": xs, "y": _r(v), "name": name, "mode": "lines", "showlegend": False,
                       "line": {"color": colour, "width": 2.5, **({"dash": "dash"} if ya == "y8" else {})},
                       "xaxis": "x7", "yaxis": ya, "customdata": labels,
                       "hovertemplate": "step %{customdata}: %{y:.3f}<extra>" + name + "</extra>"})
    layout["showlegend"] = True
    layout["legend"] = {"orientation": "h", "x": heads[0], "y": 0.43, "xanchor": "left", "yanchor": "bottom"}
    for t in first:
        t["showlegend"] = False
    layout["shapes"] = [{"type": "line", "xref": "x6", "yref": "y6", "x0": 0, "x1": R - 1, "y0": rec["halt_at"],
                         "y1": rec["halt_at"], "line": {"color": MUTED, "width": 1, "dash": "dash"}}]
    if rec.get("act_stop") is not None:
        layout["shapes"].append({"type": "line", "xref": "x6", "yref": "y6", "x0": rec["act_stop"], "x1": rec["act_stop"],
                                 "y0": 0, "y1": 1.02, "line": {"color": figures.GRAM, "width": 1, "dash": "dash"}})

    layout["annotations"] = [
        panel_title("high-level latent h", latent, 0.41), panel_title("value and halting heads", heads, 0.47),
        panel_title("the guidance, per step" if curves else "no guidance noise in this mode", guide_dom, 0.47)]
    layout.update(player(labels, steps, active))
    return {"data": first + static, "layout": layout,
            "frames": _frames(steps, labels, dynamic, list(range(n_dyn)), first)}


# --- Trajectories: N trajectories in PCA, the picked one's board --------------------------------------
LEGEND_ANSWERS = 8  # answers named one by one in the legend


def trajectories(task, x: np.ndarray, coords: np.ndarray, explained: np.ndarray, answer_labels: list[str],
                 pred: np.ndarray, probs: np.ndarray, pick: int, labels: list[str], active: int, dims: int = 2) -> dict:
    """coords (R, N, k) on fixed PCA axes; pred (R, S) and probs (R, S, V) of the picked trajectory."""
    R, N, _ = coords.shape
    steps = frame_steps(R)
    layout = _base_layout(600)
    data = []
    colors = [figures.label_color(a) for a in answer_labels]
    shown = set()
    three = dims == 3
    # one line trace per answer, the picked trajectory its own (drawn last, on top): a step redraws every trace
    ending: dict[str, list[int]] = {}
    for j in sorted(range(N), key=lambda j: (answer_labels[j] != "invalid", j)):
        if j != pick:
            ending.setdefault(answer_labels[j], []).append(j)
    answers = {a for a in answer_labels if a != "invalid"}
    # past a handful of answers (unconditional generation: every sample its own) a legend entry each is a wall of
    # names; the legend then keeps "invalid" and the picked one's, and its title says what the colours mean
    many = len(answers) > LEGEND_ANSWERS
    for lab, js in [*ending.items(), (answer_labels[pick], [pick])]:
        path = lambda k: [v for j in js for v in _r(coords[:, j, k]) + [None]]  # None: a break between trajectories
        listed = not many or lab == "invalid" or js == [pick]
        t = {"type": "scatter3d" if three else "scatter", "mode": "lines", "name": lab, "legendgroup": lab,
             "showlegend": listed and lab not in shown, "opacity": 1.0 if js == [pick] else 0.5,
             "line": {"color": colors[js[0]], "width": 5 if js == [pick] else 1.6}, "x": path(0), "y": path(1),
             "customdata": [j for j in js for _ in range(R + 1)],
             "hovertemplate": f"trajectory %{{customdata}}: {lab}<extra></extra>"}
        if three:
            t["z"] = path(2)
            t["scene"] = "scene"
        else:
            t.update(xaxis="x", yaxis="y")
        shown.add(lab)
        data.append(t)
    if three:
        layout["scene"] = {"domain": {"x": [0.0, 0.6], "y": [0.0, 1.0]}, "aspectmode": "cube",
                           "xaxis": {"title": {"text": f"PC1 ({100 * explained[0]:.1f}%)"}},
                           "yaxis": {"title": {"text": f"PC2 ({100 * explained[1]:.1f}%)"}},
                           "zaxis": {"title": {"text": f"PC3 ({100 * explained[2]:.1f}%)"}}}
    else:
        pad = lambda a: [float(a.min()) - 0.05 * float(np.ptp(a) or 1), float(a.max()) + 0.05 * float(np.ptp(a) or 1)]
        layout["xaxis"] = _axis((0.0, 0.6), "y", title={"text": f"PC1 ({100 * explained[0]:.1f}% of variance)"},
                                range=pad(coords[..., 0]))
        layout["yaxis"] = _axis((0.0, 0.92), "x", title={"text": f"PC2 ({100 * explained[1]:.1f}% of variance)"},
                                range=pad(coords[..., 1]))
    bx, by = board_axes(layout, 2, (0.66, 1.0), (0.1, 0.85), board_ranges(task, len(x)))
    n_static = len(data)

    def dynamic(i: int) -> list[dict]:
        size = [14 if j == pick else 8 for j in range(N)] if not three else [8 if j == pick else 4 for j in range(N)]
        m = {"type": "scatter3d" if three else "scatter", "mode": "markers", "x": _r(coords[i, :, 0]),
             "y": _r(coords[i, :, 1]), "customdata": list(range(N)), "name": "now", "showlegend": False,
             "marker": {"size": size, "color": colors, "line": {"color": INK, "width": 1.5}},
             "hovertemplate": "trajectory %{customdata}<extra></extra>"}
        if three:
            m["z"] = _r(coords[i, :, 2])
            m["scene"] = "scene"
        else:
            m.update(xaxis="x", yaxis="y")
        return [m] + board_traces(task, pred[i], probs[i], x, bx, by)

    first = dynamic(active)
    layout["showlegend"] = True
    layout["legend"] = {"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"}
    if many:
        layout["legend"]["title"] = {"text": f"{len(answers)} distinct valid answers, one colour each:"}
    layout["annotations"] = [panel_title(f"trajectory {pick} (ends on {answer_labels[pick]})", (0.66, 1.0), 0.87)]
    layout.update(player(labels, steps, active))
    return {"data": data + first, "layout": layout,
            "frames": _frames(steps, labels, dynamic, list(range(n_static, n_static + len(first))), first)}


# --- Generation: N samples refining, quality against depth ----------------------------------------------
def generation(task, given: np.ndarray | None, pred: np.ndarray, probs: np.ndarray, ok: np.ndarray,
               series: dict[str, np.ndarray], labels: list[str], active: int, ncols: int = 6,
               title: str = "") -> dict:
    """pred (R, N, S), probs (R, N, S, V), ok (R, N) validity; series: name -> (R,) curves drawn under the grid
    with a marker at the shown step."""
    R, N, S = pred.shape
    steps = frame_steps(R)
    ncols = min(ncols, N)
    nrows = math.ceil(N / ncols)
    height = nrows * 150 + 330
    layout = _base_layout(height, title)
    grid_bottom = 250 / height
    grid = Mosaic(layout, N, ncols, board_size(task, S), (0.0, 1.0), (grid_bottom, 1.0), unit=figures.cell_unit(task))
    layout["xaxis2"] = _axis((0.0, 1.0), "y2", title={"text": "supervision step"}, **figures.step_ticks(labels, 12))
    layout["yaxis2"] = _axis((0.0, grid_bottom - 0.08), "x2", range=[0, 1.02], title={"text": "share / probability"})
    xs = list(range(R))
    palette = [figures.LPRM, figures.GRAM, figures.VOTE, figures.DET]
    static = [{"type": "scatter", "x": xs, "y": _r(y), "name": name, "mode": "lines", "xaxis": "x2",
               "yaxis": "y2", "line": {"color": palette[q % 4], "width": 3}, "customdata": labels,
               "hovertemplate": "step %{customdata}: %{y:.3f}<extra>" + name + "</extra>"}
              for q, (name, y) in enumerate(series.items())]

    def dynamic(i: int) -> list[dict]:
        out = merge_boards([place(board_traces(task, pred[i, j], probs[i, j], given, small=True), board_ranges(task, S),
                                  grid.box(j)) for j in range(N)])
        out.append({"type": "scatter", "x": [i, i], "y": [0, 1.02], "mode": "lines", "xaxis": "x2",
                    "yaxis": "y2", "line": {"color": INK, "width": 2, "dash": "dot"}, "hoverinfo": "skip",
                    "showlegend": False})
        return out + [grid.titles([f"#{j} {'✓' if ok[i, j] else '✗'}" for j in range(N)], size=11)]

    first = dynamic(active)
    layout["showlegend"] = True
    layout["legend"] = {"orientation": "h", "x": 0, "y": grid_bottom - 0.06, "xanchor": "left", "yanchor": "bottom"}
    layout.update(player(labels, steps, active, prefix="after step "))
    return {"data": first + static, "layout": layout,
            "frames": _frames(steps, labels, dynamic, list(range(len(first))), first)}
