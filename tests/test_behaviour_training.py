"""SAC behaviour training for a few hundred steps: snapshots, stream, progress, resume; then shipping the run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from decision_minrnn.behaviour.actor import load_actor
from decision_minrnn.behaviour.layout import expand_stream
from decision_minrnn.behaviour.sac_training import default_run_dir, train_behaviour
from decision_minrnn.behaviour.shipping import import_behaviour, medium_rank
from decision_minrnn.cli.collect import main
from decision_minrnn.errors import DatasetError, UserInputError
from decision_minrnn.paths import behaviour_run_dir
from decision_minrnn.tasks import get_env_spec


def _stream(run):
    with np.load(run / "train_stream.npz") as z:
        return {k: z[k] for k in z.files}


def test_train_resume_and_ship(tmp_path):
    env = get_env_spec("hopper")
    run = train_behaviour("hopper", 200, learning_starts=100, snapshot_every=100, eval_episodes=1)
    assert run == default_run_dir(env, 0) and run.parent == behaviour_run_dir()
    assert [r["step"] for r in map(json.loads, (run / "progress.jsonl").read_text().splitlines())] == [100, 200]
    first = expand_stream(_stream(run))
    assert len(first) == 200

    # resume through the command line, as a user would after a kill
    argv = ["--train-behaviour", "hopper", "--steps", "300", "--learning-starts", "100", "--snapshot-every", "100",
            "--eval-episodes", "1"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (run / "progress.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [100, 200, 300] and rows[-1]["wall_s"] >= rows[1]["wall_s"]
    stream = expand_stream(_stream(run))
    assert len(stream) == 300
    np.testing.assert_array_equal(stream.observations[:200], first.observations)
    assert stream.terminals[199] or stream.timeouts[199]  # the episode cut by the stop is closed
    assert sorted(p.name for p in (run / "actors").iterdir()) == [f"actor_{s:07d}.safetensors" for s in (100, 200, 300)]
    assert load_actor(run / "actors" / "actor_0000300.safetensors").obs_dim == env.obs_dim

    dest = import_behaviour(run, "hopper", dest=tmp_path / "ship", screen_episodes=1, card_episodes=1)
    card = json.loads((dest / "card.json").read_text())
    medium = card["policies"]["medium"]["training_steps"]
    assert medium in (100, 200) and card["medium_replay"]["transitions"] == medium
    with np.load(dest / "medium_replay.npz") as z:
        assert z["observations"].dtype == np.float16 and len(z["rewards"]) == medium
    assert {p.name for p in dest.iterdir()} == {"card.json", "actor_medium.safetensors", "actor_expert.safetensors",
                                                 "medium_replay.npz"}

    # a later run re-ships medium only: the expert's bytes and card entry stay, with the run they came from
    expert_bytes = (dest / "actor_expert.safetensors").read_bytes()
    again = import_behaviour(run, "hopper", dest=dest, medium_step=100 if medium != 100 else 200, keep_expert=True,
                             card_episodes=1)
    new_card = json.loads((again / "card.json").read_text())
    assert (again / "actor_expert.safetensors").read_bytes() == expert_bytes
    kept = new_card["policies"]["expert"]
    assert kept["training_steps"] == card["policies"]["expert"]["training_steps"]
    assert kept["source_run"] == card["source_run"] and new_card["policies"]["medium"]["training_steps"] != medium
    with pytest.raises(UserInputError, match="--keep-expert: .* has no card.json"):
        import_behaviour(run, "hopper", dest=tmp_path / "empty", medium_step=200, keep_expert=True)
    (dest / "card.json").write_text('{"env": "hopper", ')  # cut short by a crash: named as corrupt, not a traceback
    with pytest.raises(DatasetError, match="card.json: corrupt card"):
        import_behaviour(run, "hopper", dest=dest, medium_step=200, keep_expert=True)


def test_medium_choice_prefers_spread_within_tolerance():
    """Within 5 points of the target the widest set wins, even over a closer mean; outside it, the closest mean."""
    target = 45.0
    narrow_exact = {"normalized": 45.0, "return_std": 150.0}
    wide_near = {"normalized": 41.0, "return_std": 400.0}
    far_wide = {"normalized": 30.0, "return_std": 900.0}
    far_close = {"normalized": 38.0, "return_std": 10.0}
    ranked = sorted([narrow_exact, far_wide, wide_near, far_close], key=lambda s: medium_rank(s, target))
    assert ranked == [wide_near, narrow_exact, far_close, far_wide]


def test_run_that_fills_the_replay_buffer_exactly(tmp_path):
    """A run of exactly the buffer's size (1M in a real run) ends with SB3's buffer position back at 0: its last
    checkpoint still saves the whole ordered stream, a rerun resumes and returns, and more steps are refused."""
    run = train_behaviour("hopper", 200, learning_starts=100, snapshot_every=100, eval_episodes=1, buffer_size=200,
                          run_dir=tmp_path / "run")
    assert [json.loads(r)["step"] for r in (run / "progress.jsonl").read_text().splitlines()] == [100, 200]
    stream = expand_stream(_stream(run))
    assert len(stream) == 200
    assert train_behaviour("hopper", 200, run_dir=run) == run  # resumed at the end: nothing left to do
    np.testing.assert_array_equal(expand_stream(_stream(run)).observations, stream.observations)
    with pytest.raises(UserInputError, match="exceeds the replay buffer"):
        train_behaviour("hopper", 300, run_dir=run)
