"""`OnnxPolicy`: an exported step graph acting like the torch `Policy`, with numpy and onnxruntime only (no torch).

    policy = OnnxPolicy("agents/hopper-medium/mingru/policy.onnx")    # reads policy.onnx.json beside it
    policy.reset(num_envs=env.num_envs, env=env)
    obs, _ = env.reset(seed=[0, 1])
    while ...:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        policy.observe(reward, terminated | truncated)

Same `reset` / `act` / `observe` / `predict` protocol and the attributes the evaluator reads (`meta`, `obs_dim`,
`act_dim`, `rollout`, `context_len`, `target_return`, `return_scale`, `device`, `last_state`), so
`decision_minrnn.rollout.evaluation.evaluate` scores it unchanged. The rollout is always `recurrent` (the graph is one
step with a carried state; see `decision_minrnn.export.onnx`). Importing this module imports neither torch nor this
package's torch layers: only numpy, onnxruntime (when a policy is built) and the JSON contract.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..agent.act_loop import ActObserveLoop, RowState
from ..errors import UserInputError
from ..tasks import EnvSpec, get_env_spec, resolve_task

FORMAT = "decision_minrnn-onnx-step"
FORMAT_VERSION = 1
DEFAULT_FILE = "policy.onnx"
STEP_INPUTS = ("observation", "return_to_go", "prev_action", "has_prev", "timestep")
_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
           "int32": np.int32, "bool": np.bool_}


def require_onnx(*, exporter: bool = False) -> None:
    """A clear UserInputError when the optional `export` extra (onnxruntime, and onnx to export) is not installed."""
    import importlib.util

    missing = [m for m in (("onnx", "onnxruntime") if exporter else ("onnxruntime",))
               if importlib.util.find_spec(m) is None]
    if missing:
        raise UserInputError(f"{' and '.join(missing)} not installed: pip install 'decision_minrnn[export]' "
                             "(or pip install onnx onnxruntime)")


def spec_path(model_path: str | os.PathLike) -> Path:
    """The JSON contract that goes with an exported graph: `<model file>.json` (policy.onnx -> policy.onnx.json)."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def read_spec(model_path: str | os.PathLike) -> dict[str, Any]:
    """The JSON contract of an exported graph, checked for its format (a UserInputError otherwise)."""
    path = spec_path(model_path)
    if not Path(model_path).is_file():
        raise UserInputError(f"ONNX file {model_path} does not exist (export it with: export_agent AGENT_DIR "
                             "--format onnx)")
    if not path.is_file():
        raise UserInputError(f"{path} is missing: an exported graph needs the JSON written beside it by export_agent")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise UserInputError(f"{path} is not a decision_minrnn ONNX step contract")
    if int(spec.get("format_version", 0)) > FORMAT_VERSION:
        raise UserInputError(f"{path} was written by a newer decision_minrnn (format {spec['format_version']})")
    return spec


class ExportedConfig:
    """The agent's training config as recorded in the JSON: attribute access to its fields, without torch."""

    def __init__(self, fields: dict[str, Any]):
        self._fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_fields"][name]
        except KeyError:
            raise AttributeError(f"the exported config has no field {name!r}") from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self._fields)


@dataclass
class ExportedMeta:
    """What an `AgentMeta` holds, rebuilt from the JSON contract (the evaluator reads task, env_id, config, data)."""

    config: ExportedConfig
    task: str
    env_id: str
    obs_dim: int
    act_dim: int
    seed: int
    state_mean: np.ndarray
    state_std: np.ndarray
    return_scale: float
    data: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ExportedMeta:
        agent, norm = spec.get("agent") or {}, spec.get("normalization") or {}
        known = {"format", "format_version", "task", "env_id", "obs_dim", "act_dim", "seed", "config", "data"}
        return cls(config=ExportedConfig(agent.get("config") or {}), task=str(agent.get("task", "?")),
                   env_id=str(agent.get("env_id", "?")), obs_dim=int(spec["obs_dim"]), act_dim=int(spec["act_dim"]),
                   seed=int(agent.get("seed", 0)),
                   state_mean=np.asarray(norm.get("state_mean", []), dtype=np.float32),
                   state_std=np.asarray(norm.get("state_std", []), dtype=np.float32),
                   return_scale=float(spec["return_scale"]), data=agent.get("data") or {},
                   extra={k: v for k, v in agent.items() if k not in known})

    @property
    def env(self) -> EnvSpec:
        """The environment spec of the agent's task (as `AgentMeta.env`)."""
        try:
            return resolve_task(self.task).env
        except UserInputError:
            return get_env_spec(self.env_id)


