"""Acting with a trained agent: one `Policy` for a user's gymnasium loop, SB3's `predict` and the evaluator.

    policy = load_policy("agents/hopper-medium/mingru")       # target return: the env's first DT target
    policy.reset(num_envs=env.num_envs, env=env)                # a gymnasium vector env in SAME_STEP/DISABLED mode
    obs, _ = env.reset(seed=[0, 1])
    while ...:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        policy.observe(reward, terminated | truncated)          # R -= reward / scale; finished rows start afresh

Everything goes through one function, `predict(obs, state, episode_start) -> (action, state)` (stable-baselines3's
convention: the caller owns the state). `act`/`observe` keep that state inside the Policy; the SB3 VecEnv wrapper in
`decision_minrnn.agent.sb3` feeds rewards into the state `predict` returned last, since SB3 never passes rewards to `predict`.

Rollout modes (docs/architecture.md, Acting):
- `recurrent`: the backbone state is carried from step to step (`model.step_tokens`): O(1) per action at any episode
  length. Matched to training on long windows, whole episodes or burn-in.
- `window`: Decision Transformer's protocol: every action re-encodes the last K = `context_len` steps from a fresh
  state (`model.forward`), right-padded like the training windows for rows with a shorter history. O(K) per action.
  Matched to training on K-step windows.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..devices import resolve_device
from ..errors import UserInputError
from ..nn.backbones.base import BackboneState
from ..training.config import ROLLOUTS
from .act_loop import ActObserveLoop, RowState
from .folder import AgentMeta, load_agent


@dataclass(frozen=True)
class WindowHistory:
    """The last K steps of every row for `window` rollouts, right-padded: row i's valid steps are [0, length[i])."""

    returns_to_go: Tensor  # (N, K) float, already divided by the return scale
    states: Tensor  # (N, K, obs_dim) normalised
    actions: Tensor  # (N, K, act_dim) the actions taken (the current step's is filled in after acting)
    prev_actions: Tensor  # (N, K, act_dim) a_{t-1} of each step, zero at t = 0 (the fused layout reads it)
    timesteps: Tensor  # (N, K) int64
    length: Tensor  # (N,) int64, 0..K

    def clone(self) -> WindowHistory:
        return WindowHistory(*(t.clone() for t in (self.returns_to_go, self.states, self.actions,
                                                   self.prev_actions, self.timesteps, self.length)))


@dataclass
class PolicyState(RowState):
    """Everything a Policy carries between actions, one row per environment (stable-baselines3's `state`).

    `returns_to_go` is R of the last action taken (before the first: target / return_scale); `pending_reward` is the
    reward received since then, subtracted at the next `predict` (rows that start a new episode drop it). `timesteps`
    is the step index of the next action. `predict` never modifies the state it is given, except that the SB3 wrapper
    and `Policy.observe` add rewards to `pending_reward` of the state `predict` returned last.
    """

    backbone: BackboneState | None  # recurrent rollouts of a DecisionModel; None for window rollouts and for BC
    returns_to_go: np.ndarray  # (N,) float64
    timesteps: np.ndarray  # (N,) int64
    prev_actions: Tensor  # (N, act_dim) a_{t-1}
    has_prev: np.ndarray  # (N,) bool: the row has acted in this episode
    pending_reward: np.ndarray  # (N,) float64
    history: WindowHistory | None  # window rollouts only


