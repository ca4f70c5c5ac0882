"""One PNG per suite (matplotlib, Agg backend: no display needed), captioned with the machine line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .machine import summary_line


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(records: list[dict[str, Any]], part: str, group: str, key: str) -> dict[str, tuple[list, list]]:
    """row -> (xs, values) of ok records, in the order rows first appear."""
    out: dict[str, tuple[list, list]] = {}
    for r in records:
        if r["part"] != part or r["group"] != group or r["status"] != "ok" or r.get(key) is None:
            continue
        xs, ys = out.setdefault(r["row"], ([], []))
        xs.append(r["x"])
        ys.append(r[key])
    for row, (xs, ys) in out.items():
        order = np.argsort(xs)
        out[row] = ([xs[i] for i in order], [ys[i] for i in order])
    return out


def _lines(ax, series: dict[str, tuple[list, list]], *, style: str = "-", label_suffix: str = "",
           colors: dict[str, Any] | None = None) -> None:
    for i, (row, (xs, ys)) in enumerate(series.items()):
        color = (colors or {}).get(row, f"C{i % 10}")
        ax.plot(xs, ys, style, marker="o", ms=3, color=color, label=row + label_suffix)


def _legend(ax, fontsize: int = 7) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=fontsize)


def _loglog(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def plot_suite(doc: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    records = doc["results"]
    suite = doc["suite"]
    if suite == "train":
        fig, axes = plt.subplots(1, 3, figsize=(19, 6))
        layer = _series(records, "layer", "", "median_ms")
        _lines(axes[0], layer)
        _loglog(axes[0], "T (tokens)", "ms per training step", "one layer: time")
        _lines(axes[1], _series(records, "layer", "", "working_mb"))
        _loglog(axes[1], "T (tokens)", "MB above resting RSS", "one layer: peak memory")
        _legend(axes[0])
        backbones = {}
        for group, style in (("fused layout", "-"), ("interleaved layout", "--")):
            series = _series(records, "model", group, "median_ms")
            for row in series:
                backbones.setdefault(row, f"C{len(backbones) % 10}")
            _lines(axes[2], series, style=style, label_suffix=f" ({group.split()[0]})", colors=backbones)
        _loglog(axes[2], "T (timesteps)", "ms per training step", "DecisionModel (3 layers): time")
        _legend(axes[2])
    elif suite == "scan":
        groups = list(dict.fromkeys(r["group"] for r in records))
        fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(6 * max(1, len(groups)), 5), squeeze=False)
        for ax, group in zip(axes[0], groups):
            _lines(ax, _series(records, "scan", group, "median_ms"))
            _loglog(ax, "T", "ms (forward + backward)", group)
            _legend(ax, 8)
    elif suite == "act":
        groups = list(dict.fromkeys(r["group"] for r in records))
        cols = 2
        rows = max(1, -(-len(groups) // cols))
        fig, axes = plt.subplots(rows, cols, figsize=(14, 5 * rows), squeeze=False)
        for ax, group in zip(axes.flat, groups):
            for i, r in enumerate(r for r in records if r["group"] == group):
                if r["status"] != "ok":
                    continue
                curve = np.asarray(r["curve_us"])
                k = min(25, len(curve))
                smooth = np.array([np.median(curve[max(0, t - k + 1):t + 1]) for t in range(len(curve))])
                ax.plot(np.arange(1, len(curve) + 1), smooth, color=f"C{i % 10}", label=r["row"])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("episode step t")
            ax.set_ylabel("us per act call (running median of 25)")
            ax.set_title(group, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            _legend(ax)
        for ax in list(axes.flat)[len(groups):]:
            ax.set_visible(False)
    elif suite == "eval":
        ok = [r for r in records if r["status"] == "ok"]
        fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * max(1, len(ok))))
        names = [r["row"] for r in ok]
        pol = [r["policy_us_per_env_step"] for r in ok]
        sim = [r["sim_us_per_env_step"] for r in ok]
        ax.barh(names, sim, color="C0", label="simulation (env.step)")
        ax.barh(names, pol, left=sim, color="C3", label="policy (act + observe)")
        ax.set_xlabel("us per environment step")
        ax.invert_yaxis()
        _legend(ax, 8)
    else:
        raise ValueError(f"no plot for suite {suite!r}")
    fig.suptitle(f"benchmark {suite}: {summary_line(doc['machine'])}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
