"""Speed and memory benchmarks (issue 6): training step vs sequence length, cost per action, evaluation throughput,
the scan alone. `main` is the `benchmark_agent` console script; see `decision_minrnn.bench.cli`."""

from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
