"""ONNX export of the step policy: OnnxPolicy acts like the torch Policy (recurrent rollout) for every backbone and
layout through mid-sequence episode resets; the JSON contract alone drives the graph; the CLI commands and their
bad input; the numpy/onnxruntime side never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from agent_factory import make_agent  # noqa: E402
from cli_helpers import call_main  # noqa: E402
from decision_minrnn.agent.policy import load_policy  # noqa: E402
from decision_minrnn.errors import UserInputError  # noqa: E402
from decision_minrnn.export.onnx import export_onnx  # noqa: E402
from decision_minrnn.export.onnx_policy import OnnxPolicy, load_onnx_policy, spec_path  # noqa: E402

BACKBONES = ("mingru", "minlstm", "transformer", "s4", "mamba")
LAYOUTS = ("interleaved", "fused")
ROWS, STEPS = 3, 24
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def recorded() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(STEPS, ROWS) Hopper-v5 observations and rewards under random actions, and done flags: real episode ends plus
    forced restarts, so rows restart at different steps (row 0 twice, row 2 at the very first step after one)."""
    observations = np.zeros((STEPS, ROWS, 11), np.float32)
    rewards = np.zeros((STEPS, ROWS))
    done = np.zeros((STEPS, ROWS), bool)
    forced = {0: (5, 13), 1: (9,), 2: (0,)}
    for row in range(ROWS):
        env = gym.make("Hopper-v5")
        env.action_space.seed(row)
        obs, _ = env.reset(seed=row)
        for t in range(STEPS):
            observations[t, row] = obs
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            rewards[t, row] = r
            done[t, row] = term or trunc or t in forced[row]
            if done[t, row]:
                obs, _ = env.reset()
        env.close()
    return observations, rewards, done


def play(policy, observations, rewards, done) -> np.ndarray:
    """act / observe over the recorded steps; the actions (STEPS, ROWS, act_dim)."""
    policy.reset(observations.shape[1], autoreset="same-step")
    actions = []
    for obs, r, d in zip(observations, rewards, done):
        actions.append(policy.act(obs))
        policy.observe(r, d)
    return np.asarray(actions)


@pytest.mark.parametrize("backbone,layout", [(b, lay) for b in BACKBONES for lay in LAYOUTS] + [("mlp-bc", "fused")])
def test_onnx_policy_acts_like_the_torch_policy(tmp_path, recorded, backbone, layout):
    folder = make_agent(tmp_path / "agent", backbone, layout, seed=1)
    done_export = export_onnx(folder)
    assert done_export.model_path == folder / "policy.onnx" and done_export.json_path.is_file()
    torch_actions = play(load_policy(folder, device="cpu", rollout="recurrent"), *recorded)
    onnx_policy = OnnxPolicy(done_export.model_path, intra_op_threads=1)
    onnx_actions = play(onnx_policy, *recorded)
    assert onnx_actions.shape == torch_actions.shape == (STEPS, ROWS, 3)
    np.testing.assert_allclose(onnx_actions, torch_actions, rtol=0, atol=TOLERANCE)
    assert np.abs(torch_actions).max() > 1e-3  # the comparison is not between two near-zero outputs
    spec = onnx_policy.spec
    assert spec["backbone"] == backbone and spec["layout"] == layout and spec["batch"] is None
    assert onnx_policy.target_return == spec["target_return"] == 3600.0 and spec["return_scale"] == 1000.0
    if backbone == "mlp-bc":
        assert [i["name"] for i in spec["inputs"]] == ["observation"] and spec["state"] == []
    else:
        fields = {"mingru": {"h"}, "minlstm": {"h"}, "s4": {"h"}, "mamba": {"ssm", "conv"},
                  "transformer": {"keys", "values", "count"}}[backbone]
        assert {s["field"] for s in spec["state"]} == fields and len(spec["state"]) == 2 * len(fields)
        assert all(s["init"] == "zeros" and s["shape"][0] == "batch" for s in spec["state"])


