"""What each suite runs: the list of config specs (one subprocess each), full size or `--quick`.

A spec is a JSON-able dict: where it goes in the report (`suite`, `part`, `group`, `row`, `x`), what to build
(`workload`, `params`) and how to measure it (`device`, `threads`, repeats, time budget, caps). Specs are ordered by
`x` (sequence length) first, so an interrupted sweep still holds complete comparisons at the shorter lengths.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

SUITES = ("train", "act", "eval", "scan")

TRAIN_T = (64, 256, 512, 1024, 2048, 4096)
MODEL_T = (20, 64, 256, 1000)  # timesteps; 20 = Decision Transformer's K, 1000 = a whole episode
SCAN_T = TRAIN_T
QUICK_T = (16,)
QUICK_MODEL_T = (4,)
TRANSFORMER_LAYER_WINDOW = 64  # tokens: the one-layer Transformer attends over a 64-token band
ACT_STEPS = 1000
ACT_BATCHES = (1, 16)
LAYOUTS = ("fused", "interleaved")
DISPLAY = {"mingru": "minGRU", "minlstm": "minLSTM", "transformer": "Transformer", "s4": "S4D", "mamba": "Mamba"}


@dataclass
class Options:
    """Command-line choices that shape the specs."""

    device: str = "cpu"
    threads: int = 2
    quick: bool = False
    repeats: int | None = None  # at most this many timed calls per config (default per suite)
    time_cap_s: float | None = None  # per config, subprocess start to result (default per mode)
    mem_cap_mb: float = 8192.0

    def sizes(self) -> dict[str, int]:
        """batch, width and depth: the issue's sizes, or tiny ones for --quick."""
        if self.quick:
            return {"batch": 4, "d": 16, "n_layers": 1}
        return {"batch": 64, "d": 128, "n_layers": 3}


# per suite: (max repeats, min repeats, measurement budget in seconds) for full runs
MEASURE = {"train": (10, 3, 15.0), "scan": (10, 3, 10.0), "act": (5, 3, 20.0), "eval": (3, 3, 90.0)}


def _measure(suite: str, opts: Options) -> dict[str, Any]:
    repeats, min_repeats, budget = MEASURE[suite]
    if opts.quick:
        repeats, min_repeats, budget = 2, 1, 0.5
    if opts.repeats is not None:
        repeats, min_repeats = opts.repeats, min(min_repeats, opts.repeats)
    cap = opts.time_cap_s if opts.time_cap_s is not None else (60.0 if opts.quick else 180.0)
    return {"device": opts.device, "threads": opts.threads, "warmup": 1, "repeats": repeats,
            "min_repeats": min_repeats, "budget_s": budget, "time_cap_s": cap, "mem_cap_mb": opts.mem_cap_mb}


def _spec(suite: str, part: str, group: str, row: str, x: Any, workload: str, params: dict[str, Any],
          opts: Options, **extra: Any) -> dict[str, Any]:
    spec = {"suite": suite, "part": part, "group": group, "row": row, "x": x, "workload": workload,
            "params": copy.deepcopy(params), **_measure(suite, opts)}
    spec.update(extra)
    return spec


