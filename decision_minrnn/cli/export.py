"""`export_agent DIR --format onnx`: write the agent's recurrent step policy as one ONNX graph plus its JSON contract.

    export_agent agents/hopper-medium/mingru --format onnx                 # -> DIR/policy.onnx + DIR/policy.onnx.json
    export_agent agents/hopper-medium/mingru --format onnx --out hopper.onnx --batch 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from .common import ArgumentParser, cli_entry, run_main

FORMATS = ("onnx",)
OPSETS = range(14, 21)  # scaled_dot_product_attention needs 14; the TorchScript exporter stops at 20


def batch_size(text: str) -> int | None:
    """argparse type: `dynamic` (None: any batch size at run time) or a positive integer."""
    if text.strip().lower() == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {value}")
    return value


def opset(text: str) -> int:
    """argparse type: an ONNX opset the exporter supports here."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer opset, got {text!r}") from None
    if value not in OPSETS:
        raise argparse.ArgumentTypeError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1}, got {value}")
    return value


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="export_agent",
        description="Export a trained agent's step policy (the recurrent rollout: one environment step with the "
        "backbone state carried as named tensors) to ONNX, with a JSON file beside it that lists the inputs, "
        "outputs, state tensors and their initial values, the default target return and the return scale. "
        "Observations and returns go in raw: normalisation and return scaling are inside the graph.",
    )
    p.add_argument("agent", type=Path, metavar="DIR", help="agent folder (model.safetensors, config.json, ...)")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="export format (onnx)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="graph file, ending in .onnx (default DIR/policy.onnx); the JSON goes to FILE.json")
    p.add_argument("--batch", type=batch_size, default=None, metavar="N|dynamic",
                   help="rows per call fixed at N, or dynamic (any number of envs; default)")
    p.add_argument("--opset", type=opset, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true",
                   help="skip running the written graph once with onnxruntime against torch")
    return p


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from ..errors import UserInputError
    from ..export.onnx_policy import require_onnx

    if args.out is not None and args.out.suffix != ".onnx":
        raise UserInputError(f"--out must name a .onnx file, got {args.out}")
    if args.out is not None and args.out.is_dir():
        raise UserInputError(f"--out {args.out} is a folder; name a .onnx file")
    require_onnx(exporter=True)
    from ..export.onnx import export_onnx

    done = export_onnx(args.agent, args.out, batch=args.batch, opset=args.opset, check=not args.no_check)
    spec = done.spec
    if spec.get("rollout_note"):
        print(f"note: {spec['rollout_note']}", file=sys.stderr)
    state = ", ".join(f"{s['input']} {tuple(s['shape'])} {s['dtype']}" for s in spec["state"]) or "none (stateless)"
    err = spec["export"]["max_abs_error_vs_torch"]
    print(f"wrote {done.model_path} ({spec['backbone']}/{spec['layout']}, opset {spec['opset']}, batch "
          f"{spec['batch'] if spec['batch'] is not None else 'dynamic'})")
    print(f"  inputs: {', '.join(i['name'] for i in spec['inputs'])}")
    print(f"  state: {state}")
    print(f"  target return {spec['target_return']:g} (raw units), return scale {spec['return_scale']:g}"
          + (f"; onnxruntime vs torch max |error| {err:.2g}" if err is not None else ""))
    print(f"wrote {done.json_path}")
    return 0


if __name__ == "__main__":
    run_main(main)
