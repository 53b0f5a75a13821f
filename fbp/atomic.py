"""Atomic writes: every output of fbp appears complete or not at all.

Files and directories are written next to their destination under a temporary name, then renamed into
place (``os.replace`` is atomic on one filesystem), so an interrupted command leaves the previous output
or nothing, never half of one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, IO, Iterator, Optional

from .errors import FbpError


@contextmanager
def atomic_file(path: Path, mode: str = "w", newline: Optional[str] = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; it becomes ``path`` only when the ``with`` block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": newline})) as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as file:
        file.write(text)


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path, "wb") as file:
        file.write(data)


def write_dir_atomically(output_dir: Path, write: Callable[[Path], None], replaceable: Callable[[Path], bool]) -> Path:
    """Let ``write`` fill a temporary directory next to ``output_dir``, then swap it in.

    An existing ``output_dir`` is replaced only once the new one is complete, and only if it is empty or
    ``replaceable(output_dir)`` says it is an earlier output of the same kind (never a user's directory).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or (any(output_dir.iterdir()) and not replaceable(output_dir))):
        raise FbpError(f"{output_dir} exists and was not written by this command; refusing to replace it (choose another output)")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        write(staging)
        staging.chmod(0o755)  # mkdtemp makes it private
        if output_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old-", dir=output_dir.parent))
            os.replace(output_dir, retired / output_dir.name)
            os.replace(staging, output_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir
