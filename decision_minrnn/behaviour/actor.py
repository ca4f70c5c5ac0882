"""The SAC actor of stable-baselines3, re-implemented so shipped behaviour policies load without SB3 or pickles.

SB3's `MlpPolicy` actor is an MLP trunk `latent_pi` (Linear, ReLU, ...), a mean head `mu` and a state-dependent
`log_std` head; its action is `tanh(mu + exp(clamp(log_std, -20, 2)) * noise)`. We keep SB3's parameter names, so a
state dict exported from SB3 loads here as it is and the parity test can compare the two directly.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0
_TRUNK_KEY = re.compile(r"^latent_pi\.(\d+)\.weight$")
_METADATA_KEY = "decision_minrnn"


class SACActor(nn.Module):
    """Squashed-Gaussian SAC actor with SB3's layout; computes in float32 whatever dtype it was shipped in."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.latent_pi = nn.Sequential(*layers)
        self.mu = nn.Linear(width, act_dim)
        self.log_std = nn.Linear(width, act_dim)
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def forward(self, obs: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean action `tanh(mu)` when `noise` is None, else the sampled action for that standard-normal noise."""
        latent = self.latent_pi(obs)
        mu = self.mu(latent)
        if noise is None:
            return torch.tanh(mu)
        std = torch.exp(torch.clamp(self.log_std(latent), LOG_STD_MIN, LOG_STD_MAX))
        return torch.tanh(mu + std * noise)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> "SACActor":
        """Build the actor whose sizes the state dict implies (any depth of `latent_pi`), in float32."""
        trunk = sorted(int(m.group(1)) for k in state if (m := _TRUNK_KEY.match(k)))
        if not trunk or "mu.weight" not in state or "log_std.weight" not in state:
            raise ValueError(f"not a SAC actor state dict (keys: {sorted(state)})")
        hidden = tuple(int(state[f"latent_pi.{i}.weight"].shape[0]) for i in trunk)
        obs_dim = int(state[f"latent_pi.{trunk[0]}.weight"].shape[1])
        actor = cls(obs_dim, int(state["mu.weight"].shape[0]), hidden)
        actor.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        return actor.eval()


def actor_state_dict(actor: nn.Module, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """The actor's parameters under SB3's names, cast to the shipping dtype (an SB3 actor or ours)."""
    state = actor.state_dict()
    keys = [k for k in state if k.startswith(("latent_pi.", "mu.", "log_std."))]
    return {k: state[k].detach().to("cpu", dtype).contiguous() for k in keys}


def save_actor(
    actor: nn.Module,
    path: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float16,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write the actor's weights as safetensors, atomically, with `metadata` as one sorted JSON string.

    One key, because safetensors writes several metadata keys in hash order: the same actor would not give the same
    bytes twice, and every re-import would change files in git.
    """
    from ..io import atomic_path, save_tensors

    meta = {_METADATA_KEY: json.dumps(dict(metadata or {}), sort_keys=True, default=str)}
    with atomic_path(path) as tmp:
        save_tensors(actor_state_dict(actor, dtype), tmp, metadata=meta)


def export_sb3_actor(
    model: Any, path: str | os.PathLike, *, dtype: torch.dtype = torch.float16, **metadata: Any
) -> None:
    """Export the actor of a stable-baselines3 SAC model (`model.actor`) to safetensors for `load_actor`."""
    if getattr(model.actor, "use_sde", False):
        raise ValueError("gSDE actors have no log_std head; export a SAC trained without use_sde")
    save_actor(model.actor, path, dtype=dtype, metadata=metadata)


def random_actor(obs_dim: int, act_dim: int, seed: int) -> SACActor:
    """D4RL's `random` behaviour: a SAC actor (SB3's default 256x256 layout) at its random initialisation, drawn
    from `seed` without touching torch's global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SACActor(obs_dim, act_dim).eval()


def load_actor(path: str | os.PathLike) -> SACActor:
    """Load a safetensors actor (float16 or float32) into a float32 `SACActor`; never unpickles."""
    from safetensors.torch import load_file

    return SACActor.from_state_dict(load_file(str(path)))


def actor_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata stored with an actor file by `save_actor` (empty when none)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get(_METADATA_KEY, "{}"))


class SampledPolicy:
    """Batched stochastic SAC policy for vector envs: numpy observations in, sampled actions out.

    The noise comes from the given numpy generator, so a seeded generator makes a whole collection reproducible.
    """

    def __init__(self, actor: SACActor, rng: np.random.Generator | None, *, deterministic: bool = False):
        self.actor, self.rng, self.deterministic = actor, rng, deterministic

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        if self.deterministic:
            return self.actor(x).numpy()
        noise = self.rng.standard_normal((x.shape[0], self.actor.act_dim), dtype=np.float32)
        return self.actor(x, torch.from_numpy(noise)).numpy()
