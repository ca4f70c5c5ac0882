"""Copy the nine-task sweep's committed report into the README: `python benchmarks/readme_scores.py [--check]`.

The README's "Scores: the nine tasks" section shows parts of `benchmarks/results/sweeps/d4rl-nine/report.md`
(regenerate it first: `sweep_agents d4rl-nine --out benchmarks/results/sweeps/d4rl-nine --report`). Each part sits
between `<!-- NAME: from the report -->` and `<!-- /NAME -->` and is replaced whole, so the README never holds a
number typed by hand there: `finished-cells` (the per-task table, finished cells only), `cost` (cost per model) and
`across-tasks` (rliable aggregates); the status line ("**Status: N of 189 rows by ...**") takes the report's row count
and the time its newest row finished. `--check` changes nothing and exits 1 when the README is not the report's
(tests/test_readme_scores.py runs the same check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REPORT_DIR = ROOT / "benchmarks" / "results" / "sweeps" / "d4rl-nine"
SECTION = "## Scores: the nine tasks"
STATUS = re.compile(r"\*\*Status: \d+ of (\d+) rows by [^*]+\*\*")


def report_section(report_md: str, heading: str) -> str:
    """The text under `heading` ("## ...") of report.md, up to the next "## " heading, without the heading."""
    start = report_md.index(heading + "\n") + len(heading) + 1
    nxt = report_md.find("\n## ", start)
    return report_md[start:None if nxt < 0 else nxt].strip()


def finished_cells_table(report_md: str) -> str:
    """The table of the report's "finished cells only" section (the full per-task table when every cell is in)."""
    for heading in ("## Per task, finished cells only", "## Per task"):
        found = [ln for ln in report_md.splitlines() if ln.startswith(heading)]
        if found:
            text = report_section(report_md, found[0])
            return "\n".join(ln for ln in text.splitlines() if ln.startswith("|"))
    raise ValueError("report.md has no per-task table")


def across_tasks(report_md: str) -> str:
    """The report's "Across tasks" text without its plots, the models left out named in one line."""
    text = report_section(report_md, "## Across tasks")
    text = text.split("\n![")[0].strip()
    left = [ln.split(" is left out")[0] for ln in text.splitlines() if " is left out of the aggregates" in ln]
    text = "\n".join(ln for ln in text.splitlines() if " is left out of the aggregates" not in ln)
    text = re.sub(r"\n{3,}", "\n\n", text)
    if left:
        names = left[0] if len(left) == 1 else ", ".join(left[:-1]) + " and " + left[-1]
        line = f"{names} {'is' if len(left) == 1 else 'are'} left out until they have a result on every task (see the table)."
        head, sep, tail = text.partition("\n\nProbability of improvement")
        text = f"{head}\n\n{line}{sep}{tail}"
    return text


def replace_block(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}: from the report -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        raise ValueError(f"the README's nine-task section has no {start} ... {end} block")
    a, b = text.index(start) + len(start), text.index(end)
    return f"{text[:a]}\n\n{body}\n\n{text[b:]}"


def status_time(report: dict[str, Any]) -> str:
    latest = report.get("latest_finished_at")
    if not latest:
        raise ValueError("report.json has no latest_finished_at: regenerate it with sweep_agents --report")
    return dt.datetime.fromisoformat(latest).astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def refresh(readme: str, report_md: str, report: dict[str, Any]) -> str:
    """`readme` with its nine-task section's report parts replaced by those of `report_md` / `report`."""
    a = readme.index(SECTION)
    nxt = re.search(r"^## ", readme[a + len(SECTION):], flags=re.M)
    b = a + len(SECTION) + nxt.start() if nxt else len(readme)
    section = readme[a:b]
    section = replace_block(section, "finished-cells", finished_cells_table(report_md))
    section = replace_block(section, "cost", report_section(report_md, "## Cost per model"))
    section = replace_block(section, "across-tasks", across_tasks(report_md))
    found = STATUS.search(section)
    if not found:
        raise ValueError("the README's nine-task section has no status line")
    status = f"**Status: {report['cells']} of {found.group(1)} rows by {status_time(report)}**"
    section = section[:found.start()] + status + section[found.end():]
    return readme[:a] + section + readme[b:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README is out of date")
    args = parser.parse_args(argv)
    readme = README.read_text()
    new = refresh(readme, (REPORT_DIR / "report.md").read_text(),
                  json.loads((REPORT_DIR / "report.json").read_text()))
    if args.check:
        if new != readme:
            print("README.md's nine-task section is not the committed report's: run python benchmarks/readme_scores.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != readme:
        README.write_text(new)
    print(f"README.md {'refreshed' if new != readme else 'already up to date'} from {REPORT_DIR / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
