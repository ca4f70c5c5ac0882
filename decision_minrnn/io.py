"""Files written atomically (a kill never leaves a half-written file or folder behind) and safetensors weights."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import UserInputError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it onto `target`, on error delete it.

    The temporary name starts with `.tmp-` so an interrupted write is recognisable and never taken for data.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; a renamed folder should get the usual permissions
    work = tmp if is_dir else tmp / target.name
    try:
        yield work
        if is_dir:
            if target.exists():
                old = target.with_name(f".old-{target.name}-{os.getpid()}")
                os.replace(target, old)
                os.replace(work, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(work, target)
        else:
            os.replace(work, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_tensors(tensors: dict[str, Any], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """safetensors' `save_file`, with the file mode every other file gets (it writes 0600 on its own)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())


def load_weights(model: Any, path: str | os.PathLike) -> None:
    """Load safetensors weights, failing clearly when they belong to another model (backbone, sizes)."""
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated or foreign files
        raise UserInputError(f"{path}: not a readable safetensors file ({e})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {unexpected[:3]}" if unexpected else "")
        detail += "".join(f" {k}: file {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:3])
        raise UserInputError(f"{path} was made for another model (backbone, sizes or observation size): "
                             f"{detail.strip()}")
    model.load_state_dict(weights)


def check_writable(folder: Path, what: str = "--out") -> None:
    """Fail now, with one line, if `folder` cannot be created and written (before any data is loaded)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"{what} {folder} is a file, not a folder")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserInputError(f"{what} {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"{what} {folder}: {parent} is not writable")


def check_writable_file(path: Path, what: str) -> None:
    """Fail now if the file `path` could not be written (its folder missing-but-creatable is fine)."""
    path = Path(path)
    if path.is_dir():
        raise UserInputError(f"{what} {path} is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserInputError(f"{what} {path} is not writable")
    check_writable(path.parent, what)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (indent 2, trailing newline)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
