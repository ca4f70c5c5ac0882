"""Each config in its own process, under a time cap and a memory cap; every record saved as soon as it comes.

A process per config, because peak memory is only meaningful per process, one config's allocator or thread pool
cannot bias the next, and a config that blows a cap is killed without taking the sweep down. They are forked from a
server that imported torch and this package once (multiprocessing's forkserver): milliseconds to start, not seconds.
The parent kills a child at the time cap (skipped) or past the resident cap (out_of_memory); the child caps its
data segment too, so that an oversized allocation fails fast instead of swapping. Once a row was skipped or ran out
of memory at one length, its longer lengths are recorded as such without running.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import resource
import signal
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from .machine import cpu_busy_seconds, load_average, other_cpus, own_cpu_seconds, proc_status_mb
from .measure import MemoryProbe, SkipConfig, measure, summary
from .suites import key_id, key_text, sweep_id, x_of
from .workloads import build

OK, SKIPPED, OOM, FAILED = "ok", "skipped", "out_of_memory", "failed"
POLL_S = 0.02  # how often the parent looks at the child: a runaway allocation is stopped long before it hurts


def _oom_error(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or isinstance(e, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "cannot allocate memory"))


def _data_cap(mb: float | None) -> None:
    """Cap the data segment at `mb` (None: lift the cap) with the soft RLIMIT_DATA."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    soft = hard if mb is None else int(mb * 1024 ** 2)
    resource.setrlimit(resource.RLIMIT_DATA, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))


