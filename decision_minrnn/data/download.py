"""Fetching D4RL v2 files into `$D4RL_DATASET_DIR`, so a half-finished download never looks like data.

The bytes go to a `.tmp-` file beside the target and are renamed only after the size matches `Content-Length` and the
file starts with the HDF5 signature (an HTML error page from a proxy is refused, not cached).
"""

from __future__ import annotations

import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import RunFailure
from ..io import atomic_path
from ..paths import d4rl_dataset_dir
from ..tasks import Task, resolve_task

URL_ENV = "DECISION_MINRNN_D4RL_URL"  # override of the base URL (a mirror, or a local server in tests)
_CHUNK = 1 << 20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def d4rl_file_path(task: str | Task) -> Path:
    """Where the task's D4RL v2 file lives (or will live) in `$D4RL_DATASET_DIR`."""
    return d4rl_dataset_dir() / resolve_task(task).source.d4rl_file


def d4rl_url(task: str | Task) -> str:
    """The task's D4RL v2 address, or `$DECISION_MINRNN_D4RL_URL/<file name>` when that is set."""
    source = resolve_task(task).source
    base = os.environ.get(URL_ENV)
    return f"{base.rstrip('/')}/{source.d4rl_file}" if base else source.d4rl_url


def download_d4rl(task: str | Task, *, verbose: bool = True, timeout: float = 30.0, force: bool = False) -> Path:
    """Download the task's D4RL v2 file unless it is already there; return its path.

    Raises RunFailure (one line naming the URL and where to put the file by hand) when the server cannot be reached,
    answers with an error, or the transfer is cut short; nothing is left in the cache in any of these cases.
    """
    from tqdm import tqdm

    dest = d4rl_file_path(task)
    if dest.exists() and not force:
        return dest
    url = d4rl_url(task)

    def failure(reason: str) -> RunFailure:
        return RunFailure(
            f"could not download {url}: {reason}; to use D4RL data offline, place {dest.name} in {dest.parent} "
            f"($D4RL_DATASET_DIR)"
        )

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            with atomic_path(dest) as tmp:
                received = _copy(response, tmp, expected, verbose, dest.name, tqdm)
                if expected is not None and received != expected:
                    raise failure(f"transfer cut short ({received:,} of {expected:,} bytes)")
                with open(tmp, "rb") as f:
                    if f.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                        raise failure("the server's answer is not an HDF5 file")
    except urllib.error.HTTPError as e:
        raise failure(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise failure(f"network unreachable ({e.reason})") from None
    except (http.client.HTTPException, OSError) as e:  # timeouts, resets, a full disk mid-transfer
        raise failure(f"{type(e).__name__}: {e}") from None
    if verbose:
        print(f"downloaded {url} -> {dest}", file=sys.stderr)
    return dest


def _copy(response: Any, tmp: Path, expected: int | None, verbose: bool, name: str, tqdm: Any) -> int:
    """Stream the body into `tmp` with a progress bar; return the number of bytes written."""
    received = 0
    with open(tmp, "wb") as out, tqdm(
        total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not verbose, file=sys.stderr
    ) as bar:
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
            bar.update(len(chunk))
    return received
