"""How results read: markdown tables (medians, ratios against named baselines, memory), target checks, the plot.

Every table comes with the machine line (CPU, threads, load before/after, torch, date) and the command. A config
that did not produce a number shows why in its cell (`skip`, `OOM`, `fail`), and is listed with its reason below
the tables: a missing number is never silently dropped. Ratios are only formed between numbers measured in the
same run, on the same machine.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

from .machine import BUSY_OTHER_CPUS, busy_warning, summary_line
from .suites import COMPILED_ROW, DISPLAY, default_impl

Record = dict[str, Any]
STATUS_CELL = {"skipped": "skip", "out_of_memory": "OOM", "failed": "fail"}


# ----------------------------------------------------------------------------------------------- table helpers
class Results:
    """Records of one suite, indexed by (part, group, row, x); the last record of a key wins (--resume)."""

    def __init__(self, records: Iterable[Record]):
        self.records = list(records)
        self.by_key: dict[tuple, Record] = {}
        for r in self.records:
            self.by_key[(r["part"], r["group"], r["row"], r["x"])] = r

    def get(self, part: str, group: str, row: str, x: Any) -> Record | None:
        return self.by_key.get((part, group, row, x))

    def ok(self, part: str, group: str, row: str, x: Any) -> Record | None:
        r = self.get(part, group, row, x)
        return r if r is not None and r["status"] == "ok" else None

    def groups(self, part: str) -> list[str]:
        return list(dict.fromkeys(r["group"] for r in self.records if r["part"] == part))

    def rows(self, part: str, group: str) -> list[str]:
        return list(dict.fromkeys(r["row"] for r in self.records if r["part"] == part and r["group"] == group))

    def xs(self, part: str, group: str) -> list[Any]:
        xs = {r["x"] for r in self.records if r["part"] == part and r["group"] == group}
        return sorted(xs, key=lambda x: (x is None, x if x is not None else 0))


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_ms(v: float) -> str:
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def fmt_ratio(v: float) -> str:
    return f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


def fmt_mb(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _cell(res: Results, part: str, group: str, row: str, x: Any, value: Callable[[Record], float | None],
          fmt: Callable[[float], str]) -> str:
    r = res.get(part, group, row, x)
    if r is None:
        return "–"
    if r["status"] != "ok":
        return STATUS_CELL.get(r["status"], r["status"])
    v = value(r)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt(v) + (DISTURBED if disturbed(r) else "")


DISTURBED = "†"


def disturbed(r: Record) -> bool:
    """Other processes used more than BUSY_OTHER_CPUS CPUs while this config ran."""
    return (r.get("other_cpus") or 0.0) > BUSY_OTHER_CPUS


def interference_line(records: list[Record]) -> str:
    vals = [r["other_cpus"] for r in records if r.get("other_cpus") is not None]
    if not vals:
        return "Interference by other processes: not measured (no /proc/stat)."
    n = sum(1 for r in records if disturbed(r))
    return (f"Interference: other processes used {sum(vals) / len(vals):.2f} CPUs on average (max {max(vals):.2f}) "
            f"while the configs ran; {n} of {len(records)} configs ran while they used more than "
            f"{BUSY_OTHER_CPUS} CPU, marked {DISTURBED} (`other_cpus` in the JSON).")


def pivot(res: Results, part: str, group: str, x_name: str, value: Callable[[Record], float | None],
          fmt: Callable[[float], str], rows: list[str] | None = None) -> str:
    """Rows x lengths table of `value(record)`."""
    xs = res.xs(part, group)
    rows = rows if rows is not None else res.rows(part, group)
    body = [[row] + [_cell(res, part, group, row, x, value, fmt) for x in xs] for row in rows]
    return md_table([""] + [f"{x_name}={x}" for x in xs], body)


def ratio_to(res: Results, baseline: Callable[[Record], str | None], metric: str = "median_ms"):
    """value(record) / value(baseline row at the same part, group and x); None where the baseline has no number."""

    def value(r: Record) -> float | None:
        name = baseline(r)
        b = res.ok(r["part"], r["group"], name, r["x"]) if name else None
        if b is None or not b.get(metric):
            return None
        return r[metric] / b[metric]

    return value


def inverse_ratio_to(res: Results, baseline: Callable[[Record], str | None], metric: str = "median_ms"):
    """value(baseline) / value(record): a speed-up ("how many times faster than the baseline")."""
    forward = ratio_to(res, baseline, metric)

    def value(r: Record) -> float | None:
        v = forward(r)
        return None if not v else 1.0 / v

    return value


def metric(name: str) -> Callable[[Record], float | None]:
    return lambda r: r.get(name)


def sizes(res: Results, part: str, keys: tuple[str, ...] = ("batch", "d", "n_layers")) -> str:
    """`batch 64, d 128, layers 3` as measured (the first record of `part`), so quick runs are labelled right."""
    p = next((r["params"] for r in res.records if r["part"] == part), {})
    names = {"batch": "batch {}", "d": "d {}", "n_layers": "layers {}"}
    return ", ".join(names[k].format(p[k]) for k in keys if k in p)


# --------------------------------------------------------------------------------------------------- targets
class Targets:
    """Checks of the issue's targets against what was measured; 'not measured' where a number is missing."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def check(self, what: str, value: float | None, op: str, limit: float, unit: str = "x") -> None:
        if value is None:
            self.lines.append(f"- {what}: not measured (target {op} {limit:g}{unit})")
            return
        met = value <= limit if op == "<=" else value >= limit
        shown = f"{value:.2f}{unit}" if unit == "x" else f"{value:.0f} {unit}"
        self.lines.append(f"- {what}: {shown} (target {op} {limit:g}{'x' if unit == 'x' else ' ' + unit}): "
                          f"{'met' if met else 'MISSED'}")

    def markdown(self) -> str:
        return "\n".join(self.lines) if self.lines else "(no target applies to what was measured)"


