"""Task names and the D4RL-normalized score, the two things every dataset and result is labelled with."""

from __future__ import annotations

import numpy as np
import pytest

from decision_minrnn import normalized_score
from decision_minrnn.errors import UserInputError
from decision_minrnn.tasks import get_env_spec, resolve_task, task_names

# D4RL v2 reference returns (d4rl's infos.py REF_MIN_SCORE / REF_MAX_SCORE), written here, not read from the package's specs
REFS = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3), "walker2d": (1.629008, 4592.3)}


@pytest.mark.parametrize("env", sorted(REFS))
def test_normalized_score_is_0_at_random_and_100_at_expert(env):
    random, expert = REFS[env]
    assert normalized_score(env, random) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(f"{env}-medium", expert) == pytest.approx(100.0)
    assert isinstance(normalized_score(env, 1000.0), float)
    got = normalized_score(resolve_task(f"{env}-medium-replay"), np.array([random, (random + expert) / 2, expert]))
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, [0.0, 50.0, 100.0], atol=1e-9)


def test_task_names_and_aliases():
    t = resolve_task("walker-medium-expert")
    assert (t.name, t.env.gym_id, t.quality, t.strict_d4rl) == ("walker2d-medium-expert", "Walker2d-v5",
                                                                 "medium-expert", False)
    strict = resolve_task("Hopper-Medium-Replay-v2")
    assert strict.name == "hopper-medium-replay" and strict.strict_d4rl
    assert strict.source.d4rl_file == "hopper_medium_replay-v2.hdf5"
    assert resolve_task(strict) is strict
    assert get_env_spec("HalfCheetah-v5").obs_dim == 17 and get_env_spec("hopper").act_dim == 3
    assert "halfcheetah-medium-expert" in task_names()


def test_unknown_task_lists_valid_names_and_suggests():
    with pytest.raises(UserInputError) as info:
        resolve_task("hopper-mediun")
    message = str(info.value)
    assert "did you mean 'hopper-medium'" in message
    assert all(name in message for name in ("halfcheetah-medium", "walker2d-medium-replay", "hopper-expert"))
    with pytest.raises(UserInputError, match="unknown environment 'ant'"):
        normalized_score("ant", 1.0)


def test_published_scores_cover_the_nine_tasks_and_only_those():
    from decision_minrnn.tasks import env_specs, published_scores, published_source

    nine = [f"{e}-{q}" for e in REFS for q in ("medium", "medium-replay", "medium-expert")]
    for task in nine:
        got = published_scores(task + "-v2")  # the name resolves as any task name does
        assert set(got) == {"DT", "BC"}, task
        assert all(0 < s["mean"] < 130 and s["std"] >= 0 for s in got.values()), task
    assert published_scores("hopper-expert") == {} and published_scores("walker2d-random") == {}
    assert len(published_source()["commit"]) == 40 and published_source()["datasets"].startswith("D4RL v2")
    assert set(env_specs()) == set(REFS)  # the scores file is not taken for an environment spec
    with pytest.raises(UserInputError, match="unknown task"):
        published_scores("hopper-mediun")
