"""Errors that the CLI turns into one clear message and an exit code, never a traceback."""


class FbpError(Exception):
    """A data or runtime problem the user can fix (exit code 1)."""

    exit_code = 1


class UsageError(FbpError):
    """Bad command-line usage or configuration (exit code 2)."""

    exit_code = 2
