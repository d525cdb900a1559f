"""The README's results tables, from the checkpoints' cards (`python -m gram results [--write README.md]`): each
target beside the paper's number, whether it is met, and one line per shipped checkpoint."""
from __future__ import annotations

from pathlib import Path

from .cards import card_eval, read_card


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _row_nqueens(m):
    return f"{pct(m['accuracy'])} / {pct(m['coverage'])}", [m["accuracy"] >= 0.95, m["coverage"] >= 0.80]


def _conflicts(m):
    picked = f" ({m['conflicts_per_graph_lprm']:.2f} in the LPRM pick)" if "conflicts_per_graph_lprm" in m else ""
    return f"{m['conflicts_per_graph']:.2f} per sample{picked}"


def _row_graph(m):  # the target is read per sample, the strict reading; the pick is what width scaling answers
    return f"{_conflicts(m)} / {pct(m['coverage'])}", [m["conflicts_per_graph"] <= 0.05, m["coverage"] >= 0.70]


def _row_sudoku(m):
    return pct(m["accuracy_lprm"]), [m["accuracy_lprm"] >= 0.90]


def _row_uncond(m):
    return f"{pct(m['validity'])} valid, {pct(m['distinct'])} distinct", [m["validity"] >= 0.90, m["validity"] > 0 and m["distinct"] == 1.0]  # no valid board shows nothing


def _row_mnist(m, det):
    ratio = m["inception_score"] / m["reference_inception_score"]
    text = f"IS {m['inception_score']:.2f} ({pct(ratio)} of real {m['reference_inception_score']:.2f})"
    if det is None:
        return text + "; no deterministic twin", [ratio >= 0.8, False]
    text += f"; deterministic IS {det['inception_score']:.2f}"
    return text, [ratio >= 0.8, det["inception_score"] < m["inception_score"]]


# checkpoint, metric, target, paper, how to read the card: (text, whether each part of the target is met)
TARGETS = (
    ("nqueens8", "accuracy@1 / coverage@20", ">= 95% / >= 80%", "99.7% / 90.3%", _row_nqueens),
    ("nqueens10", "accuracy@1 / coverage@20", "report", "89.7% / 57.5%", _row_nqueens),
    ("graph_coloring8", "conflicts per graph / coverage@20", "<= 0.05 / >= 70%", "2.7 (total) / 85.8%", _row_graph),
    ("sudoku", "exact match, LPRM pick of 20", ">= 90%", "97.0% (Sudoku-Extreme)", _row_sudoku),
    ("sudoku_uncond", "valid boards / distinct", ">= 90%, all distinct", "99.05% valid", _row_uncond),
    ("mnist", "inception score vs real digits; deterministic", ">= 80% of real; deterministic worse", "IS 2.04; deterministic collapses", _row_mnist),
)


def results_table(checkpoints: str | Path) -> str:
    root = Path(checkpoints)
    rows = ["| checkpoint | metric (held-out) | ours | target | met | paper (10M params, 8 GPUs) | steps | evaluated on |",
            "|---|---|---|---|---|---|---|---|"]
    for name, metric, target, paper, read in TARGETS:
        card_path = root / name / "card.json"
        card = read_card(card_path) if card_path.is_file() else None
        m = card_eval(card, 20) if card else None
        if m is None:
            rows.append(f"| `{name}` | {metric} | not trained yet | {target} | no | {paper} | | |")
            continue
        if name == "mnist":
            det_path = root / "mnist-deterministic" / "card.json"
            ours, met = read(m, card_eval(read_card(det_path)) if det_path.is_file() else None)
        else:
            ours, met = read(m)
        met_text = "(report)" if target == "report" else " / ".join("yes" if ok else "no" for ok in met)
        where = f"{m['n_examples']} inputs x {m['samples']} samples, {_depth(m)}"
        rows.append(f"| `{name}` | {metric} | {ours} | {target} | {met_text} | {paper} | {card['steps']:,} | {where} |")
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
