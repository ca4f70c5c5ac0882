"""Each config in a fresh subprocess, under a time cap and a memory cap; results saved as they come.

Why a subprocess per config: peak memory is only meaningful per process, one config's allocator state or thread
pool cannot bias the next, and a config that blows its caps is killed without taking the sweep down.

Parent (`run_specs`): starts `python -m decision_minrnn.bench --one SPEC_JSON`, watches the child's resident size
(killed past `mem_cap_mb`: out_of_memory) and its wall time (killed at `time_cap_s`: skipped), and appends every
record to the suite's JSON file at once (rewritten atomically), so an interrupted sweep keeps what it measured.
Once a row has been skipped or run out of memory at some length, its longer lengths are recorded as skipped
without running.

Child (`child_main`): sets torch's thread count, caps its data segment on CPU (RLIMIT_DATA, so an oversized
allocation fails fast with an error the child reports instead of the machine swapping), builds the workload, times
it (`timing.measure`) and prints one result line.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from .machine import cpu_busy_seconds
from .suites import spec_key, sweep_key

RESULT_PREFIX = "BENCH_RESULT "
POLL_S = 0.02
OK, SKIPPED, OOM, FAILED = "ok", "skipped", "out_of_memory", "failed"


# --------------------------------------------------------------------------------------------------- child
def _oom_error(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text
                                            or "cannot allocate memory" in text)


def _cap_data_segment(mem_cap_mb: float) -> None:
    """RLIMIT_DATA = the cap (absolute, like the parent's RSS watch); only the soft limit, so it can be lifted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = int(mem_cap_mb * 1024 * 1024)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, hard))


def _lift_data_cap() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (only possible before any parallel work)
        pass


def run_in_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Build and time one spec in this process; the result dict (status + metrics), never raises for OOM/skip."""
    import torch

    from .timing import MemoryProbe, measure
    from .workload import SkipConfig, build

    device = torch.device(spec["device"])
    deadline = float(spec.get("spawned_at", time.time())) + float(spec["time_cap_s"])
    result: dict[str, Any] = {"status": OK}
    try:
        workload = build(spec["workload"], spec["params"], device)
        probe = MemoryProbe(device)
        probe.start()
        samples = measure(workload.call, device, warmup=int(spec["warmup"]), repeats=int(spec["repeats"]),
                          min_repeats=int(spec["min_repeats"]), budget_s=float(spec["budget_s"]),
                          deadline=deadline - min(2.0, 0.1 * float(spec["time_cap_s"])))
        result.update(probe.stop())
        result.update(samples.summary())
        if workload.summarise is not None:
            result.update(workload.summarise(samples))
        result["info"] = workload.info
    except SkipConfig as e:
        result = {"status": SKIPPED, "reason": str(e), **getattr(e, "extra", {})}
    except BaseException as e:  # noqa: BLE001 - a benchmark reports failures, it does not die of them
        if isinstance(e, KeyboardInterrupt):
            raise
        _lift_data_cap()
        if _oom_error(e):
            result = {"status": OOM, "reason": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"}
        else:
            result = {"status": FAILED, "reason": f"{type(e).__name__}: {e}"[:500],
                      "traceback": traceback.format_exc()[-3000:]}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def child_main(spec_json: str) -> int:
    """`python -m decision_minrnn.bench --one SPEC_JSON`: print one RESULT_PREFIX line with the result."""
    spec = json.loads(spec_json)
    _threads(int(spec["threads"]))
    if spec["device"] == "cpu" and spec.get("mem_cap_mb"):
        _cap_data_segment(float(spec["mem_cap_mb"]))
    result = run_in_process(spec)
    _lift_data_cap()
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# -------------------------------------------------------------------------------------------------- parent
def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children (the benchmark's own share of /proc/stat)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _load1() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("MUJOCO_GL", "disable")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _watch(proc: subprocess.Popen, start: float, cap_s: float, cap_mb: float) -> tuple[str | None, float]:
    """Wait for the child; kill it past the time cap or past `cap_mb` resident (0 = unwatched).

    Returns (why it was killed or None, the largest RSS seen). Polling every POLL_S stops a runaway allocation
    long before it can take the machine's memory.
    """
    observed_peak = 0.0
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        if rss is not None:
            observed_peak = max(observed_peak, rss)
        killed = "time" if time.perf_counter() - start > cap_s else \
            "memory" if cap_mb and rss is not None and rss > cap_mb else None
        if killed:
            _kill(proc)
            return killed, observed_peak
        time.sleep(POLL_S)
    return None, observed_peak


def run_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one spec in a fresh interpreter under its caps; the record to store (spec fields + result)."""
    spec = dict(spec, spawned_at=time.time())
    cap_s, cap_mb = float(spec["time_cap_s"]), float(spec.get("mem_cap_mb") or 0)
    cmd = [sys.executable, "-m", "decision_minrnn.bench", "--one", json.dumps(spec)]
    load = _load1()
    busy0, own0 = cpu_busy_seconds(), _own_cpu_seconds()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(int(spec["threads"])), start_new_session=True)
    # Pipes are drained by threads while `_watch` polls the child's time and resident size.
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda s=proc.stdout, b=out_chunks: b.append(s.read()), daemon=True),
               threading.Thread(target=lambda s=proc.stderr, b=err_chunks: b.append(s.read()), daemon=True)]
    for r in readers:
        r.start()
    try:
        killed, observed_peak = _watch(proc, start, cap_s, cap_mb if spec["device"] == "cpu" else 0.0)
    except BaseException:  # Ctrl-C: the child runs in its own session, so it must be killed here
        _kill(proc)
        raise
    for r in readers:
        r.join(timeout=5)
    wall = time.perf_counter() - start
    busy1, own1 = cpu_busy_seconds(), _own_cpu_seconds()
    other = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall, 1e-9)
    stdout, stderr = "".join(out_chunks), "".join(err_chunks)
    record = {k: v for k, v in spec.items() if k != "spawned_at"}
    record.update({"subprocess_s": round(wall, 2), "load1_before": load, "load1_after": _load1(),
                   "other_cpus": None if other is None else round(other, 3),
                   "observed_peak_rss_mb": round(observed_peak, 1)})
    if killed == "time":
        record.update(status=SKIPPED, reason=f"over the {cap_s:g} s time cap (killed after {wall:.1f} s)")
        return record
    if killed == "memory":
        record.update(status=OOM, reason=f"resident size passed the {cap_mb:.0f} MB memory cap (killed)")
        return record
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if lines:
        record.update(json.loads(lines[-1][len(RESULT_PREFIX):]))
        return record
    tail = stderr.strip()[-2000:]
    if proc.returncode == -signal.SIGKILL:
        record.update(status=OOM, reason="killed by SIGKILL without a result (the kernel's OOM killer?)",
                      stderr_tail=tail)
    elif "MemoryError" in tail or "can't allocate memory" in tail or "out of memory" in tail.lower():
        record.update(status=OOM, reason="ran out of memory before it could report", stderr_tail=tail)
    else:
        record.update(status=FAILED, reason=f"exit code {proc.returncode} without a result", stderr_tail=tail)
    return record


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def run_specs(specs: list[dict[str, Any]], doc: dict[str, Any], json_path: Path, *,
              run: Callable[[dict[str, Any]], dict[str, Any]] = run_subprocess,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run every spec not already in `doc["results"]` (kept from a --resume) and store each record at once."""
    done = {spec_key(r) for r in doc["results"] if r.get("status") in (OK, SKIPPED, OOM)}
    blocked: dict[str, dict[str, Any]] = {}  # sweep key -> the record that stopped the row
    for r in doc["results"]:
        if r.get("status") in (SKIPPED, OOM) and r.get("x") is not None:
            blocked.setdefault(sweep_key(r), r)
    todo = [s for s in specs if spec_key(s) not in done]
    for i, spec in enumerate(todo, 1):
        stop = blocked.get(sweep_key(spec))
        if stop is not None and spec["x"] is not None and stop["x"] is not None and spec["x"] > stop["x"]:
            record = dict(spec, status=stop["status"], reason=f"not run: {stop['status']} at x={stop['x']}",
                          inferred=True)
        else:
            record = run(spec)
        if record["status"] in (SKIPPED, OOM) and record.get("x") is not None:
            blocked.setdefault(sweep_key(record), record)
        doc["results"].append(record)
        write_json_atomic(json_path, doc)
        log(f"[{i}/{len(todo)}] {describe_record(record)}")
    return doc["results"]


def describe_record(r: dict[str, Any]) -> str:
    where = " / ".join(str(p) for p in (r["part"], r["group"], r["row"]) if p)
    where += f" x={r['x']}" if r.get("x") is not None else ""
    if r["status"] != OK:
        return f"{where}: {r['status'].upper()} ({r.get('reason', '')})"
    text = f"{where}: median {r['median_ms']:.3f} ms over {r['repeats']}"
    if "us_per_call" in r:
        text += f", {r['us_per_call']:.1f} us per action call"
    if "us_per_env_step" in r:
        text += f", {r['us_per_env_step']:.1f} us per env step"
    return text + f", +{r.get('working_mb', 0):.0f} MB (other processes used {r.get('other_cpus')} CPUs)"
