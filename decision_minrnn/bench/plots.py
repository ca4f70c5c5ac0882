"""One PNG per suite (matplotlib's Agg backend: no display needed), captioned with the machine line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .machine import summary_line
from .suites import group_label, label, x_of


def _lines(ax: Any, records: list[dict[str, Any]], value: str, title: str, xlabel: str, ylabel: str) -> None:
    """One line per row (and table) of `value` against the length, log-log."""
    series: dict[str, list[tuple[Any, float]]] = {}
    for r in records:
        if r["status"] == "ok" and r.get(value) is not None:
            name = label(r["key"]) + (f" ({group_label(r['key'])})" if r["key"]["part"] == "model" else "")
            series.setdefault(name, []).append((x_of(r["key"]), r[value]))
    for i, (name, points) in enumerate(series.items()):  # 10 colours, then the next line style
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, ("-", "--", ":")[i // 10 % 3], marker="o", ms=3, color=f"C{i % 10}", label=name)
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=6)


def plot_suite(doc: dict[str, Any], path: Path) -> None:
    """Train/scan: time (and memory) against length; act: cost per call along the episode; eval: where time goes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, suite = doc["results"], doc["suite"]
    of = lambda part: [r for r in records if r["key"]["part"] == part]  # noqa: E731
    if suite in ("train", "scan"):
        panels = ([(of("layer"), "median_ms", "one layer: time", "T (tokens)", "ms per training step"),
                   (of("layer"), "working_mb", "one layer: peak memory", "T (tokens)", "MB above resting RSS"),
                   (of("model"), "median_ms", "DecisionModel: time", "T (timesteps)", "ms per training step")]
                  if suite == "train" else
                  [([r for r in records if r["key"]["entry"] == e], "median_ms", e, "T", "ms (forward + backward)")
                   for e in dict.fromkeys(r["key"]["entry"] for r in records)])
        fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6.5 * max(1, len(panels)), 6), squeeze=False)
        for ax, panel in zip(axes[0], panels):
            _lines(ax, *panel)
    elif suite == "act":
        groups = list(dict.fromkeys(group_label(r["key"]) for r in records))
        rows = max(1, -(-len(groups) // 2))
        fig, axes = plt.subplots(rows, 2, figsize=(14, 5 * rows), squeeze=False)
        for ax, group in zip(axes.flat, groups):
            for i, r in enumerate(r for r in records if group_label(r["key"]) == group):
                if r["status"] == "ok":
                    curve = np.asarray(r["curve_us"])
                    smooth = [np.median(curve[max(0, t - 24):t + 1]) for t in range(len(curve))]
                    ax.plot(np.arange(1, len(curve) + 1), smooth, color=f"C{i % 10}", label=label(r["key"]))
            ax.set(xscale="log", yscale="log", xlabel="episode step t", ylabel="us per act call (running median of 25)")
            ax.set_title(group, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(groups):]:
            ax.set_visible(False)
    else:
        ok = [r for r in records if r["status"] == "ok"]
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * max(1, len(ok))))
        names, sim = [label(r["key"]) for r in ok], [r["sim_us_per_env_step"] for r in ok]
        ax.barh(names, sim, color="C0", label="simulation (env.step)")
        ax.barh(names, [r["policy_us_per_env_step"] for r in ok], left=sim, color="C3", label="policy (act + observe)")
        ax.set_xlabel("us per environment step")
        ax.invert_yaxis()
        ax.legend(fontsize=8)
    fig.suptitle(f"benchmark {suite}: {summary_line(doc['machine'])}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
