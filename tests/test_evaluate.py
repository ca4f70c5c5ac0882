"""The evaluator and the `evaluate_agent` command: result fields, exact episode counts, scores, bad input."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from agent_factory import make_agent, make_meta, make_model
from cli_helpers import call_main

from decision_minrnn.agent.policy import Policy, load_policy
from decision_minrnn.cli.evaluate import main
from decision_minrnn.rollout.envs import (
    MujocoWarning,
    episode_quota,
    make_env,
    make_vector_env,
    route_mujoco_warning,
)
from decision_minrnn.rollout.evaluation import evaluate, score_returns
from decision_minrnn.tasks import normalized_score

SCRIPT = Path(sys.executable).parent / "evaluate_agent"


def run_cli(argv, capsys):
    return call_main(main, argv, capsys)


def test_episode_split_is_fixed_in_advance():
    assert episode_quota(5, 2).tolist() == [2, 3]
    assert episode_quota(10, 3).tolist() == [3, 3, 4]
    assert episode_quota(4, 4).tolist() == [1, 1, 1, 1]


def test_building_envs_leaves_no_mujoco_log_and_prints_no_asset_deprecation(capfd):
    """gymnasium's HalfCheetah asset triggers a MuJoCo deprecation on every build: it is dropped, not printed to
    the terminal (MuJoCo prints from C, hence capfd) nor appended to MUJOCO_LOG.TXT in the working directory, and
    MuJoCo's own handler is back afterwards."""
    mujoco = pytest.importorskip("mujoco")
    before = mujoco.get_mju_user_warning()
    make_vector_env("HalfCheetah-v5", 2).close()
    make_env("HalfCheetah-v5").close()
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err
    assert not Path("MUJOCO_LOG.TXT").exists()
    assert mujoco.get_mju_user_warning() is before


def test_other_mujoco_build_warnings_reach_python_warnings():
    with pytest.warns(MujocoWarning, match="MuJoCo: some other problem"):
        route_mujoco_warning("some other problem")


def test_evaluate_result_fields_and_exact_episode_count(tmp_path):
    policy = load_policy(make_agent(tmp_path / "agent", "mingru", "fused"), device="cpu")
    result = evaluate(policy, episodes=5, num_envs=2, seed=3, progress=False)
    json.dumps(result, allow_nan=False)  # JSON-serialisable, no NaN
    assert len(result["returns"]) == len(result["lengths"]) == len(result["normalized_scores"]) == 5
    assert collections.Counter(result["episode_env"]) == {0: 2, 1: 3}
    np.testing.assert_allclose(result["normalized_scores"], normalized_score("hopper-medium", result["returns"]))
    assert result["normalized_mean"] == pytest.approx(np.mean(result["normalized_scores"]))
    assert result["normalized_std"] == pytest.approx(np.std(result["normalized_scores"]))
    assert result["score_label"] == "D4RL-normalized"
    assert result["target_return"] == 3600.0 and result["rollout"] == "recurrent"
    assert result["env_id"] == "Hopper-v5" and result["task"] == "hopper-medium"
    assert result["data"]["source"] == "regenerated" and result["data"]["comparable_with_d4rl"] is False
    assert result["data"]["comparability"].startswith("no")
    timing = result["timing"]
    assert timing["policy_ms_per_action"] > 0 and timing["env_step_ms_per_action"] > 0
    assert timing["actions"] == 2 * timing["vector_steps"] and timing["wall_time_s"] > 0
    assert result["versions"]["gymnasium"]
    # same seed, same episodes
    again = evaluate(policy, episodes=5, num_envs=2, seed=3, progress=False)
    assert again["returns"] == result["returns"]
    other = evaluate(policy, episodes=5, num_envs=2, seed=4, progress=False)
    assert other["returns"] != result["returns"]


def test_evaluate_caps_envs_and_episode_length(tmp_path):
    policy = load_policy(make_agent(tmp_path / "agent", "transformer", "interleaved"), device="cpu", rollout="window")
    result = evaluate(policy, episodes=3, num_envs=8, seed=0, progress=False, max_steps=5)
    assert result["num_envs"] == 3 and len(result["returns"]) == 3
    assert max(result["lengths"]) <= 5 and result["max_steps"] == 5
    assert result["data"]["comparable_with_d4rl"] is False and "max_steps" in result["data"]["comparability"]
    assert result["rollout"] == "window"


def test_evaluate_an_in_memory_model_in_training_mode(tmp_path):
    # What training does for periodic evaluation: a Policy around the model being trained.
    meta = make_meta("minlstm", "interleaved", dropout=0.3)
    model = make_model(meta).train()
    during = evaluate(Policy(model, meta), episodes=2, num_envs=2, seed=1, progress=False)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert torch.is_grad_enabled()
    after = evaluate(Policy(model.eval(), meta), episodes=2, num_envs=2, seed=1, progress=False)
    assert during["returns"] == after["returns"]  # no dropout while acting


