"""The sweep's report, from `results.jsonl` alone: per-task t-intervals over seeds, across-task aggregates (rliable).

Scores are recomputed from each row's raw evaluation returns with `decision_minrnn.tasks.normalized_score` (D4RL's
reference returns), never copied from a stored normalized value, so a report can be trusted even if a row came
from another version. One cell's score is the mean over its final evaluation's episodes; seeds are the unit of
replication.

- Per task: mean over seeds and a 95% t-interval (sample std, t quantile with n - 1 degrees of freedom: with 3-5
  seeds a normal interval would be far too narrow), next to the dataset's own mean return and behaviour cloning.
- Across tasks (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice", via `rliable`): IQM and mean
  with 95% stratified-bootstrap intervals (runs resampled within each task), optimality gap (distance below the
  expert, 100), probability of improvement of each model over the reference model, a performance profile and an
  interval plot. Without rliable the per-task table is still written and the aggregates say how to get them.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import UserInputError
from ..io import write_json
from ..tasks import published_scores, published_source

# 0.975 quantiles of Student's t (two-sided 95%) by degrees of freedom, for machines without scipy
_T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
         10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098,
         18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739, 23: 2.0687, 24: 2.0639, 25: 2.0595,
         26: 2.0555, 27: 2.0518, 28: 2.0484, 29: 2.0452, 30: 2.0423, 40: 2.0211, 60: 2.0003, 120: 1.9799}
OPTIMAL = 100.0  # the expert on the D4RL-normalized scale: the optimality gap is measured below it
INSTALL_HINT = "install .[sweep] (rliable) for IQM, bootstrap intervals, probability of improvement and plots"


def t_quantile(dof: int) -> float:
    """The 0.975 quantile of Student's t with `dof` degrees of freedom (scipy if present, else a table that rounds
    the degrees of freedom down, so the interval is never narrower than the exact one)."""
    if dof < 1:
        raise ValueError("a t-interval needs at least 2 values")
    try:
        from scipy import stats

        return float(stats.t.ppf(0.975, dof))
    except ImportError:
        return _T975[max(k for k in _T975 if k <= dof)] if dof <= 120 else 1.9600


def t_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% t-interval of `values` (no interval for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "ci": None, "n": n, "std": None}
    std = float(x.std(ddof=1))
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return {"mean": mean, "ci": [mean - half, mean + half], "n": n, "std": std}


def cell_score(row: dict[str, Any]) -> float | None:
    """A cell's score: the mean normalized score of its raw returns (None when the row has no returns)."""
    from ..tasks import normalized_score

    returns = row.get("returns")
    if not returns:
        return None
    return float(np.mean(normalized_score(row["task"], np.asarray(returns, dtype=np.float64))))


def dataset_score(row: dict[str, Any]) -> float | None:
    """The dataset's mean episode return, normalized (recomputed from the raw mean when the row has it)."""
    from ..tasks import normalized_score

    raw = row.get("dataset_return_raw_mean")
    if raw is not None and np.isfinite(raw):
        return float(normalized_score(row["task"], raw))
    value = row.get("dataset_return_normalized_mean")
    return float(value) if value is not None else None


def _order(seen: Sequence[str], preferred: Sequence[str] | None) -> list[str]:
    preferred = [x for x in (preferred or []) if x in seen]
    return preferred + [x for x in seen if x not in preferred]


def _fmt(stat: dict[str, Any] | None, n_max: int) -> str:
    if not stat:
        return "-"
    text = f"{stat['mean']:.1f}"
    if stat.get("ci"):
        text += f" [{stat['ci'][0]:.1f}, {stat['ci'][1]:.1f}]"
    if stat["n"] != n_max:
        text += f" (n={stat['n']})"
    return text


def per_task(rows: Sequence[dict[str, Any]], tasks: list[str], models: list[str]) -> dict[str, Any]:
    """Per task: each model's per-seed scores, mean and t-interval, and the dataset's normalized mean return."""
    out: dict[str, Any] = {}
    for task in tasks:
        task_rows = [r for r in rows if r["task"] == task]
        data = [d for d in (dataset_score(r) for r in task_rows) if d is not None]
        sources = sorted({str(r.get("data_source")) for r in task_rows})
        entry: dict[str, Any] = {"dataset": float(np.mean(data)) if data else None, "data_sources": sources,
                                 "dataset_values_differ": bool(data) and float(np.ptp(data)) > 1e-6, "models": {},
                                 "published": _published(task)}
        if entry["dataset_values_differ"]:
            entry["datasets"] = _datasets_used(task_rows)
        for model in models:
            seeds = {int(r["seed"]): cell_score(r) for r in task_rows if r["model"] == model}
            seeds = {s: v for s, v in sorted(seeds.items()) if v is not None}
            if seeds:
                entry["models"][model] = {**t_interval(list(seeds.values())), "seeds": seeds}
        out[task] = entry
    return out


