"""Smoke tests of `benchmark_agent`: every suite in --quick mode writes its table, JSON and plot; caps turn into
skipped / out-of-memory records; a sweep stops a row after a cap and survives an interruption. Timings are not
checked (this is a test machine): only that the machinery measures, records and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from decision_minrnn.bench import main
from decision_minrnn.bench.report import render_markdown
from decision_minrnn.bench.runner import _oom_error, run_specs
from decision_minrnn.bench.suites import Options, suite_specs
from decision_minrnn.bench.timing import measure
from decision_minrnn.bench.workload import SkipConfig

try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False


def run_quick(tmp_path: Path, suite: str, only: str, *extra: str) -> dict:
    out = tmp_path / "results"
    code = main(["--suite", suite, "--quick", "--threads", "1", "--out", str(out), "--only", only, *extra])
    assert code == 0
    doc = json.loads((out / f"{suite}_cpu_quick.json").read_text())
    assert (out / f"{suite}_cpu_quick.md").read_text().startswith(f"# Benchmark `{suite}` (quick)")
    if HAVE_MATPLOTLIB:
        assert (out / f"{suite}_cpu_quick.png").read_bytes()[:4] == b"\x89PNG"
    else:  # matplotlib is in the `bench` extra: without it the tables are still written, and say why no plot
        assert "No plot" in (out / f"{suite}_cpu_quick.md").read_text()
    assert doc["machine"]["cpu"] and doc["machine"]["torch"] == torch.__version__
    assert doc["machine"]["load_after"] is not None
    return doc


def statuses(doc: dict) -> dict[str, str]:
    return {r["row"]: r["status"] for r in doc["results"]}


def test_train_quick(tmp_path):
    doc = run_quick(tmp_path, "train", r"layer .*(minGRU \(scan cpu\)|minGRU \(per-step loop\)|nn\.GRU)"
                                       r"|model fused layout minGRU")
    assert statuses(doc) == {"minGRU (scan cpu)": "ok", "minGRU (per-step loop)": "ok", "nn.GRU": "ok",
                             "minGRU": "ok"}
    ok = doc["results"][0]
    assert ok["median_ms"] > 0 and ok["repeats"] >= 1 and ok["peak_mb"] > 0
    md = (tmp_path / "results" / "train_cpu_quick.md").read_text()
    assert "Time relative to nn.GRU" in md and "Speed-up over the same cell" in md
    assert "load avg before" in md and "benchmark_agent --suite train --quick" in md


def test_act_quick(tmp_path):
    doc = run_quick(tmp_path, "act", r"fused layout, batch 1 (minGRU|Transformer \(re-encode)")
    assert set(statuses(doc).values()) == {"ok"}
    r = doc["results"][0]
    assert set(r["us_per_call_at"]) == {"1", "10"} and len(r["curve_us"]) == r["params"]["steps"]
    assert "window / this" in (tmp_path / "results" / "act_cpu_quick.md").read_text()


def test_eval_quick(tmp_path):
    doc = run_quick(tmp_path, "eval", r"zero actions|minGRU, fused")
    rows = {r["row"]: r for r in doc["results"]}
    assert all(r["status"] == "ok" for r in rows.values())
    model = rows["minGRU, fused (carried state)"]
    assert model["env_steps"] == 100 and model["policy_us_per_env_step"] > 0 and model["sim_us_per_env_step"] > 0
    assert "time / zero actions" in (tmp_path / "results" / "eval_cpu_quick.md").read_text()


def test_scan_quick(tmp_path):
    doc = run_quick(tmp_path, "scan", r"scan_log scan (cpu|log)")
    assert statuses(doc) == {"scan cpu": "ok", "scan log": "ok"}


def test_time_cap_is_recorded_as_skipped(tmp_path):
    doc = run_quick(tmp_path, "train", r"layer .*minGRU \(scan cpu\)", "--time-cap", "0.05")
    (r,) = doc["results"]
    assert r["status"] == "skipped" and "time cap" in r["reason"]
    assert "| skip |" in (tmp_path / "results" / "train_cpu_quick.md").read_text()


def test_memory_cap_is_recorded_as_out_of_memory(tmp_path):
    doc = run_quick(tmp_path, "train", r"layer .*minGRU \(scan cpu\)", "--mem-cap-gb", "0.05")
    (r,) = doc["results"]
    assert r["status"] == "out_of_memory", r
    assert "| OOM |" in (tmp_path / "results" / "train_cpu_quick.md").read_text()


def _fake_specs(xs=(64, 256, 512)) -> list[dict]:
    return [{"suite": "train", "part": "layer", "group": "", "row": "minGRU (scan cpu)", "x": x, "params": {},
             "workload": "layer"} for x in xs]


def test_row_stops_after_a_cap_and_records_the_rest(tmp_path):
    calls = []

    def fake_run(spec):
        calls.append(spec["x"])
        return dict(spec, status="out_of_memory" if spec["x"] >= 256 else "ok", median_ms=1.0, repeats=1)

    doc = {"results": []}
    run_specs(_fake_specs(), doc, tmp_path / "r.json", run=fake_run, log=lambda s: None)
    assert calls == [64, 256]
    last = doc["results"][-1]
    assert last["x"] == 512 and last["status"] == "out_of_memory" and last["inferred"]
    assert len(json.loads((tmp_path / "r.json").read_text())["results"]) == 3


def test_interrupted_sweep_keeps_results_and_resumes(tmp_path):
    def interrupted(spec):
        if spec["x"] == 256:
            raise KeyboardInterrupt
        return dict(spec, status="ok", median_ms=1.0, repeats=1)

    doc = {"results": []}
    with pytest.raises(KeyboardInterrupt):
        run_specs(_fake_specs(), doc, tmp_path / "r.json", run=interrupted, log=lambda s: None)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["x"] for r in saved["results"]] == [64]
    calls = []
    run_specs(_fake_specs(), saved, tmp_path / "r.json",
              run=lambda s: calls.append(s["x"]) or dict(s, status="ok", median_ms=1.0, repeats=1),
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


def test_full_size_report_checks_targets():
    opts = Options()
    specs = {(s["row"], s["x"]): s for s in suite_specs("train", opts) if s["part"] == "layer"}
    records = []
    for (row, x), ms in {("minGRU (scan cpu)", 512): 100.0, ("nn.GRU", 512): 250.0, ("minGRU (scan cpu)", 4096): 1.0,
                         ("nn.GRU", 4096): 1.0}.items():
        records.append(dict(specs[(row, x)], status="ok", median_ms=ms, working_mb=10.0, repeats=3))
    records.append(dict(specs[("minLSTM (scan cpu)", 512)], status="out_of_memory", reason="test"))
    doc = {"suite": "train", "command": "benchmark_agent --suite train", "results": records,
           "options": {"device": "cpu", "threads": 2, "quick": False, "mem_cap_mb": 8192.0},
           "machine": {"date": "today", "cpu": "cpu", "usable_cpus": 2, "torch_threads": 2, "device": "cpu",
                       "torch": "x", "load_before": [0.1, 0.1, 0.1], "load_after": [0.2, 0.2, 0.2]}}
    md = render_markdown(doc)
    assert "minGRU (scan cpu) / nn.GRU at T=512: 0.40x (target <= 0.5x): met" in md
    assert "minGRU (scan cpu) / nn.GRU at T=4096: 1.00x (target <= 0.6x): MISSED" in md
    assert "minLSTM (scan cpu) / nn.LSTM at T=512: not measured" in md
    assert "| OOM |" in md and "out_of_memory: test" in md


def test_profile_prints_top_operators(tmp_path, capsys):
    code = main(["--suite", "scan", "--quick", "--threads", "1", "--only", "scan_log scan cpu", "--profile"])
    assert code == 0
    out = capsys.readouterr().out
    assert "profile of scan / scan_log / scan cpu" in out and "Self CPU" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_gpu_is_a_clear_error(capsys):
    assert main(["--suite", "train", "--device", "cuda", "--quick"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
