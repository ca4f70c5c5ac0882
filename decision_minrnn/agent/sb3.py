"""stable-baselines3 integration: a VecEnv wrapper that hands each step's rewards to a return-conditioned Policy.

SB3's `evaluate_policy` (and any loop written in SB3's style) calls
`model.predict(obs, state=state, episode_start=episode_starts, deterministic=...)` and never passes rewards, but a
return-conditioned policy must subtract each reward from its return-to-go. `RewardToPolicy` sits around the VecEnv and
adds every step's rewards to the `PolicyState` that the policy's `predict` returned last (the same object SB3 hands
back on the next call); finished rows are restarted by SB3's `episode_start` flags.

    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from decision_minrnn import load_policy
    from decision_minrnn.agent.sb3 import RewardToPolicy

    policy = load_policy("agents/hopper-medium/mingru")
    venv = RewardToPolicy(make_vec_env("Hopper-v5", n_envs=2, seed=0), policy)
    returns, lengths = evaluate_policy(policy, venv, n_eval_episodes=10, return_episode_rewards=True)

SB3's VecEnvs reset a finished env inside the same `step` (the returned observation is the next episode's first), which
is the autoreset behaviour the policy expects. Use one wrapper per policy and one policy per loop: the wrapper feeds the
state of the latest `predict`, whichever loop made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

if TYPE_CHECKING:
    from .policy import Policy


class RewardToPolicy(VecEnvWrapper):
    """Pass-through VecEnv wrapper; after each step, `policy.last_state.add_reward(rewards)`."""

    def __init__(self, venv: VecEnv, policy: Policy):
        super().__init__(venv)
        if not hasattr(policy, "last_state") or not hasattr(policy, "predict"):
            raise TypeError(f"RewardToPolicy needs a decision_minrnn Policy, got {type(policy).__name__}")
        if venv.observation_space.shape != (policy.obs_dim,):
            raise ValueError(f"the VecEnv's observations have shape {venv.observation_space.shape}, the policy "
                             f"expects ({policy.obs_dim},) ({policy.meta.env_id})")
        self.policy = policy

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        state = self.policy.last_state
        if state is not None:  # None: no predict yet (e.g. the caller stepped with its own actions)
            if state.num_envs != self.num_envs:
                raise ValueError(f"the policy's last predict was for {state.num_envs} envs, this VecEnv has "
                                 f"{self.num_envs}: use one policy per loop")
            state.add_reward(rewards)
        return obs, rewards, dones, infos
