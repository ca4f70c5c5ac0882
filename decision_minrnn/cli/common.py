"""Shared command-line plumbing: errors become one line on stderr with exit code 2 (bad input) or 1 (failure)."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, Sequence

from ..errors import UserInputError

# module name -> console script (so messages name the command the user typed)
COMMANDS = {"train": "train_agent", "evaluate": "evaluate_agent", "collect": "collect_dataset",
            "export": "export_agent", "sweep": "sweep_agents", "cli": "benchmark_agent"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with exit code 2 and a one-line message for usage errors (argparse's own convention)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def cli_entry(func: Callable[[Sequence[str] | None], int | None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a `main(argv)`: UserInputError -> exit 2 (its `exit_code` where it has one: 3 for a dataset other than
    the one expected), other failures -> exit 1, each as one line (no traceback).

    Set DECISION_MINRNN_DEBUG=1 to get the traceback instead.
    """

    @functools.wraps(func)
    def main(argv: Sequence[str] | None = None) -> int:
        import os

        prog = COMMANDS.get(func.__module__.rsplit(".", 1)[-1], func.__module__)
        try:
            code = func(argv)
            return int(code or 0)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except UserInputError as e:
            if os.environ.get("DECISION_MINRNN_DEBUG"):
                raise
            print(f"error: {e}", file=sys.stderr)
            return int(getattr(e, "exit_code", 2))
        except Exception as e:  # noqa: BLE001 - the CLI's promise is one clear line, not a traceback
            if os.environ.get("DECISION_MINRNN_DEBUG"):
                raise
            print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
            return 1

    return main


def run_main(main: Callable[[Sequence[str] | None], int]) -> None:
    """`if __name__ == "__main__": run_main(main)`."""
    sys.exit(main(None))
