"""The README's results tables, from the checkpoints' cards (`python -m gram results [--write README.md]`): each
target beside the paper's number, whether it is met, and one line per shipped checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .cards import card_eval, read_card


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _conflicts(m):
    picked = f" ({m['conflicts_per_graph_lprm']:.2f} in the LPRM pick)" if "conflicts_per_graph_lprm" in m else ""
    return f"{m['conflicts_per_graph']:.2f} per sample{picked}"


def _mnist(m):
    text = f"IS {m['inception_score']:.2f} ({pct(m['is_share'])} of real {m['reference_inception_score']:.2f})"
    twin = m.get("deterministic_is")
    return text + ("; no deterministic twin" if twin is None else f"; deterministic IS {twin:.2f}")


@dataclass(frozen=True)
class Bound:
    """One part of a target: the metric `what` of a card's evaluation (or one that _derived adds) against value."""
    what: str
    op: str  # ">=" or "<="
    value: float
    text: str = ""  # how the target reads, where not "op value"
    share: bool = True  # the value is a share, written as a percentage

    def met(self, m: dict) -> bool:
        v = m.get(self.what)
        return v is not None and (v >= self.value if self.op == ">=" else v <= self.value)

    def __str__(self) -> str:
        return self.text or f"{self.op} " + (f"{100 * self.value:g}%" if self.share else f"{self.value:g}")


@dataclass(frozen=True)
class Target:
    checkpoint: str
    metric: str
    paper: str
    bounds: tuple[Bound, ...]  # none: a checkpoint whose numbers are reported, not judged
    ours: Callable[[dict], str]  # its numbers, as the table shows them


TARGETS = (
    Target("nqueens8", "accuracy@1 / coverage@20", "99.7% / 90.3%",
           (Bound("accuracy", ">=", 0.95), Bound("coverage", ">=", 0.80)),
           lambda m: f"{pct(m['accuracy'])} / {pct(m['coverage'])}"),
    Target("nqueens10", "accuracy@1 / coverage@20", "89.7% / 57.5%", (),
           lambda m: f"{pct(m['accuracy'])} / {pct(m['coverage'])}"),
    # read per sample, the strict reading; the pick is what width scaling answers
    Target("graph_coloring8", "conflicts per graph / coverage@20", "2.7 (total) / 85.8%",
           (Bound("conflicts_per_graph", "<=", 0.05, share=False), Bound("coverage", ">=", 0.70)),
           lambda m: f"{_conflicts(m)} / {pct(m['coverage'])}"),
    Target("graph_coloring10", "conflicts in total / coverage@20", "3.3 (total) / 51.3%", (),
           lambda m: f"{m['conflicts_total']:.1f} in total, {_conflicts(m)} / {pct(m['coverage'])}"),
    Target("sudoku", "exact match, LPRM pick of 20", "97.0% (Sudoku-Extreme)", (Bound("accuracy_lprm", ">=", 0.90),),
           lambda m: pct(m["accuracy_lprm"])),
    Target("sudoku_uncond", "valid boards / distinct", "99.05% valid",
           (Bound("validity", ">=", 0.90), Bound("all_distinct", ">=", 1, text="all distinct")),
           lambda m: f"{pct(m['validity'])} valid, {pct(m['distinct'])} distinct"),
    Target("mnist", "inception score vs real digits; deterministic", "IS 2.04; deterministic collapses",
           (Bound("is_share", ">=", 0.80, text="IS >= 80% of real"),
            Bound("deterministic_worse", ">=", 1, text="deterministic worse")), _mnist),
)


def _derived(m: dict, root: Path) -> dict:
    """The metrics some targets read that a card does not hold: the IS as a share of real digits, and against the
    deterministic twin's; whether every valid board is distinct (no valid board shows nothing)."""
    out = dict(m)
    if "inception_score" in m:
        out["is_share"] = m["inception_score"] / m["reference_inception_score"]
        twin = root / "mnist-deterministic" / "card.json"
        det = card_eval(read_card(twin)) if twin.is_file() else None
        if det is not None:
            out["deterministic_is"] = det["inception_score"]
            out["deterministic_worse"] = float(det["inception_score"] < m["inception_score"])
    if "validity" in m:
        out["all_distinct"] = float(m["validity"] > 0 and m["distinct"] == 1.0)
    return out


def results_table(checkpoints: str | Path) -> str:
    root = Path(checkpoints)
    rows = ["| checkpoint | metric (held-out) | ours | target | met | paper (10M params, 8 GPUs) | steps | evaluated on |",
            "|---|---|---|---|---|---|---|---|"]
    for t in TARGETS:
        target = " / ".join(map(str, t.bounds)) or "report"
        card_path = root / t.checkpoint / "card.json"
        card = read_card(card_path) if card_path.is_file() else None
        m = card_eval(card, 20) if card else None
        if m is None:
            rows.append(f"| `{t.checkpoint}` | {t.metric} | not trained yet | {target} | no | {t.paper} | | |")
            continue
        m = _derived(m, root)
        met = " / ".join("yes" if b.met(m) else "no" for b in t.bounds) or "(report)"
        where = f"{m['n_examples']} inputs x {m['samples']} samples, {_depth(m)}"
        rows.append(f"| `{t.checkpoint}` | {t.metric} | {t.ours(m)} | {target} | {met} | {t.paper} | "
                    f"{card['steps']:,} | {where} |")
    return "\n".join(rows + ["", every_checkpoint_table(root)])


def _depth(m: dict) -> str:
    """How the samples were drawn: the depth, and the prior's temperature where it was not the trained 1."""
    t = m.get("temperature", 1.0)
    return f"depth {m['n_sup']}" + (f", temperature {t:g}" if t != 1.0 else "")


def _task_specific(m: dict) -> str:
    if "conflicts_per_graph" in m:
        return f"conflicts/graph {_conflicts(m)}"
    if "inception_score" in m:
        return f"IS {m['inception_score']:.2f}, FD {m['frechet_distance']:.0f}, {m['distinct']:.0f} distinct"
    if "validity" in m:
        return f"{pct(m['validity'])} valid"
    return ""


def every_checkpoint_table(root: Path) -> str:
    """One line per shipped checkpoint: how it was trained and its held-out numbers."""
    rows = ["| checkpoint | mode | parameters | steps | training | accuracy | vote / LPRM | coverage | several-answer coverage | other | evaluated on |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in sorted(p for p in root.iterdir() if (p / "card.json").is_file()) if root.is_dir() else []:
        card = read_card(d / "card.json")
        m = card_eval(card, 20)
        if m is None:
            continue
        multi = pct(m["multi_coverage"]) if "multi_coverage" in m and m["n_examples"] > 1 else ""
        mode = card["mode"] + (f" (started from `{Path(card['init']).name}`)" if card.get("init") else "")
        rows.append(f"| `{d.name}` | {mode} | {card['parameters']:,} | {card['steps']:,} | {card['wall_seconds'] / 60:.0f} min | "
                    f"{pct(m['accuracy'])} | {pct(m['accuracy_vote'])} / {pct(m['accuracy_lprm'])} | {pct(m['coverage'])} | "
                    f"{multi} | {_task_specific(m)} | {m['n_examples']} x {m['samples']}, {_depth(m)} |")
    return "\n".join(rows)


START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_readme_table(readme: str | Path, checkpoints: str | Path) -> None:
    path = Path(readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} markers to put the table between")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{results_table(checkpoints)}\n{END}{tail}")