def _datasets_used(task_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct datasets a task's cells were trained on (told apart by the data's own mean), each with its cells
    as {model: [seeds]}, most used first."""
    groups: dict[float, dict[str, list[int]]] = {}
    for r in task_rows:
        d = dataset_score(r)
        if d is not None:
            groups.setdefault(round(d, 6), {}).setdefault(r["model"], []).append(int(r["seed"]))
    out = [{"normalized_mean": d, "cells": {m: sorted(s) for m, s in cells.items()}} for d, cells in groups.items()]
    return sorted(out, key=lambda g: -sum(len(s) for s in g["cells"].values()))


def _published(task: str) -> dict[str, dict[str, float]]:
    try:
        return published_scores(task)
    except UserInputError:  # a task name the package does not know (a hand-written spec): no published column
        return {}


def _median(values: Sequence[Any], unit: float = 1.0) -> dict[str, Any] | None:
    """Median of the values that are there (divided by `unit`) and how many there were; None when none is."""
    x = [float(v) / unit for v in values if v is not None]
    return {"median": float(np.median(x)), "n": len(x)} if x else None


def costs(rows: Sequence[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """Per model: median minutes per cell (cells run start to end in one go: read-back or resumed cells say
    nothing about it), median training minutes (optimisation only, resumed runs included), median policy time
    per action in the final evaluation, and the median 15-minute load average when the rows were written."""
    out = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        out[model] = {
            "cells": len(mine),
            "cell_minutes": _median([r.get("wall_s") for r in mine if r.get("actions") == ["train"]], 60),
            "train_minutes": _median([r.get("train_s") for r in mine], 60),
            "train_cpu_minutes": _median([r.get("train_cpu_s") for r in mine], 60),
            "policy_ms_per_action": _median([r.get("policy_ms_per_action") for r in mine]),
            "load_15min": _median([(r.get("load_avg") or [None] * 3)[2] for r in mine]),
        }
    return out


def _score_matrices(table: dict[str, Any], tasks: list[str], models: list[str]) -> tuple[dict[str, np.ndarray],
                                                                                         dict[str, str]]:
    """(runs x tasks) score matrices for models that have every task; the first n seeds of each task, n = the
    fewest seeds the model has on any task (rliable needs a rectangle). Others are named with the reason."""
    mats, excluded = {}, {}
    for model in models:
        missing = [t for t in tasks if model not in table[t]["models"]]
        if missing:
            excluded[model] = f"no result yet on {', '.join(missing)}"
            continue
        per = [list(table[t]["models"][model]["seeds"].values()) for t in tasks]
        n = min(len(p) for p in per)
        mats[model] = np.array([p[:n] for p in per], dtype=np.float64).T
    return mats, excluded


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded for the block, then restored.

    Why: rliable's stratified bootstrap draws its resamples with `np.random.choice` (the global generator) and
    ignores the `random_state` it is given, so without this the report's intervals changed from run to run.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """arch (under rliable) warns on every call that `random_state` is deprecated; rliable passes it, not we."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*random_state.*")
        yield


def aggregates(table: dict[str, Any], tasks: list[str], models: list[str], *, reference: str | None, reps: int,
               seed: int) -> dict[str, Any]:
    """IQM, mean and optimality gap with stratified-bootstrap 95% intervals, and probability of improvement over
    `reference`, with rliable; `{"available": False, "note": ...}` without it."""
    try:
        from rliable import library as rly
        from rliable import metrics
    except ImportError:
        return {"available": False, "note": INSTALL_HINT}
    mats, excluded = _score_matrices(table, tasks, models)
    out: dict[str, Any] = {"available": True, "reps": reps, "tasks": tasks, "excluded": excluded, "models": {},
                           "probability_of_improvement": {}}
    if not mats:
        out["note"] = "no model has a result on every task yet"
        return out

    def agg(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x),
                         metrics.aggregate_optimality_gap(x, gamma=OPTIMAL)])

    with _quiet(), seeded_numpy(seed):
        point, ci = rly.get_interval_estimates(mats, agg, reps=reps, random_state=np.random.RandomState(seed))
    for model, m in mats.items():
        out["models"][model] = {"runs": int(m.shape[0]), **{
            name: {"point": float(point[model][i]), "ci": [float(ci[model][0, i]), float(ci[model][1, i])]}
            for i, name in enumerate(("iqm", "mean", "optimality_gap"))}}
    ref = reference if reference in mats else None
    if reference and ref is None:
        out["probability_of_improvement_note"] = f"reference {reference} has no result on every task yet"
    if ref:
        out["reference"] = ref
        for model in mats:
            if model == ref:
                continue
            with _quiet(), seeded_numpy(seed):
                p, pci = rly.get_interval_estimates({model: (mats[model], mats[ref])},
                                                    metrics.probability_of_improvement, reps=reps,
                                                    random_state=np.random.RandomState(seed))
            out["probability_of_improvement"][model] = {"point": float(p[model]),
                                                        "ci": [float(v) for v in np.ravel(pci[model])[:2]]}
    out["_matrices"] = mats  # for the plots; dropped before writing JSON
    return out