def _ratio(res: Results, part: str, group: str, row: str, base: str, x: Any, key: str = "median_ms") -> float | None:
    a, b = res.ok(part, group, row, x), res.ok(part, group, base, x)
    return a[key] / b[key] if a and b and b.get(key) else None


# ------------------------------------------------------------------------------------------------ suite: train
def _loop_row(r: Record) -> str | None:
    family = r["params"].get("family")
    if not family or r["params"].get("impl") == "loop":
        return None
    return f"{DISPLAY[family]} (per-step loop)"


def train_sections(res: Results, device: str) -> tuple[list[str], Targets]:
    out: list[str] = []
    gru = "nn.GRU (cuDNN)" if device == "cuda" else "nn.GRU"
    lstm = "nn.LSTM (cuDNN)" if device == "cuda" else "nn.LSTM"
    if res.rows("layer", ""):
        out.append("## One layer, training step (forward + masked MSE + backward)\n\n"
                   "`make_backbone(name, d, 1, ff_mult=0)` (pre-norm residual block + final norm) vs torch's "
                   f"`nn.GRU`/`nn.LSTM` (d -> d), {sizes(res, 'layer')}; input requires grad. The Transformer "
                   "layer attends over a sliding band (its window is in the row name). Median milliseconds per step:")
        out.append(pivot(res, "layer", "", "T", metric("median_ms"), fmt_ms))
        layer_rows = res.rows("layer", "")
        for base in (gru, lstm):
            if base in layer_rows:
                out.append(f"Time relative to {base} at the same T (lower is better; 0.50x = twice as fast):")
                out.append(pivot(res, "layer", "", "T", ratio_to(res, lambda r, b=base: b), fmt_ratio))
        loop_rows = [row for row in res.rows("layer", "") if any(
            _loop_row(r) for r in res.records if r["part"] == "layer" and r["row"] == row)]
        if loop_rows:
            out.append("Speed-up over the same cell stepped token by token with backpropagation through time "
                       "(per-step loop time / time; the paper's sequential baseline, same weights):")
            out.append(pivot(res, "layer", "", "T", inverse_ratio_to(res, _loop_row), fmt_ratio, rows=loop_rows))
        out.append("Peak memory of the step, MB above the process's resident size after setup (torch, the layer and "
                   "its inputs; absolute peaks are in the JSON):")
        out.append(pivot(res, "layer", "", "T", metric("working_mb"), fmt_mb))
        if gru in layer_rows:
            out.append(f"Memory relative to {gru}:")
            out.append(pivot(res, "layer", "", "T", ratio_to(res, lambda r: gru, "working_mb"), fmt_ratio))
    for group in res.groups("model"):
        out.append(f"## Full DecisionModel, training step, {group}\n\n"
                   f"{sizes(res, 'model')}, feed-forward 4d, dropout 0, Hopper-sized inputs; T in timesteps "
                   "(tokens = 3T interleaved, T fused). The Transformer attends over a band of 20 timesteps "
                   "(DT's K = 20: its whole context at T = 20). Median milliseconds per step:")
        out.append(pivot(res, "model", group, "T", metric("median_ms"), fmt_ms))
        if "Transformer" in res.rows("model", group):
            out.append("Time relative to the Transformer, same layout and T:")
            out.append(pivot(res, "model", group, "T", ratio_to(res, lambda r: "Transformer"), fmt_ratio))
        out.append("Peak memory, MB above the resident size after setup:")
        out.append(pivot(res, "model", group, "T", metric("working_mb"), fmt_mb))

    targets = Targets()
    impl = default_impl(device)
    mingru, minlstm = f"minGRU (scan {impl})", f"minLSTM (scan {impl})"
    if device == "cpu":
        targets.check(f"one layer, {mingru} / nn.GRU at T=512", _ratio(res, "layer", "", mingru, gru, 512), "<=", 0.5)
        targets.check(f"one layer, {mingru} / nn.GRU at T=4096", _ratio(res, "layer", "", mingru, gru, 4096), "<=",
                      0.6)
        for x in (512, 4096):
            targets.check(f"one layer, {minlstm} / nn.LSTM at T={x}", _ratio(res, "layer", "", minlstm, lstm, x),
                          "<=", 0.6)
        targets.check(f"peak memory, {mingru} / nn.GRU at T=4096",
                      _ratio(res, "layer", "", mingru, gru, 4096, "working_mb"), "<=", 1.0)
        for group in res.groups("model") or ["fused layout", "interleaved layout"]:
            targets.check(f"DecisionModel ({group}), minGRU / Transformer at K=20",
                          _ratio(res, "model", group, "minGRU", "Transformer", 20), "<=", 0.5)
    else:
        loop = _ratio(res, "layer", "", "minGRU (per-step loop)", mingru, 4096)
        targets.check(f"one layer on GPU, per-step loop / {mingru} at T=4096", loop, ">=", 100)
        mamba = f"Mamba (scan {impl})"
        targets.check(f"one layer on GPU, {mingru} / {mamba} at T=4096", _ratio(res, "layer", "", mingru, mamba, 4096),
                      "<=", 1.2)
    return out, targets