def test_minari_agents_are_scored_on_minari_references():
    meta = make_meta(data={"source": "minari", "score_label": "Minari-normalized", "comparable_with_d4rl": False,
                           "provenance": {"ref_min_score": -10.0, "ref_max_score": 90.0}})
    label, scores = score_returns(meta, [40.0, -10.0])
    assert label == "Minari-normalized"
    np.testing.assert_allclose(scores, [50.0, 0.0])


def test_cli_evaluates_a_tiny_agent(tmp_path, capsys):
    agent = make_agent(tmp_path / "agent", "s4", "fused")
    code, out, err = run_cli([agent, "--episodes", 3, "--num-envs", 2, "--seed", 1, "--target-return", 1800,
                              "--rollout", "window", "--quiet"], capsys)
    assert code == 0, err
    result = json.loads((agent / "eval.json").read_text())
    assert len(result["returns"]) == 3 and result["target_return"] == 1800.0 and result["rollout"] == "window"
    assert result["agent_dir"] == str(agent)
    assert "D4RL-normalized score" in out and "time per action" in out and "eval.json" in out
    assert not list(agent.glob(".tmp-*"))  # written atomically, nothing left behind

    code, out, err = run_cli([agent, "--episodes", 1, "--json", tmp_path / "out" / "e.json", "--quiet"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "e.json").read_text())["episodes"] == 1


def test_cli_video_says_clearly_when_rendering_is_off(tmp_path, capsys):
    # The test environment sets MUJOCO_GL=disable: no rendering, a clear message, the evaluation still written.
    agent = make_agent(tmp_path / "agent")
    code, out, err = run_cli([agent, "--episodes", 1, "--video", tmp_path / "ep.gif", "--quiet"], capsys)
    assert code == 0, err
    assert "video: not written: MUJOCO_GL=disable" in out
    assert not (tmp_path / "ep.gif").exists()
    assert json.loads((agent / "eval.json").read_text())["video"]["written"] is False


def _broken_agents(tmp_path):
    missing = make_agent(tmp_path / "missing")
    (missing / "model.safetensors").unlink()
    wrong = make_agent(tmp_path / "wrong", "mingru")
    other = make_agent(tmp_path / "other", "transformer")
    (wrong / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    odd = make_agent(tmp_path / "odd", obs_dim=17, act_dim=6)
    return {"missing": missing, "wrong": wrong, "odd": odd}


BAD_INPUT = {
    "no folder": (["{tmp}/nothing"], "does not exist"),
    "missing files": (["{missing}"], "missing model.safetensors"),
    "wrong checkpoint": (["{wrong}"], "made for another model"),
    "wrong observation size": (["{odd}"], "obs/action sizes 17/6"),
    "zero episodes": (["{good}", "--episodes", "0"], "expected a positive integer"),
    "negative envs": (["{good}", "--num-envs", "-1"], "expected a positive integer"),
    "nan target": (["{good}", "--target-return", "nan"], "finite"),
    "bad rollout": (["{good}", "--rollout", "sideways"], "invalid choice"),
    "video format": (["{good}", "--video", "{tmp}/x.avi"], ".gif"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
    paths = {**_broken_agents(tmp_path), "good": make_agent(tmp_path / "good"), "tmp": tmp_path}
    argv, expected = BAD_INPUT[case]
    code, out, err = run_cli([a.format(**paths) for a in argv] + ["--quiet"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (paths["good"] / "eval.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_cli_cuda_without_gpu_exits_2(tmp_path, capsys):
    code, _, err = run_cli([make_agent(tmp_path / "a"), "--device", "cuda", "--quiet"], capsys)
    assert code == 2 and "no CUDA GPU" in err and len(err.strip().splitlines()) == 1


def test_cli_failure_while_running_exits_1(tmp_path, capsys, monkeypatch):
    import decision_minrnn.rollout.evaluation as evaluation

    def broken_env(*args, **kwargs):
        raise RuntimeError("simulator crashed")

    monkeypatch.setattr(evaluation, "make_vector_env", broken_env)
    code, _, err = run_cli([make_agent(tmp_path / "a"), "--quiet"], capsys)
    assert code == 1 and "simulator crashed" in err and len(err.strip().splitlines()) == 1


def _script_env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_console_script_end_to_end(tmp_path):
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}"
    agent = make_agent(tmp_path / "agent", "mamba", "interleaved")
    proc = subprocess.run([str(SCRIPT), str(agent), "--episodes", "2", "--num-envs", "2", "--quiet"],
                          capture_output=True, text=True, env=_script_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "D4RL-normalized score" in proc.stdout
    assert len(json.loads((agent / "eval.json").read_text())["returns"]) == 2

    proc = subprocess.run([str(SCRIPT), str(tmp_path / "nothing")], capture_output=True, text=True,
                          env=_script_env(), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
