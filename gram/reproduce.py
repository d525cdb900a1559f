"""`python -m gram reproduce [--quick]`: the paper's six qualitative claims, measured on the shipped checkpoints.

Writes OUT/report.md and one offline Plotly HTML file per figure (plotly.js sits once beside them). Every
claim ends in checks computed from the numbers in the report, never written in by hand: a claim "holds"
when all its checks pass, "partly" when some do, and a checkpoint that is missing is named, not faked.

`--quick` reads fewer held-out inputs and samples (minutes on a CPU; the test suite runs it); the full run
reads every held-out input with 20 samples, like the cards. The README's table of card metrics beside the
paper's is gram/results.py's (`python -m gram results`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import style as house
from .analysis import compare_models
from .cards import card_eval
from .checkpoint import load_checkpoint
from .evaluate import accuracy, draw, lprm, metrics, pass_at, vote
from .results import pct, results_table
from .tasks import get_task
from .tasks.mnist import ON


@dataclass(frozen=True)
class Budget:
    inputs: int | None  # held-out inputs per conditional task (None: all)
    samples: int  # trajectories per input
    images: int  # unconditional samples (MNIST)
    depth: int  # deepest supervision step for the depth curves


QUICK = Budget(inputs=32, samples=16, images=64, depth=8)
FULL = Budget(inputs=None, samples=20, images=500, depth=16)


@dataclass
class Claim:
    title: str
    checks: list[tuple[str, bool]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # Markdown: tables and sentences with the numbers
    figures: list[str] = field(default_factory=list)  # the FIGURES (file names) that show it
    missing: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        passed = sum(ok for _, ok in self.checks)
        if not self.checks:
            return "not measured"
        return "holds" if passed == len(self.checks) else "partly" if passed else "does not hold"


@dataclass
class Measured:
    """One kind of run, by checkpoint name; `missing` names the checkpoints that were not there (never faked)."""
    runs: dict[str, dict] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class Shipped:
    """The checkpoints directory, each model loaded once."""

    def __init__(self, root: str | Path):
        self.root, self._cache = Path(root), {}

    def get(self, name: str):
        """(model, cfg, card) or None when the checkpoint is absent; a broken one raises CheckpointError."""
        if name not in self._cache:
            d = self.root / name
            self._cache[name] = load_checkpoint(d) if (d / "model.safetensors").is_file() else None
        return self._cache[name]


def _table(header: list[str], rows: list[list], shares: tuple[int, ...] = ()) -> list[str]:
    """A Markdown table; the columns at indices `shares` are shown as percentages."""
    def cell(j, v):
        return pct(v) if j in shares else f"{v:.3g}" if isinstance(v, float) else str(v)
    rows = [[cell(j, v) for j, v in enumerate(r)] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


# --- claims 1-3: width, on the multi-solution tasks ---------------------------------------------------
PAIRS = (("nqueens8", "nqueens8-deterministic"), ("nqueens7", "nqueens7-deterministic"),
         ("graph_coloring8", "graph_coloring8-deterministic"))


def width_runs(ck: Shipped, budget: Budget, seed: int) -> Measured:
    """Per GRAM checkpoint with a deterministic twin: both sampled the same way (gram.analysis.compare_models)."""
    out = Measured()
    for g, d in PAIRS:
        a, b = ck.get(g), ck.get(d)
        if a is None or b is None:
            out.missing += [n for n, m in ((g, a), (d, b)) if m is None]
            continue
        task = get_task(a[1].train.task)
        split = task.split("test", a[1].train.seed).sample(budget.inputs)
        out.runs[g] = compare_models(a[0], b[0], task, split, n=budget.samples, n_sup=a[1].train.n_sup, seed=seed)
        out.runs[g]["inputs"] = len(split)
    return out


def claim_coverage(width: Measured) -> Claim:
    c = Claim("GRAM covers more of the valid solutions than deterministic recursion", missing=list(width.missing))
    rows = []
    for name, r in width.runs.items():
        for mode in ("gram", "deterministic"):
            m = r[mode]
            rows.append([name, mode, r["inputs"], m["accuracy"], m["coverage"], m["multi_coverage"], m["distinct"]])
        # on inputs with one answer coverage is accuracy; the claim is about inputs with several
        g, d = r["gram"]["multi_coverage"], r["deterministic"]["multi_coverage"]
        c.checks.append((f"{name}: coverage of inputs with several answers, GRAM {pct(g)} > deterministic {pct(d)}", g > d))
    c.lines += _table(["checkpoint", "mode", "inputs", "accuracy", "coverage", "coverage (several answers)", "distinct answers"],
                      rows, shares=(3, 4, 5))
    c.lines += ["", "Coverage = distinct valid answers found / all valid answers, averaged over inputs."]
    c.figures.append("width.html")
    return c


def claim_width(width: Measured) -> Claim:
    c = Claim("Accuracy and coverage grow with the number of sampled trajectories", missing=list(width.missing))
    for name, r in width.runs.items():
        cv = r["gram"]["curves"]
        c.lines += [f"**{name}** (GRAM, {r['inputs']} held-out inputs)", ""]
        c.lines += _table(["N", "pass@N", "vote@N", "LPRM@N", "coverage@N", "distinct answers"],
                          [[n, cv["oracle"][i], cv["vote"][i], cv["lprm"][i], cv["coverage"][i], cv["distinct"][i]]
                           for i, n in enumerate(cv["n"])], shares=(1, 2, 3, 4)) + [""]
        # accuracy@1 is the mean over all N samples (the expected accuracy of one), not the first sample's luck
        n, acc1 = cv["n"][-1], cv["mean"][-1]
        c.checks.append((f"{name}: coverage@{n} {pct(cv['coverage'][-1])} > coverage@1 {pct(cv['coverage'][0])}",
                         cv["coverage"][-1] > cv["coverage"][0]))
        c.checks.append((f"{name}: pass@{n} {pct(cv['oracle'][-1])} > accuracy@1 {pct(acc1)}", cv["oracle"][-1] > acc1))
        c.checks.append((f"{name}: best of vote@{n} {pct(cv['vote'][-1])} and LPRM@{n} {pct(cv['lprm'][-1])} > accuracy@1 {pct(acc1)}",
                         max(cv["vote"][-1], cv["lprm"][-1]) > acc1))
    c.figures.append("width.html")
    return c


def claim_lprm(width: Measured, deep: Measured, tolerance: float) -> Claim:
    c = Claim("LPRM selection matches or beats majority voting")
    c.lines += [f"'Matches' means within {pct(tolerance)} (a few inputs' worth at these sizes).", ""]
    rows = []
    paired = {g for g, _ in PAIRS}  # their width curves come from the width runs
    sources = [(n, r["gram"]["curves"]) for n, r in width.runs.items()]
    sources += [(f"{n} (depth {r['n_sup']})", r["width"]) for n, r in deep.runs.items()
                if n not in paired and not r["unconditional"]]
    for name, cv in sources:
        for i, n in enumerate(cv["n"]):
            if n > 1:
                rows.append([name, n, cv["vote"][i], cv["lprm"][i]])
        c.checks.append((f"{name}: LPRM@{cv['n'][-1]} {pct(cv['lprm'][-1])} vs vote {pct(cv['vote'][-1])}",
                         cv["lprm"][-1] >= cv["vote"][-1] - tolerance))
    c.missing += width.missing + [m for m in deep.missing if m not in paired]
    c.lines += _table(["checkpoint", "N", "vote", "LPRM"], rows, shares=(2, 3))
    c.figures.append("width.html")
    return c


# --- claims 4-5: MNIST and Sudoku --------------------------------------------------------------------
def mnist_runs(ck: Shipped, budget: Budget, seed: int) -> Measured:
    """Per MNIST checkpoint: images at every supervision step up to budget.depth, from one draw."""
    out = Measured()
    task = get_task("mnist")
    for name in ("mnist", "mnist-deterministic"):
        got = ck.get(name)
        if got is None:
            out.missing.append(name)
            continue
        model, cfg, _ = got
        depths = sorted({1, 2, 4, 8, 16, 32, cfg.train.n_sup, budget.depth} & set(range(1, budget.depth + 1)))
        sets = draw(model, task, task.split("test", cfg.train.seed), budget.images, depths=depths, seed=seed)
        images = lambda d: (sets[d].answers[0] == ON).long()  # the blank input's samples
        by_depth = {d: task.quality(images(d)) for d in depths}
        pixels = images(cfg.train.n_sup)
        out.runs[name] = {"mode": cfg.model.mode, "n_sup": cfg.train.n_sup, "pixels": pixels,
                     "distinct": len(pixels.unique(dim=0)), **by_depth[cfg.train.n_sup],
                     "depths": depths, "is_by_depth": [by_depth[d]["inception_score"] for d in depths]}
    return out


def claim_collapse(mn: Measured) -> Claim:
    c = Claim("Deterministic recursion collapses on MNIST while GRAM generates varied digits", missing=list(mn.missing))
    if mn.runs:  # the samples are worth showing even without the twin to compare with
        c.figures.append("mnist.html")
    if mn.missing:
        return c
    g, d = mn.runs["mnist"], mn.runs["mnist-deterministic"]
    n = len(g["pixels"])
    c.lines += _table(["checkpoint", "mode", "samples", "distinct images", "inception score", "Frechet distance"],
                      [[k, v["mode"], n, v["distinct"], v["inception_score"], v["frechet_distance"]] for k, v in mn.runs.items()])
    c.lines += ["", f"Real held-out digits under the same classifier: IS {g['reference_inception_score']:.2f}, "
                f"FD {g['reference_frechet_distance']:.1f} ({g['reference_n']} digits)."]
    c.checks.append((f"distinct images: GRAM {g['distinct']} > deterministic {d['distinct']}", g["distinct"] > d["distinct"]))
    c.checks.append((f"inception score: GRAM {g['inception_score']:.2f} > deterministic {d['inception_score']:.2f}",
                     g["inception_score"] > d["inception_score"]))
    return c


DEPTH = ("sudoku", "nqueens8", "sudoku_uncond")  # checkpoints read at several depths


def depth_runs(ck: Shipped, budget: Budget, seed: int) -> Measured:
    """Per checkpoint in DEPTH: one draw of N trajectories, read at several depths up to budget.depth or the
    depth its card was read at (unconditional Sudoku: 128), so every depth sees the same trajectories."""
    out = Measured()
    for name in DEPTH:
        got = ck.get(name)
        if got is None:
            out.missing.append(name)
            continue
        model, cfg, card = got
        task = get_task(cfg.train.task)
        split = task.split("test", cfg.train.seed).sample(budget.inputs)
        card_depth = (card_eval(card) or {}).get("n_sup", cfg.train.n_sup)
        depths = sorted({1, 2, 4, cfg.train.n_sup, budget.depth, card_depth})
        sets = draw(model, task, split, budget.samples, depths=depths, seed=seed)
        trained = [sets[cfg.train.n_sup].first(n) for n in (1, budget.samples)]
        out.runs[name] = {"inputs": len(split), "n_sup": cfg.train.n_sup, "card_depth": card_depth, "depths": depths,
                     "unconditional": task.unconditional,
                     "width": {"n": [1, budget.samples], "vote": [vote(s) for s in trained],
                               "lprm": [lprm(s) for s in trained], "oracle": [pass_at(s) for s in trained]},
                     "mean_by_depth": [accuracy(sets[d]) for d in depths],  # over all N: less noise
                     "lprm_by_depth": [lprm(sets[d]) for d in depths]}
    return out


def claim_depth(mn: Measured, deep: Measured) -> Claim:
    c = Claim("Quality grows with recursion depth at inference", missing=[m for m in mn.missing if m == "mnist"])
    g = mn.runs.get("mnist")
    if g is not None:
        c.lines += ["**MNIST** (GRAM): inception score of the same trajectories read at each supervision step", ""]
        c.lines += _table(["depth", "inception score"], [[d, v] for d, v in zip(g["depths"], g["is_by_depth"])]) + [""]
        c.checks.append((f"MNIST: IS at depth {g['n_sup']} {g['inception_score']:.2f} > IS at depth 1 {g['is_by_depth'][0]:.2f}",
                         g["inception_score"] > g["is_by_depth"][0]))
    c.missing += deep.missing
    for name, r in deep.runs.items():
        where = "the blank input: validity" if r["unconditional"] else f"{r['inputs']} held-out inputs"
        c.lines += [f"**{name}** ({where}): accuracy per sample, and of the LPRM's pick among "
                    f"{r['width']['n'][-1]}, trained with {r['n_sup']} supervision steps", ""]
        c.lines += _table(["depth", "per sample", "LPRM pick"], [[d, a, b] for d, a, b in zip(r["depths"], r["mean_by_depth"], r["lprm_by_depth"])],
                          shares=(1, 2)) + [""]
        d = r["card_depth"]
        at = r["mean_by_depth"][r["depths"].index(d)]
        c.checks.append((f"{name}: per-sample accuracy at depth {d} (its card's) {pct(at)} > depth 1 {pct(r['mean_by_depth'][0])}",
                         at > r["mean_by_depth"][0]))
    c.figures.append("depth.html")
    return c


# --- claim 6: ablations ------------------------------------------------------------------------------
ABLATION = ("nqueens7", "nqueens7-noise", "nqueens7-deterministic")


def claim_ablation(ck: Shipped, budget: Budget, seed: int, width: Measured) -> tuple[Claim, dict]:
    """GRAM against its ablations on the same held-out inputs and seeds. A model that claim 1's width runs
    already sampled this way is read from there, not sampled again."""
    c = Claim("Ablations on N-Queens: noise without a learned mean, and no noise, both lose to full GRAM")
    measured = {}
    for g, d in PAIRS:
        if g in width.runs:
            r = width.runs[g]
            measured[g] = {**r["gram"], "inputs": r["inputs"]}
            measured[d] = {**r["deterministic"], "inputs": r["inputs"]}
    res = {}
    for name in ABLATION:
        if name in measured:
            res[name] = measured[name]
            continue
        got = ck.get(name)
        if got is None:
            c.missing.append(name)
            continue
        model, cfg, _ = got
        task = get_task(cfg.train.task)
        split = task.split("test", cfg.train.seed).sample(budget.inputs)
        s = draw(model, task, split, budget.samples, depths=[cfg.train.n_sup], seed=seed)[cfg.train.n_sup]
        res[name] = {"mode": cfg.model.mode, "inputs": len(split), **metrics(task, s)}
    if c.missing:
        return c, res
    c.lines += _table(["checkpoint", "mode", "inputs", "accuracy", "vote", "LPRM", "coverage", "coverage (several answers)"],
                      [[k, v["mode"], v["inputs"], v["accuracy"], v["accuracy_vote"], v["accuracy_lprm"], v["coverage"],
                        v["multi_coverage"]] for k, v in res.items()], shares=(3, 4, 5, 6, 7))
    full = res[ABLATION[0]]
    for name in ABLATION[1:]:
        for key, label in (("accuracy", "accuracy"), ("multi_coverage", "coverage (several answers)")):
            c.checks.append((f"{label}: GRAM {pct(full[key])} > {name} {pct(res[name][key])}", full[key] > res[name][key]))
    c.figures.append("ablation.html")
    return c, res


# --- figures -----------------------------------------------------------------------------------------
def fig_width(live: dict):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("coverage@N", "accuracy of the pick: vote (solid), LPRM (dash)"))
    for i, (name, r) in enumerate(live.items()):
        for mode, dash in (("gram", "solid"), ("deterministic", "dot")):
            cv = r[mode]["curves"]
            fig.add_trace(go.Scatter(x=cv["n"], y=cv["coverage"], name=f"{name} {mode}", legendgroup=name,
                                     line=dict(dash=dash, color=house.color(i))), 1, 1)
        cv = r["gram"]["curves"]
        fig.add_trace(go.Scatter(x=cv["n"], y=cv["vote"], name=f"{name} vote", legendgroup=name, line=dict(color=house.color(i))), 1, 2)
        fig.add_trace(go.Scatter(x=cv["n"], y=cv["lprm"], name=f"{name} LPRM", legendgroup=name, line=dict(color=house.color(i), dash="dash")), 1, 2)
    fig.update_xaxes(type="log", title_text="sampled trajectories N")
    fig.update_yaxes(range=[0, 1.02])
    return house.apply(fig, "Width: GRAM (solid) against deterministic recursion (dotted)", height=460, width=1200)


def fig_mnist(live: dict, per_row: int = 8, rows: int = 4):
    """The first samples of each MNIST checkpoint as one image grid per model."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, len(live), subplot_titles=[f"{n}: {r['distinct']} distinct of {len(r['pixels'])}, IS {r['inception_score']:.2f}"
                                                      for n, r in live.items()])
    for i, r in enumerate(live.values()):
        imgs = r["pixels"][: per_row * rows].view(-1, 28, 28).numpy()
        imgs = np.concatenate([imgs, np.zeros((per_row * rows - len(imgs), 28, 28), imgs.dtype)])
        grid = imgs.reshape(rows, per_row, 28, 28).transpose(0, 2, 1, 3).reshape(rows * 28, per_row * 28)
        fig.add_trace(go.Heatmap(z=grid[::-1], colorscale="gray_r", showscale=False), 1, i + 1)
        fig.update_xaxes(visible=False, row=1, col=i + 1)
        fig.update_yaxes(visible=False, scaleanchor=f"x{i + 1 if i else ''}", row=1, col=i + 1)
    return house.apply(fig, "MNIST samples at the trained depth", height=420, width=500 * max(1, len(live)))


