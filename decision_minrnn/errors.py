"""Exceptions the command line turns into one clear line (exit code 2 for bad input, 1 for failures while running)."""


class UserInputError(ValueError):
    """Bad usage or input: unknown names, bad configs, missing or corrupt files. The CLI exits with code 2."""


class DatasetError(UserInputError):
    """A dataset file is missing, corrupt or does not fit the task. The message names the file and the problem."""


class RunFailure(RuntimeError):
    """A failure while running (NaN loss, network down mid-download). The CLI exits with code 1."""