def run_in_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Build and time one config in this process: its result (status, metrics); OOM and skips are results too."""
    device, cap = torch.device(spec["device"]), float(spec["time_cap_s"])
    try:
        workload = build({**spec["key"], **spec["params"]}, device)
        probe = MemoryProbe(device)
        times, outputs, warm = measure(workload.call, device, warmup=spec["warmup"], repeats=spec["repeats"],
                                       min_repeats=spec["min_repeats"], budget_s=spec["budget_s"],
                                       deadline=spec.get("deadline", time.time() + cap) - min(2.0, 0.1 * cap))
        extra = workload.summarise(outputs) if workload.summarise else {}
        return {"status": OK, **probe.stop(), **summary(times, warm), **extra, "info": workload.info}
    except SkipConfig as e:
        return {"status": SKIPPED, "reason": str(e), **e.extra}
    except Exception as e:  # noqa: BLE001 - a benchmark reports failures, it does not die of them
        _data_cap(None)
        if _oom_error(e):
            return {"status": OOM, "reason": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"}
        return {"status": FAILED, "reason": f"{type(e).__name__}: {e}"[:500],
                "traceback": traceback.format_exc()[-3000:]}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _child(spec: dict[str, Any], conn: Any) -> None:
    os.setsid()  # its own session: a kill also reaches torch.compile's workers
    os.dup2(os.open(spec["stderr"], os.O_WRONLY), 2)  # torch's logs: kept with a failure, off the terminal
    torch.set_num_threads(int(spec["threads"]))
    with contextlib.suppress(RuntimeError):  # possible only before any parallel work
        torch.set_num_interop_threads(1)
    torch.ones(2, requires_grad=True).mul(2).backward(torch.ones(2))  # a one-time setup (~30 MB), not a config's
    if spec["device"] == "cpu" and spec.get("mem_cap_mb"):
        _data_cap(float(spec["mem_cap_mb"]))
    with warnings.catch_warnings(record=True) as caught:
        result = run_in_process(spec)
    _data_cap(None)
    if caught:  # e.g. torch.compile falling back to eager: the number would not be what its row says
        result["warnings"] = list(dict.fromkeys(f"{w.category.__name__}: {w.message}"[:300] for w in caught))[:5]
    conn.send(dict(result, cpu_s=own_cpu_seconds()))


def _kill(proc: Any) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.kill()
    proc.join()


def run_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one config in a fresh process under its caps: the record to store (the spec and its result)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    cap_s, cap_mb = float(spec["time_cap_s"]), float(spec["mem_cap_mb"] or 0) if spec["device"] == "cpu" else 0.0
    receive, send = ctx.Pipe(duplex=False)
    err = tempfile.NamedTemporaryFile(prefix="bench-stderr-")
    busy0, own0, load, start = cpu_busy_seconds(), own_cpu_seconds(), load_average(), time.perf_counter()
    proc = ctx.Process(target=_child, args=(dict(spec, deadline=time.time() + cap_s, stderr=err.name), send))
    proc.start()
    send.close()
    result, killed, peak = None, None, 0.0
    try:
        while result is None and killed is None:
            if receive.poll(POLL_S):
                try:
                    result = receive.recv()
                except EOFError:  # it died without a result
                    break
            rss = proc_status_mb("VmRSS", proc.pid) or 0.0
            peak = max(peak, rss)
            killed = "time" if time.perf_counter() - start > cap_s else "memory" if cap_mb and rss > cap_mb else None
        if killed is None:
            proc.join(timeout=10)  # let it exit by itself
    finally:
        _kill(proc)  # and whatever it left behind
    wall = time.perf_counter() - start
    with err:
        stderr = err.read()[-2000:].decode(errors="replace")
    own = own_cpu_seconds() - own0 + result.pop("cpu_s") if result else None  # the child's CPU time is its own
    record = dict(spec, subprocess_s=round(wall, 2), load1_before=(load or [None])[0],
                  load1_after=(load_average() or [None])[0], observed_peak_rss_mb=round(peak, 1),
                  other_cpus=None if own is None else other_cpus(busy0, own, wall))
    if killed == "time":
        record.update(status=SKIPPED, reason=f"over the {cap_s:g} s time cap (killed after {wall:.1f} s)")
    elif killed == "memory":
        record.update(status=OOM, reason=f"resident size passed the {cap_mb:.0f} MB memory cap (killed)")
    elif result is not None:
        record.update(result)
    elif proc.exitcode == -signal.SIGKILL:
        record.update(status=OOM, reason="killed by SIGKILL without a result (the kernel's OOM killer?)")
    else:
        record.update(status=FAILED, reason=f"exit code {proc.exitcode} without a result")
    return dict(record, stderr_tail=stderr) if record["status"] == FAILED else record


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def run_specs(specs: list[dict[str, Any]], doc: dict[str, Any], json_path: Path, *,
              run: Callable[[dict[str, Any]], dict[str, Any]] = run_config,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every spec without a result in `doc["results"]` (failures run again); store each record at once."""
    doc["results"] = [r for r in doc["results"] if r["status"] != FAILED]
    done = {key_id(r["key"]) for r in doc["results"]}
    blocked = {sweep_id(r["key"]): r for r in reversed(doc["results"]) if r["status"] in (SKIPPED, OOM)}
    todo = [s for s in specs if key_id(s["key"]) not in done]
    for i, spec in enumerate(todo, 1):
        stop, x = blocked.get(sweep_id(spec["key"])), x_of(spec["key"])
        if stop is not None and x is not None and x > x_of(stop["key"]):
            record = dict(spec, status=stop["status"], inferred=True,
                          reason=f"not run: {stop['status']} at {x_of(stop['key'])} ({stop.get('reason', '')})")
        else:
            record = run(spec)
        if record["status"] in (SKIPPED, OOM) and x is not None:
            blocked.setdefault(sweep_id(spec["key"]), record)
        doc["results"].append(record)
        write_json_atomic(json_path, doc)
        log(f"[{i}/{len(todo)}] {key_text(record['key'])}: " + (
            f"{record['status'].upper()} ({record.get('reason', '')})" if record["status"] != OK else
            f"median {record['median_ms']:.3f} ms over {record['repeats']}, +{record.get('working_mb', 0):.0f} MB "
            f"(others used {record.get('other_cpus')} CPUs)"))
    return doc["results"]
