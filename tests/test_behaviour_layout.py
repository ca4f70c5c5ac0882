"""D4RL flat arrays, the compact stream form, and collection through a same-step-autoreset vector env."""

from __future__ import annotations

import numpy as np
import pytest

from decision_minrnn.behaviour.layout import D4RLArrays, compact_stream, expand_stream
from decision_minrnn.behaviour.vector import collect_transitions, measure_returns


class UniformPolicy:
    """Uniform random actions in [-1, 1]: a cheap stand-in policy for layout tests."""

    def __init__(self, act_dim: int, rng: np.random.Generator):
        self.act_dim, self.rng = act_dim, rng

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(len(obs), self.act_dim)).astype(np.float32)


def _episodes(lengths: list[int], cut_last: bool = False, obs_dim: int = 2) -> D4RLArrays:
    """Toy episodes whose observations count steps, so next-observation bookkeeping is easy to check."""
    obs, nxt, term, tout = [], [], [], []
    for e, n in enumerate(lengths):
        o = np.arange(n + 1, dtype=np.float32)[:, None] + 1000 * e + np.zeros(obs_dim, np.float32)
        obs.append(o[:-1]), nxt.append(o[1:])
        t = np.zeros(n, bool)
        f = np.zeros(n, bool)
        if not (cut_last and e == len(lengths) - 1):
            (t if e % 2 else f)[-1] = True
        term.append(t), tout.append(f)
    n = sum(lengths)
    return D4RLArrays(np.concatenate(obs), np.zeros((n, 1), np.float32), np.ones(n, np.float32),
                      np.concatenate(term), np.concatenate(tout), np.concatenate(nxt))


@pytest.mark.parametrize("cut_last", [False, True])
def test_stream_round_trip(cut_last):
    data = _episodes([5, 3, 7], cut_last=cut_last)
    back = expand_stream(compact_stream(data, np.float32))
    for key, value in data.as_dict().items():
        np.testing.assert_array_equal(getattr(back, key), value, err_msg=key)
    head = expand_stream(compact_stream(data, np.float32), rows=6)  # cut inside the second episode
    np.testing.assert_array_equal(head.next_observations, data.next_observations[:6])


def test_compact_stream_rejects_inconsistent_next_observations():
    data = _episodes([5, 3])
    data.next_observations[1] += 1
    with pytest.raises(ValueError, match="row 1"):
        compact_stream(data)


def test_concatenate_closes_a_cut_episode():
    a, b = _episodes([4, 3], cut_last=True), _episodes([2])
    both = D4RLArrays.concatenate([a, b])
    assert len(both) == 9 and both.timeouts[6] and not both.terminals[6]
    assert len(both.episode_returns()) == 3
    np.testing.assert_array_equal(both.episode_returns(), [4, 3, 2])


def test_collect_marks_timeouts_and_final_observations():
    """Pendulum never terminates and is cut at 200 steps: every episode must end with a timeout whose next
    observation is the final observation, not the next episode's reset observation."""
    policy = UniformPolicy(1, np.random.default_rng(0))
    data = collect_transitions("Pendulum-v1", policy, 1100, seed_sequence=np.random.SeedSequence(0), num_envs=3,
                               max_episode_steps=200, progress=False)
    assert len(data) == 1100 and data.observations.dtype == np.float32
    ends = data.episode_ends()
    np.testing.assert_array_equal(ends, np.arange(199, 1100, 200))
    assert data.timeouts[ends].all() and not data.terminals.any()
    inside = np.setdiff1d(np.arange(1099), ends)
    np.testing.assert_array_equal(data.next_observations[inside], data.observations[inside + 1])
    assert not np.allclose(data.next_observations[ends], data.observations[ends + 1])
    # a final observation follows from the last one by the dynamics: angle changes by at most 8 rad/s * 0.05 s
    cos_sin = data.next_observations[ends, :2], data.observations[ends, :2]
    angle = np.arctan2(cos_sin[0][:, 1], cos_sin[0][:, 0]) - np.arctan2(cos_sin[1][:, 1], cos_sin[1][:, 0])
    assert np.all(np.abs(np.angle(np.exp(1j * angle))) <= 0.41)


def test_hopper_terminations_and_returns():
    policy = UniformPolicy(3, np.random.default_rng(0))
    data = collect_transitions("Hopper-v5", policy, 600, seed_sequence=np.random.SeedSequence(1), num_envs=4,
                               progress=False)
    ends = data.episode_ends()
    assert len(ends) > 5 and data.terminals[ends].all()  # random hopping falls long before 1000 steps
    stats = measure_returns("Hopper-v5", policy, 6, seed_sequence=np.random.SeedSequence(2), num_envs=4)
    assert len(stats.returns) == 6 and np.all(stats.lengths < 1000)
