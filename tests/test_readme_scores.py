"""The README's score tables say what the committed sweep results say: the hopper-medium study's table and the
nine-task sweep's finished cells are recomputed from `benchmarks/results/sweeps/<sweep>/results.jsonl` with the
report code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import load_benchmark_script

from decision_minrnn.sweep.report import build_report, interval_text
from decision_minrnn.sweep.runner import read_results
from decision_minrnn.sweep.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def section(text: str, heading: str) -> str:
    """The README text from `heading` to the next heading of the same or a higher level."""
    start = text.index(heading)
    level = len(heading) - len(heading.lstrip("#"))
    nxt = re.search(rf"^#{{1,{level}}} ", text[start + len(heading):], flags=re.M)
    return text[start:start + len(heading) + (nxt.start() if nxt else len(text))]


def table_rows(text: str) -> list[list[str]]:
    """Cells of the markdown table rows (header and rule left out)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]


def test_section_helper_stops_at_the_next_heading():
    text = "## A\none\n### A.1\ntwo\n## B\nthree\n"
    assert section(text, "## A") == "## A\none\n### A.1\ntwo\n"
    assert section(text, "### A.1") == "### A.1\ntwo\n"


@pytest.mark.parametrize("sweep", ["hopper-medium"])
def test_readme_study_table_matches_the_committed_results(sweep, tmp_path):
    spec = load_spec(sweep)
    rows = read_results(ROOT / "benchmarks" / "results" / "sweeps" / sweep / "results.jsonl")
    assert rows, "no committed results"
    report = build_report(rows, tmp_path, model_order=[m.name for m in spec.models], task_order=list(spec.tasks),
                          labels={m.name: m.display for m in spec.models}, reference=spec.reference, reps=10,
                          plots=False)
    (task,) = spec.tasks
    per_task = report["per_task"][task]
    by_first_word = {m.display.split()[0]: m.name for m in spec.models} | {"MLP": "bc"}
    table = table_rows(section(README.read_text(), "### Under the protocol"))
    seen = set()
    for cells in table:
        if cells[0].startswith("the dataset itself"):
            assert cells[1] == f"{per_task['dataset']:.1f}"
            continue
        model = by_first_word[cells[0].split()[0]]
        got = per_task["models"][model]
        lo, hi = got["ci"]
        assert cells[1].replace("*", "") == f"{got['mean']:.1f} [{lo:.1f}, {hi:.1f}]", cells[0]
        assert cells[2] == " / ".join(f"{got['seeds'][s]:.1f}" for s in spec.seeds), cells[0]
        seen.add(model)
    assert seen == {m.name for m in spec.models}


def test_readme_nine_task_table_shows_finished_cells_as_the_committed_results_say(tmp_path):
    """The d4rl-nine table in the README (finished cells only) against the report recomputed from the committed rows.

    The sweep's rows are committed as cells finish, so the README may lag: a cell it shows as still running may have
    finished since. Every number it does show must be the report's, over all of the sweep's seeds.
    """
    spec = load_spec("d4rl-nine")
    rows = read_results(ROOT / "benchmarks" / "results" / "sweeps" / "d4rl-nine" / "results.jsonl")
    assert rows, "no committed results"
    report = build_report(rows, tmp_path, model_order=[m.name for m in spec.models], task_order=list(spec.tasks),
                          labels={m.name: m.display for m in spec.models},
                          reference=spec.reference, reps=10, plots=False)
    text = section(README.read_text(), "## Scores: the nine tasks")
    lines = [ln for ln in text.splitlines() if ln.startswith("| task | data |")]
    assert len(lines) == 1, "one per-task table in the section"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    by_label = {m.display: m.name for m in spec.models} | {"MLP-BC": "bc"}
    columns = {i: by_label[h] for i, h in enumerate(header) if h in by_label}
    assert set(columns.values()) == {m.name for m in spec.models}, header
    block = text[text.index(lines[0]):].split("\n\n")[0]  # the table: the lines up to the next blank one
    table = table_rows(block)
    assert [cells[0] for cells in table] == list(spec.tasks)
    shown = 0
    for cells in table:
        task = report["per_task"][cells[0]]
        data = [r["dataset_return_normalized_mean"] for r in rows if r["task"] == cells[0]]
        # the data column is the mean over the task's cells of their datasets' own means: with one dataset the
        # report's number; with datasets regenerated on different machines ("mixed data", which a cell finished
        # since the README was written can make a task) it lies between them
        value = float(cells[1].split()[0])
        assert round(min(data), 1) <= value <= round(max(data), 1), cells[0]
        if "mixed data" not in cells[1] and not task["dataset_values_differ"]:
            assert cells[1] == f"{task['dataset']:.1f}", cells[0]
        for i, model in columns.items():
            if cells[i] == "\N{HORIZONTAL ELLIPSIS}":
                continue
            got = task["models"][model]
            assert got["n"] == len(spec.seeds), (cells[0], model)
            lo, hi = got["ci"]
            assert cells[i] == f"{got['mean']:.1f} [{lo:.1f}, {hi:.1f}]", (cells[0], model)
            shown += 1
        pub = task["published"]
        assert cells[-1] == " / ".join(f"{pub[k]['mean']:.1f}" for k in ("DT", "BC")), cells[0]
    assert shown > 0


