"""`gram reproduce` and `gram results`: the quick report on the shipped checkpoints, the verdict logic, a
missing checkpoint, and the README's results table, which must be the one the cards give."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import ROOT, last_json, run_gram
from gram.reproduce import Budget, Claim, Measured, Shipped, claim_ablation, reproduce
from gram.results import END, START, results_table, write_readme_table

CHECKPOINTS = ROOT / "checkpoints"


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    res = run_gram("reproduce", "--quick", "--out", out, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    return out, last_json(res.stdout)


def test_quick_report_shows_all_six_claims_with_figures(quick_report):
    out, summary = quick_report
    claims = json.loads((out / "claims.json").read_text())
    assert [c["claim"] for c in claims] == [1, 2, 3, 4, 5, 6]
    assert all(not c["missing"] for c in claims), "every checkpoint the claims need is shipped"
    assert summary["verdicts"] == [c["verdict"] for c in claims]
    report = (out / "report.md").read_text()
    for i, c in enumerate(claims):
        assert f"## {i + 1}. {c['title']}" in report
        assert c["checks"], f"claim {i + 1} measured nothing"
        for f in c["figures"]:
            assert (out / f).stat().st_size > 1000 and f"]({f})" in report
    assert (out / "plotly.min.js").is_file()  # the figures open offline
    assert results_table(CHECKPOINTS) in report


@pytest.mark.parametrize("claim", [1, 2, 3, 4, 6])
def test_shipped_checkpoints_show_the_papers_qualitative_claims(quick_report, claim):
    """Coverage over deterministic recursion, growth with width, LPRM against the vote, the MNIST collapse and
    the ablation hold on what we ship."""
    claims = json.loads((quick_report[0] / "claims.json").read_text())
    assert claims[claim - 1]["verdict"] == "holds", claims[claim - 1]["checks"]


def test_verdict_counts_checks():
    c = Claim("x")
    assert c.verdict == "not measured"
    c.checks = [("a", True), ("b", False)]
    assert c.verdict == "partly"
    c.checks = [("a", True)]
    assert c.verdict == "holds"
    c.checks = [("a", False)]
    assert c.verdict == "does not hold"


def test_missing_checkpoints_are_named_not_faked(tmp_path, tiny_checkpoint):
    shutil.copytree(tiny_checkpoint, tmp_path / "nqueens7")  # GRAM present, its ablations absent
    claim, measured = claim_ablation(Shipped(tmp_path), Budget(inputs=4, samples=2, images=2, depth=2), seed=0,
                                       width=Measured())
    assert claim.missing == ["nqueens7-noise", "nqueens7-deterministic"]
    assert claim.verdict == "not measured" and set(measured) == {"nqueens7"}


def test_report_on_an_empty_directory_measures_nothing(tmp_path):
    claims = reproduce(tmp_path / "none", tmp_path / "out", Budget(inputs=2, samples=2, images=2, depth=2))
    assert [c.verdict for c in claims] == ["not measured"] * 6
    assert "not trained yet" in (tmp_path / "out" / "report.md").read_text()


def test_readme_results_table_is_built_from_the_cards():
    readme = (ROOT / "README.md").read_text()
    table = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == results_table(CHECKPOINTS), "regenerate with: python -m gram results --write README.md"


def test_results_table_reads_a_card(tmp_path, tiny_checkpoint):
    d = tmp_path / "nqueens8"
    shutil.copytree(tiny_checkpoint, d)
    card = json.loads((d / "card.json").read_text())
    card["metrics"]["test_20_samples"] = {"accuracy": 0.96, "coverage": 0.85, "n_examples": 772, "samples": 20,
                                          "n_sup": 16, "accuracy_vote": 0.97, "accuracy_lprm": 0.98, "multi_coverage": 0.7}
    (d / "card.json").write_text(json.dumps(card))
    row = next(r for r in results_table(tmp_path).splitlines() if r.startswith("| `nqueens8`"))
    assert "96.0% / 85.0%" in row and "| yes / yes |" in row and "772 inputs x 20 samples, depth 16" in row
    every = next(r for r in results_table(tmp_path).splitlines() if r.startswith("| `nqueens8` | gram"))
    assert "97.0% / 98.0%" in every and "70.0%" in every and "772 x 20, depth 16" in every
    card["init"] = "runs/nqueens8-deterministic"
    (d / "card.json").write_text(json.dumps(card))
    assert "| `nqueens8` | gram (started from `nqueens8-deterministic`) |" in results_table(tmp_path)
    card["metrics"]["test_20_samples"]["temperature"] = 0.5  # a colder prior is a different measurement: say so
    (d / "card.json").write_text(json.dumps(card))
    assert "772 inputs x 20 samples, depth 16, temperature 0.5" in results_table(tmp_path)


def test_write_readme_table_needs_markers(tmp_path):
    f = tmp_path / "README.md"
    f.write_text(f"intro\n{START}\nold\n{END}\nrest\n")
    write_readme_table(f, tmp_path)
    text = f.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "old" not in text and "not trained yet" in text
    f.write_text("no markers")
    res = run_gram("results", "--checkpoints", tmp_path, "--write", f)
    assert res.returncode == 2 and "markers" in res.stderr
