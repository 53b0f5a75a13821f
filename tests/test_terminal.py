"""`fbp train` in a real terminal (a pseudo-terminal drawn by the pyte emulator), read off the screen as a user sees it: the live display shows the whole
run's progress with an ETA, and after Ctrl-C the stop message is the last thing printed, with the shell prompt on a
clean line of its own (no progress bar redrawn below the message)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shlex
import struct
import sys
import termios
import threading
import time

import pytest

pyte = pytest.importorskip("pyte", reason="the terminal emulator of the test extras (pip install -e '.[test]')")

PROMPT = "READY>"
BAR = "━"
COLUMNS, ROWS = 250, 40  # wide enough that the stop message is one line


class Terminal:
    """bash in a pseudo-terminal of COLUMNS x ROWS, its output drawn by a terminal emulator (pyte) as a user's
    terminal draws it: cursor moves, line erases and redraws of the live display included."""

    def __init__(self, cwd):
        self.screen_ = pyte.HistoryScreen(COLUMNS, ROWS, history=5000)
        self.stream = pyte.ByteStream(self.screen_)
        self.lock = threading.Lock()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TERM": "xterm-256color",
               "COLUMNS": str(COLUMNS), "LINES": str(ROWS)}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its terminal
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
            os.chdir(cwd)
            os.execvpe("bash", ["bash", "--norc", "--noprofile"], env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # the shell is gone
                return
            if not data:
                return
            with self.lock:
                self.stream.feed(data)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode() + b"\r")

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")

    def screen(self) -> list:
        """The scrollback and the visible screen, one string per terminal line, trailing spaces removed."""
        with self.lock:
            scrolled = ["".join(line[column].data for column in range(COLUMNS)) for line in self.screen_.history.top]
            lines = [line.rstrip() for line in scrolled + list(self.screen_.display)]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    def wait(self, predicate, timeout: float, what: str) -> list:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; screen:\n" + "\n".join(lines[-30:]))
            time.sleep(0.2)

    def close(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def terminal(tmp_path):
    term = Terminal(tmp_path)
    try:
        term.type(f"PS1='{PROMPT}'; clear")
        term.wait(lambda lines: any(line == PROMPT for line in lines), 30, "the shell prompt")
        yield term
    finally:
        term.close()


def test_ctrl_c_leaves_a_clean_terminal_and_the_live_display_shows_the_whole_run(terminal, tmp_path, processed_demo, tiny_model_dir):
    command = [sys.executable, "-m", "fbp", "train", "--data", str(processed_demo), "--model", str(tiny_model_dir), "--max-essays", "16",
               "--folds", "2", "--epochs", "200", "--set", "windows.max_length=64", "--set", "windows.stride=16", "--wandb", "disabled",
               "-o", str(tmp_path / "run")]
    terminal.type(shlex.join(command) + "; echo exit=$?")

    def an_epoch_row_and_a_live_bar(lines):
        return any(re.match(r"\s+1\s+\d+\.\d{4}\s", line) for line in lines) and any(BAR in line for line in lines[-6:])

    lines = terminal.wait(an_epoch_row_and_a_live_bar, 600, "the first epoch and the live progress display")
    live = "\n".join(lines[-8:])
    # the whole run (2 folds x 200 epochs), not just this epoch: elapsed and time left
    assert re.search(r"whole run\b.*\b\d+/400\b", live) and re.search(r"\bleft\b|ETA", live), live

    terminal.ctrl_c()
    lines = terminal.wait(lambda lines: any(line.startswith("exit=") for line in lines), 120, "fbp train to stop")
    stop = max(i for i, line in enumerate(lines) if "run the same command again to resume" in line)
    after = [line for line in lines[stop + 1:] if line.strip()]
    assert after[0] == "exit=130", "\n".join(lines[stop - 3:])  # nothing printed after the stop message
    assert not any(BAR in line for line in lines[stop:]), "a progress bar was drawn after the stop message"
    assert lines[stop].lstrip().startswith("stopped"), lines[stop]
    # and the prompt comes back on a clean line of its own, right after the exit code
    lines = terminal.wait(lambda lines: lines[-1].endswith(PROMPT) or PROMPT in lines[-1], 10, "the prompt")
    assert lines[-1] == PROMPT and lines[-2] == "exit=130", "\n".join(lines[stop:])