def test_single_observation_and_predict_match_the_torch_policy(tmp_path, recorded):
    folder = make_agent(tmp_path / "agent", "transformer", "interleaved")
    export_onnx(folder)
    torch_policy = load_policy(folder, device="cpu", target_return=1800.0)
    onnx_policy = load_onnx_policy(folder, target_return=1800.0, intra_op_threads=1)
    obs, rewards, _ = recorded
    a, b = torch_policy.act(obs[0, 0]), onnx_policy.act(obs[0, 0])
    assert a.shape == b.shape == (3,)
    np.testing.assert_allclose(b, a, atol=TOLERANCE)
    # SB3-style predict with the caller owning the state: restart row 1 at the second call.
    t_state = o_state = None
    for t, start in enumerate(([False] * 3, [False, True, False])):
        ta, t_state = torch_policy.predict(obs[t], t_state, episode_start=start)
        oa, o_state = onnx_policy.predict(obs[t], o_state, episode_start=start)
        np.testing.assert_allclose(oa, ta, atol=TOLERANCE)
        t_state.add_reward(rewards[t])
        o_state.add_reward(rewards[t])
    assert o_state.timesteps.tolist() == [2, 1, 2]


def test_fixed_batch_export_and_window_agents(tmp_path, recorded, capsys):
    from decision_minrnn.cli.export import main

    folder = make_agent(tmp_path / "agent", "s4", "interleaved", rollout="window")
    out = tmp_path / "fixed" / "s4.onnx"
    assert main([str(folder), "--format", "onnx", "--out", str(out), "--batch", str(ROWS)]) == 0
    printed = capsys.readouterr()
    assert "rollout=window" in printed.err and str(out) in printed.out
    spec = json.loads(spec_path(out).read_text())
    assert spec["batch"] == ROWS and spec["rollout"] == "recurrent" and spec["agent_rollout"] == "window"
    assert "window" in spec["rollout_note"]
    assert all(s["shape"][0] == ROWS for s in spec["state"])
    policy = OnnxPolicy(out, intra_op_threads=1)
    assert policy.rollout == "recurrent"
    np.testing.assert_allclose(play(policy, *recorded),
                               play(load_policy(folder, device="cpu", rollout="recurrent"), *recorded), atol=TOLERANCE)
    with pytest.raises(UserInputError, match="batch 3"):
        policy.reset(2)


def test_the_json_contract_alone_drives_the_graph(tmp_path, recorded):
    """The README's torch-free loop: only onnxruntime, numpy and the JSON; it equals OnnxPolicy."""
    folder = make_agent(tmp_path / "agent", "mamba", "interleaved")
    path = export_onnx(folder).model_path
    obs_seq, rewards, done = recorded

    spec = json.loads((folder / "policy.onnx.json").read_text())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n = ROWS
    dtypes = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}
    fresh = {s["input"]: np.zeros((n, *s["shape"][1:]), dtypes[s["dtype"]]) for s in spec["state"]}
    state = {k: v.copy() for k, v in fresh.items()}
    ret = np.full(n, spec["target_return"])
    t = np.zeros(n, np.int64)
    prev = np.zeros((n, spec["act_dim"]), np.float32)
    has_prev = np.zeros(n, bool)
    outputs = [o["name"] for o in spec["outputs"]]
    actions = []
    for obs, r, d in zip(obs_seq, rewards, done):
        feed = {"observation": obs, "return_to_go": ret.astype(np.float32), "prev_action": prev,
                "has_prev": has_prev, "timestep": t, **state}
        action, *new = session.run(outputs, feed)
        actions.append(action)
        state = {s["input"]: v for s, v in zip(spec["state"], new)}
        prev, has_prev, t, ret = action, np.ones(n, bool), t + 1, ret - r
        for k in state:  # finished rows start afresh
            state[k] = np.where(d.reshape(-1, *[1] * (state[k].ndim - 1)), fresh[k], state[k])
        prev = np.where(d[:, None], 0.0, prev).astype(np.float32)
        has_prev, t, ret = has_prev & ~d, np.where(d, 0, t), np.where(d, spec["target_return"], ret)
    np.testing.assert_allclose(np.asarray(actions), play(OnnxPolicy(path, intra_op_threads=1), *recorded), atol=1e-6)