def test_readme_nine_task_aggregates_are_the_reports(tmp_path):
    """The README's across-task block (rliable IQM, mean, optimality gap, P(X > DT)) against the report recomputed
    from the committed rows with the report's own bootstrap (2000 resamples, seed 0).

    Lag is allowed as in the table: a model whose README entry uses fewer runs per task than the committed rows now
    give (cells finished since) is skipped, and so is its P(X > DT) row; every other number must be the report's.
    """
    pytest.importorskip("rliable")
    spec = load_spec("d4rl-nine")
    rows = read_results(ROOT / "benchmarks" / "results" / "sweeps" / "d4rl-nine" / "results.jsonl")
    report = build_report(rows, tmp_path, model_order=[m.name for m in spec.models], task_order=list(spec.tasks),
                          labels={m.name: m.display for m in spec.models}, reference=spec.reference, plots=False)
    text = section(README.read_text(), "## Scores: the nine tasks")
    start, end = "<!-- across-tasks: from the report -->", "<!-- /across-tasks -->"
    block = text[text.index(start) + len(start):text.index(end)]
    by_label = {m.display: m.name for m in spec.models}
    agg = report["aggregate"]

    tables = [chunk for chunk in block.split("\n\n") if chunk.startswith("|")]
    assert len(tables) == 2, "the aggregate table and the probability-of-improvement table"
    current, checked = set(), 0
    for cells in table_rows(tables[0]):
        model = by_label[cells[0]]
        got = agg["models"].get(model)
        assert got is not None, f"{cells[0]} is in the README's aggregates but not the report's"
        if int(cells[1]) < got["runs"]:
            continue  # the README lags: more seeds have finished since
        assert int(cells[1]) == got["runs"], cells[0]
        assert cells[2:] == [interval_text(got[k], got["runs"]) for k in ("iqm", "mean", "optimality_gap")], cells[0]
        current.add(model)
        checked += 1
    for cells in table_rows(tables[1]):
        model = by_label[cells[0]]
        if model not in current or spec.reference not in current:
            continue
        p = agg["probability_of_improvement"][model]
        runs = min(agg["models"][model]["runs"], agg["models"][spec.reference]["runs"])
        assert cells[1] == interval_text(p, runs, 2), cells[0]
        checked += 1
    assert checked > 0


def _committed_report() -> tuple[str, dict]:
    folder = ROOT / "benchmarks" / "results" / "sweeps" / "d4rl-nine"
    return (folder / "report.md").read_text(), json.loads((folder / "report.json").read_text())


def test_readme_nine_task_section_is_the_committed_report():
    """The README's report parts (finished-cells table, cost, across-tasks, status line) are the committed report.md's,
    copied by benchmarks/readme_scores.py: nothing there is typed by hand. (The tests above check the same numbers
    against the committed rows.)"""
    readme_scores = load_benchmark_script("readme_scores")
    report_md, report = _committed_report()
    readme = README.read_text()
    assert readme_scores.refresh(readme, report_md, report) == readme, \
        "README is not the committed report's: run python benchmarks/readme_scores.py"


def test_readme_scores_rewrites_stale_blocks_and_refuses_a_missing_one():
    readme_scores = load_benchmark_script("readme_scores")
    report_md, report = _committed_report()
    readme = README.read_text()
    section_text = section(readme, "## Scores: the nine tasks")
    cost = section_text[section_text.index("<!-- cost: from the report -->"):section_text.index("<!-- /cost -->")]
    stale = readme.replace(cost, "<!-- cost: from the report -->\n| old | table |\n")
    stale = readme_scores.STATUS.sub("**Status: 1 of 189 rows by yesterday**", stale, count=1)
    assert stale != readme
    assert readme_scores.refresh(stale, report_md, report) == readme
    with pytest.raises(ValueError, match="no <!-- cost"):
        readme_scores.refresh(readme.replace("<!-- /cost -->", ""), report_md, report)


def test_readme_nine_task_cost_table_is_the_committed_results(tmp_path):
    """The README's cost table (training minutes, policy time per action) against the costs recomputed from the
    committed rows; a model whose README row counts fewer cells than the rows now hold lags and is skipped."""
    spec = load_spec("d4rl-nine")
    rows = read_results(ROOT / "benchmarks" / "results" / "sweeps" / "d4rl-nine" / "results.jsonl")
    report = build_report(rows, tmp_path, model_order=[m.name for m in spec.models], task_order=list(spec.tasks),
                          labels={m.name: m.display for m in spec.models}, reference=spec.reference, reps=10,
                          plots=False)
    expected = {cells[0]: cells for cells in table_rows(section(report["markdown"], "## Cost per model"))}
    text = section(README.read_text(), "## Scores: the nine tasks")
    block = text[text.index("<!-- cost: from the report -->"):text.index("<!-- /cost -->")]
    checked = 0
    for cells in table_rows(block):
        assert cells[0] in expected, f"{cells[0]} is in the README's cost table but not the report's"
        if int(cells[1]) < int(expected[cells[0]][1]):
            continue
        assert cells == expected[cells[0]]
        checked += 1
    assert checked > 0