def fig_bars(rows: dict, keys: tuple[str, ...], title: str):
    import plotly.graph_objects as go

    fig = go.Figure([go.Bar(name=k, x=list(rows), y=[r[k] for r in rows.values()], marker_color=house.color(i))
                     for i, k in enumerate(keys)])
    return house.apply(fig, title, height=420, width=900, barmode="group", yaxis=dict(range=[0, 1.02]))


def fig_depth(mn: dict, deep: dict):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("accuracy against depth (solid: per sample, dash: LPRM pick)",
                                              "MNIST inception score against depth"))
    for i, (name, r) in enumerate(deep.items()):
        fig.add_trace(go.Scatter(x=r["depths"], y=r["mean_by_depth"], name=f"{name} per sample", line=dict(color=house.color(i))), 1, 1)
        fig.add_trace(go.Scatter(x=r["depths"], y=r["lprm_by_depth"], name=f"{name} LPRM", line=dict(color=house.color(i), dash="dash")), 1, 1)
    for i, (name, r) in enumerate(mn.items()):
        fig.add_trace(go.Scatter(x=r["depths"], y=r["is_by_depth"], name=name, line=dict(color=house.color(i + 4))), 1, 2)
    fig.update_xaxes(type="log", title_text="supervision steps")
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    return house.apply(fig, "Depth: the same trajectories read at each supervision step", height=440, width=1200)


