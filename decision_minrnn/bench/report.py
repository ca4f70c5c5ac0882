"""How results read: markdown tables (medians, ratios against baselines, memory) and the issue's target checks.

Records are found by config keys; baselines and targets name the keys of the configs they compare. A config without
a number shows why in its cell (`skip`, `OOM`, `fail`) and is listed with its reason below the tables. Ratios are
only formed between numbers of the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..nn.model import LAYOUTS
from ..nn.scan import resolve_impl
from .machine import BUSY_OTHER_CPUS, busy_warning, summary_line
from .suites import (LAYER_BASELINES, MODEL_BASELINE, RUNTIMES, SUBJECT, TABLES, WINDOW_BASELINE, ZERO_BASELINE,
                     group_label, group_of, key_id, label, layer_impls, row_of, with_row, x_of)

Record = dict[str, Any]
Value = Callable[[Record], "float | None"]
STATUS_CELL = {"skipped": "skip", "out_of_memory": "OOM", "failed": "fail"}
DISTURBED = "†"
ACT_TARGETS = {"fused": (100, 8), "interleaved": (300, 3)}  # batch 1: at most us per action, at least x cheaper
MB = "{:.0f}".format


def MS(v: float) -> str:  # noqa: N802 - a format, like MB
    return f"{v:.1f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def RATIO(v: float) -> str:  # noqa: N802
    return f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


class Results:
    """A suite's records by config key (the last record of a key wins: --resume)."""

    def __init__(self, records: list[Record]):
        self.by_key = {key_id(r["key"]): r for r in records}

    def ok(self, key: dict[str, Any]) -> Record | None:
        r = self.by_key.get(key_id(key))
        return r if r is not None and r["status"] == "ok" else None

    def tables(self, part: str) -> list[list[Record]]:
        """The records of `part`, one list per table, in the order they first appear."""
        groups: dict[tuple, list[Record]] = {}
        for r in self.by_key.values():
            if r["key"]["part"] == part:
                groups.setdefault(group_of(r["key"]), []).append(r)
        return list(groups.values())

    def ratio(self, r: Record, base_row: dict[str, Any], metric: str = "median_ms", inverse: bool = False):
        """`r[metric]` over the baseline's: the config `base_row` in r's table and column (`inverse`: the other way)."""
        b = self.ok(with_row(r["key"], base_row))
        if b is None or not b.get(metric) or not r.get(metric):
            return None
        return b[metric] / r[metric] if inverse else r[metric] / b[metric]

    def quotient(self, a: dict[str, Any], b: dict[str, Any], metric: str = "median_ms") -> float | None:
        """Config `a`'s metric over config `b`'s (full keys: for targets)."""
        ra, rb = self.ok(a), self.ok(b)
        return ra[metric] / rb[metric] if ra and rb and rb.get(metric) else None


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def disturbed(r: Record) -> bool:
    """Other processes used more than BUSY_OTHER_CPUS CPUs while this config ran."""
    return (r.get("other_cpus") or 0.0) > BUSY_OTHER_CPUS


def cell(r: Record | None, value: Value, fmt: Callable[[float], str]) -> str:
    """A number, or why there is none."""
    if r is None:
        return "–"
    if r["status"] != "ok":
        return STATUS_CELL.get(r["status"], r["status"])
    v = value(r)
    return "–" if v is None else fmt(v) + (DISTURBED if disturbed(r) else "")


def pivot(recs: list[Record], value: Value, fmt: Callable[[float], str], keep: Callable[[Record], bool] = bool) -> str:
    """Rows x lengths table of `value(record)` over one table's records (rows: the records `keep` keeps)."""
    xs = sorted({x_of(r["key"]) for r in recs})
    rows: dict[str, dict[Any, Record]] = {}
    for r in filter(keep, recs):
        rows.setdefault(key_id(row_of(r["key"])), {})[x_of(r["key"])] = r
    body = [[label(next(iter(row.values()))["key"])] + [cell(row.get(x), value, fmt) for x in xs]
            for row in rows.values()]
    return md_table([""] + [f"{TABLES[recs[0]['key']['part']][1]}={x}" for x in xs], body)


def failed_row(r: Record, n: int) -> list[str]:
    return [label(r["key"])] + [STATUS_CELL.get(r["status"], r["status"])] * n


def row_label(r: Record) -> str:
    return label(r["key"]) + (DISTURBED if disturbed(r) else "")


def sizes(recs: list[Record], *names: str) -> str:
    """`batch 64, d 128, layers 3` as measured, so quick runs are labelled right."""
    return ", ".join(f"{n.replace('n_layers', 'layers')} {recs[0]['params'][n]}" for n in names)


