"""Errors that the CLI turns into one clear message and an exit code, never a traceback."""


class FbpError(Exception):
    """A data or runtime problem the user can fix (exit code 1)."""

    exit_code = 1


class UsageError(FbpError):
    """Bad command-line usage or configuration (exit code 2)."""

    exit_code = 2


def describe_os_error(error: OSError, path=None) -> str:
    """One line for a failed read or write: the path and what went wrong, in words (the disk is full, read-only)."""
    import errno

    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded", errno.EROFS: "the disk is read-only",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EIO: "input/output error"}
    reason = reasons.get(error.errno, error.strerror or str(error))
    where = path or error.filename
    if where is None:
        return f"{reason} ({error})"
    return f"cannot write {where}: {reason}" if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) else f"{where}: {reason}"


# How libraries that write by themselves (safetensors, torch's zip writer, the Trainer) report a full disk.
_DISK_FULL_WORDS = ("no space left on device", "os error 28", "iostream error", "pytorchstreamwriter failed", "disk quota exceeded",
                    "read-only file system", "file write failed")


def disk_full_reason(error: BaseException) -> "str | None":
    """Why ``error`` (from any library) means the disk is full or read-only, in words; None when it does not."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if isinstance(error, OSError) and error.errno == errno.EROFS:
        return "the disk is read-only"
    text = str(error).lower()
    if any(word in text for word in _DISK_FULL_WORDS):
        return "the disk is read-only" if "read-only" in text else "the disk is full"
    return None
