"""How much a cell's score depends on its return target: the protocol's target against the best return in its data.

The protocol conditions every model on DT's first target per environment (halfcheetah 12000, hopper 3600, walker2d
5000), fixed before scoring. On medium-replay data the best episode returns much less (halfcheetah-medium-replay:
4888), so the target asks for a return no training window ever carried. This diagnostic evaluates each finished cell
again at the best episode return of the dataset it was trained on (`--target-return`; same weights, rollout, episode
count and evaluation seed as the row, through `decision_minrnn.sweep.reevaluate`), and measures how large the target's
embedding is next to the state's (mean over 2,000 dataset states of |embed_return(R / scale)| / |embed_state(s)|): in
the fused layout both are summed into one token before a LayerNorm, so a large target term squeezes the state's
share of that token; in DT's interleaved layout each has its own token. Shown beside the protocol's score, never
swapped in. Rows go to `<out>/target_probe.jsonl` as they finish (a rerun skips those there), the table to
`<out>/target_probe.md`.

    python benchmarks/target_probe.py runs/sweeps/d4rl-nine --out benchmarks/results/sweeps/d4rl-nine \
        --tasks halfcheetah-medium-replay hopper-medium-replay
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decision_minrnn.agent.folder import AgentMeta, load_agent
from decision_minrnn.data.d4rl import read_d4rl_hdf5
from decision_minrnn.sweep.reevaluate import evaluate_cell, reevaluate_to_files
from decision_minrnn.sweep.report import cell_score

PROBE_STATES = 2000


def target_share(model: torch.nn.Module, meta: AgentMeta, observations: np.ndarray,
                 targets: list[float]) -> list[float]:
    """Mean |embed_return(target / scale)| / |embed_state(s)| over `observations`, for each target."""
    idx = np.linspace(0, len(observations) - 1, min(PROBE_STATES, len(observations))).astype(int)
    states = torch.as_tensor((observations[idx] - meta.state_mean) / meta.state_std, dtype=torch.float32)
    with torch.no_grad():
        state_norm = model.embed_state(states).norm(dim=-1)
        shares = []
        for target in targets:
            r = model.embed_return(torch.full((1, 1), target / meta.return_scale)).norm()
            shares.append(float((r / state_norm).mean()))
    return shares


def probe_row(row: dict[str, Any], cell_dir: Path) -> dict[str, Any] | None:
    """The cell at the best return of its own dataset; None when that dataset is not on this machine."""
    location = Path(row["data_location"])
    if not location.is_file():
        print(f"{row['task']} {row['model']} seed{row['seed']}: {location} not here; skipped", file=sys.stderr)
        return None
    data = read_d4rl_hdf5(location, row["task"])
    best = float(data.episode_returns().max())
    result = evaluate_cell(row, cell_dir, "--target-return", repr(best))
    model, meta = load_agent(cell_dir)
    shares = target_share(model, meta, data.observations, [row["target_return"], best])
    return {"task": row["task"], "model": row["model"], "seed": row["seed"], "layout": meta.config.layout,
            "rollout": row["rollout"], "eval_seed": row["eval_seed"],
            "protocol_target": row["target_return"], "protocol_normalized_mean": cell_score(row),
            "data_max_target": best, "returns": result["returns"], "lengths": result["lengths"],
            "normalized_mean": cell_score({"task": row["task"], "returns": result["returns"]}),
            "target_share": {"protocol": shares[0], "data_max": shares[1]}}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | model (layout) | seed | protocol target: score | data's best return as target: score | "
             "target / state embedding size, protocol -> best |", "|---|---|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["model"], r["seed"])):
        lines.append(f"| {r['task']} | {r['model']} ({r['layout']}) | {r['seed']} | {r['protocol_target']:.0f}: "
                     f"{r['protocol_normalized_mean']:.1f} | {r['data_max_target']:.0f}: {r['normalized_mean']:.1f} | "
                     f"{r['target_share']['protocol']:.2f} -> {r['target_share']['data_max']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep's output folder (results.jsonl and cells/)")
    parser.add_argument("--out", type=Path, help="where target_probe.jsonl and .md go (default: sweep_dir)")
    parser.add_argument("--tasks", nargs="+", help="only these tasks (default: all)")
    parser.add_argument("--models", nargs="+", help="only these sweep models (default: all but MLP-BC)")
    args = parser.parse_args(argv)

    def wanted(row: dict[str, Any]) -> bool:
        return (row.get("backbone") != "mlp-bc"  # BC is not conditioned on a return
                and (not args.tasks or row["task"] in args.tasks)
                and (not args.models or row["model"] in args.models))

    reevaluate_to_files(args.sweep_dir, args.out or args.sweep_dir, "target_probe", probe_row, wanted,
                        lambda new: f"target {new['protocol_target']:.0f} -> {new['protocol_normalized_mean']:.1f}, "
                                    f"{new['data_max_target']:.0f} -> {new['normalized_mean']:.1f}",
                        markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