class CompiledCall:
    """`torch.compile(fn)` for acting, falling back to `fn` with a warning when compiling fails on this machine.

    Compiling pays only over many actions: it takes 10-20 s per batch size on a CPU and makes an action about 1.5-1.8x
    cheaper (README, Benchmarks). A genuine error is not hidden: the eager call that follows a failure raises it.
    """

    def __init__(self, fn: Any):
        self.eager = fn
        self.compiled = torch.compile(fn, dynamic=False)
        self.failed: str | None = None

    def __call__(self, *args: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 (no C++ compiler, an unsupported backend, ...): act without compiling
                self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
                warnings.warn(f"torch.compile of the acting step failed ({self.failed}); acting in eager mode",
                              RuntimeWarning, stacklevel=2)
        return self.eager(*args)


class Policy(ActObserveLoop):
    """A trained agent acting in an environment, batched over N environments. See the module docstring."""

    def __init__(self, model: torch.nn.Module, meta: AgentMeta, *, target_return: float | None = None,
                 rollout: str | None = None, device: str | torch.device | None = None, compile: bool = False):
        self.meta = meta
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module  # acting needs step_tokens and the backbone, not DDP's forward
        self.model = model if device is None else model.to(resolve_device(device))
        self.device = next(self.model.parameters()).device
        self.dtype = next(self.model.parameters()).dtype
        self.obs_dim, self.act_dim = int(meta.obs_dim), int(meta.act_dim)
        self.env_spec = meta.env
        if (self.obs_dim, self.act_dim) != (self.env_spec.obs_dim, self.env_spec.act_dim):
            raise UserInputError(f"the agent has obs/action sizes {self.obs_dim}/{self.act_dim}, but {meta.task} "
                                 f"({self.env_spec.gym_id}) has {self.env_spec.obs_dim}/{self.env_spec.act_dim}")
        self.rollout = rollout or meta.config.rollout
        if self.rollout not in ROLLOUTS:
            raise UserInputError(f"unknown rollout mode {self.rollout!r}; valid: {', '.join(ROLLOUTS)}")
        if target_return is None:
            target_return = meta.config.target_return or self.env_spec.eval_target_returns[0]
        self.target_return = float(target_return)
        if not np.isfinite(self.target_return):
            raise UserInputError(f"target return must be a finite number, got {target_return}")
        self.return_scale = float(meta.return_scale)
        self.context_len = int(meta.config.context_len)
        self._mean = torch.as_tensor(meta.state_mean, dtype=self.dtype, device=self.device)
        self._std = torch.as_tensor(meta.state_std, dtype=self.dtype, device=self.device)
        # The model work of one action; `compile=True` wraps it in torch.compile (worth it for long runs only).
        self.compiled = bool(compile)
        self._step_tokens = CompiledCall(self.model.step_tokens) if compile else self.model.step_tokens
        self._forward = CompiledCall(self.model) if compile else self.model
        self.last_state: PolicyState | None = None  # what `predict` returned last (the SB3 wrapper feeds it)

    def __repr__(self) -> str:
        return (f"Policy({self.meta.config.backbone}, layout={self.meta.config.layout}, env={self.meta.env_id}, "
                f"target_return={self.target_return:g}, rollout={self.rollout}, device={self.device}"
                f"{', compiled' if self.compiled else ''})")

    # ------------------------------------------------------------------------------------------------ state
    def initial_state(self, num_envs: int) -> PolicyState:
        """The state before any action: R = target / return_scale, t = 0, no previous action, empty history."""
        if int(num_envs) <= 0:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        n, k = int(num_envs), self.context_len
        dev, dt = self.device, self.dtype
        backbone = None
        history = None
        if self.rollout == "recurrent":
            backbone = self.model.initial_state(n, device=dev)
        else:
            history = WindowHistory(
                returns_to_go=torch.zeros(n, k, device=dev, dtype=dt),
                states=torch.zeros(n, k, self.obs_dim, device=dev, dtype=dt),
                actions=torch.zeros(n, k, self.act_dim, device=dev, dtype=dt),
                prev_actions=torch.zeros(n, k, self.act_dim, device=dev, dtype=dt),
                timesteps=torch.zeros(n, k, device=dev, dtype=torch.int64),
                length=torch.zeros(n, device=dev, dtype=torch.int64),
            )
        return PolicyState(
            backbone=backbone,
            returns_to_go=np.full(n, self.target_return / self.return_scale, dtype=np.float64),
            timesteps=np.zeros(n, dtype=np.int64),
            prev_actions=torch.zeros(n, self.act_dim, device=dev, dtype=dt),
            has_prev=np.zeros(n, dtype=bool),
            pending_reward=np.zeros(n, dtype=np.float64),
            history=history,
        )

    def _restart_rows(self, state: PolicyState, start: np.ndarray) -> PolicyState:
        """A new state: rows in `start` as fresh, the others with their pending reward taken off R."""
        rtg = state.returns_to_go - state.pending_reward / self.return_scale
        new = PolicyState(backbone=state.backbone, returns_to_go=rtg, timesteps=state.timesteps,
                          prev_actions=state.prev_actions, has_prev=state.has_prev,
                          pending_reward=np.zeros_like(state.pending_reward), history=state.history)
        if not start.any():  # the common case, kept cheap: it runs once per action
            return new
        keep = ~start
        new.returns_to_go = np.where(keep, rtg, self.target_return / self.return_scale)
        new.timesteps = np.where(keep, state.timesteps, 0)
        new.has_prev = state.has_prev & keep
        mask = torch.as_tensor(start, device=self.device)
        if state.backbone is not None:
            new.backbone = self.model.backbone.reset_state(state.backbone, mask)
        new.prev_actions = torch.where(mask[:, None], torch.zeros_like(state.prev_actions), state.prev_actions)
        if state.history is not None:
            h = state.history
            new.history = replace(h, length=torch.where(mask, torch.zeros_like(h.length), h.length))
        return new

    # ------------------------------------------------------------------------------------------------ acting
    def predict(self, observation: Any, state: PolicyState | None = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, PolicyState]:
        """stable-baselines3's signature: actions for a batch (N, obs_dim) or one (obs_dim,) observation.

        `state` None starts every row afresh; `episode_start` (N,) bool restarts those rows. The policy is
        deterministic (the tanh head's output), so `deterministic` is accepted for compatibility only.
        Returns numpy actions of shape (N, act_dim) or (act_dim,), and the new state (the given one is not modified).
        """
        obs, single, state, start = self._inputs(observation, state, episode_start, PolicyState)
        n = obs.shape[0]
        if (state.history is None) != (self.rollout == "recurrent"):
            raise ValueError(f"this state comes from a policy with another rollout mode (this one: {self.rollout})")
        with torch.inference_mode(), (self._eval_mode() if self.model.training else contextlib.nullcontext()):
            state = self._restart_rows(state, start)
            states = torch.as_tensor(obs, device=self.device, dtype=self.dtype).sub(self._mean).div_(self._std)
            rtg = torch.as_tensor(state.returns_to_go, device=self.device, dtype=self.dtype)
            steps = torch.as_tensor(state.timesteps, device=self.device)
            has_prev = torch.as_tensor(state.has_prev, device=self.device)
            if self.rollout == "recurrent":
                action, state.backbone = self._step_tokens(rtg, states, steps, state.prev_actions, has_prev,
                                                           state.backbone)
            else:
                action, state.history = self._window_step(state, rtg, states, steps, has_prev)
        state.prev_actions = action
        state.has_prev = np.ones(n, dtype=bool)
        state.timesteps = state.timesteps + 1
        self.last_state = state
        out = action.detach().cpu().numpy().astype(np.float32)
        return (out[0] if single else out), state

    def _window_step(self, state: PolicyState, rtg: Tensor, states: Tensor, steps: Tensor,
                     has_prev: Tensor) -> tuple[Tensor, WindowHistory]:
        """Append step t to each row's window, re-encode the window from a fresh state, read the last valid step."""
        h = state.history.clone()
        n, k = rtg.shape[0], self.context_len
        full = h.length >= k
        if bool(full.any()):  # drop the oldest step of full rows
            for buf in (h.returns_to_go, h.states, h.actions, h.prev_actions, h.timesteps):
                buf[full] = torch.roll(buf[full], -1, dims=1)
        idx = torch.clamp(h.length, max=k - 1)
        rows = torch.arange(n, device=self.device)
        prev = state.prev_actions * has_prev[:, None].to(self.dtype)
        h.returns_to_go[rows, idx] = rtg
        h.states[rows, idx] = states
        h.actions[rows, idx] = 0.0
        h.prev_actions[rows, idx] = prev
        h.timesteps[rows, idx] = steps
        # Padding after each row's valid steps is zero, as in the training windows.
        valid = torch.arange(k, device=self.device)[None, :] <= idx[:, None]
        for buf in (h.returns_to_go, h.states, h.actions, h.prev_actions, h.timesteps):
            buf.mul_(valid.view(n, k, *([1] * (buf.dim() - 2))).to(buf.dtype))
        pred, _ = self._forward(h.returns_to_go, h.states, h.actions, h.timesteps, h.prev_actions)
        action = pred[rows, idx]
        h.actions[rows, idx] = action
        h = replace(h, length=idx + 1)
        return action, h

    @contextlib.contextmanager
    def _eval_mode(self):
        """Act without dropout, and give a model that is being trained back in training mode."""
        training = self.model.training
        if training:
            self.model.eval()
        try:
            yield
        finally:
            if training:
                self.model.train()



def load_policy(folder: str | os.PathLike, target_return: float | None = None, device: str | None = None,
                rollout: str | None = None, compile: bool = False) -> Policy:
    """Load an agent folder as a Policy. `device` None/"auto" = CUDA when available, else CPU.

    `compile=True` runs each action's model work through `torch.compile` (see `CompiledCall`).
    """
    model, meta = load_agent(folder, device=resolve_device(device))
    return Policy(model, meta, target_return=target_return, rollout=rollout, compile=compile)