def learning_curves(rows: Sequence[dict[str, Any]], tasks: list[str], models: list[str]) -> dict[str, Any]:
    """Per task and model: the mean over seeds of the curve points' scores (recomputed from their raw returns) at
    the steps every seed has, with the number of seeds."""
    from ..tasks import normalized_score

    out: dict[str, Any] = {}
    for task in tasks:
        per_model = {}
        for model in models:
            seeds = []
            for r in rows:
                if r["task"] == task and r["model"] == model and r.get("learning_curve"):
                    seeds.append({int(p["step"]): float(np.mean(normalized_score(task, p["returns"])))
                                  if p.get("returns") else float(p["normalized_mean"]) for p in r["learning_curve"]})
            if seeds:
                steps = sorted(set.intersection(*(set(c) for c in seeds)))
                per_model[model] = {"steps": steps, "mean": [float(np.mean([c[t] for c in seeds])) for t in steps],
                                    "seeds": len(seeds)}
        if per_model:
            out[task] = per_model
    return out


def curve_panels(curves: dict[str, Any], labels: dict[str, str], order: Sequence[str]) -> tuple[dict[str, str],
                                                                                                 list[str], int]:
    """The learning-curve figure's text: each task's panel title, the legend's models (every model seen on any
    task, in `order`) and the most seeds any curve averages. A panel whose curves average fewer seeds names them in
    its title: one legend cannot, since the count differs per task."""
    n_max = max((c["seeds"] for per_model in curves.values() for c in per_model.values()), default=0)
    titles = {}
    for task, per_model in curves.items():
        fewer = [f"{labels.get(m, m)} n={c['seeds']}" for m, c in per_model.items() if c["seeds"] < n_max]
        titles[task] = task + (f"\n(of {n_max} seeds so far: " + ", ".join(fewer) + ")" if fewer else "")
    seen = {m for per_model in curves.values() for m in per_model}
    legend = [m for m in order if m in seen] + sorted(seen - set(order))
    return titles, legend, n_max


