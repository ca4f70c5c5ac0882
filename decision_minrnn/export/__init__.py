"""Exporting agents for runtimes without this package: one ONNX graph per environment step, plus a JSON contract.

    export_onnx("agents/hopper-medium/mingru")               # -> policy.onnx and policy.onnx.json in that folder
    policy = OnnxPolicy("agents/hopper-medium/mingru/policy.onnx")   # numpy + onnxruntime only, no torch

This layer sits above `agent/` (it loads agent folders and checks against the torch Policy). Nothing is imported
eagerly: `decision_minrnn.export.onnx` needs torch and onnx, `decision_minrnn.export.onnx_policy` needs only numpy and
onnxruntime, and importing this package pulls in neither.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_onnx": "decision_minrnn.export.onnx",
    "ensure_onnx_export": "decision_minrnn.export.onnx",
    "OnnxExport": "decision_minrnn.export.onnx",
    "OnnxPolicy": "decision_minrnn.export.onnx_policy",
    "load_onnx_policy": "decision_minrnn.export.onnx_policy",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'decision_minrnn.export' has no attribute {name!r}")