class Targets(list):
    """The issue's targets against what was measured, one line each; 'not measured' where a number is missing."""

    def check(self, what: str, value: float | None, op: str, limit: float, unit: str = "x") -> None:
        target = f"target {op} {limit:g}{'x' if unit == 'x' else ' ' + unit}"
        if value is None:
            self.append(f"- {what}: not measured ({target})")
            return
        shown = f"{value:.2f}x" if unit == "x" else f"{value:.0f} {unit}"
        met = value <= limit if op == "<=" else value >= limit
        self.append(f"- {what}: {shown} ({target}): {'met' if met else 'MISSED'}")


# ------------------------------------------------------------------------------------------------------ suites
def train_sections(res: Results, device: str, t: Targets) -> list[str]:
    out: list[str] = []
    for recs in res.tables("layer"):
        bases = [b for b in LAYER_BASELINES if any(r["key"]["model"] == b["model"] for r in recs)]
        out += [f"## One layer, training step (forward + masked MSE + backward)\n\n`make_backbone(name, d, 1, "
                f"ff_mult=0)` vs torch's {' / '.join(b['model'] for b in bases)} (d -> d), "
                f"{sizes(recs, 'batch', 'd')}, "
                f"input requires grad; Transformer window {recs[0]['params']['options']['window']} tokens. `impl=auto` "
                "is the layer as built, `impl=X` forces scan X, `impl=loop` steps it token by token through `step` "
                "(backpropagation through time: the paper's sequential baseline). Median milliseconds per step:",
                pivot(recs, lambda r: r["median_ms"], MS)]
        for b in bases:
            out += [f"Time relative to {b['model']} at the same T (lower is better; 0.50x = twice as fast):",
                    pivot(recs, lambda r, b=b: res.ratio(r, b), RATIO)]
        out += ["Speed-up over the same layer stepped token by token (`impl=loop` time / time, same weights):",
                pivot(recs, lambda r: res.ratio(r, {**row_of(r["key"]), "impl": "loop"}, inverse=True), RATIO,
                      keep=lambda r: r["key"]["impl"] != "loop" and "loop" in layer_impls(r["key"]["model"])),
                "Peak memory of the step, MB above the resident size after setup (absolute peaks: the JSON):",
                pivot(recs, lambda r: r["working_mb"], MB)]
        if bases:
            out += [f"Memory relative to {bases[0]['model']}:",
                    pivot(recs, lambda r: res.ratio(r, bases[0], "working_mb"), RATIO)]
    for recs in res.tables("model"):
        out += [f"## Full DecisionModel, training step, {group_label(recs[0]['key'])}\n\n"
                f"{sizes(recs, 'batch', 'd', 'n_layers')}, feed-forward 4d, dropout 0, Hopper-sized inputs; T in "
                "timesteps (tokens = 3T interleaved, T fused); the Transformer attends over a band of "
                f"{recs[0]['params']['window_steps']} timesteps (DT's K). Median milliseconds per step:",
                pivot(recs, lambda r: r["median_ms"], MS),
                f"Time relative to the {label(with_row(recs[0]['key'], MODEL_BASELINE))}, same layout and T:",
                pivot(recs, lambda r: res.ratio(r, MODEL_BASELINE), RATIO),
                "Peak memory, MB above the resident size after setup:", pivot(recs, lambda r: r["working_mb"], MB)]

    def layer(model: str, length: int, impl: str = "auto") -> dict[str, Any]:
        return {"part": "layer", "model": model, "impl": impl, "T": length}

    if device == "cpu":
        for length, limit in ((512, 0.5), (4096, 0.6)):
            t.check(f"one layer, minGRU / nn.GRU at T={length}",
                    res.quotient(layer(SUBJECT, length), layer("nn.GRU", length)), "<=", limit)
        for length in (512, 4096):
            t.check(f"one layer, minLSTM / nn.LSTM at T={length}",
                    res.quotient(layer("minlstm", length), layer("nn.LSTM", length)), "<=", 0.6)
        t.check("peak memory, minGRU / nn.GRU at T=4096",
                res.quotient(layer(SUBJECT, 4096), layer("nn.GRU", 4096), "working_mb"), "<=", 1.0)
        for lay in LAYOUTS:
            key = {"part": "model", "layout": lay, "model": SUBJECT, "T": 20}
            t.check(f"DecisionModel ({lay} layout), minGRU / Transformer at K=20",
                    res.quotient(key, with_row(key, MODEL_BASELINE)), "<=", 0.5)
    else:
        t.check("one layer on GPU, per-step loop / minGRU at T=4096",
                res.quotient(layer(SUBJECT, 4096, "loop"), layer(SUBJECT, 4096)), ">=", 100)
        t.check("one layer on GPU, minGRU / Mamba at T=4096",
                res.quotient(layer(SUBJECT, 4096), layer("mamba", 4096)), "<=", 1.2)
    return out


