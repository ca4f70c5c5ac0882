"""Speed and memory benchmarks: training step vs sequence length, cost per action, evaluation throughput, the scan.

`main` is the `benchmark_agent` console script (`decision_minrnn.bench.cli`; benchmarks/README.md says how to read
the results). It ships in the wheel on purpose, so that users can measure their own machines and GPUs. It sits on
top of the package and only uses its public API: the backbone registry, the model, `Policy`, the ONNX export, the
rollout loop. Import order inside: machine < measure < workloads < suites < runner < report, plots < cli.
"""

from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
