"""What each suite measures, full size or `--quick`: JSON-able specs whose `key` says what the config is (part, model,
impl, T, layout, batch, rollout, runtime, ...), `params` the sizes shared by a table, the rest how to measure it.

Results, baselines and targets are found by keys; labels are for display only. Models come from the backbone
registry, so a new backbone is measured without touching this file; `scans_over_time` picks the scan sweep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..nn.backbones import BACKBONES, backbone_class, scans_over_time
from ..nn.model import LAYOUTS
from ..nn.scan import SCAN_IMPLS
from .workloads import TORCH_RNNS

SUITES = ("train", "act", "eval", "scan")
# part -> (keys that split it into tables, the key along the columns); the other keys of a config name its row
TABLES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "layer": ((), "T"), "model": (("layout",), "T"), "act": (("layout", "batch"), None), "eval": ((), None),
    "scan": (("entry",), "T")}
SUBJECT = "mingru"  # the backbone the paper's claims (and the targets) are about
RUNTIMES = ("torch", "torch.compile", "onnxruntime")  # how the subject's policy acts, side by side
# Baselines, as the row keys of the config each ratio is taken against (in the same table and column)
LAYER_BASELINES = tuple({"model": m, "impl": "auto"} for m in TORCH_RNNS)  # time (and memory) against torch's RNNs
MODEL_BASELINE = {"model": "transformer"}  # the DecisionModel's training step against Decision Transformer's
WINDOW_BASELINE = {"model": "transformer", "rollout": "window", "runtime": "torch"}  # DT: re-encode the last K steps
ZERO_BASELINE = {"policy": "zeros"}  # evaluation: the simulation alone
SCAN_ENTRIES = ("scan_log", "scan", "gated_scan")
CONTEXT = 20  # DT's K: the acting window and the Transformer's training band, in timesteps
MEASURE = {"train": (10, 3, 15.0), "scan": (10, 3, 10.0), "act": (5, 3, 20.0), "eval": (3, 3, 90.0)}  # max, min, s


@dataclass
class Options:
    """Command-line choices that shape the specs."""

    device: str = "cpu"
    threads: int = 2
    quick: bool = False
    time_cap_s: float | None = None  # per config (default 180 s, quick 60 s)
    mem_cap_mb: float = 8192.0

    def sizes(self) -> dict[str, int]:
        """The issue's batch, width and depth, or tiny ones for --quick."""
        return {"batch": 4, "d": 16, "n_layers": 1} if self.quick else {"batch": 64, "d": 128, "n_layers": 3}

    def lengths(self) -> tuple[int, ...]:
        """Sequence lengths (tokens) of the one-layer and scan sweeps."""
        return (16,) if self.quick else (64, 256, 512, 1024, 2048, 4096)


def _spec(suite: str, opts: Options, key: dict[str, Any], params: dict[str, Any], warmup: int = 1) -> dict[str, Any]:
    repeats, min_repeats, budget = (2, 1, 0.5) if opts.quick else MEASURE[suite]
    cap = opts.time_cap_s if opts.time_cap_s is not None else 60.0 if opts.quick else 180.0
    return {"suite": suite, "key": key, "params": params, "device": opts.device, "threads": opts.threads,
            "warmup": warmup, "repeats": repeats, "min_repeats": min_repeats, "budget_s": budget, "time_cap_s": cap,
            "mem_cap_mb": opts.mem_cap_mb}


def layer_impls(model: str) -> tuple[str, ...]:
    """`auto` (the model's default forward), every scan forced by name and the per-step loop where the model scans."""
    return ("auto", *SCAN_IMPLS, "loop") if model in BACKBONES and scans_over_time(model) else ("auto",)


def train_specs(opts: Options) -> list[dict[str, Any]]:
    size, specs = opts.sizes(), []
    layer = {"batch": size["batch"], "d": size["d"], "options": {"ff_mult": 0, "window": 8 if opts.quick else 64}}
    for t in opts.lengths():
        for m in (*BACKBONES, *TORCH_RNNS):
            specs += [_spec("train", opts, {"part": "layer", "model": m, "impl": i, "T": t}, layer)
                      for i in layer_impls(m)]
    for t in (4,) if opts.quick else (CONTEXT, 64, 256, 1000):
        specs += [_spec("train", opts, {"part": "model", "layout": lay, "model": m, "T": t},
                        {**size, "window_steps": CONTEXT}) for lay in LAYOUTS for m in BACKBONES]
    return specs