# ------------------------------------------------------------------------------------------------- suite: scan
SCAN_ENTRIES = {
    "scan_log": "positive recurrence from log a, log b (what the log implementation gets from minGRU/minLSTM; the "
                "others exponentiate first)",
    "scan": "values a in (0, 1), b of any sign (S4D/Mamba; the log implementation runs two log-space scans)",
    "gated_scan": "the minGRU recurrence from gate logits and candidates, gates included (the path the layers take)",
}


def scan_sections(res: Results, device: str) -> tuple[list[str], Targets]:
    out = []
    base = f"scan {default_impl(device)}"
    for entry in res.groups("scan"):
        out.append(f"## `{entry}` forward + backward, {sizes(res, 'scan')}\n\n{SCAN_ENTRIES.get(entry, '')}. "
                   "Median milliseconds:")
        out.append(pivot(res, "scan", entry, "T", metric("median_ms"), fmt_ms))
        out.append("Nanoseconds per element (batch x T x d):")
        out.append(pivot(res, "scan", entry, "T",
                         lambda r: 1e6 * r["median_ms"] / r["info"]["elements"] if r.get("info") else None,
                         lambda v: f"{v:.2f}"))
        if base in res.rows("scan", entry):
            out.append(f"Time relative to `{base}`:")
            out.append(pivot(res, "scan", entry, "T", ratio_to(res, lambda r: base), fmt_ratio))
    return out, Targets()


