"""Device parametrisation for tests that must hold on a GPU too: `cpu` always, `cuda` marked `cuda` and skipped where
torch sees no CUDA device (so CPU CI collects them, and `pytest -m cuda` on a GPU machine runs just those)."""

from __future__ import annotations

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if HAS_CUDA:  # the law's float32 tolerance (1e-4) is about the algorithms: no TF32 (10-bit mantissa) convolutions
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
CUDA = pytest.param("cuda", id="cuda",
                    marks=[pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")])
DEVICES = ["cpu", CUDA]