def act_rows() -> list[dict[str, Any]]:
    """Every backbone with its state carried, DT's window re-encoding, and the subject through each runtime."""
    rows = [{"model": m, "rollout": "recurrent", "runtime": "torch"} for m in BACKBONES]
    return rows + [WINDOW_BASELINE] + [{"model": SUBJECT, "rollout": "recurrent", "runtime": r} for r in RUNTIMES[1:]]


def act_specs(opts: Options) -> list[dict[str, Any]]:
    size = opts.sizes()
    params = {"steps": 12 if opts.quick else 1000, "context_len": CONTEXT, "d": size["d"], "n_layers": size["n_layers"]}
    return [_spec("act", opts, {"part": "act", "layout": lay, "batch": b, **row}, params)
            for lay in LAYOUTS for b in ((1, 2) if opts.quick else (1, 16)) for row in act_rows()]


def eval_specs(opts: Options) -> list[dict[str, Any]]:
    size = opts.sizes()
    params = {"num_envs": 2 if opts.quick else 10, "env_steps": 100 if opts.quick else 10_000,
              "d": size["d"], "n_layers": size["n_layers"], "context_len": CONTEXT}
    subject = {"model": SUBJECT, "rollout": "recurrent", "runtime": "torch"}
    models = [*((lay, subject) for lay in LAYOUTS), ("fused", {**subject, "runtime": "torch.compile"}),
              ("interleaved", WINDOW_BASELINE)]
    rows = [ZERO_BASELINE, {"policy": "random"},
            *({"policy": "model", "model": row["model"], "layout": lay, **row} for lay, row in models)]
    return [_spec("eval", opts, {"part": "eval", **row}, params, warmup=0) for row in rows]


def scan_specs(opts: Options) -> list[dict[str, Any]]:
    size = {"batch": opts.sizes()["batch"], "d": opts.sizes()["d"]}
    return [_spec("scan", opts, {"part": "scan", "entry": e, "impl": i, "T": t}, size)
            for t in opts.lengths() for e in SCAN_ENTRIES for i in SCAN_IMPLS]


def suite_specs(suite: str, opts: Options) -> list[dict[str, Any]]:
    """The suite's configs, shortest length first: an interrupted sweep still holds whole comparisons."""
    specs = {"train": train_specs, "act": act_specs, "eval": eval_specs, "scan": scan_specs}[suite](opts)
    parts = list(TABLES)
    return sorted(specs, key=lambda s: (parts.index(s["key"]["part"]), x_of(s["key"]) or 0))


# ------------------------------------------------------------------------------------------------------- keys
def key_id(key: dict[str, Any]) -> str:
    """Identity of a config (results, --resume)."""
    return json.dumps(key, sort_keys=True)


def key_text(key: dict[str, Any]) -> str:
    """`part=layer model=mingru impl=cpu T=512`: what --only matches and --list prints."""
    return " ".join(f"{k}={v}" for k, v in key.items())


def x_of(key: dict[str, Any]) -> Any:
    x = TABLES[key["part"]][1]
    return key.get(x) if x else None


def group_of(key: dict[str, Any]) -> tuple:
    return tuple(key[g] for g in TABLES[key["part"]][0])


def row_of(key: dict[str, Any]) -> dict[str, Any]:
    groups, x = TABLES[key["part"]]
    return {k: v for k, v in key.items() if k not in ("part", *groups, x)}


def with_row(key: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The key of `row` in the same table and column as `key` (how baselines are found)."""
    return {**{k: v for k, v in key.items() if k not in row_of(key)}, **row}


def sweep_id(key: dict[str, Any]) -> str:
    """A row of a table: the same config at every length (a cap at one length stops the longer ones)."""
    x = TABLES[key["part"]][1]
    return key_id({k: v for k, v in key.items() if k != x})


def label(key: dict[str, Any]) -> str:
    """A row's label (display only): its model's class name and its other row keys, as --only matches them."""
    row = row_of(key)
    name = backbone_class(row["model"]).__name__ if row.get("model") in BACKBONES else row.get("model")
    rest = ", ".join(f"{k}={v}" for k, v in row.items() if k != "model")
    return f"{name} ({rest})" if name and rest else name or rest


def group_label(key: dict[str, Any]) -> str:
    """A table's title (display only)."""
    return ", ".join(f"{g}={key[g]}" for g in TABLES[key["part"]][0])
