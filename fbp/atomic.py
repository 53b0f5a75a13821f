"""Atomic writes: every output of fbp appears complete or not at all.

Files and directories are written next to their destination under a temporary name, then renamed into
place (``os.replace`` is atomic on one filesystem), so an interrupted command leaves the previous output
or nothing, never half of one. A directory replaces an earlier one in a single atomic exchange where the
system has one (Linux ``renameat2``), so even a kill at that moment leaves one of the two whole.

Temporary names say who made them (``.NAME.tmp-HOST-PID-XXXX``): a later write of the same output removes
the ones whose process is gone (a kill leaves them behind), and never one that is still being written.
Outputs get the permissions the umask gives (``mkstemp`` alone would make them owner-only).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, IO, Iterator, List, Optional

import contextvars

from .errors import FbpError, describe_os_error
from .faults import crash_point
from .io.lock import pid_alive, process_start  # noqa: F401  (liveness has one owner: fbp.io.lock)

HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[^/]*$")
FOREIGN_STALE_SECONDS = 24 * 3600  # another host's temporary file: stale once this old (its pid cannot be checked)
# Names of earlier fbp versions, which did not record the pid (stale once FOREIGN_STALE_SECONDS old).
_LEGACY = re.compile(r"^\.(?:(?P<name>.+)\.(?:tmp|old)-[a-z0-9_]{8}|(?P<file>.+)\.[a-z0-9_]{8}\.tmp|(?P<infer>fbp-infer)-[a-z0-9_]{8})$")


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_prefix(name: str, kind: str = "tmp") -> str:
    """``.NAME.tmp-HOST-PID-``: the prefix of this process's temporary files for output NAME."""
    return f".{name}.{kind}-{HOST}-{os.getpid()}-"


def _is_stale(path: Path, host: str, pid: int) -> bool:
    if host == HOST:
        return not pid_alive(pid)
    try:
        return time.time() - path.lstat().st_mtime > FOREIGN_STALE_SECONDS
    except OSError:
        return False


def remove_stale_temporaries(directory: Path, name: Optional[str] = None) -> int:
    """Delete the temporary files and folders in ``directory`` (of output ``name``, or of any) left by dead processes.

    Returns how many were removed. Files of running processes, and anything not named like fbp's temporaries,
    are never touched.
    """
    removed = 0
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return 0
    for path in entries:
        match, legacy = _TEMPORARY.match(path.name), _LEGACY.match(path.name)
        if match:
            owner, stale = match["name"], lambda: _is_stale(path, match["host"], int(match["pid"]))
        elif legacy:
            owner, stale = legacy["name"] or legacy["file"] or legacy["infer"], lambda: _is_stale(path, "", 0)
        else:
            continue
        if (name is not None and owner != name) or not stale():
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError:
            pass  # not ours to remove after all (permissions): leave it
    return removed


def _writable_error(path: Path, error: OSError) -> FbpError:
    return FbpError(describe_os_error(error, path) if error.errno in WRITE_FAILURES else f"cannot write {path}: {error.strerror or error}")


# Errors that mean "this write cannot succeed here" (disk full, quota, read-only, file too large): whatever raised
# them, they are reported naming the output, never as a traceback.
WRITE_FAILURES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM)


def refuse_symlink(path: Path, what: str = "output") -> None:
    """fbp never writes, replaces or deletes through a symbolic link: refuse one at ``path``, before any work."""
    path = Path(path)
    if path.is_symlink():
        target = os.readlink(path)
        raise FbpError(f"{what} {path} is a symbolic link (to {target}); fbp never writes or deletes through a link: give the real path")


NOT_OURS = ("wandb",)  # folders other tools keep inside a run (wandb's offline runs, with its own links); fbp never deletes there


def refuse_links_inside(root: Path, what: str = "directory") -> None:
    """Refuse a directory fbp writes and deletes in (a run) when it or anything inside it is a symbolic link: a
    link (``RUN/.work`` to a scratch disk, say) would make fbp write and delete files it does not own."""
    root = Path(root)
    refuse_symlink(root, what)
    if not root.is_dir():
        return
    for folder, subfolders, files in os.walk(root, followlinks=False):
        if Path(folder) == root:
            subfolders[:] = [name for name in subfolders if name not in NOT_OURS]
            files = [name for name in files if name not in NOT_OURS]
        for name in subfolders + files:
            path = Path(folder) / name
            if path.is_symlink():
                raise FbpError(f"{path} is a symbolic link (to {os.readlink(path)}) inside the {what} {root}; fbp writes and "
                               "deletes only real files and folders there. Replace the link by a real folder or use another directory")


