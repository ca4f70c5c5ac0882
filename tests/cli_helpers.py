"""Calling a console script's `main` in-process, as a user's shell would, and reading what it printed."""

from __future__ import annotations

from typing import Any, Callable


def call_main(main: Callable[[list[str]], int], argv: list[Any], capsys) -> tuple[Any, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse usage errors exit through SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
