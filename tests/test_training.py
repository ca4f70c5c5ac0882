"""train_agent end to end: every backbone through the console script, checkpoints, exact resume, DDP, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from decision_minrnn.agent.folder import load_agent
from decision_minrnn.nn.model import MODEL_NAMES

BIN = Path(sys.executable).parent
TINY = ["--config", "quick", "--set", "d_model=16", "--set", "n_layers=1", "--set", "batch_size=4",
        "--set", "context_len=5", "--set", "log_every=2", "--set", "dropout=0.0", "--no-progress",
        "--data-source", "d4rl"]


def run_cli(name, *args, check=True, timeout=240):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(BIN / name), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize("backbone", MODEL_NAMES)
def test_train_then_evaluate_every_backbone(hopper_file, backbone):
    out = Path("run") / backbone
    run_cli("train_agent", "--env", "hopper-medium", "--backbone", backbone, *TINY, "--steps", "6",
            "--set", "eval_episodes=2", "--set", "eval_num_envs=2", "--out", str(out))
    for name in ("model.safetensors", "config.json", "normalization.json", "metrics.json", "run.json"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and np.isfinite(metrics["final_loss"])
    assert len(metrics["evaluation"]["returns"]) == 2
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["source"] == "d4rl" and run["data"]["location"] == str(hopper_file)
    assert "torch" in run["versions"] and run["versions"]["cpu"]  # the CPU too: results can differ between CPUs
    model, meta = load_agent(out)
    assert meta.config.backbone == backbone and meta.obs_dim == 11
    run_cli("evaluate_agent", str(out), "--episodes", "2", "--num-envs", "2", "--json", "ev.json")
    result = json.loads(Path("ev.json").read_text())
    assert len(result["returns"]) == 2


def test_layouts_and_contexts_train(hopper_file):
    for i, extra in enumerate([["--set", "layout=fused"], ["--set", "context=episode", "--set", "context_len=70"],
                               ["--set", "context=burn_in", "--set", "burn_in=4"]]):
        run_cli("train_agent", "--env", "hopper-medium", *TINY, "--steps", "3", "--set", "eval_episodes=0",
                *extra, "--out", f"r{i}")
        assert (Path(f"r{i}") / "model.safetensors").is_file()


def test_same_seed_same_weights_and_resume_equals_uninterrupted(hopper_file):
    common = ["--env", "hopper-medium", *TINY, "--set", "eval_episodes=0", "--set", "checkpoint_every=5",
              "--set", "dropout=0.1"]
    run_cli("train_agent", *common, "--steps", "400", "--out", "full")
    # Kill a second run (SIGKILL: nothing can be saved on the way out) once it has a checkpoint.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(BIN / "train_agent"), *common, "--steps", "400", "--out", "killed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while not (Path("killed") / "checkpoint" / "trainer.json").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = json.loads((Path("killed") / "checkpoint" / "trainer.json").read_text())
    step, trained_before_kill = state["step"], state["train_seconds"]
    assert 0 < step < 400 and trained_before_kill > 0
    assert not (Path("killed") / "model.safetensors").exists()
    with pytest.raises(AssertionError, match="already holds a run"):
        run_cli("train_agent", *common, "--steps", "400", "--out", "killed")
    run_cli("train_agent", *common, "--steps", "400", "--out", "killed", "--resume")
    full, resumed = weights("full"), weights("killed")
    # the resumed run's training time counts the killed process's steps up to its checkpoint, then its own
    resumed_metrics = json.loads((Path("killed") / "metrics.json").read_text())
    assert resumed_metrics["train_seconds"] > trained_before_kill
    assert resumed_metrics["train_cpu_seconds"] > state["train_cpu_seconds"] > 0
    assert full.keys() == resumed.keys()
    for k in full:
        assert np.array_equal(full[k].numpy(), resumed[k].numpy()), k


def test_nan_loss_stops_with_exit_1_and_keeps_last_checkpoint(hopper_file):
    proc = run_cli("train_agent", "--env", "hopper-medium", *TINY, "--steps", "200", "--set", "eval_episodes=0",
                   "--set", "checkpoint_every=1", "--set", "lr=1e30", "--set", "warmup_steps=0",
                   "--set", "grad_clip=1e30", "--out", "nan", check=False)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # the line before it is the dataset summary
    assert "loss became" in last and "last good checkpoint" in last and "Traceback" not in proc.stderr
    saved = weights(Path("nan") / "checkpoint")
    assert all(np.isfinite(v.numpy()).all() for v in saved.values())


def test_ddp_two_cpu_processes(hopper_file):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "decision_minrnn.cli.train", "--env", "hopper-medium", *TINY, "--steps", "4",
         "--set", "eval_episodes=0", "--out", "ddp"],
        capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr  # every rank left the process group before exiting
    run = json.loads((Path("ddp") / "config.json").read_text())
    assert run["world_size"] == 2
    assert (Path("ddp") / "model.safetensors").is_file()


@pytest.mark.parametrize("args, message", [
    (["--env", "hoper-medium"], "unknown task 'hoper-medium'.*did you mean 'hopper-medium'"),
    (["--env", "hopper-medium", "--steps", "0"], "--steps must be > 0"),
    (["--env", "hopper-medium", "--set", "lrr=1"], "unknown config field 'lrr'; did you mean 'lr'"),
    (["--env", "hopper-medium", "--set", "steps=many"], "config field 'steps' expects int"),
    (["--env", "hopper-medium", "--config", "nope"], "unknown config 'nope'"),
    (["--env", "hopper-medium", "--backbone", "gru"], "invalid choice: 'gru'"),
    (["--env", "hopper-medium", "--device", "cuda"], "sees no CUDA GPU"),
    (["--env", "hopper-medium", "--resume", "--out", "empty"], "holds no checkpoint"),
])
def test_bad_input_one_line_exit_2(hopper_file, args, message):
    import re

    if "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    proc = run_cli("train_agent", *args, "--no-progress", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert re.search(message, lines[-1]), lines
    assert "Traceback" not in proc.stderr


def test_missing_dataset_and_folder_in_use(hopper_file):
    proc = run_cli("train_agent", "--env", "walker2d-medium", *TINY, "--steps", "2", check=False)
    assert proc.returncode in (1, 2) and "walker2d_medium-v2.hdf5" in proc.stderr
    assert "Traceback" not in proc.stderr
    Path("busy").mkdir()
    (Path("busy") / ".lock").write_text(str(os.getpid()))  # this live process holds the folder
    proc = run_cli("train_agent", "--env", "hopper-medium", *TINY, "--steps", "2", "--set", "eval_episodes=0",
                   "--out", "busy", check=False)
    assert proc.returncode == 2 and "in use by another training run" in proc.stderr
    (Path("busy") / ".lock").write_text("999999999")  # a dead process's lock is taken over
    run_cli("train_agent", "--env", "hopper-medium", *TINY, "--steps", "2", "--set", "eval_episodes=0",
            "--out", "busy")
    assert not (Path("busy") / ".lock").exists()
