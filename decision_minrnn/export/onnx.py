"""Export an agent's recurrent step policy to ONNX: one graph for one environment step, plus a JSON contract.

Graph (batch N rows, fixed at export or dynamic):

    inputs   observation   (N, obs_dim) float32  raw observation; (obs - mean) / std happens inside the graph
             return_to_go  (N,) float32          the return still to collect, in RAW reward units: the target return
                                                 at t = 0, minus every reward received since; the graph divides by
                                                 the return scale itself
             prev_action   (N, act_dim) float32  the action the row took at t - 1 (anything where has_prev is false)
             has_prev      (N,) bool             the row has acted in this episode (false at t = 0)
             timestep      (N,) int64            t, the index of this step in the episode (clamped inside)
             state.<field>.<layer>               the backbone state the previous step returned (initial: zeros)
    outputs  action        (N, act_dim) float32  in [-1, 1] (tanh head)
             next_state.<field>.<layer>          feed back as state.<field>.<layer> at the next step

What is exported is the `recurrent` rollout (the backbone state carried from step to step), for every backbone: minGRU /
minLSTM (h), S4 (h), Mamba (ssm, conv), Transformer (keys, values: the last W tokens' cache, and count: tokens seen
per row). An agent whose config says `rollout=window` is exported as the recurrent step too, and the JSON says so
(`agent_rollout`, `rollout_note`): the window protocol re-encodes K steps per action, which is not one fixed step.
The MLP-BC baseline is stateless: its graph takes the observation only.

The interleaved layout feeds a_{t-1}, R_t, s_t as three backbone `step`s; rows without a previous action keep the
state they had before the a_{t-1} token, chosen row by row with `select_rows` (a `where`), so the graph has no control
flow on data. It equals `DecisionModel.step_tokens` (which runs the same tokens as one short parallel forward).
The JSON beside the graph (`<file>.json`) lists the inputs, outputs and state tensors with shapes, dtypes and initial
values, the default target return and the return scale, so a caller in any language can start and reset episodes.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..agent.folder import AGENT_FILES, AgentMeta, load_agent
from ..agent.policy import Policy
from ..errors import RunFailure, UserInputError
from ..io import atomic_path, write_json
from ..nn.backbones.base import BackboneState
from ..nn.model import DecisionModel
from .onnx_policy import (
    DEFAULT_FILE,
    FORMAT,
    FORMAT_VERSION,
    STEP_INPUTS,
    OnnxPolicy,
    spec_path,
)

DEFAULT_OPSET = 17
STATE_IN, STATE_OUT = "state", "next_state"
CHECK_TOLERANCE = 1e-4  # largest |onnxruntime - torch| accepted on the export's own test inputs


class StepGraph(nn.Module):
    """One environment step of a trained model on flat tensors: what `torch.onnx.export` traces.

    Normalisation of the observation and scaling of the return are inside, so callers pass raw values. The backbone
    state travels as one tensor per (field, layer), in `state_names()` order, and is rebuilt into its dataclass here.
    """

    def __init__(self, model: nn.Module, meta: AgentMeta):
        super().__init__()
        self.model = model
        dtype = next(model.parameters()).dtype
        self.register_buffer("state_mean", torch.as_tensor(np.asarray(meta.state_mean), dtype=dtype).clone())
        self.register_buffer("state_std", torch.as_tensor(np.asarray(meta.state_std), dtype=dtype).clone())
        self.return_scale = float(meta.return_scale)
        self.stateful = isinstance(model, DecisionModel)
        if self.stateful:
            self.state_cls: type[BackboneState] = model.backbone.state_cls
            self.n_layers = len(model.backbone.layers)

    def state_names(self) -> list[tuple[str, int]]:
        """(field, layer) of every state tensor, in the order of the graph's state inputs and outputs."""
        if not self.stateful:
            return []
        return [(f, i) for f in self.state_cls.field_names() for i in range(self.n_layers)]

    def initial_state(self, batch: int) -> list[Tensor]:
        """The flat state before the first step (the backbone's own `initial_state`)."""
        if not self.stateful:
            return []
        state = self.model.initial_state(batch)
        return [getattr(state, f)[i] for f, i in self.state_names()]

    def forward(self, observation: Tensor, return_to_go: Tensor, prev_action: Tensor, has_prev: Tensor,
                timestep: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        states = (observation - self.state_mean) / self.state_std
        rtg = return_to_go / self.return_scale
        if not self.stateful:
            action, _ = self.model.step_tokens(rtg, states, timestep, prev_action, has_prev, None)
            return (action,)
        fields = self.state_cls.field_names()
        n = self.n_layers
        backbone_state = self.state_cls(**{f: tuple(state[j * n:(j + 1) * n]) for j, f in enumerate(fields)})
        if self.model.layout == "interleaved":
            action, new = self._interleaved_step(rtg, states, timestep, prev_action, has_prev, backbone_state)
        else:  # fused: `step_tokens` has no branch on data for this layout
            action, new = self.model.step_tokens(rtg, states, timestep, prev_action, has_prev, backbone_state)
        return (action, *(getattr(new, f)[i] for f, i in self.state_names()))

    def _interleaved_step(self, rtg: Tensor, states: Tensor, timestep: Tensor, prev_action: Tensor,
                          has_prev: Tensor, state: BackboneState) -> tuple[Tensor, BackboneState]:
        """`DecisionModel.step_tokens` for the interleaved layout, with the has_prev branch as a row-wise select."""
        m = self.model
        time = m._time(timestep)
        a_token = m._finish(m.embed_action(prev_action) + m._time(timestep - 1))  # a_{t-1} belongs to step t - 1
        r_token = m._finish(m.embed_return(rtg[:, None]) + time)
        s_token = m._finish(m.embed_state(states) + time)
        _, after_action = m.backbone.step(a_token, state)
        state = m.backbone.select_rows(has_prev, after_action, state)  # rows starting an episode skip a_{t-1}
        _, state = m.backbone.step(r_token, state)
        out, state = m.backbone.step(s_token, state)
        return m.action_head(out), state


@dataclass(frozen=True)
class OnnxExport:
    """Where an export went and what its JSON contract says."""

    model_path: Path
    json_path: Path
    spec: dict[str, Any]


def _dtype_name(t: Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def _init_entry(t: Tensor) -> dict[str, Any]:
    """How to build a state tensor's initial value: zeros (every backbone today), else a constant or full values."""
    values = t[0].detach().cpu()
    if not bool((values == 0).all()):
        flat = values.reshape(-1)
        if bool((flat == flat[0]).all()):
            return {"init": "constant", "value": flat[0].item()}
        return {"init": "values", "values": values.tolist()}  # one row's values, the same for every row
    return {"init": "zeros"}


def _example_inputs(graph: StepGraph, meta: AgentMeta, batch: int, *, random: bool) -> tuple[Tensor, ...]:
    """Inputs to trace with (initial state) or to compare runtimes on (`random`: a mid-episode state)."""
    g = torch.Generator().manual_seed(0)
    n = batch
    obs = torch.as_tensor(np.asarray(meta.state_mean), dtype=torch.float32).repeat(n, 1)
    rtg = torch.full((n,), 1000.0)
    prev = torch.zeros(n, meta.act_dim)
    has_prev = torch.zeros(n, dtype=torch.bool)
    timestep = torch.zeros(n, dtype=torch.int64)
    state = graph.initial_state(n)
    if random:
        obs = obs + torch.randn(n, meta.obs_dim, generator=g) * torch.as_tensor(np.asarray(meta.state_std))
        rtg = torch.rand(n, generator=g) * 3 * meta.return_scale
        prev = torch.rand(n, meta.act_dim, generator=g) * 2 - 1
        has_prev = torch.arange(n) % 2 == 0
        timestep = torch.randint(0, 50, (n,), generator=g) * has_prev
        state = [torch.randint(0, 8, t.shape, generator=g) if not t.is_floating_point()
                 else torch.rand(t.shape, generator=g, dtype=t.dtype) for t in state]  # >= 0: valid for minGRU too
    return (obs, rtg, prev, has_prev, timestep, *state)


def _expm1_symbolic(g: Any, x: Any) -> Any:
    """ONNX has no expm1 (S4's zero-order hold uses it): `2 t / (1 - t)` with `t = tanh(x / 2)`.

    Exact algebra (e^x = (1 + t) / (1 - t)) without the cancellation of `exp(x) - 1` near 0, where S4's `dt * A`
    lives (dt from 1e-3): within a few float32 ulps of torch.expm1.
    """
    half = g.op("Constant", value_t=torch.tensor(0.5, dtype=torch.float32))
    one = g.op("Constant", value_t=torch.tensor(1.0, dtype=torch.float32))
    t = g.op("Tanh", g.op("Mul", x, half))
    return g.op("Div", g.op("Add", t, t), g.op("Sub", one, t))


def _trace_to_file(graph: StepGraph, args: tuple[Tensor, ...], path: Path, names_in: list[str],
                   names_out: list[str], batch: int | None, opset: int) -> None:
    dynamic = None if batch is not None else {name: {0: "batch"} for name in (*names_in, *names_out)}
    torch.onnx.register_custom_op_symbolic("aten::expm1", _expm1_symbolic, opset)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter is deprecated in favour of the dynamo one and warns; tracing warns about shape
            # checks it turns into constants. Neither concerns a graph whose result is checked right after.
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, args, str(path), input_names=names_in, output_names=names_out,
                              opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::expm1", opset)


def _check_against_torch(graph: StepGraph, meta: AgentMeta, path: Path, batch: int | None,
                         graph_inputs: Sequence[str], names_in: list[str], names_out: list[str]) -> float:
    """Run the written graph with onnxruntime on a mid-episode input and compare with torch; the largest error."""
    import onnxruntime as ort

    args = _example_inputs(graph, meta, batch or 3, random=True)
    with torch.no_grad():
        expected = graph(*args)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {name: t.numpy() for name, t in zip(names_in, args) if name in graph_inputs}
    got = session.run(names_out, feed)
    err = 0.0
    for name, e, o in zip(names_out, expected, got):
        if tuple(o.shape) != tuple(e.shape):
            raise RunFailure(f"ONNX export self-check: output {name} has shape {o.shape}, torch gives {tuple(e.shape)}")
        err = max(err, float(np.max(np.abs(o.astype(np.float64) - e.numpy().astype(np.float64)), initial=0.0)))
    if not err <= CHECK_TOLERANCE:
        raise RunFailure(f"ONNX export self-check: onnxruntime differs from torch by {err:.3g} (> {CHECK_TOLERANCE})")
    return err


def export_model_onnx(model: nn.Module, meta: AgentMeta, out: str | os.PathLike, *, batch: int | None = None,
                      opset: int = DEFAULT_OPSET, target_return: float | None = None, source: str | None = None,
                      check: bool = True) -> OnnxExport:
    """Export a loaded model's recurrent step to `out` (+ `out`.json); `batch` None = any batch size.

    The default target return is the torch Policy's (the config's, else the env's first DT target). With `check`,
    the written graph is run once with onnxruntime against torch (a failure is a RunFailure, nothing is kept).
    """
    import onnx

    if batch is not None and int(batch) <= 0:
        raise UserInputError(f"batch must be a positive integer or dynamic, got {batch}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    model = copy.deepcopy(model).cpu().float().eval()  # the caller's model keeps its device and mode
    # The torch Policy checks the sizes against the task and settles the default target return: the same here.
    policy = Policy(model, meta, target_return=target_return, rollout="recurrent")
    graph = StepGraph(model, meta).eval()
    out = Path(out)
    if out.suffix != ".onnx":
        raise UserInputError(f"the ONNX file name must end in .onnx, got {out}")
    names = graph.state_names()
    names_in = [*STEP_INPUTS, *(f"{STATE_IN}.{f}.{i}" for f, i in names)]
    names_out = ["action", *(f"{STATE_OUT}.{f}.{i}" for f, i in names)]
    trace_batch = int(batch) if batch is not None else 2  # not 1: a traced size-1 axis may be specialised away
    args = _example_inputs(graph, meta, trace_batch, random=False)

    with atomic_path(out) as tmp:
        _trace_to_file(graph, args, tmp, names_in, names_out, batch, opset)
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto)
        graph_inputs = [i.name for i in proto.graph.input]  # unused inputs are dropped (MLP-BC reads obs only)
        graph_outputs = [o.name for o in proto.graph.output]
        if graph_outputs != names_out:
            raise RunFailure(f"ONNX export: outputs {graph_outputs}, expected {names_out}")
        max_err = _check_against_torch(graph, meta, tmp, batch, graph_inputs, names_in, names_out) if check else None

    b: int | str = int(batch) if batch is not None else "batch"
    descriptions = {
        "observation": ("float32", [b, meta.obs_dim], "raw observation; normalised inside the graph"),
        "return_to_go": ("float32", [b], "return still to collect in raw reward units: target_return at t = 0, "
                         "minus every reward received in the episode since; divided by return_scale inside"),
        "prev_action": ("float32", [b, meta.act_dim], "the action taken at t - 1 (ignored where has_prev is false)"),
        "has_prev": ("bool", [b], "false at the first step of an episode, true after"),
        "timestep": ("int64", [b], "step index t in the episode, from 0 (clamped to max_timestep - 1 inside)"),
    }
    inputs = [{"name": k, "dtype": d, "shape": s, "description": text}
              for k, (d, s, text) in descriptions.items() if k in graph_inputs]
    init = graph.initial_state(1)
    state = []
    for (field, layer), t in zip(names, init):
        state.append({"field": field, "layer": layer, "input": f"{STATE_IN}.{field}.{layer}",
                      "output": f"{STATE_OUT}.{field}.{layer}", "dtype": _dtype_name(t), "shape": [b, *t.shape[1:]],
                      **_init_entry(t)})
        inputs.append({"name": state[-1]["input"], "dtype": state[-1]["dtype"], "shape": state[-1]["shape"],
                       "description": f"backbone state {field} of layer {layer}: the previous step's "
                                      f"{state[-1]['output']} (initial: {state[-1]['init']})"})
    outputs = [{"name": "action", "dtype": "float32", "shape": [b, meta.act_dim],
                "description": "the action, in [-1, 1]"}]
    outputs += [{"name": s["output"], "dtype": s["dtype"], "shape": s["shape"],
                 "description": f"new backbone state: feed back as {s['input']}"} for s in state]
    cfg = meta.config
    rollout_note = None
    if cfg.rollout != "recurrent":
        rollout_note = (f"the agent's config says rollout={cfg.rollout}; ONNX holds the recurrent step (state carried "
                        "from step to step, O(1) per action), which acts differently from re-encoding a "
                        f"{cfg.context_len}-step window")
    spec = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_file": out.name,
        "opset": int(opset),
        "batch": int(batch) if batch is not None else None,
        "backbone": cfg.backbone,
        "layout": getattr(model, "layout", cfg.layout),
        "stateful": graph.stateful,
        "obs_dim": int(meta.obs_dim),
        "act_dim": int(meta.act_dim),
        "rollout": "recurrent",
        "agent_rollout": cfg.rollout,
        "rollout_note": rollout_note,
        "target_return": policy.target_return,
        "return_scale": float(meta.return_scale),
        "max_timestep": int(cfg.max_timestep),
        "inputs": inputs,
        "outputs": outputs,
        "state": state,
        "protocol": [
            "start: every state input at its initial value, has_prev false, timestep 0, prev_action zeros, "
            "return_to_go = target_return (raw units)",
            "each step: run the graph; take action; then prev_action = action, has_prev = true, timestep += 1, "
            "state inputs = the next_state outputs; after env.step: return_to_go -= reward",
            "a row whose episode ended starts again: its state rows back to initial values, has_prev false, "
            "timestep 0, prev_action zeros, return_to_go = target_return; other rows are untouched",
        ],
        "agent": meta.config_json(),
        "normalization": meta.normalization_json(),
        "export": {"source": source, "max_abs_error_vs_torch": max_err, "torch": torch.__version__,
                   "onnx": onnx.__version__},
    }
    json_path = spec_path(out)
    write_json(json_path, spec)
    return OnnxExport(model_path=out, json_path=json_path, spec=spec)


def export_onnx(agent_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, batch: int | None = None,
                opset: int = DEFAULT_OPSET, target_return: float | None = None, check: bool = True) -> OnnxExport:
    """Export an agent folder's step policy to `out` (default AGENT_DIR/policy.onnx) and its JSON contract."""
    agent_dir = Path(agent_dir)
    model, meta = load_agent(agent_dir, device="cpu")
    out = Path(out) if out is not None else agent_dir / DEFAULT_FILE
    return export_model_onnx(model, meta, out, batch=batch, opset=opset, target_return=target_return,
                             source=str(agent_dir), check=check)


def export_is_current(agent_dir: str | os.PathLike, model_path: str | os.PathLike) -> bool:
    """Whether `model_path` and its JSON exist, are readable, and are not older than the agent's files (weights,
    config, normalisation: what the graph and its JSON are made from)."""
    model_path = Path(model_path)
    json_path = spec_path(model_path)
    if not (model_path.is_file() and json_path.is_file()):
        return False
    try:
        spec = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if spec.get("format") != FORMAT or spec.get("format_version") != FORMAT_VERSION:
        return False
    sources = [Path(agent_dir) / name for name in AGENT_FILES]
    newest = max((p.stat().st_mtime for p in sources if p.is_file()), default=0.0)
    return min(model_path.stat().st_mtime, json_path.stat().st_mtime) >= newest


def ensure_onnx_export(agent_dir: str | os.PathLike) -> tuple[Path, bool]:
    """AGENT_DIR/policy.onnx, exported first (any batch size) when missing or older than the agent's files.

    A read-only agent folder (an installed package's shipped agents) gets its export in a temporary folder instead.
    Returns (path, whether it was exported now).
    """
    import tempfile

    path = Path(agent_dir) / DEFAULT_FILE
    if export_is_current(agent_dir, path):
        return path, False
    if Path(agent_dir).is_dir() and not os.access(agent_dir, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="decision_minrnn-onnx-")) / DEFAULT_FILE
    export_onnx(agent_dir, path)
    return path, True


