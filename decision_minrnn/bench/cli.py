"""`benchmark_agent` / `python -m decision_minrnn.bench`: run suites, write <suite>_<device>[_quick].{json,md,png}.

    benchmark_agent --suite train                 # full sweep on CPU, 2 torch threads
    benchmark_agent --suite all --quick           # tiny sizes, seconds per config: checks that everything runs
    benchmark_agent --suite train --device cuda   # on a GPU (cuDNN GRU/LSTM, log-space scan)
    benchmark_agent --suite act --only 'runtime=onnxruntime' --list   # which configs a selection holds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ..cli.common import ArgumentParser, cli_entry
from ..errors import UserInputError
from .suites import SUITES, Options, key_text, suite_specs

DEFAULT_OUT = Path("benchmarks") / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="benchmark_agent", description=__doc__.split("\n\n")[0], epilog=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="what to measure (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test, not a result")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every config's process (default 2)")
    p.add_argument("--time-cap", type=float, help="seconds per config before it is skipped (default 180, quick 60)")
    p.add_argument("--mem-cap-gb", type=float, help="resident memory per config before it is recorded as out of "
                                                    "memory (default: 8, or 60%% of the available RAM if less)")
    p.add_argument("--only", default="", help="regular expression: only the configs whose keys match, as --list "
                                              "prints them (e.g. 'part=layer model=mingru', 'T=512$')")
    p.add_argument("--list", action="store_true", help="print the selected configs and exit")
    p.add_argument("--resume", action="store_true", help="keep the results already in the suite's JSON file and "
                                                         "run only the configs missing from it")
    args = p.parse_args(argv)
    for name in ("threads", "time_cap", "mem_cap_gb"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return args


def run_suite(suite: str, specs: list[dict[str, Any]], opts: Options, out: Path, resume: bool,
              machine: dict[str, Any], command: str) -> Path:
    """Run the suite's configs; its JSON is rewritten after every config, the tables and plot at the end."""
    from .machine import busy_warning, load_average, other_cpus_now
    from .report import write_report
    from .runner import run_specs, write_json_atomic

    stem = f"{suite}_{opts.device}" + ("_quick" if opts.quick else "")
    json_path = out / f"{stem}.json"
    options = {**dataclasses.asdict(opts), "time_cap_s": specs[0]["time_cap_s"]}
    old = json.loads(json_path.read_text()) if resume and json_path.exists() else {"options": options, "results": []}
    if any(old["options"].get(k) != options[k] for k in ("device", "threads", "quick")) or any(
            "key" not in r for r in old["results"]):
        raise UserInputError(f"--resume: {json_path} was measured with other options or by another version of "
                             "benchmark_agent; use another --out")
    doc = {"suite": suite, "command": command, "options": options, "results": old["results"],
           "machine": dict(machine, load_before=load_average(), other_cpus_before=other_cpus_now())}
    print(f"== {suite}: {len(specs)} configs -> {json_path}")
    warning = busy_warning(doc["machine"]["other_cpus_before"], opts.threads)
    if warning:
        print(warning)
    try:
        run_specs(specs, doc, json_path)
    except KeyboardInterrupt:
        doc["interrupted"] = True
        raise
    finally:
        doc["machine"]["load_after"] = load_average()
        write_json_atomic(json_path, doc)
        paths = write_report(doc, out, stem)
        print(f"   wrote {json_path}, {paths['markdown']}, {paths['plot'] or 'no plot (matplotlib missing)'}")
    return json_path


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from .machine import describe, memory_gb

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserInputError("--device cuda was asked for, but torch sees no CUDA GPU here")
    try:
        only = re.compile(args.only)
    except re.error as e:
        raise UserInputError(f"--only is not a valid regular expression: {e}") from None
    available = memory_gb().get("available")
    opts = Options(device=args.device, threads=args.threads, quick=args.quick, time_cap_s=args.time_cap,
                   mem_cap_mb=1024 * (args.mem_cap_gb or (min(8.0, 0.6 * available) if available else 8.0)))
    selected = {suite: [s for s in suite_specs(suite, opts) if only.search(key_text(s["key"]))]
                for suite in (SUITES if args.suite == "all" else (args.suite,))}
    if args.list:
        print("\n".join(f"{suite}: {key_text(s['key'])}" for suite, specs in selected.items() for s in specs))
        return 0
    machine = describe(opts.threads, opts.device)
    print(f"machine: {machine['cpu']} ({machine['usable_cpus']} usable CPUs), memory {machine['memory_gb']} GiB, "
          f"gpu {machine['gpu']}, torch {machine['torch']}")
    command = shlex.join(["benchmark_agent", *(sys.argv[1:] if argv is None else argv)])
    for suite, specs in selected.items():
        if not specs:
            print(f"{suite}: no config matches the selection")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        run_suite(suite, specs, opts, args.out, args.resume, machine, command)
    return 0
