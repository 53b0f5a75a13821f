"""Locks and process liveness: the one place that decides whether a process (or the holder of a lock) still runs.

``RUN/.fbp.lock`` (:class:`RunLock`) keeps one writer at a time in a run directory (``fbp train``,
``fbp evaluate RUN --tune``). Everything that asks "is that process still there?" (a lock's holder, a temporary
file's writer in :mod:`fbp.atomic`, an interrupted Optuna trial in :mod:`fbp.tune`, a run's status in
:mod:`fbp.compare`) asks :func:`pid_alive` / :func:`holder_running` here.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import FbpError

LOCK_FILE = ".fbp.lock"


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id runs on this machine (False for anything that is not a positive int)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    except (OverflowError, OSError):
        return False
    return True


def process_start(pid: int) -> Optional[str]:
    """When process ``pid`` started (clock ticks since boot, Linux), so that a reused pid is not taken for the
    process that wrote a lock; None where the system does not tell."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError, ValueError):
        return None


def holder_running(holder: Dict[str, Any]) -> Optional[bool]:
    """Whether the process a lock (or trial) records still runs: True, False, or None when this host cannot tell
    (another host's process, or no pid recorded). A pid that now belongs to a process started at another time (reused
    after a reboot) is not the holder."""
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if host is not None and host != socket.gethostname():
        return None
    recorded_start = holder.get("process_start")
    return pid_alive(pid) and recorded_start in (None, process_start(pid))


class RunLock:
    """``RUN/.fbp.lock``: one writer at a time in a run directory (``fbp train``, ``fbp evaluate RUN --tune``).

    The lock file holds the owner's pid, host, start time and the process's own start (to tell a pid reused after
    a reboot). A lock whose process is gone (same host, pid not running, or now another process) is stale: it is
    taken over, with a note. A lock held on another host cannot be checked from here;
    the message says how to remove it by hand. It is released on any exit of the ``with`` block (an error,
    Ctrl-C, or SIGTERM, which the command line turns into the same interruption).
    """

    def __init__(self, run_path: Path, command: str = "fbp train"):
        self.path = Path(run_path) / LOCK_FILE
        self.command = command
        self.mine: Dict[str, Any] = {}
        self.took_over: Optional[Dict[str, Any]] = None  # the stale lock that was replaced, if any

    def holder(self) -> Optional[Dict[str, Any]]:
        """What the lock file says (empty when it is unreadable), or None when there is no lock."""
        try:
            if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
                return {}
            with open(self.path, encoding="utf-8") as file:
                content = json.loads(file.read(4096))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError):
            content = {}
        return content if isinstance(content, dict) else {}

    def _refuse_write(self, error: OSError) -> FbpError:
        reason = {errno.EROFS: "the disk is read-only", errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(error.errno, error.strerror or str(error))
        return FbpError(f"cannot lock the run directory {self.path.parent}: cannot write {self.path} ({reason})")

    def acquire(self) -> "RunLock":
        if self.path.parent.is_symlink():
            raise FbpError(f"{self.path.parent} is a symbolic link; fbp writes only into real directories (give the real path)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FbpError(f"cannot create the run directory {self.path.parent}: {error.strerror or error}") from None
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "process_start": process_start(os.getpid())}
        for _ in range(3):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o666)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released in the meantime
                if self.path.is_symlink() or not self.path.is_file():
                    raise FbpError(f"{self.path} is not a lock file fbp wrote (a link or a folder); remove it by hand")
                pid, host = holder.get("pid"), holder.get("host")
                running = holder_running(holder)
                if not isinstance(pid, int):
                    try:
                        age = time.time() - self.path.stat().st_mtime
                    except OSError:
                        continue
                    if age < 10:  # being written right now
                        time.sleep(0.2)
                        continue
                elif running is None:
                    raise FbpError(
                        f"{self.path.parent} is locked by {holder.get('command', 'fbp')} (pid {pid} on host {host}, since "
                        f"{holder.get('started', '?')}); this host cannot tell whether it still runs. If it does not, delete {self.path}"
                    )
                elif running:
                    raise FbpError(
                        f"{self.path.parent} is in use by another {holder.get('command', 'fbp')} (pid {pid}, since "
                        f"{holder.get('started', '?')}); wait for it to finish or stop it, or write into another directory"
                    )
                self.took_over = holder
                try:
                    self.path.unlink(missing_ok=True)
                except OSError as error:
                    raise self._refuse_write(error) from None
                continue
            except OSError as error:
                raise self._refuse_write(error) from None
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as file:
                    file.write(json.dumps(mine))
            except OSError as error:
                self.path.unlink(missing_ok=True)
                raise self._refuse_write(error) from None
            self.mine = mine
            return self
        raise FbpError(f"could not lock {self.path.parent}: {self.path} keeps changing (another fbp command starting?)")

    def release(self) -> None:
        holder = self.holder()
        if self.mine and holder is not None and holder.get("pid") == self.mine.get("pid") and holder.get("host") == self.mine.get("host"):
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only remount since: nothing more to do

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
