"""What a kill or a bad input must never cost a user: run folders that resume, paths and configs checked before the
work starts, NaN refused while acting, exit codes as promised. Kill points are simulated deterministically by leaving
the folder exactly as a kill at that point would."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from agent_factory import make_agent
from test_training import TINY, run_cli, weights

from decision_minrnn.agent.policy import load_policy
from decision_minrnn.errors import UserInputError

TRAIN = ["--env", "hopper-medium", *TINY, "--set", "eval_episodes=0", "--set", "checkpoint_every=4"]


def _summary_printed(stderr: str) -> bool:
    """Whether the dataset was loaded (its one-line summary goes to stderr)."""
    return "transitions" in stderr and "episodes" in stderr


def test_killed_before_the_first_checkpoint_restarts_and_resumes(hopper_file):
    run_cli("train_agent", *TRAIN, "--steps", "3", "--out", "done")
    for name in ("fresh", "resumed"):  # what a kill before the first checkpoint leaves: run.json, no checkpoint
        Path(name).mkdir()
        shutil.copy(Path("done") / "run.json", Path(name) / "run.json")
    proc = run_cli("train_agent", *TRAIN, "--steps", "3", "--out", "fresh")
    assert "starting afresh" in proc.stderr
    proc = run_cli("train_agent", *TRAIN, "--steps", "3", "--out", "resumed", "--resume")
    assert "starting it from step 0" in proc.stderr
    ref = weights("done")
    for name in ("fresh", "resumed"):
        got = weights(name)
        assert all(np.array_equal(ref[k].numpy(), got[k].numpy()) for k in ref), name


def test_interrupted_writes_are_cleaned_and_a_lost_checkpoint_recovered(hopper_file):
    run_cli("train_agent", *TRAIN, "--steps", "8", "--out", "full")
    run_cli("train_agent", *TRAIN, "--steps", "4", "--out", "run")
    run_dir = Path("run")
    # A kill between the two renames of a checkpoint write: the old checkpoint moved aside, the new one still
    # under its temporary name (maybe incomplete), nothing at checkpoint/.
    os.replace(run_dir / "checkpoint", run_dir / ".old-checkpoint-12345")
    (run_dir / ".tmp-checkpoint-abc").mkdir()
    (run_dir / ".tmp-checkpoint-abc" / "model.safetensors").write_bytes(b"half written")
    proc = run_cli("train_agent", *TRAIN, "--steps", "8", "--out", "run", "--resume")
    assert "recovered the previous checkpoint (step 4)" in proc.stderr
    assert "removed .tmp-checkpoint-abc" in proc.stderr
    assert not list(run_dir.glob(".tmp-*")) and not list(run_dir.glob(".old-*"))
    ref, got = weights("full"), weights("run")
    assert all(np.array_equal(ref[k].numpy(), got[k].numpy()) for k in ref)


def test_resume_finishes_a_missing_final_evaluation(hopper_file):
    args = [a for a in TRAIN if a != "eval_episodes=0"]
    args = [*args[:args.index("--set", len(TINY))], *args[args.index("--set", len(TINY)) + 1:]]
    run_cli("train_agent", *args, "--steps", "4", "--set", "eval_episodes=2", "--set", "eval_num_envs=2",
            "--set", "eval_every=2", "--set", "eval_curve_episodes=1", "--out", "run")
    metrics = json.loads((Path("run") / "metrics.json").read_text())
    assert [p["step"] for p in metrics["learning_curve"]] == [2, 4]
    before = weights("run")
    (Path("run") / "metrics.json").unlink()  # a kill during the final evaluation
    proc = run_cli("train_agent", *args, "--steps", "4", "--set", "eval_episodes=2", "--set", "eval_num_envs=2",
                   "--set", "eval_every=2", "--set", "eval_curve_episodes=1", "--out", "run", "--resume")
    assert "running the missing final evaluation" in proc.stderr
    again = json.loads((Path("run") / "metrics.json").read_text())
    assert again["evaluation"]["returns"] == metrics["evaluation"]["returns"]
    assert again["learning_curve"] == metrics["learning_curve"]
    after = weights("run")
    assert all(np.array_equal(before[k].numpy(), after[k].numpy()) for k in before)
    proc = run_cli("train_agent", *args, "--steps", "4", "--set", "eval_episodes=2", "--set", "eval_num_envs=2",
                   "--set", "eval_every=2", "--set", "eval_curve_episodes=1", "--out", "run", "--resume",
                   check=False)
    assert proc.returncode == 2 and "is finished" in proc.stderr


@pytest.mark.parametrize("command", ["train_agent", "collect_dataset", "evaluate_agent"])
def test_unwritable_output_is_refused_before_the_work(hopper_file, tmp_path, command):
    Path("a-file").write_text("not a folder")
    if command == "train_agent":
        proc = run_cli("train_agent", *TRAIN, "--steps", "3", "--out", "a-file", check=False)
    elif command == "collect_dataset":
        proc = run_cli("collect_dataset", "hopper-medium", "--out", "a-file/x.hdf5", check=False)
    else:
        agent = make_agent(tmp_path / "agent")
        proc = run_cli("evaluate_agent", str(agent), "--json", "a-file/eval.json", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "a-file" in lines[0] and "is a file" in lines[0], lines
    assert not _summary_printed(proc.stderr) and "Traceback" not in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_is_refused(hopper_file):
    Path("ro").mkdir()
    os.chmod("ro", stat.S_IRUSR | stat.S_IXUSR)
    proc = run_cli("train_agent", *TRAIN, "--steps", "3", "--out", "ro/run", check=False)
    assert proc.returncode == 2 and "not writable" in proc.stderr and not _summary_printed(proc.stderr)


@pytest.mark.parametrize("args, message", [
    (["--set", "lr=nan"], "config field 'lr' must be a finite number"),
    (["--set", "target_return=inf"], "config field 'target_return' must be a finite number"),
    (["--backbone", "transformer", "--set", "d_model=64", "--set", "n_heads=3"], "'n_heads' \\(3\\) must divide"),
    (["--seed", "-1"], "--seed: expected a non-negative integer"),
    (["--set", "init=gpt2"], "config field 'init' must be one of"),
])
def test_config_checked_before_the_data_is_loaded(hopper_file, args, message):
    import re

    proc = run_cli("train_agent", *TRAIN, "--steps", "3", *args, "--out", "x", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), lines
    assert not Path("x").exists()


def test_resume_with_another_config_names_the_fields(hopper_file):
    run_cli("train_agent", *TRAIN, "--steps", "4", "--out", "run")
    proc = run_cli("train_agent", *TRAIN, "--steps", "8", "--set", "lr=0.001", "--set", "batch_size=8",
                   "--out", "run", "--resume", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "config_without_steps.batch_size: 4 -> 8" in line and "config_without_steps.lr: 0.0006 -> 0.001" in line
    assert len(line) < 300, line


def test_load_policy_on_a_file_says_so(tmp_path):
    agent = make_agent(tmp_path / "agent")
    with pytest.raises(UserInputError, match="is a file, not an agent folder"):
        load_policy(agent / "config.json")
    with pytest.raises(UserInputError, match="does not exist"):
        load_policy(tmp_path / "nowhere")


def test_nan_observation_and_reward_are_refused(tmp_path):
    policy = load_policy(make_agent(tmp_path / "agent"), device="cpu").reset(2, autoreset="same-step")
    obs = np.zeros((2, 11), dtype=np.float32)
    policy.act(obs)
    with pytest.raises(ValueError, match="reward of row\\(s\\) \\[1\\] is NaN"):
        policy.observe(np.array([0.0, np.nan]), np.array([False, False]))
    bad = obs.copy()
    bad[0, 3] = np.inf
    with pytest.raises(ValueError, match="observation row\\(s\\) \\[0\\] hold NaN or inf"):
        policy.act(bad)
    assert np.isfinite(policy.act(obs)).all()  # the state was not poisoned


def test_unknown_autoreset_mode_is_caught_at_the_first_episode_end(tmp_path):
    policy = load_policy(make_agent(tmp_path / "agent"), device="cpu")
    obs = np.zeros((2, 11), dtype=np.float32)
    policy.reset(2).act(obs)
    policy.observe(np.zeros(2), np.array([False, False]))  # nothing ended: fine
    policy.act(obs)
    with pytest.raises(ValueError, match="does not know how your vector env restarts episodes"):
        policy.observe(np.zeros(2), np.array([True, False]))
    policy.reset(2, autoreset="same-step").act(obs)
    policy.observe(np.zeros(2), np.array([True, False]))  # declared: fine
    single = load_policy(make_agent(tmp_path / "agent2"), device="cpu")
    single.act(obs[0])
    single.observe(1.0, True)  # one env, one observation: the caller resets it; nothing to check


def test_files_of_a_run_share_one_mode(hopper_file):
    run_cli("train_agent", *TRAIN, "--steps", "4", "--out", "run")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [*Path("run").iterdir(),
                                                             *(Path("run") / "checkpoint").iterdir()]
             if p.is_file() and not p.name.startswith("events.")}
    assert len(set(modes.values())) == 1, modes


def test_ctrl_c_names_the_command_and_exits_130(hopper_file):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([str(Path(sys.executable).parent / "train_agent"), *TRAIN, "--steps", "100000",
                             "--out", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (Path("run") / "checkpoint" / "trainer.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "train_agent: interrupted", err[-500:]


def test_ctrl_c_during_training_is_held_to_the_step_boundary():
    """The first SIGINT only sets the flag the loop checks after a step; a second one interrupts at once; the
    previous handler comes back afterwards."""
    import signal

    from decision_minrnn.training.trainer import interrupt_at_step_boundary

    before = signal.getsignal(signal.SIGINT)
    with interrupt_at_step_boundary() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt["stop"] is True
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