@dataclass
class OnnxPolicyState(RowState):
    """Everything an OnnxPolicy carries between actions, one row per environment.

    Unlike the torch `PolicyState`, `returns_to_go` is in RAW reward units (what the graph takes): the return still to
    collect before `pending_reward`, the rewards received since the last action, is taken off at the next `predict`.
    `tensors` holds the graph's state inputs by name.
    """

    returns_to_go: np.ndarray  # (N,) float64, raw units
    timesteps: np.ndarray  # (N,) int64: the step index of the next action
    prev_actions: np.ndarray  # (N, act_dim) float32
    has_prev: np.ndarray  # (N,) bool
    pending_reward: np.ndarray  # (N,) float64
    tensors: dict[str, np.ndarray]  # state input name -> (N, ...) array


class OnnxPolicy(ActObserveLoop):
    """An exported step graph acting in an environment, batched over N environments. See the module docstring."""

    rollout = "recurrent"

    def __init__(self, model_path: str | os.PathLike, *, target_return: float | None = None,
                 intra_op_threads: int | None = None, providers: list[str] | None = None):
        """`model_path`: the .onnx file (its JSON beside it); `intra_op_threads` None = onnxruntime's default."""
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.spec = read_spec(self.model_path)
        self.meta = ExportedMeta.from_spec(self.spec)
        self.obs_dim, self.act_dim = self.meta.obs_dim, self.meta.act_dim
        self.return_scale = float(self.spec["return_scale"])
        self.target_return = float(self.spec["target_return"] if target_return is None else target_return)
        if not np.isfinite(self.target_return):
            raise UserInputError(f"target return must be a finite number, got {target_return}")
        self.context_len = int(getattr(self.meta.config, "context_len", 0) or 0)
        self.agent_rollout = str(self.spec.get("agent_rollout", "recurrent"))
        self.batch: int | None = self.spec.get("batch")
        options = ort.SessionOptions()
        if intra_op_threads is not None:
            options.intra_op_num_threads = int(intra_op_threads)
            options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(self.model_path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own types for corrupt files
            raise UserInputError(f"{self.model_path}: onnxruntime cannot load it ({type(e).__name__}: {e})") from None
        provider = self.session.get_providers()[0]
        self.device = f"{'cpu' if provider == 'CPUExecutionProvider' else provider} (onnxruntime)"
        graph_inputs = {i.name for i in self.session.get_inputs()}
        listed = [i["name"] for i in self.spec["inputs"]]
        if set(listed) != graph_inputs:
            raise UserInputError(f"{self.model_path}: the graph's inputs {sorted(graph_inputs)} are not the ones its "
                                 f"JSON lists {sorted(listed)} (files from different exports?)")
        if graph_inputs != {"observation"} and not graph_inputs >= set(STEP_INPUTS):
            missing = sorted(set(STEP_INPUTS) - graph_inputs)
            raise UserInputError(f"{self.model_path}: the graph lacks the step inputs {missing}")
        self._stateless = graph_inputs == {"observation"}
        self._outputs = [o["name"] for o in self.spec["outputs"]]
        self._state = list(self.spec["state"])  # in output order after the action

    def __repr__(self) -> str:
        return (f"OnnxPolicy({self.spec['backbone']}, layout={self.spec['layout']}, env={self.meta.env_id}, "
                f"target_return={self.target_return:g}, rollout=recurrent, {self.model_path})")

    # ------------------------------------------------------------------------------------------------ state
    def _initial_tensor(self, entry: dict[str, Any], n: int) -> np.ndarray:
        dtype = _DTYPES[entry["dtype"]]
        shape = (n, *entry["shape"][1:])
        kind = entry.get("init", "zeros")
        if kind == "zeros":
            return np.zeros(shape, dtype=dtype)
        if kind == "constant":
            return np.full(shape, entry["value"], dtype=dtype)
        return np.broadcast_to(np.asarray(entry["values"], dtype=dtype), shape).copy()

    def initial_state(self, num_envs: int) -> OnnxPolicyState:
        """The state before any action: R = target return (raw), t = 0, no previous action, initial tensors."""
        n = int(num_envs)
        if n <= 0:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        if self.batch is not None and n != self.batch:
            raise UserInputError(f"{self.model_path} was exported for batch {self.batch}, not {n} envs (export with "
                                 "--batch dynamic, or with this batch size)")
        return OnnxPolicyState(returns_to_go=np.full(n, self.target_return, dtype=np.float64),
                               timesteps=np.zeros(n, dtype=np.int64),
                               prev_actions=np.zeros((n, self.act_dim), dtype=np.float32),
                               has_prev=np.zeros(n, dtype=bool), pending_reward=np.zeros(n, dtype=np.float64),
                               tensors={e["input"]: self._initial_tensor(e, n) for e in self._state})

    def _restart_rows(self, state: OnnxPolicyState, start: np.ndarray) -> OnnxPolicyState:
        """A new state: rows in `start` as fresh, the others with their pending reward taken off R."""
        rtg = state.returns_to_go - state.pending_reward
        new = OnnxPolicyState(returns_to_go=rtg, timesteps=state.timesteps, prev_actions=state.prev_actions,
                              has_prev=state.has_prev, pending_reward=np.zeros(len(rtg)),
                              tensors=state.tensors)
        if not start.any():
            return new
        keep = ~start
        new.returns_to_go = np.where(keep, rtg, self.target_return)
        new.timesteps = np.where(keep, state.timesteps, 0)
        new.has_prev = state.has_prev & keep
        new.prev_actions = np.where(keep[:, None], state.prev_actions, 0.0).astype(np.float32)
        fresh = self.initial_state(state.num_envs).tensors
        new.tensors = {k: np.where(start.reshape(-1, *([1] * (v.ndim - 1))), fresh[k], v)
                       for k, v in state.tensors.items()}
        return new

    # ------------------------------------------------------------------------------------------------ acting
    def predict(self, observation: Any, state: OnnxPolicyState | None = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, OnnxPolicyState]:
        """stable-baselines3's signature, as `Policy.predict`: actions (N, act_dim) or (act_dim,) and the new state.

        `state` None starts every row afresh; `episode_start` (N,) bool restarts those rows. The given state is not
        modified. `deterministic` is accepted for compatibility only (the policy is deterministic).
        """
        obs, single, state, start = self._inputs(observation, state, episode_start, OnnxPolicyState)
        n = obs.shape[0]
        state = self._restart_rows(state, start)
        if self._stateless:  # MLP-BC reads the observation only
            feed = {"observation": obs}
        else:
            feed = {"observation": obs, "return_to_go": state.returns_to_go.astype(np.float32),
                    "prev_action": state.prev_actions, "has_prev": state.has_prev, "timestep": state.timesteps,
                    **state.tensors}
        outs = self.session.run(self._outputs, feed)
        action = outs[0]
        new = OnnxPolicyState(returns_to_go=state.returns_to_go, timesteps=state.timesteps + 1,
                              prev_actions=action, has_prev=np.ones(n, dtype=bool),
                              pending_reward=state.pending_reward,
                              tensors={e["input"]: t for e, t in zip(self._state, outs[1:])})
        self.last_state = new
        out = action.astype(np.float32, copy=True)
        return (out[0] if single else out), new


def load_onnx_policy(path: str | os.PathLike, *, target_return: float | None = None,
                     intra_op_threads: int | None = None) -> OnnxPolicy:
    """An OnnxPolicy from a .onnx file, its .json, or an agent folder holding policy.onnx (nothing is exported here)."""
    p = Path(path)
    if p.is_dir():
        p = p / DEFAULT_FILE
    elif p.name.endswith(".onnx.json"):
        p = p.with_name(p.name[: -len(".json")])
    return OnnxPolicy(p, target_return=target_return, intra_op_threads=intra_op_threads)
