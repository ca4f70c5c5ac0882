"""Behaviour held fixed across refactors: the golden run (tests/golden/golden_run.py) must reproduce its record.

On the machine kind it was recorded on (same torch CPU capability and version) everything is bit-identical: the
regenerated file's bytes, the trained weights' bytes and the evaluation returns. On another CPU, float rounding of
the kernels may differ, so there the weights are compared by norm (1e-4 relative) and the returns are only reported.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from golden.golden_run import GOLDEN, golden_run


def test_golden_run_reproduces(tmp_path):
    want = json.loads(GOLDEN.read_text())
    got = golden_run(tmp_path)
    same_machine = (got["cpu_capability"], got["torch"]) == (want["cpu_capability"], want["torch"])
    if same_machine:
        assert got["dataset_sha256"] == want["dataset_sha256"]
    for name, w in want["models"].items():
        g = got["models"][name]
        assert sorted(g["weight_norms"]) == sorted(w["weight_norms"]), name
        for k, v in w["weight_norms"].items():
            assert np.isclose(g["weight_norms"][k], v, rtol=1e-4, atol=1e-6), (name, k, g["weight_norms"][k], v)
        if same_machine:
            assert g["weights_sha256"] == w["weights_sha256"], name
            assert g["returns"] == w["returns"] and g["lengths"] == w["lengths"], name
    assert torch.backends.cpu.get_cpu_capability() == got["cpu_capability"]