def scan_sections(res: Results, device: str, t: Targets) -> list[str]:
    base = {"impl": resolve_impl("auto", torch.device(device))}
    return [x for recs in res.tables("scan") for x in (
        f"## `{recs[0]['key']['entry']}` forward + backward, {sizes(recs, 'batch', 'd')}\n\nMedian milliseconds:",
        pivot(recs, lambda r: r["median_ms"], MS), "Nanoseconds per element (batch x T x d):",
        pivot(recs, lambda r: 1e6 * r["median_ms"] / r["info"]["elements"], lambda v: f"{v:.2f}"),
        f"Time relative to `scan {base['impl']}` (the default on {device}):",
        pivot(recs, lambda r: res.ratio(r, base), RATIO))]


def flatness(r: Record) -> float | None:
    """Slowest / fastest cost per call at t >= 10 (1.0x = flat along the episode)."""
    vals = [v for k, v in r["us_per_call_at"].items() if int(k) >= 10]
    return max(vals) / min(vals) if len(vals) >= 2 else None


def act_sections(res: Results, device: str, t: Targets) -> list[str]:
    tables = res.tables("act")
    out = ["## Cost per action along an episode\n\n`act` + `observe` per environment step, all the policy's work "
           f"(normalisation, embeddings, backbone, head, numpy round trip); {sizes(tables[0], 'd', 'n_layers')}, "
           "random weights and observations. `rollout=recurrent` carries the backbone's state, `rollout=window` "
           f"re-encodes the last K={tables[0][0]['params']['context_len']} steps (DT's protocol); `runtime`: the torch "
           "`Policy`, the same through `torch.compile`, or exported to ONNX and acting under onnxruntime "
           "(`OnnxPolicy`). Microseconds per call (one call acts for the whole batch), median over the 10 steps ending "
           "at t over every timed episode; `flat` = slowest / fastest of t >= 10; `window / this` = how many times "
           "cheaper than re-encoding the window."]
    for recs in tables:
        steps = sorted({int(k) for r in recs if r["status"] == "ok" for k in r["us_per_call_at"]})
        body = []
        for r in recs:
            if r["status"] != "ok":
                body.append(failed_row(r, len(steps) + 3))
                continue
            flat, cheaper = flatness(r), res.ratio(r, WINDOW_BASELINE, "us_per_call", inverse=True)
            body.append([row_label(r), *(f"{r['us_per_call_at'][str(s)]:.0f}" for s in steps),
                         f"{r['us_per_action']:.1f}", "–" if flat is None else RATIO(flat),
                         "–" if cheaper is None else RATIO(cheaper)])
        title = group_label(recs[0]["key"])
        out.append(f"### {title}\n\n" + md_table([title, *(f"t={s}" for s in steps), "us per action (all t)", "flat",
                                                  "window / this"], body))
    for lay, (limit_us, limit_x) in ACT_TARGETS.items():
        for runtime in RUNTIMES:
            key = {"part": "act", "layout": lay, "batch": 1, "model": SUBJECT, "rollout": "recurrent",
                   "runtime": runtime}
            r = res.ok(key)
            t.check(f"{lay} layout, batch 1, minGRU ({runtime}) us per action", r and r["us_per_call"], "<=", limit_us,
                    unit="us")
            t.check(f"{lay} layout, batch 1, Transformer window re-encoding / minGRU ({runtime})",
                    res.quotient(with_row(key, WINDOW_BASELINE), key, "us_per_call"), ">=", limit_x)
            if runtime == "torch":
                t.check(f"{lay} layout, batch 1, minGRU flat in t (slowest/fastest of t >= 10)", r and flatness(r),
                        "<=", 1.25)
    return out