def _same_or_inside(path: Path, other: Path) -> bool:
    try:
        path, other = path.resolve(), Path(other).resolve()
    except (OSError, RuntimeError):
        return False
    return path == other or other in path.parents


def _run_directory_above(path: Path) -> Optional[Path]:
    """The fbp run directory (``run.json`` or ``oof_word_probs.npz`` in it) that ``path`` would be written into, if any."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    for folder in resolved.parents:
        if (folder / "run.json").is_file() or (folder / "oof_word_probs.npz").is_file():
            return folder
    return None


def guard_output(path: Path, what: str = "output", inputs=(), directory: bool = False) -> None:
    """The one rule every command applies to each output it is given, before any work.

    An output is never: a symbolic link; an input of the same command (a file it reads, or inside a folder it
    reads); inside a run directory (only ``fbp train`` and ``fbp evaluate RUN --tune`` write there, through
    :class:`fbp.io.run_dir.RunDir`); a directory when a file is meant, or a place nothing can be created.
    """
    path = Path(path)
    refuse_symlink(path, what)
    for source in inputs:
        if source is not None and _same_or_inside(path, Path(source)):
            relation = "is" if _same_or_inside(Path(source), path) else "is inside"
            raise FbpError(f"{what} {path} {relation} the input {source} of this command; an output never replaces an input (choose another path)")
    run = _run_directory_above(path)
    if run is not None:
        raise FbpError(f"{what} {path} is inside the run directory {run}; only `fbp train` and `fbp evaluate RUN --tune` "
                       "write there (choose a path outside the run)")
    if not directory and path.is_dir():
        raise FbpError(f"{what} {path} is a directory; give a file name")
    if directory and path.exists() and not path.is_dir():
        raise FbpError(f"{what} {path} is a file, not a directory")
    check_output_location(path, what)


# Outputs of one command, committed together: inside ``outputs_together()``, atomic writes leave their complete
# temporaries in place and queue the rename; the renames run once the whole block succeeded, so a command that
# fails (a bad --html after the submission was written) replaces none of its outputs.
_pending: contextvars.ContextVar = contextvars.ContextVar("fbp_pending_outputs", default=None)


@contextmanager
def outputs_together() -> Iterator[None]:
    """Commit every atomic write made inside the block at its end, together, or none of them if it fails."""
    if _pending.get() is not None:  # nested: the outer block commits
        yield
        return
    queue: List[tuple] = []
    token = _pending.set(queue)
    try:
        yield
    except BaseException:
        _pending.reset(token)
        for _, discard in queue:
            discard()
        raise
    _pending.reset(token)
    for index, (commit, _) in enumerate(queue):
        try:
            commit()
        except BaseException:
            for _, discard in queue[index:]:
                discard()
            raise


def _finish(commit: Callable[[], None], discard: Callable[[], None]) -> None:
    """Commit now, or queue the commit when inside :func:`outputs_together`."""
    queue = _pending.get()
    if queue is None:
        try:
            commit()
        except BaseException:
            discard()
            raise
    else:
        queue.append((commit, discard))


def reserve_space(handle: int, size: int, path: Path) -> None:
    """Allocate ``size`` bytes of an open file now (``posix_fallocate``), so that a memory-mapped file never meets a
    full disk halfway (a bus error) but fails here with one message. Where the filesystem cannot, nothing is done."""
    if size <= 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(handle, 0, size)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            return
        raise FbpError(f"{describe_os_error(error, path)} (needs {size / 2**20:,.0f} MB of scratch space beside the output)") from None


def _apply_umask(path: Path, directory: bool = False) -> None:
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


@contextmanager
def atomic_file(path: Path, mode: str = "w", newline: Optional[str] = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; it becomes ``path`` only when the ``with`` block succeeds."""
    path = Path(path)
    refuse_symlink(path)
    if path.is_dir():
        raise FbpError(f"cannot write {path}: it is a directory (give a file name)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name))
    except OSError as error:
        raise _writable_error(path, error) from None
    discard = lambda: Path(temporary).unlink(missing_ok=True)  # noqa: E731
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": newline})) as file:
            yield file
        _apply_umask(Path(temporary))
        crash_point(f"write:{path.name}")
    except OSError as error:
        discard()
        if error.errno in WRITE_FAILURES:
            raise _writable_error(path, error) from None
        raise
    except BaseException:
        discard()
        raise

    def commit() -> None:
        refuse_symlink(path)  # made a link while this command ran
        try:
            os.replace(temporary, path)
        except OSError as error:
            raise _writable_error(path, error) from None

    _finish(commit, discard)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_file(path) as file:
        file.write(text)


def write_atomic_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path, "wb") as file:
        file.write(data)


