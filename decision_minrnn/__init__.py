"""decision_minrnn: return-conditioned offline-RL policies on minGRU, minLSTM, Transformer, S4 and Mamba backbones.

Heavy imports (gymnasium, mujoco, minari, stable-baselines3) happen only where they are used; the names below are
loaded lazily so `import decision_minrnn` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "normalized_score": "decision_minrnn.tasks",
    "resolve_task": "decision_minrnn.tasks",
    "get_env_spec": "decision_minrnn.tasks",
    "make_backbone": "decision_minrnn.nn.backbones",
    "scan": "decision_minrnn.nn.scan",
    "load_dataset": "decision_minrnn.workflows.datasets",
    "load_policy": "decision_minrnn.agent.policy",
    "DecisionModel": "decision_minrnn.nn.model",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name) if name != "scan" else module.scan
    raise AttributeError(f"module 'decision_minrnn' has no attribute {name!r}")