def onnx_policy_for_evaluation(agent_dir: str | os.PathLike, *, target_return: float | None = None,
                               rollout: str | None = None, device: str | None = None, compile: bool = False,
                               video: Any = None) -> OnnxPolicy:
    """`evaluate_agent --runtime onnx`: the agent's exported step graph as an OnnxPolicy (exported first if stale).

    Options that only the torch runtime has are refused with a clear message rather than silently ignored.
    """
    import sys

    from .onnx_policy import require_onnx

    if rollout not in (None, "recurrent"):
        raise UserInputError(f"--runtime onnx runs the exported recurrent step; --rollout {rollout} needs the torch "
                             "runtime")
    if compile:
        raise UserInputError("--compile is a torch option; onnxruntime optimises the graph itself (drop --compile)")
    if device not in (None, "auto", "cpu"):
        raise UserInputError(f"--runtime onnx acts on the CPU here; --device {device} needs the torch runtime")
    if video is not None:
        raise UserInputError("--video renders with the torch runtime; drop --runtime onnx to record a video")
    require_onnx(exporter=True)
    path, exported = ensure_onnx_export(agent_dir)
    if exported:
        print(f"exported {path} (and {spec_path(path).name})", file=sys.stderr)
    policy = OnnxPolicy(path, target_return=target_return)
    if policy.agent_rollout != "recurrent":
        print(f"note: {policy.spec.get('rollout_note') or 'the agent was meant for another rollout'}", file=sys.stderr)
    return policy