# -------------------------------------------------------------------------------------------------- suite: act
def _window_row(rows: list[str]) -> str | None:
    return next((r for r in rows if r.startswith("Transformer (re-encode")), None)


def act_sections(res: Results, device: str) -> tuple[list[str], Targets]:
    size = sizes(res, "act", ("d", "n_layers"))
    out = ["## Cost per action along an episode\n\n`Policy.act` + `Policy.observe` per environment step, all policy "
           f"work included (normalisation, embeddings, backbone, head, numpy round trip); {size}, "
           "random weights and observations. Microseconds per call (one call acts for the whole batch), median over "
           "the 10 steps ending at t, over every timed episode; `flat` = slowest / fastest of t = 10, 100, 1000; the "
           "last column = the window re-encoding's cost / this row's (how many times cheaper). The Transformer's "
           "cache and window span K = 20 timesteps (60 tokens interleaved, 20 fused)."]
    targets = Targets()
    for group in res.groups("act"):
        rows = res.rows("act", group)
        window = _window_row(rows)
        checkpoints = sorted({int(t) for r in res.records if r["part"] == "act" and r["group"] == group
                              and r["status"] == "ok" for t in r["us_per_call_at"]})
        body = []
        for row in rows:
            r = res.get("act", group, row, None)
            if r is None or r["status"] != "ok":
                body.append([row] + [STATUS_CELL.get(r["status"], "–") if r else "–"] * (len(checkpoints) + 3))
                continue
            at = r["us_per_call_at"]
            flat_vals = [at[str(t)] for t in checkpoints if t >= 10]
            flat = max(flat_vals) / min(flat_vals) if len(flat_vals) >= 2 else None
            w = res.ok("act", group, window, None) if window else None
            cheaper = w["us_per_call"] / r["us_per_call"] if w else None
            body.append([row + (DISTURBED if disturbed(r) else "")] + [f"{at[str(t)]:.0f}" for t in checkpoints]
                        + [f"{r['us_per_action']:.1f}", "–" if flat is None else fmt_ratio(flat),
                           "–" if cheaper is None else fmt_ratio(cheaper)])
        header = [group] + [f"t={t}" for t in checkpoints] + ["us per action (all t)", "flat", "window / this"]
        out.append(f"### {group}\n\n" + md_table(header, body))
        batch1 = group.endswith("batch 1")
        if batch1 and window:
            layout = group.split(" ")[0]
            limit_us, limit_x = (100, 8) if layout == "fused" else (300, 3)
            m = res.ok("act", group, "minGRU (carried state)", None)
            w = res.ok("act", group, window, None)
            for row, suffix in (("minGRU (carried state)", ""), (COMPILED_ROW, " (torch.compile)")):
                r = res.ok("act", group, row, None)
                if r is None and suffix:
                    continue  # the compiled row is optional (older result files)
                targets.check(f"{layout} layout, batch 1, minGRU{suffix} us per action",
                              r["us_per_call"] if r else None, "<=", limit_us, unit="us")
                targets.check(f"{layout} layout, batch 1, Transformer window re-encoding / minGRU{suffix}",
                              w["us_per_call"] / r["us_per_call"] if r and w else None, ">=", limit_x)
            if m:
                vals = [m["us_per_call_at"][k] for k in m["us_per_call_at"] if int(k) >= 10]
                targets.check(f"{layout} layout, batch 1, minGRU flat in t (slowest/fastest of t=10..1000)",
                              max(vals) / min(vals) if len(vals) >= 2 else None, "<=", 1.25)
    return out, targets