def _order(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """By part, then x ascending (None first), keeping the row order within an x."""
    parts = list(dict.fromkeys(s["part"] for s in specs))
    return sorted(specs, key=lambda s: (parts.index(s["part"]), -1 if s["x"] is None else s["x"]))


def scan_impls(device: str) -> tuple[str, ...]:
    return ("cpu", "log", "sequential") + (("accelerated",) if device == "cuda" else ())


def default_impl(device: str) -> str:
    """What `impl=None` resolves to on this device (scan.resolve_impl)."""
    return "cpu" if device == "cpu" else "log"


IMPL_LABEL = {"cpu": "scan cpu", "log": "scan log", "sequential": "scan sequential", "loop": "per-step loop",
              "accelerated": "accelerated-scan"}


def layer_rows(device: str, window: int = TRANSFORMER_LAYER_WINDOW) -> list[tuple[str, dict[str, Any]]]:
    """(row label, params) of the one-layer training-step comparison."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for name in ("mingru", "minlstm"):
        for impl in (*scan_impls(device), "loop"):
            rows.append((f"{DISPLAY[name]} ({IMPL_LABEL[impl]})", {"model": name, "impl": impl, "family": name}))
    suffix = " (cuDNN)" if device == "cuda" else ""
    rows += [(f"nn.GRU{suffix}", {"model": "gru"}), (f"nn.LSTM{suffix}", {"model": "lstm"}),
             (f"Transformer (window {window})", {"model": "transformer", "window": window})]
    for name in ("s4", "mamba"):
        rows.append((f"{DISPLAY[name]} ({IMPL_LABEL[default_impl(device)]})", {"model": name, "impl": None}))
    return rows


def train_specs(opts: Options) -> list[dict[str, Any]]:
    size = opts.sizes()
    specs = []
    window = TRANSFORMER_LAYER_WINDOW if not opts.quick else 8
    for length in (QUICK_T if opts.quick else TRAIN_T):
        for row, params in layer_rows(opts.device, window):
            p = {**params, "batch": size["batch"], "d": size["d"], "T": length}
            specs.append(_spec("train", "layer", "", row, length, "layer", p, opts))
    for length in (QUICK_MODEL_T if opts.quick else MODEL_T):
        for layout in LAYOUTS:
            for backbone in ("mingru", "minlstm", "transformer", "s4", "mamba"):
                p = {"backbone": backbone, "layout": layout, "T": length, "window_steps": 20, **size}
                specs.append(_spec("train", "model", f"{layout} layout", DISPLAY[backbone], length, "model", p,
                                   opts))
    return _order(specs)


COMPILED_ROW = "minGRU (carried state, torch.compile)"  # acting through torch.compile (Policy(compile=True))


def act_rows() -> list[tuple[str, dict[str, Any]]]:
    rows = [(f"{DISPLAY[b]} (carried state)", {"backbone": b, "rollout": "recurrent"})
            for b in ("mingru", "minlstm", "s4", "mamba")]
    rows.append(("Transformer (sliding K/V cache)", {"backbone": "transformer", "rollout": "recurrent"}))
    rows.append(("Transformer (re-encode last K=20 steps)", {"backbone": "transformer", "rollout": "window"}))
    rows.append((COMPILED_ROW, {"backbone": "mingru", "rollout": "recurrent", "compile": True}))
    return rows


def act_specs(opts: Options) -> list[dict[str, Any]]:
    size = opts.sizes()
    steps = 12 if opts.quick else ACT_STEPS
    specs = []
    for layout in LAYOUTS:
        for batch in ((1, 2) if opts.quick else ACT_BATCHES):
            for row, params in act_rows():
                p = {**params, "layout": layout, "batch": batch, "steps": steps, "context_len": 20,
                     "d": size["d"], "n_layers": size["n_layers"]}
                specs.append(_spec("act", "act", f"{layout} layout, batch {batch}", row, None, "act", p, opts))
    return specs


def eval_specs(opts: Options) -> list[dict[str, Any]]:
    size = opts.sizes()
    env = {"env_id": "Hopper-v5", "num_envs": 2 if opts.quick else 10, "env_steps": 100 if opts.quick else 10_000,
           "seed": 0}
    model = {"d": size["d"], "n_layers": size["n_layers"], "context_len": 20}
    rows = [
        ("zero actions (simulation only)", {"policy": "zeros"}),
        ("uniform random actions (simulation only)", {"policy": "random"}),
        ("minGRU, fused (carried state)", {"policy": "model", "backbone": "mingru", "layout": "fused",
                                           "rollout": "recurrent", **model}),
        ("minGRU, interleaved (carried state)", {"policy": "model", "backbone": "mingru", "layout": "interleaved",
                                                 "rollout": "recurrent", **model}),
        ("minGRU, fused (carried state, torch.compile)", {"policy": "model", "backbone": "mingru", "layout": "fused",
                                                          "rollout": "recurrent", "compile": True, **model}),
        ("Transformer, interleaved (re-encode K=20)", {"policy": "model", "backbone": "transformer",
                                                       "layout": "interleaved", "rollout": "window", **model}),
    ]
    specs = [_spec("eval", "eval", "", row, None, "eval", {**env, **p}, opts, warmup=0) for row, p in rows]
    return specs


def scan_specs(opts: Options) -> list[dict[str, Any]]:
    from .scans import available_entries

    size = opts.sizes()
    specs = []
    for length in (QUICK_T if opts.quick else SCAN_T):
        for entry in available_entries():
            for impl in scan_impls(opts.device):
                if impl == "accelerated" and entry != "scan":
                    continue
                p = {"entry": entry, "impl": impl, "batch": size["batch"], "d": size["d"], "T": length}
                specs.append(_spec("scan", "scan", entry, IMPL_LABEL[impl], length, "scan", p, opts))
    return _order(specs)


SPEC_BUILDERS = {"train": train_specs, "act": act_specs, "eval": eval_specs, "scan": scan_specs}


def suite_specs(suite: str, opts: Options) -> list[dict[str, Any]]:
    if suite not in SPEC_BUILDERS:
        raise ValueError(f"unknown suite {suite!r}; valid: {', '.join(SUITES)}, all")
    return SPEC_BUILDERS[suite](opts)


def spec_key(spec: dict[str, Any]) -> str:
    """Identity of a config within a suite (for --resume and for skipping longer lengths after a cap)."""
    return f"{spec['part']}|{spec['group']}|{spec['row']}|{spec['x']}"


def sweep_key(spec: dict[str, Any]) -> str:
    return f"{spec['part']}|{spec['group']}|{spec['row']}"