def test_onnx_side_imports_no_torch_and_the_package_no_onnx():
    code = ("import sys, decision_minrnn, decision_minrnn.export\n"
            "assert not {'onnx', 'onnxruntime', 'torch'} & set(sys.modules), 'package'\n"
            "from decision_minrnn.export.onnx_policy import OnnxPolicy\n"
            "assert 'torch' not in sys.modules, 'onnx_policy imported torch'\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_export_then_evaluate_with_onnxruntime(tmp_path, capsys):
    from decision_minrnn.cli.evaluate import main as evaluate_main
    from decision_minrnn.cli.export import main as export_main

    folder = make_agent(tmp_path / "agent", "mingru", "fused")
    code, out, _ = call_main(export_main, [folder, "--format", "onnx"], capsys)
    assert code == 0 and (folder / "policy.onnx").is_file() and (folder / "policy.onnx.json").is_file()
    exported_at = (folder / "policy.onnx").stat().st_mtime_ns
    result_path = tmp_path / "eval.json"
    argv = [folder, "--runtime", "onnx", "--episodes", 2, "--max-steps", 50, "--quiet", "--json", result_path]
    code, out, err = call_main(evaluate_main, argv, capsys)
    assert code == 0, err
    assert "exported" not in err and (folder / "policy.onnx").stat().st_mtime_ns == exported_at  # up to date
    result = json.loads(result_path.read_text())
    assert result["runtime"] == "onnx" and result["episodes"] == 2 and len(result["returns"]) == 2
    assert result["rollout"] == "recurrent" and "onnxruntime" in result["device"]
    # The torch runtime scores the same episodes (same seeds, actions equal to float32 rounding).
    code, _, err = call_main(evaluate_main, [*argv[:1], *argv[3:-1], tmp_path / "torch.json"], capsys)
    assert code == 0, err
    torch_result = json.loads((tmp_path / "torch.json").read_text())
    assert torch_result["runtime"] == "torch"
    np.testing.assert_allclose(result["returns"], torch_result["returns"], rtol=1e-3)
    # Weights newer than the export: evaluate_agent exports again first.
    os.utime(folder / "policy.onnx", ns=(exported_at - 10**10, exported_at - 10**10))
    code, _, err = call_main(evaluate_main, argv, capsys)
    assert code == 0 and "exported" in err and (folder / "policy.onnx").stat().st_mtime_ns > exported_at - 10**10


@pytest.mark.parametrize("argv,message", [
    (["{missing}", "--format", "onnx"], "does not exist"),
    (["{agent}", "--format", "tflite"], "invalid choice"),
    (["{agent}", "--batch", "0"], "positive integer or 'dynamic'"),
    (["{agent}", "--batch", "many"], "positive integer or 'dynamic'"),
    (["{agent}", "--out", "{tmp}/policy.txt"], "must name a .onnx file"),
    (["{agent}", "--opset", "9"], "opset must be in"),
])
def test_export_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    from decision_minrnn.cli.export import main

    folder = tmp_path / "agent"
    folder.mkdir()  # an empty folder: the errors below come before (or instead of) reading it
    subst = {"missing": tmp_path / "missing", "agent": folder, "tmp": tmp_path}
    code, out, err = call_main(main, [a.format(**subst) for a in argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""


@pytest.mark.parametrize("extra,message", [
    (["--rollout", "window"], "needs the torch runtime"),
    (["--compile"], "--compile is a torch option"),
    (["--runtime", "tensorflow"], "invalid choice"),
])
def test_evaluate_onnx_bad_input_exit_2(tmp_path, capsys, extra, message):
    from decision_minrnn.cli.evaluate import main

    folder = make_agent(tmp_path / "agent", "mingru", "fused")
    argv = [folder, "--runtime", "onnx", "--episodes", 1, *extra]
    code, _, err = call_main(main, argv, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (folder / "policy.onnx").exists()  # refused before exporting anything