# what each figure file draws, from the measurements; the claims name the ones that show them
FIGURES = {
    "width.html": lambda m: fig_width(m["width"].runs),
    "mnist.html": lambda m: fig_mnist(m["mn"].runs),
    "depth.html": lambda m: fig_depth(m["mn"].runs, m["deep"].runs),
    "ablation.html": lambda m: fig_bars(m["ab"], ("accuracy", "coverage", "multi_coverage"), "N-Queens-7 ablations"),
}


# --- the report --------------------------------------------------------------------------------------
def reproduce(checkpoints: str | Path, out: str | Path, budget: Budget, seed: int = 0, log=None) -> list[Claim]:
    log = log or (lambda s: None)
    ck, out = Shipped(checkpoints), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log("width: GRAM and deterministic twins")
    width = width_runs(ck, budget, seed)
    log("depth: Sudoku and N-Queens")
    deep = depth_runs(ck, budget, seed)
    log("mnist: samples against depth")
    mn = mnist_runs(ck, budget, seed)
    log("ablations")
    ablation, ab = claim_ablation(ck, budget, seed, width)
    claims = [claim_coverage(width), claim_width(width), claim_lprm(width, deep, tolerance=0.02), claim_collapse(mn),
              claim_depth(mn, deep), ablation]
    measured = {"width": width, "deep": deep, "mn": mn, "ab": ab}
    for fname in dict.fromkeys(f for c in claims for f in c.figures):  # each once, however many claims it shows
        # plotly.js written once beside the figures: the report opens offline
        FIGURES[fname](measured).write_html(out / fname, include_plotlyjs="directory")
    seconds = time.perf_counter() - t0
    (out / "report.md").write_text(render(claims, budget, checkpoints, seed, seconds))
    (out / "claims.json").write_text(json.dumps([{"claim": i + 1, "title": c.title, "verdict": c.verdict,
                                                  "checks": [{"check": s, "passed": ok} for s, ok in c.checks],
                                                  "missing": c.missing, "figures": c.figures} for i, c in enumerate(claims)], indent=2))
    return claims


