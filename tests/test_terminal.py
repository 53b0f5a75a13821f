"""`fbp train` in a real terminal (tmux), read off the screen as a user sees it: the live display shows the whole
run's progress with an ETA, and after Ctrl-C the stop message is the last thing printed, with the shell prompt on a
clean line of its own (no progress bar redrawn below the message)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")

PROMPT = "READY>"
BAR = "━"


class Terminal:
    """A tmux session running bash with a known prompt, 150 x 40."""

    def __init__(self, cwd):
        self.name = f"fbp-test-{uuid.uuid4().hex[:8]}"
        env = ["-e", "HF_HUB_OFFLINE=1", "-e", "WANDB_MODE=disabled", "-e", "TERM=xterm-256color"]
        env += ["-e", f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "150", "-y", "40", "-c", str(cwd), *env,
                        "bash --norc --noprofile"], check=True)
        subprocess.run(["tmux", "set-option", "-t", self.name, "history-limit", "5000"], check=True)

    def type(self, text: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", text], check=True)
        subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)

    def ctrl_c(self) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "C-c"], check=True)

    def screen(self) -> list:
        """The visible screen and its scrollback, one string per terminal line, trailing spaces removed."""
        out = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name], capture_output=True, text=True, check=True).stdout
        lines = [line.rstrip() for line in out.splitlines()]
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
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


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