# ------------------------------------------------------------------------------------------------- suite: eval
def eval_sections(res: Results, device: str) -> tuple[list[str], Targets]:
    rows = res.rows("eval", "")
    zero = next((r for r in rows if r.startswith("zero actions")), None)
    z = res.ok("eval", "", zero, None) if zero else None
    body = []
    targets = Targets()
    for row in rows:
        r = res.get("eval", "", row, None)
        if r is None or r["status"] != "ok":
            body.append([row] + [STATUS_CELL.get(r["status"], "–") if r else "–"] * 6)
            continue
        vs_zero = r["us_per_env_step"] / z["us_per_env_step"] if z else None
        pos = r.get("policy_over_sim")
        body.append([row + (DISTURBED if disturbed(r) else ""), f"{r['us_per_env_step']:.1f}",
                     f"{r['policy_us_per_env_step']:.1f}",
                     f"{r['sim_us_per_env_step']:.1f}", "–" if pos is None else f"{pos:.2f}",
                     "–" if vs_zero is None else fmt_ratio(vs_zero),
                     str(int(sorted(r["episodes_done"])[len(r["episodes_done"]) // 2]))])
        if row.startswith("minGRU"):
            targets.check(f"evaluation, {row}: policy time / simulation time", pos, "<=", 0.5)
    first = next((r for r in res.records if r["part"] == "eval"), None)
    p = first["params"] if first else {}
    intro = (f"## Evaluation throughput\n\n{p.get('env_steps', '?')} environment steps on {p.get('num_envs', '?')} "
             f"{p.get('env_id', '?')} envs (the evaluator's sync vector env, same-step autoreset), driven by "
             "`Policy.act`/`observe` on random (untrained) weights, or by all-zero actions for the simulation-only "
             "run (and by uniform random actions: the simulation under actions that move the robot). Microseconds "
             "per environment step (wall time of the loop / env steps), its split into policy and simulation, and "
             "the loop time relative to the zero-action run (the policy's overhead, plus whatever the actions change "
             "in the simulation: compare the simulation column). Episode lengths differ between policies (random "
             "weights fall over at different times), so resets differ: the last column counts finished episodes. "
             "The target is checked on policy time / simulation time of the same run.")
    header = ["policy", "us per env step", "policy us", "simulation us", "policy / simulation", "time / zero actions",
              "episodes finished"]
    return [intro, md_table(header, body)], targets


SECTIONS = {"train": train_sections, "scan": scan_sections, "act": act_sections, "eval": eval_sections}


# ---------------------------------------------------------------------------------------------------- document
def render_markdown(doc: dict[str, Any]) -> str:
    res = Results(doc["results"])
    device = doc["options"]["device"]
    sections, targets = SECTIONS[doc["suite"]](res, device)
    parts = [f"# Benchmark `{doc['suite']}`" + (" (quick)" if doc["options"].get("quick") else ""),
             f"Command: `{doc['command']}`",
             f"Machine: {summary_line(doc['machine'])}",
             f"Each config ran in its own subprocess (torch threads {doc['options']['threads']}, time cap per config, "
             f"memory cap {doc['options']['mem_cap_mb']:.0f} MB); times are medians over the timed repeats after a "
             f"warm-up (the repeat counts are in the JSON).",
             interference_line([r for r in doc["results"] if not r.get("inferred")]),
             *([w] if (w := busy_warning(doc["machine"].get("other_cpus_before"), doc["options"]["threads"]))
               else []),
             *sections,
             "## Targets\n\n" + ("(not checked: --quick measures tiny sizes)" if doc["options"].get("quick")
                                   else targets.markdown())]
    missing = [r for r in doc["results"] if r["status"] != "ok"]
    if missing:
        lines = [f"- {r['part']} / {r['group'] + ' / ' if r['group'] else ''}{r['row']}"
                 + (f" x={r['x']}" if r.get("x") is not None else "") + f": {r['status']}: {r.get('reason', '')}"
                 for r in missing]
        parts.append("## Configs without a number\n\n" + "\n".join(lines))
    if doc.get("plot_note"):
        parts.append(doc["plot_note"])
    if doc.get("interrupted"):
        parts.append("**The sweep was interrupted: the tables hold what was measured before.**")
    return "\n\n".join(parts) + "\n"


def write_report(doc: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path | None]:
    """Write `<stem>.md` and `<stem>.png` next to the JSON; returns their paths (plot None without matplotlib)."""
    from .plots import plot_suite

    md = out_dir / f"{stem}.md"
    png: Path | None = out_dir / f"{stem}.png"
    try:
        plot_suite(doc, png)
    except ImportError as e:  # matplotlib is in the `bench` extra; the tables do not need it
        png = None
        doc = dict(doc, plot_note=f"No plot: {e} (pip install 'decision_minrnn[bench]').")
    md.write_text(render_markdown(doc))
    return {"markdown": md, "plot": png}