def render(claims: list[Claim], budget: Budget, checkpoints, seed: int, seconds: float) -> str:
    lines = ["# GRAM: the paper's claims on our checkpoints", "",
             f"Checkpoints: `{checkpoints}`. Budget: {budget.inputs or 'all'} held-out inputs per task, "
             f"{budget.samples} trajectories each, {budget.images} MNIST samples, depth up to {budget.depth}; seed {seed}; "
             f"{seconds:.0f} s on {torch.get_num_threads()} CPU thread(s).", "",
             "| # | claim | verdict |", "|---|---|---|"]
    lines += [f"| {i + 1} | {c.title} | {c.verdict} |" for i, c in enumerate(claims)] + [""]
    for i, c in enumerate(claims):
        lines += [f"## {i + 1}. {c.title}", "", f"**Verdict: {c.verdict}.**", ""]
        lines += [f"- {'pass' if ok else 'FAIL'}: {s}" for s, ok in c.checks] + [""]
        if c.missing:
            lines += [f"Missing checkpoints (not measured): {', '.join(f'`{m}`' for m in c.missing)}.", ""]
        lines += c.lines + [""]
        lines += [f"Figure: [{f}]({f})" for f in c.figures] + ([""] if c.figures else [])
    lines += ["## Shipped checkpoints against the paper (from their cards)", "", results_table(checkpoints), ""]
    return "\n".join(lines)