_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def write_dir_atomically(output_dir: Path, write: Callable[[Path], None], replaceable: Callable[[Path], bool]) -> Path:
    """Let ``write`` fill a temporary directory next to ``output_dir``, then swap it in.

    An existing ``output_dir`` is replaced only once the new one is complete, and only if it is empty or
    ``replaceable(output_dir)`` says it is an earlier output of the same kind (never a user's directory).
    """
    output_dir = Path(output_dir)
    refuse_symlink(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or (any(output_dir.iterdir()) and not replaceable(output_dir))):
        raise FbpError(f"{output_dir} exists and was not written by this command; refusing to replace it (choose another output)")
    try:
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(output_dir.parent, output_dir.name)
        staging = Path(tempfile.mkdtemp(prefix=temporary_prefix(output_dir.name), dir=output_dir.parent))
    except OSError as error:
        raise _writable_error(output_dir, error) from None
    discard = lambda: shutil.rmtree(staging, ignore_errors=True)  # noqa: E731
    inner = _pending.set(None)  # files written into the staging folder are part of it: they commit at once
    try:
        try:
            write(staging)
        finally:
            _pending.reset(inner)
        # Everything in it as the umask says: mkdtemp makes the folder private, and some writers (safetensors)
        # make their files owner-only.
        for path in staging.rglob("*"):
            if not path.is_symlink():
                _apply_umask(path, directory=path.is_dir())
        _apply_umask(staging, directory=True)
        crash_point(f"write:{output_dir.name}")
    except OSError as error:
        discard()
        if error.errno in WRITE_FAILURES:
            raise _writable_error(output_dir, error) from None
        raise
    except RuntimeError as error:  # torch and safetensors report a full disk as a RuntimeError ("iostream error")
        discard()
        if "iostream" in str(error) or "write" in str(error).lower():
            raise FbpError(f"cannot write {output_dir}: {str(error).splitlines()[0][:200]} (is the disk full?)") from None
        raise
    except BaseException:
        discard()
        raise
    _finish(lambda: _swap_in(staging, output_dir), discard)
    return output_dir


def _swap_in(staging: Path, output_dir: Path) -> None:
    """Put the complete ``staging`` directory in place of ``output_dir`` (atomically where the system allows)."""
    refuse_symlink(output_dir)
    try:
        if not output_dir.exists():
            os.replace(staging, output_dir)
        elif _exchange(staging, output_dir):
            crash_point(f"replace:{output_dir.name}")  # the new one is in place; staging now holds the old one
            shutil.rmtree(staging, ignore_errors=True)
        else:
            retired = Path(tempfile.mkdtemp(prefix=temporary_prefix(output_dir.name, "old"), dir=output_dir.parent))
            os.replace(output_dir, retired / output_dir.name)
            os.replace(staging, output_dir)
            crash_point(f"replace:{output_dir.name}")
            shutil.rmtree(retired, ignore_errors=True)
    except OSError as error:
        raise _writable_error(output_dir, error) from None


def check_output_file(path: Path, what: str = "output") -> None:
    """Fail now, before any work, if ``path`` cannot become a file: a directory, under a file, or not writable."""
    path = Path(path)
    if path.is_dir():
        raise FbpError(f"{what} {path} is a directory; give a file name")
    check_output_location(path, what)


def check_output_location(path: Path, what: str = "output") -> None:
    """Fail now if nothing can be created at ``path``: its nearest existing parent must be a writable directory."""
    path = Path(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise FbpError(f"cannot write {what} {path}: {ancestor} is not a directory")
    try:
        handle, probe = tempfile.mkstemp(dir=ancestor, prefix=temporary_prefix("fbp-probe"))
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise FbpError(f"cannot write {what} {path}: {error.strerror or error} ({ancestor})") from None
