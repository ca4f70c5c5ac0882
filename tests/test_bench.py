"""Smoke tests of `benchmark_agent`: each suite in --quick mode writes its table, JSON and plot; caps turn into skipped
/ out-of-memory records, a crash into a failure; a sweep stops a row after a cap and survives an interruption.

Timings are not checked (tests run on loaded machines): every config must either finish with sane numbers or be
skipped with a stated reason (a time cap on a busy machine, a missing optional library). A config that crashes, or
a record without numbers, fails the test.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from decision_minrnn.bench import main
from decision_minrnn.bench.measure import SkipConfig, measure
from decision_minrnn.bench.report import render_markdown
from decision_minrnn.bench.runner import _oom_error, run_config, run_specs
from decision_minrnn.bench.suites import Options, act_specs, layer_impls, suite_specs, train_specs
from decision_minrnn.bench.workloads import build
from decision_minrnn.nn.backbones import BACKBONES, scans_over_time

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAVE_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None


def check_records(doc: dict) -> dict[str, dict]:
    """Every record finished with sane numbers or was skipped with a reason; at least one finished. By key text."""
    records = {" ".join(f"{k}={v}" for k, v in r["key"].items()): r for r in doc["results"]}
    for name, r in records.items():
        assert r["status"] in ("ok", "skipped"), f"{name}: {r['status']}: {r.get('reason')}\n{r.get('traceback', '')}"
        if r["status"] == "skipped":
            assert r["reason"].strip(), name
            continue
        assert r["repeats"] >= 1 and len(r["times_ms"]) == r["repeats"], name
        assert all(math.isfinite(t) and t > 0 for t in r["times_ms"]), name
        assert r["min_ms"] <= r["median_ms"] <= max(r["times_ms"]) and r["peak_mb"] > 0, name
    assert any(r["status"] == "ok" for r in records.values()), "no config finished"
    return records


def run_quick(tmp_path: Path, suite: str, only: str, *extra: str) -> dict:
    out = tmp_path / "results"
    assert main(["--suite", suite, "--quick", "--threads", "1", "--out", str(out), "--only", only, *extra]) == 0
    doc = json.loads((out / f"{suite}_cpu_quick.json").read_text())
    md = (out / f"{suite}_cpu_quick.md").read_text()
    assert md.startswith(f"# Benchmark `{suite}` (quick)") and "load avg before" in md
    assert f"benchmark_agent --suite {suite} --quick" in md
    if HAVE_MATPLOTLIB:
        assert (out / f"{suite}_cpu_quick.png").read_bytes()[:4] == b"\x89PNG"
    else:  # matplotlib is in the `bench` extra: without it the tables are still written, and say why no plot
        assert "No plot" in md
    assert doc["machine"]["cpu"] and doc["machine"]["torch"] == torch.__version__
    assert doc["machine"]["load_after"] is not None
    doc["markdown"] = md
    return doc


def test_train_quick(tmp_path):
    doc = run_quick(tmp_path, "train", r"part=layer model=(mingru|nn\.GRU) |part=model layout=fused model=mingru ")
    records = check_records(doc)
    assert set(records) == {f"part=layer model=mingru impl={i} T=16" for i in layer_impls("mingru")} | {
        "part=layer model=nn.GRU impl=auto T=16", "part=model layout=fused model=mingru T=4"}
    assert "Time relative to nn.GRU" in doc["markdown"] and "Speed-up over the same layer" in doc["markdown"]


def test_act_quick_with_compile_and_onnx(tmp_path):
    doc = run_quick(tmp_path, "act", r"layout=fused batch=1 model=(mingru|transformer rollout=window)")
    records = check_records(doc)
    runtimes = {r["key"]["runtime"]: r for r in records.values() if r["key"]["model"] == "mingru"}
    assert set(runtimes) == {"torch", "torch.compile", "onnxruntime"}
    if not HAVE_ONNXRUNTIME:
        assert "not installed" in runtimes["onnxruntime"]["reason"]
    for r in records.values():
        if r["status"] == "ok":
            assert set(r["us_per_call_at"]) == {"1", "10"} and len(r["curve_us"]) == r["params"]["steps"]
            assert r["us_per_call"] > 0
    assert "window / this" in doc["markdown"] and "MinGRU (rollout=recurrent, runtime=onnxruntime)" in doc["markdown"]


def test_eval_quick(tmp_path):
    doc = run_quick(tmp_path, "eval", r"policy=zeros|policy=model model=mingru layout=fused rollout=recurrent "
                                      r"runtime=torch$")
    records = check_records(doc)
    assert len(records) == 2
    for r in records.values():
        if r["status"] == "ok":
            assert r["env_steps"] == 100 and r["sim_us_per_env_step"] > 0 and r["policy_us_per_env_step"] > 0
    assert "time / zero actions" in doc["markdown"]


def test_scan_quick(tmp_path):
    doc = run_quick(tmp_path, "scan", r"entry=scan_log impl=(cpu|log)")
    assert {r["key"]["impl"] for r in check_records(doc).values()} == {"cpu", "log"}


def test_time_cap_is_recorded_as_skipped(tmp_path):
    doc = run_quick(tmp_path, "train", r"part=layer model=mingru impl=cpu", "--time-cap", "0.05")
    (r,) = doc["results"]
    assert r["status"] == "skipped" and "time cap" in r["reason"]
    assert "| skip |" in doc["markdown"]


def test_memory_cap_is_recorded_as_out_of_memory(tmp_path):
    doc = run_quick(tmp_path, "train", r"part=layer model=mingru impl=cpu", "--mem-cap-gb", "0.05")
    (r,) = doc["results"]
    assert r["status"] == "out_of_memory", r
    assert "| OOM |" in doc["markdown"]


def test_a_crashing_config_is_a_failure_the_checks_catch():
    spec = next(s for s in suite_specs("scan", Options(quick=True, threads=1)))
    broken = dict(spec, key={**spec["key"], "entry": "scan_log", "impl": "no-such-impl"})
    r = run_config(broken)
    assert r["status"] == "failed" and "no-such-impl" in r["reason"] and r["traceback"]
    with pytest.raises(AssertionError, match="failed"):
        check_records({"results": [run_config(spec), r]})


def test_rows_come_from_the_registry():
    opts = Options(quick=True)
    layer = {(s["key"]["model"], s["key"]["impl"]) for s in train_specs(opts) if s["key"]["part"] == "layer"}
    models = {s["key"]["model"] for s in train_specs(opts) if s["key"]["part"] == "model"}
    assert models == set(BACKBONES)
    for name in BACKBONES:
        assert (name, "auto") in layer and ((name, "loop") in layer) == scans_over_time(name)
    act = {(s["key"]["model"], s["key"]["rollout"], s["key"]["runtime"]) for s in act_specs(Options())}
    assert {(b, "recurrent", "torch") for b in BACKBONES} <= act
    assert {("mingru", "recurrent", "onnxruntime"), ("mingru", "recurrent", "torch.compile")} <= act
    assert {s["key"]["batch"] for s in act_specs(Options()) if s["key"]["runtime"] == "onnxruntime"} == {1, 16}


def test_onnx_row_is_skipped_with_a_note_without_onnxruntime(monkeypatch):
    spec = next(s for s in act_specs(Options(quick=True)) if s["key"]["runtime"] == "onnxruntime")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SkipConfig, match="onnxruntime not installed"):
        build({**spec["key"], **spec["params"]}, torch.device("cpu"))


def _fake_specs(xs=(64, 256, 512)) -> list[dict]:
    return [{"suite": "train", "key": {"part": "layer", "model": "mingru", "impl": "cpu", "T": x}, "params": {}}
            for x in xs]


def test_row_stops_after_a_cap_and_records_the_rest(tmp_path):
    calls = []

    def fake_run(spec):
        calls.append(spec["key"]["T"])
        return dict(spec, status="out_of_memory" if spec["key"]["T"] >= 256 else "ok", median_ms=1.0, repeats=1)

    doc = {"results": []}
    run_specs(_fake_specs(), doc, tmp_path / "r.json", run=fake_run, log=lambda s: None)
    assert calls == [64, 256]
    last = doc["results"][-1]
    assert last["key"]["T"] == 512 and last["status"] == "out_of_memory" and last["inferred"]
    assert len(json.loads((tmp_path / "r.json").read_text())["results"]) == 3


def test_interrupted_sweep_keeps_results_and_resumes(tmp_path):
    def interrupted(spec):
        if spec["key"]["T"] == 256:
            raise KeyboardInterrupt
        return dict(spec, status="ok", median_ms=1.0, repeats=1)

    doc = {"results": []}
    with pytest.raises(KeyboardInterrupt):
        run_specs(_fake_specs(), doc, tmp_path / "r.json", run=interrupted, log=lambda s: None)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["key"]["T"] for r in saved["results"]] == [64]
    calls = []
    run_specs(_fake_specs(), saved, tmp_path / "r.json",
              run=lambda s: calls.append(s["key"]["T"]) or dict(s, status="ok", median_ms=1.0, repeats=1),
              log=lambda s: None)
    assert calls == [256, 512]


def test_deadline_turns_a_slow_config_into_a_skip():
    import time

    with pytest.raises(SkipConfig) as e:
        measure(lambda: time.sleep(0.01), torch.device("cpu"), warmup=1, repeats=5, min_repeats=3, budget_s=10,
                deadline=time.time() + 0.001)
    assert "time cap" in str(e.value) and e.value.extra["estimate_ms"] > 0


def test_allocation_failures_count_as_out_of_memory():
    assert _oom_error(MemoryError())
    assert _oom_error(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert _oom_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not _oom_error(RuntimeError("shape mismatch"))


def test_full_size_report_checks_targets_by_keys():
    specs = {(s["key"]["model"], s["key"]["impl"], s["key"]["T"]): s for s in suite_specs("train", Options())
             if s["key"]["part"] == "layer"}
    records = [dict(specs[k], status="ok", median_ms=ms, working_mb=10.0, repeats=3)
               for k, ms in {("mingru", "auto", 512): 100.0, ("nn.GRU", "auto", 512): 250.0,
                             ("mingru", "auto", 4096): 1.0, ("nn.GRU", "auto", 4096): 1.0}.items()]
    records.append(dict(specs[("minlstm", "auto", 512)], status="out_of_memory", reason="test"))
    doc = {"suite": "train", "command": "benchmark_agent --suite train", "results": records,
           "options": {"device": "cpu", "threads": 2, "quick": False, "mem_cap_mb": 8192.0, "time_cap_s": 180.0},
           "machine": {"date": "today", "cpu": "cpu", "usable_cpus": 2, "torch_threads": 2, "device": "cpu",
                       "torch": "x", "load_before": [0.1, 0.1, 0.1], "load_after": [0.2, 0.2, 0.2]}}
    md = render_markdown(doc)
    assert "minGRU / nn.GRU at T=512: 0.40x (target <= 0.5x): met" in md
    assert "minGRU / nn.GRU at T=4096: 1.00x (target <= 0.6x): MISSED" in md
    assert "minLSTM / nn.LSTM at T=512: not measured" in md
    assert "| OOM |" in md and "out_of_memory: test" in md


def test_list_prints_the_selected_keys(capsys):
    assert main(["--suite", "act", "--quick", "--only", "runtime=onnxruntime", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and all(line.startswith("act: part=act ") and "runtime=onnxruntime" in line
                                   for line in lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(capsys):
    assert main(["--suite", "train", "--device", "cuda", "--quick"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
