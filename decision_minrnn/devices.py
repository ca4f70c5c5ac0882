"""Which torch device a command runs on: `auto` (CUDA when available), `cpu`, `cuda[:N]`."""

from __future__ import annotations

import torch

from .errors import UserInputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`auto`/None -> CUDA when available, else CPU; `cuda` without a GPU is a clear UserInputError."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise UserInputError(f"unknown device {name!r}; valid: {', '.join(DEVICES)} (or cuda:N)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"--device {name} was asked for, but torch sees no CUDA GPU here (use cpu or auto)")
    return torch.device(name)
