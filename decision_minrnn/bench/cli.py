"""`benchmark_agent` / `python -m decision_minrnn.bench`: run suites, write <suite>_<device>[_quick].{json,md,png}.

    benchmark_agent --suite train                 # full sweep on CPU, 2 torch threads
    benchmark_agent --suite all --quick           # tiny sizes, seconds per config: checks that everything runs
    benchmark_agent --suite train --device cuda   # the GPU comparison (cuDNN, log-space scan, accelerated-scan)
    benchmark_agent --suite train --only 'minGRU|nn.GRU' --x 512 --profile   # where does the time go?
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ..cli.common import ArgumentParser, cli_entry
from ..errors import UserInputError
from .suites import SUITES, Options, spec_key, suite_specs

DEFAULT_OUT = Path("benchmarks") / "results"


def parse_args(argv: Sequence[str] | None) -> Any:
    p = ArgumentParser(prog="benchmark_agent", description=__doc__.split("\n\n")[0],
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--suite", choices=(*SUITES, "all"), default="all", help="what to measure (default: all)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test, not a result")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeats", type=int, help="at most this many timed calls per config (default per suite)")
    p.add_argument("--threads", type=int, default=2, help="torch threads in every config's process (default 2)")
    p.add_argument("--time-cap", type=float, help="seconds per config before it is recorded as skipped "
                                                  "(default 180, quick 60)")
    p.add_argument("--mem-cap-gb", type=float, help="resident memory per config before it is recorded as out of "
                                                    "memory (default: 8 or 60%% of the available RAM, if less)")
    p.add_argument("--only", help="regular expression: run only configs whose 'part group row' matches")
    p.add_argument("--x", type=int, help="run only configs at this length")
    p.add_argument("--resume", action="store_true", help="keep the results already in the suite's JSON file and "
                                                         "run only the configs missing from it")
    p.add_argument("--list", action="store_true", help="print the selected configs and exit")
    p.add_argument("--profile", action="store_true", help="profile the first selected config with torch.profiler "
                                                          "(in this process) and print its top operators")
    p.add_argument("--one", metavar="SPEC_JSON", help=__import__("argparse").SUPPRESS)  # internal: child process
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.time_cap is not None and args.time_cap <= 0:
        p.error("--time-cap must be > 0")
    if args.mem_cap_gb is not None and args.mem_cap_gb <= 0:
        p.error("--mem-cap-gb must be > 0")
    return args


def default_mem_cap_mb() -> float:
    from .machine import memory_gb

    mem = memory_gb()
    cap = 8 * 1024.0
    return min(cap, 0.6 * mem["available"] * 1024) if mem and mem.get("available") else cap


def select(specs: list[dict[str, Any]], only: str | None, x: int | None) -> list[dict[str, Any]]:
    if only:
        try:
            pattern = re.compile(only)
        except re.error as e:
            raise UserInputError(f"--only is not a valid regular expression: {e}") from None
        specs = [s for s in specs if pattern.search(f"{s['part']} {s['group']} {s['row']}")]
    if x is not None:
        specs = [s for s in specs if s["x"] == x]
    return specs


def output_stem(suite: str, opts: Options) -> str:
    return f"{suite}_{opts.device}" + ("_quick" if opts.quick else "")


def _resume_results(path: Path, opts: dict[str, Any]) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"--resume: {path} is not valid JSON ({e})") from None
    keys = ("device", "threads", "quick")  # what makes numbers comparable (caps and repeats may change)
    if any((old.get("options") or {}).get(k) != opts[k] for k in keys):
        raise UserInputError(f"--resume: {path} was written with other options ({old.get('options')}); use "
                             f"another --out or drop --resume")
    return list(old.get("results", []))


def run_suite(suite: str, opts: Options, args: Any, machine: dict[str, Any], command: str) -> Path | None:
    from .machine import busy_warning, load_average, other_cpus_now
    from .report import write_report
    from .runner import run_specs, write_json_atomic

    specs = select(suite_specs(suite, opts), args.only, args.x)
    if not specs:
        print(f"{suite}: no config matches the selection")
        return None
    if args.list:
        for s in specs:
            print(f"{suite}: {spec_key(s)}")
        return None
    if args.profile:
        from .profiling import profile_spec

        print(profile_spec(specs[0]))
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(suite, opts)
    json_path = args.out / f"{stem}.json"
    options = {"device": opts.device, "threads": opts.threads, "quick": opts.quick, "repeats": opts.repeats,
               "time_cap_s": opts.time_cap_s, "mem_cap_mb": opts.mem_cap_mb}
    doc = {"suite": suite, "command": command, "options": options, "machine": dict(machine),
           "results": _resume_results(json_path, options) if args.resume else []}
    doc["machine"]["load_before"] = load_average()
    doc["machine"]["other_cpus_before"] = other_cpus_now()
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
        paths = write_report(doc, args.out, stem)
        print(f"   wrote {json_path}, {paths['markdown']}, {paths['plot'] or 'no plot (matplotlib missing)'}")
    return json_path


@cli_entry
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        from .runner import child_main

        return child_main(args.one)
    from .machine import describe, summary_line

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserInputError("--device cuda was asked for, but torch sees no CUDA GPU here")
    opts = Options(device=args.device, threads=args.threads, quick=args.quick, repeats=args.repeats,
                   time_cap_s=args.time_cap,
                   mem_cap_mb=args.mem_cap_gb * 1024 if args.mem_cap_gb else default_mem_cap_mb())
    command = shlex.join(["benchmark_agent", *(sys.argv[1:] if argv is None else argv)])
    machine = describe(opts.threads, opts.device)
    if not (args.list or args.profile):
        print(f"machine: {summary_line(machine)}")
        print(f"  memory {machine['memory_gb']}, gpu {machine['gpu']}")
    for suite in (SUITES if args.suite == "all" else (args.suite,)):
        run_suite(suite, opts, args, machine, command)
    return 0