def eval_sections(res: Results, device: str, t: Targets) -> list[str]:
    recs = (res.tables("eval") or [[]])[0]
    body = []
    for r in recs:
        if r["status"] != "ok":
            body.append(failed_row(r, 6))
            continue
        vs_zero = res.ratio(r, ZERO_BASELINE, "us_per_env_step")
        body.append([row_label(r), *(f"{r[k]:.1f}" for k in ("us_per_env_step", "policy_us_per_env_step",
                                                             "sim_us_per_env_step")),
                     f"{r['policy_over_sim']:.2f}", "–" if vs_zero is None else RATIO(vs_zero),
                     str(sorted(r["episodes_done"])[len(r["episodes_done"]) // 2])])
        if r["key"].get("model") == SUBJECT and r["key"]["rollout"] == "recurrent":
            t.check(f"evaluation, {label(r['key'])}: policy time / simulation time", r["policy_over_sim"], "<=", 0.5)
    p = recs[0]["params"] if recs else {}
    return [f"## Evaluation throughput\n\n{p.get('env_steps')} environment steps on {p.get('num_envs')} Hopper envs "
            "(the evaluator's sync vector env and rollout loop, same-step autoreset), driven by a policy on random "
            "weights, or by zero / uniform random actions (`policy=zeros|random`: the simulation alone). "
            "Microseconds per environment step (loop wall time / env steps), split into policy and simulation, and "
            "the loop time relative to zero actions. Episode lengths differ between policies, so resets differ: the "
            "last column counts finished episodes. The target is policy time / simulation time of the same run.",
            md_table(["policy", "us per env step", "policy us", "simulation us", "policy / simulation",
                      "time / zero actions", "episodes finished"], body)]


SECTIONS = {"train": train_sections, "scan": scan_sections, "act": act_sections, "eval": eval_sections}


def render_markdown(doc: dict[str, Any]) -> str:
    """The suite's document: how it was run, the tables, the targets, and every config without a number."""
    res, opts, targets = Results(doc["results"]), doc["options"], Targets()
    records = list(res.by_key.values())
    sections = SECTIONS[doc["suite"]](res, opts["device"], targets) if records else []
    load = [r["other_cpus"] for r in records if r.get("other_cpus") is not None] or [0.0]

    def where(r: Record) -> str:
        x = x_of(r["key"])
        return f"{label(r['key'])} ({group_label(r['key']) or r['key']['part']}" + (
            "" if x is None else f", {TABLES[r['key']['part']][1]}={x}") + ")"

    parts = [f"# Benchmark `{doc['suite']}`" + (" (quick)" if opts.get("quick") else ""),
             f"Command: `{doc['command']}`", f"Machine: {summary_line(doc['machine'])}",
             f"Each config ran in its own process (torch threads {opts['threads']}, time cap {opts['time_cap_s']:g} s, "
             f"memory cap {opts['mem_cap_mb']:.0f} MB); times are medians over the timed repeats after a warm-up "
             "(every repeat is in the JSON).",
             f"Interference: other processes used {sum(load) / len(load):.2f} CPUs on average (max {max(load):.2f}) "
             f"while the configs ran; {sum(map(disturbed, records))} of {len(records)} configs ran while they used "
             f"more than {BUSY_OTHER_CPUS} CPU, marked {DISTURBED} (`other_cpus` in the JSON).",
             *filter(None, [busy_warning(doc["machine"].get("other_cpus_before"), opts["threads"])]), *sections,
             "## Targets\n\n" + ("(not checked: --quick measures tiny sizes)" if opts.get("quick")
                                   else "\n".join(targets) or "(none applies to what was measured)")]
    missing = [f"- {where(r)}: {r['status']}: {r.get('reason', '')}" for r in records if r["status"] != "ok"]
    warned = [f"- {where(r)}: {'; '.join(r['warnings'])}" for r in records if r.get("warnings")]
    parts += [f"## {title}\n\n" + "\n".join(lines) for title, lines in (
        ("Configs without a number", missing), ("Warnings raised while measuring", warned)) if lines]
    parts += [note for note in (doc.get("plot_note"), doc.get("interrupted") and "**The sweep was interrupted: the "
                                "tables hold what was measured before.**") if note]
    return "\n\n".join(parts) + "\n"


def write_report(doc: dict[str, Any], out_dir: Path, stem: str) -> dict[str, Path | None]:
    """`<stem>.md` and `<stem>.png` next to the JSON (no plot without matplotlib: the tables say so)."""
    from .plots import plot_suite

    png: Path | None = out_dir / f"{stem}.png"
    try:
        plot_suite(doc, png)
    except ImportError as e:  # matplotlib is in the `bench` extra; the tables do not need it
        png, doc = None, dict(doc, plot_note=f"No plot: {e} (pip install 'decision_minrnn[bench]').")
    (out_dir / f"{stem}.md").write_text(render_markdown(doc))
    return {"markdown": out_dir / f"{stem}.md", "plot": png}
