"""What one config runs: its timed call, built from its keys and sizes, through the package's public API only
(backbones from the registry with their options, `step` for the token-by-token baseline, `ModelConfig`, `Policy`,
the ONNX export and `OnnxPolicy`, the one rollout loop). Weights and inputs are random: cost does not depend on them.
gymnasium, MuJoCo, onnx and onnxruntime are imported only by the configs that use them."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..nn import scan as scans
from ..nn.backbones import Backbone, backbone_class, make_backbone
from ..nn.model import ModelConfig, build_model
from ..tasks import resolve_task
from ..training.trainer import masked_mse
from .measure import SkipConfig, Workload, sync

TASK = "hopper-medium"  # Hopper-sized inputs, and the env of the evaluation suite
TORCH_RNNS: dict[str, type[nn.Module]] = {"nn.GRU": nn.GRU, "nn.LSTM": nn.LSTM}  # torch's fused layers (cuDNN)
CHECKPOINTS = (1, 10, 100, 1000)  # episode steps at which the act table reports the cost ...
SPAN = 10  # ... as the median over steps (t - SPAN, t] of every timed episode


def stepwise(backbone: Backbone, x: Tensor) -> Tensor:
    """`backbone(x)[0]` one token at a time through `step`: backpropagation through time over a Python loop (the
    paper's sequential baseline). `unbind` gives each step a view; `x[:, t]` would make backward O(T^2)."""
    state, ys = backbone.initial_state(x.shape[0]), []
    for x_t in x.unbind(1):
        y, state = backbone.step(x_t, state)
        ys.append(y)
    return torch.stack(ys, 1)


def _training_step(module: nn.Module, forward: Callable[[], Tensor], target: Tensor) -> Workload:
    mask = torch.ones(target.shape[:2], device=target.device)

    def call() -> None:
        module.zero_grad(set_to_none=True)
        masked_mse(forward(), target, mask).backward()

    return Workload(call, info={"params": sum(p.numel() for p in module.parameters())})


def layer(p: dict[str, Any], device: torch.device) -> Workload:
    """One layer's training step (forward, masked MSE, backward); the input requires grad, as inside a network."""
    if p["model"] in TORCH_RNNS:
        module = TORCH_RNNS[p["model"]](p["d"], p["d"], batch_first=True)
    else:
        fields = {f.name for f in dataclasses.fields(backbone_class(p["model"]).options_cls)}
        options = {k: v for k, v in p["options"].items() if k in fields}
        module = make_backbone(p["model"], p["d"], 1, **options, **(
            {"scan_impl": p["impl"]} if p["impl"] in scans.SCAN_IMPLS else {}))
    module = module.to(device).train()
    x = torch.randn(p["batch"], p["T"], p["d"], device=device, requires_grad=True)

    def forward() -> Tensor:
        x.grad = None
        return stepwise(module, x) if p["impl"] == "loop" else module(x)[0]

    return _training_step(module, forward, torch.randn_like(x))


def model(p: dict[str, Any], device: torch.device) -> Workload:
    """The DecisionModel's training step; T in timesteps, the Transformer's band `window_steps` timesteps."""
    env = resolve_task(TASK).env
    cfg = ModelConfig(backbone=p["model"], layout=p["layout"], d_model=p["d"], n_layers=p["n_layers"], dropout=0.0,
                      context_len=p["T"])
    cfg = dataclasses.replace(cfg, attention_window=cfg.tokens_per_step * p["window_steps"])
    net = build_model(cfg, env.obs_dim, env.act_dim).to(device).train()
    b, t = p["batch"], p["T"]
    returns, states = torch.randn(b, t, device=device), torch.randn(b, t, env.obs_dim, device=device)
    actions = torch.rand(b, t, env.act_dim, device=device) * 2 - 1
    steps = torch.arange(t, device=device).expand(b, t).contiguous()
    return _training_step(net, lambda: net(returns, states, actions, steps)[0], actions)


def scan(p: dict[str, Any], device: torch.device) -> Workload:
    """The scan alone, forward + backward: the recurrence's cost apart from the projections around it."""
    u, v, grad = (torch.randn(p["batch"], p["T"], p["d"], device=device) for _ in range(3))
    impl = p["impl"]
    if p["entry"] == "scan_log":  # positive recurrence from log a, log b (minGRU / minLSTM into `log`)
        inputs = [nn.functional.logsigmoid(u), 0.5 * v]
        fn = lambda: scans.scan_log(*inputs, impl=impl)  # noqa: E731
    elif p["entry"] == "scan":  # a in (0, 1), b of any sign (S4D / Mamba)
        inputs = [torch.sigmoid(u), v]
        fn = lambda: scans.scan(*inputs, impl=impl)  # noqa: E731
    else:  # gated_scan: the minGRU recurrence from gate logits and candidates, the path the layers take
        inputs = [u, v]
        fn = lambda: scans.gated_scan(*inputs, impl=impl)  # noqa: E731
    for t in inputs:
        t.requires_grad_()

    def call() -> None:
        for t in inputs:
            t.grad = None
        fn().backward(grad)

    return Workload(call, info={"elements": u.numel()})


def policy(p: dict[str, Any], device: torch.device) -> Any:
    """A random-weight agent (identity normalisation, dropout 0) acting as `p["runtime"]` says: the torch `Policy`,
    the same through torch.compile, or its ONNX export acting under onnxruntime (`OnnxPolicy`)."""
    from ..agent.folder import AgentMeta
    from ..agent.policy import Policy
    from ..training.config import TrainConfig

    env = resolve_task(TASK).env
    cfg = TrainConfig(backbone=p["model"], layout=p["layout"], d_model=p["d"], n_layers=p["n_layers"],
                      context_len=p["context_len"], dropout=0.0, rollout=p["rollout"])
    meta = AgentMeta(config=cfg, task=TASK, env_id=env.gym_id, obs_dim=env.obs_dim, act_dim=env.act_dim, seed=0,
                     state_mean=np.zeros(env.obs_dim, np.float32), state_std=np.ones(env.obs_dim, np.float32),
                     return_scale=env.return_scale, data={"source": "none (benchmark, random weights)"}, extra={})
    net = build_model(cfg.model_config(), env.obs_dim, env.act_dim).to(device).eval()
    if p["runtime"] != "onnxruntime":
        return Policy(net, meta, rollout=p["rollout"], compile=p["runtime"] == "torch.compile")
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise SkipConfig(f"{' and '.join(missing)} not installed (pip install 'decision_minrnn[export]')")
    import onnxruntime

    from ..export.onnx import export_model_onnx
    from ..export.onnx_policy import OnnxPolicy

    cuda = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph: the files can go once it is built
        export_model_onnx(net, meta, Path(tmp) / "policy.onnx", batch=p["batch"], source="benchmark")
        return OnnxPolicy(Path(tmp) / "policy.onnx", intra_op_threads=torch.get_num_threads(),
                          providers=["CUDAExecutionProvider"] if cuda else None)


def act(p: dict[str, Any], device: torch.device) -> Workload:
    """Cost per action along an episode: `act` + `observe`, one environment step at a time (all the policy's work)."""
    pol, batch, steps = policy(p, device), p["batch"], p["steps"]
    obs = np.random.default_rng(0).standard_normal((steps, batch, pol.obs_dim)).astype(np.float32)
    rewards, done = np.ones(batch), np.zeros(batch, dtype=bool)

    def episode(length: int = steps) -> np.ndarray:
        pol.reset(num_envs=batch)
        times = np.empty(length)
        for t in range(length):
            t0 = time.perf_counter()
            pol.act(obs[t])
            pol.observe(rewards, done)
            sync(device)
            times[t] = time.perf_counter() - t0
        return times

    episode(3)  # setup: torch.compile compiles here (an episode's first steps differ), not in the timed warm-up

    def summarise(outputs: list[np.ndarray]) -> dict[str, Any]:
        us = 1e6 * np.stack(outputs)  # (episodes, steps)
        at = {str(t): float(np.median(us[:, max(0, t - SPAN):t])) for t in CHECKPOINTS if t <= steps}
        median = float(np.median(us))
        return {"us_per_call_at": at, "us_per_call": median, "us_per_action": median / batch,
                "curve_us": [round(float(x), 2) for x in np.median(us, axis=0)]}

    return Workload(episode, summarise, info={"acting_device": str(pol.device)})


def evaluate(p: dict[str, Any], device: torch.device) -> Workload:
    """N environment steps through the evaluator's loop, driven by a policy or by (nearly) free actions; the time
    split into policy and simulation."""
    os.environ.setdefault("MUJOCO_GL", "disable")
    from ..rollout.envs import FunctionActor, env_seeds, make_vector_env, rollout

    n, spec = p["num_envs"], resolve_task(TASK).env
    env, rng = make_vector_env(spec.gym_id, n), np.random.default_rng(0)
    free = {"zeros": lambda o: np.zeros((n, spec.act_dim), np.float32),
            "random": lambda o: rng.uniform(-1, 1, (n, spec.act_dim)).astype(np.float32)}
    actor = FunctionActor(free[p["policy"]]) if p["policy"] in free else policy(p, device)
    vector_steps = max(1, p["env_steps"] // n)

    def run(steps: int = vector_steps) -> dict[str, float]:
        if hasattr(actor, "reset"):
            actor.reset(n, env=env)
        log = rollout(env, actor, seeds=env_seeds(0, n), vector_steps=steps)
        return {"loop_s": log.wall_s, "policy_s": log.policy_s, "env_s": log.env_s, "episodes": log.episodes_done}

    run(20)  # setup: the first resets and actions (and compilation)

    def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
        med = {k: float(np.median([r[k] for r in runs])) / (vector_steps * n) for k in ("loop_s", "policy_s", "env_s")}
        return {"env_steps": vector_steps * n, "us_per_env_step": 1e6 * med["loop_s"],
                "policy_us_per_env_step": 1e6 * med["policy_s"], "sim_us_per_env_step": 1e6 * med["env_s"],
                "policy_over_sim": med["policy_s"] / med["env_s"], "episodes_done": [r["episodes"] for r in runs]}

    return Workload(run, summarise, info={"env_id": spec.gym_id})


def build(params: dict[str, Any], device: torch.device) -> Workload:
    """The workload of a config: `params` are its keys and sizes together (`part` picks the builder)."""
    torch.manual_seed(0)
    return {"layer": layer, "model": model, "scan": scan, "act": act, "eval": evaluate}[params["part"]](params, device)