def _curves_plot(curves: dict[str, Any], path: Path, labels: dict[str, str], colors: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    tasks = list(curves)
    titles, legend, n_max = curve_panels(curves, labels, list(colors))
    cols = min(3, len(tasks))
    rows_n = math.ceil(len(tasks) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, task in zip(axes.flat, tasks):
        for model, c in curves[task].items():
            (handles[model],) = ax.plot(np.asarray(c["steps"]) / 1000, c["mean"], color=colors.get(model), lw=1.6)
        ax.set_title(titles[task], fontsize="small" if "\n" in titles[task] else "medium")
        ax.set_xlabel("training steps (thousands)")
        ax.set_ylabel("D4RL-normalized score")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.legend([handles[m] for m in legend], [labels.get(m, m) for m in legend], loc="upper center",
               ncol=min(4, len(legend)), fontsize="small", title_fontsize="small",
               title=f"mean over seeds ({n_max} unless the panel says fewer)",
               bbox_to_anchor=(0.5, 0.0))  # below the panels (savefig's tight box takes it in)
    fig.savefig(path, bbox_inches="tight", dpi=110)
    plt.close(fig)


def _plots(agg: dict[str, Any], curves: dict[str, Any], out_dir: Path, labels: dict[str, str], models: list[str],
           reps: int, seed: int = 0) -> dict[str, str]:
    """Learning curves (matplotlib), and with rliable the aggregate-interval plot and the performance profile, as PNG
    (Agg backend); {} when plotting is not possible. One colour per model across all three."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    cmap = plt.get_cmap("tab10")
    by_model = {m: cmap(i % 10) for i, m in enumerate(models)}
    files = {}
    if curves:
        _curves_plot(curves, out_dir / "learning_curves.png", labels, by_model)
        files["learning_curves"] = "learning_curves.png"
    mats = agg.get("_matrices") or {}
    if not mats:
        return files
    try:
        from rliable import library as rly
        from rliable import plot_utils
    except ImportError:
        return files
    # a one-run model's bootstrap bars are zero-width: its name says so, as the tables do (interval_text)
    shown = {m: labels.get(m, m) + (f" ({NO_INTERVAL})" if agg["models"][m]["runs"] < 2 else "") for m in mats}
    names = [shown[m] for m in mats]
    colors = {shown[m]: by_model[m] for m in mats}
    keys = ("iqm", "mean", "optimality_gap")
    point = {shown[m]: np.array([agg["models"][m][k]["point"] for k in keys]) for m in mats}
    ci = {shown[m]: np.array([[agg["models"][m][k]["ci"][j] for k in keys] for j in (0, 1)]) for m in mats}
    fig, _ = plot_utils.plot_interval_estimates(point, ci, metric_names=["IQM", "Mean", "Optimality gap"],
                                                algorithms=names, colors=colors, xlabel="D4RL-normalized score",
                                                xlabel_y_coordinate=-0.55 / (0.37 * len(names)))
    path = out_dir / "aggregate_intervals.png"
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    files["aggregate_intervals"] = path.name
    scores = {shown[m]: v for m, v in mats.items()}
    high = max(OPTIMAL, float(max(v.max() for v in scores.values())))
    low = min(0.0, float(min(v.min() for v in scores.values())))
    taus = np.linspace(math.floor(low / 10) * 10, math.ceil(high / 10) * 10, 101)
    with _quiet(), seeded_numpy(seed):
        profiles, profile_cis = rly.create_performance_profile(scores, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=profile_cis, ax=ax, colors=colors,
                                         xlabel=r"D4RL-normalized score ($\tau$)",
                                         ylabel=r"Fraction of runs with score $> \tau$")
    from matplotlib.lines import Line2D

    ax.legend([Line2D([0], [0], color=colors[n], lw=2) for n in scores], list(scores), loc="upper right",
              fontsize="small")
    path = out_dir / "performance_profile.png"
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    files["performance_profile"] = path.name
    return files


def build_report(rows: Sequence[dict[str, Any]], out_dir: Path, *, title: str = "sweep",
                 model_order: Sequence[str] | None = None, task_order: Sequence[str] | None = None,
                 labels: dict[str, str] | None = None, reference: str | None = None, reps: int = 2000,
                 seed: int = 0, plots: bool = True) -> dict[str, Any]:
    """Compute the report from results rows (the last row of each cell counts) and write report.md, report.json
    and the plots into `out_dir`; returns the report as a dict (its markdown under "markdown")."""
    latest = {(r["task"], r["model"], int(r["seed"])): r for r in rows}
    rows = list(latest.values())
    labels = {**{r["model"]: r.get("label") or r["model"] for r in rows}, **(labels or {})}
    tasks = _order(list(dict.fromkeys(r["task"] for r in rows)), task_order)
    models = _order(list(dict.fromkeys(r["model"] for r in rows)), model_order)
    bc = next((r["model"] for r in rows if r.get("backbone") == "mlp-bc"), None)
    if bc in models:  # BC sits next to the data, before the sequence models
        models = [bc] + [m for m in models if m != bc]
    table = per_task(rows, tasks, models)
    agg = aggregates(table, tasks, models, reference=reference, reps=reps, seed=seed) if tasks else \
        {"available": False, "note": "no results yet"}
    curves = learning_curves(rows, tasks, models)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _plots(agg, curves, out_dir, labels, models, reps, seed) if plots else {}
    agg.pop("_matrices", None)
    sources = sorted({str(r.get("data_source")) for r in rows})
    comparable = sorted({{True: "yes", False: "no"}.get(r.get("comparable_with_d4rl"), "unknown") for r in rows})
    report = {"title": title, "cells": len(rows), "tasks": tasks, "models": models, "labels": labels, "bc": bc,
              "data_sources": sources, "comparable_with_d4rl": comparable,
              "score": "D4RL-normalized (x100: 0 = random, 100 = expert), recomputed from raw returns",
              "per_task": table, "aggregate": agg, "costs": costs(rows, models), "learning_curves": curves,
              "published_source": published_source(), "plots": files,
              "latest_finished_at": max((str(r["finished_at"]) for r in rows if r.get("finished_at")), default=None)}
    report["markdown"] = markdown(report)
    (out_dir / "report.md").write_text(report["markdown"])
    write_json(out_dir / "report.json", {k: v for k, v in report.items() if k != "markdown"})
    return report


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: a per-task table, the aggregate table, probability of improvement, the plots."""
    labels, tasks, models, table = report["labels"], report["tasks"], report["models"], report["per_task"]
    n_max = max([s["n"] for t in table.values() for s in t["models"].values()] or [0])
    lines = [f"# {report['title']}: results", ""]
    lines.append(f"{report['cells']} finished cells. Scores: {report['score']}; one cell's score is the mean over "
                 f"its final evaluation's episodes. Data: {', '.join(report['data_sources'])}"
                 + (" (comparable with published D4RL v2 numbers: "
                    f"{', '.join(report['comparable_with_d4rl'])})." if report["comparable_with_d4rl"] else "."))
    if not tasks:
        return "\n".join(lines + ["", "No results yet."]) + "\n"
    seeds = f"{n_max} seed" + ("" if n_max == 1 else "s")
    lines += ["", f"## Per task: mean over seeds [95% t-interval] ({seeds} unless marked n=k)", ""]
    lines += _task_table(report, n_max, finished_only=False)
    lines += ["", "\"data\" is the dataset's own mean episode return, normalized the same way."]
    for task in tasks:
        if table[task].get("datasets"):
            used = "; ".join(f"{g['normalized_mean']:.2f} (" + ", ".join(
                f"{labels.get(m, m)} seed {'/'.join(map(str, s))}" for m, s in g["cells"].items()) + ")"
                for g in table[task]["datasets"])
            lines.append(f"Mixed data on {task}: its cells were trained on datasets whose own means differ: {used}. "
                         "The data column is their mean over cells. Regenerated data is the same bytes for the same "
                         "seed on one machine, but its rollouts are chaotic, so machines that round floats "
                         "differently draw different samples of the same behaviour policy (README).")
    if _has_published(report):
        src = report.get("published_source") or {}
        lines.append(f"The last column is published, not ours: {src.get('project')} ({src.get('repository')}, "
                     f"{src.get('file')}, \"{src.get('section')}\", commit {str(src.get('commit'))[:7]}), "
                     f"{src.get('scale')}, on the {src.get('datasets')} files. It is there for orientation only: "
                     "other data and environment versions, so a difference from our columns is not a result.")
    unfinished = any((table[t]["models"].get(m) or {}).get("n", 0) < n_max for t in tasks for m in models)
    if unfinished:
        lines += ["", f"## Per task, finished cells only (all {seeds}; \N{HORIZONTAL ELLIPSIS} = seeds still to run)",
                  "", "The same numbers as above, shown only where a model has every seed on a task: a mean over "
                  "fewer seeds is not the protocol's number yet.", ""]
        lines += _task_table(report, n_max, finished_only=True)
    lines += _cost_lines(report.get("costs") or {}, labels)
    agg = report["aggregate"]
    lines += ["", "## Across tasks", ""]
    if not agg.get("available"):
        lines.append(f"Aggregates not computed: {agg.get('note')}.")
    else:
        lines += _aggregate_lines(agg, labels)
    plots = report.get("plots") or {}
    if plots:
        lines += [""] + [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def _has_published(report: dict[str, Any]) -> bool:
    """Whether any task has published scores (the table's last column and its source line)."""
    return any(report["per_task"][t].get("published") for t in report["tasks"])


def _task_table(report: dict[str, Any], n_max: int, *, finished_only: bool) -> list[str]:
    """The per-task markdown table; `finished_only` shows a model's entry only when it has all `n_max` seeds."""
    labels, tasks, models, table = report["labels"], report["tasks"], report["models"], report["per_task"]
    header = ["task", "data"] + [labels.get(m, m) + (" (BC)" if m == report["bc"] and "bc" not in
                                                     labels.get(m, m).lower() else "") for m in models]
    published = _has_published(report)
    if published:
        header.append("D4RL v2, not comparable: DT / BC")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for task in tasks:
        t = table[task]
        data = "-" if t["dataset"] is None else f"{t['dataset']:.1f}"
        if t["dataset_values_differ"] or len(t["data_sources"]) > 1:
            data += " (mixed data)"
        stats = [t["models"].get(m) for m in models]
        cells = [task, data] + ["\N{HORIZONTAL ELLIPSIS}" if finished_only and (not st or st["n"] < n_max)
                                else _fmt(st, n_max) for st in stats]
        if published:
            pub = t.get("published") or {}
            cells.append(" / ".join(f"{pub[k]['mean']:.1f}" if k in pub else "-" for k in ("DT", "BC")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


NO_INTERVAL = "1 run: no interval"  # said in place of an rliable interval over one run per task (tables and plots)


def interval_text(stat: dict[str, Any], runs: int, digits: int = 1) -> str:
    """`point [lo, hi]` of an rliable estimate; `point (1 run: no interval)` when a model has one run per task.

    With one run per task the stratified bootstrap has nothing to resample (for P(X > Y), nothing of X's), so the
    interval it returns is zero-width or Y's alone: printed, it would read as certainty about an unreplicated score.
    """
    if runs < 2:
        return f"{stat['point']:.{digits}f} ({NO_INTERVAL})"
    return f"{stat['point']:.{digits}f} [{stat['ci'][0]:.{digits}f}, {stat['ci'][1]:.{digits}f}]"


def _aggregate_lines(agg: dict[str, Any], labels: dict[str, str]) -> list[str]:
    lines: list[str] = []
    lines.append(f"rliable, {len(agg['tasks'])} tasks, 95% stratified-bootstrap intervals ({agg['reps']} "
                 f"resamples of the runs within each task). Optimality gap: mean shortfall below {OPTIMAL:g}.")
    if agg.get("note"):
        lines += ["", agg["note"] + "."]
    if agg["models"]:
        lines += ["", "| model | runs per task | IQM | mean | optimality gap |", "|---|---:|---:|---:|---:|"]
        for m, s in agg["models"].items():
            cells = [interval_text(s[k], s["runs"]) for k in ("iqm", "mean", "optimality_gap")]
            lines.append(f"| {labels.get(m, m)} | {s['runs']} | " + " | ".join(cells) + " |")
    for m, why in agg.get("excluded", {}).items():
        lines.append(f"\n{labels.get(m, m)} is left out of the aggregates: {why}.")
    if agg.get("probability_of_improvement"):
        ref = labels.get(agg["reference"], agg["reference"])
        lines += ["", f"Probability of improvement over {ref} (P(X > {ref}): the chance that a run of X on a random "
                      f"task scores higher than a run of {ref}; 0.5 = no difference):", "",
                  f"| X | P(X > {ref}) |", "|---|---:|"]
        for m, s in agg["probability_of_improvement"].items():
            runs = min(agg["models"][m]["runs"], agg["models"][agg["reference"]]["runs"])
            lines.append(f"| {labels.get(m, m)} | {interval_text(s, runs, 2)} |")
    elif agg.get("probability_of_improvement_note"):
        lines += ["", f"Probability of improvement not computed: {agg['probability_of_improvement_note']}."]
    return lines


def _cost_lines(cost: dict[str, Any], labels: dict[str, str]) -> list[str]:
    if not cost:
        return []

    def fmt(stat: dict[str, Any] | None, digits: int, cells: int) -> str:
        if not stat:
            return "-"
        return f"{stat['median']:.{digits}f}" + ("" if stat["n"] == cells else f" (n={stat['n']})")

    lines = ["", "## Cost per model", "",
             "Medians over cells. Cell minutes: wall time of cells run start to end in one go (training, learning-"
             "curve and final evaluations); training minutes: optimisation steps only, wall and process CPU time (CPU "
             "time leaves out waits for a busy core and pauses); policy time: the final "
             "evaluation's time in the policy per action (all envs acting in one batched call). n = cells that "
             "recorded the figure when fewer than all; load: the machine's 15-minute load average as rows were "
             "written.", "",
             "| model | cells | cell minutes | training minutes | training CPU minutes | policy ms per action | load |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m, c in cost.items():
        n = c["cells"]
        figures = [fmt(c["cell_minutes"], 1, n), fmt(c["train_minutes"], 1, n), fmt(c["train_cpu_minutes"], 1, n),
                   fmt(c["policy_ms_per_action"], 3, n), fmt(c["load_15min"], 1, n)]
        lines.append(f"| {labels.get(m, m)} | {n} | " + " | ".join(figures) + " |")
    return lines


def report_from_file(results: Path, out_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """`build_report` on a results.jsonl file."""
    from .runner import read_results

    return build_report(read_results(results), out_dir, **kwargs)

