"""Atomic writes: a kill never leaves a half-written file or folder behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (indent 2, trailing newline)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
