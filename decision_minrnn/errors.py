"""Exceptions the command line turns into one clear line (exit code 2 for bad input, 1 for failures while running;
3 for a dataset other than the one a run or sweep expects)."""


class UserInputError(ValueError):
    """Bad usage or input: unknown names, bad configs, missing or corrupt files. The CLI exits with code 2."""


class DatasetError(UserInputError):
    """A dataset file is missing, corrupt or does not fit the task. The message names the file and the problem."""


class DataMismatchError(DatasetError):
    """The dataset loaded here is another sample of the task than the one a checkpoint or a sweep's finished cells
    were trained on (regenerated data depend on the machine's floating-point code path). Exit code 3, so that a
    sweep can leave the cell for a machine that regenerates the same data instead of counting it as failed."""

    exit_code = 3


class RunFailure(RuntimeError):
    """A failure while running (NaN loss, network down mid-download). The CLI exits with code 1."""
