"""Screens as a user sees them in terminals of 80, 100 and 120 columns (a pseudo-terminal drawn by the pyte
emulator), and as a file or a pipe gets them: names and figures are never cut (no "…"), nothing is broken inside a
word, and the live display leaves nothing behind."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import sys
import termios

import pytest
from rich.console import Console

pyte = pytest.importorskip("pyte", reason="the terminal emulator of the test extras (pip install -e '.[test]')")

from fbp.io.run_dir import EpochRecord, RunDir  # noqa: E402
from fbp.labels import CLASSES  # noqa: E402

WIDTHS = (80, 100, 120)
ELLIPSIS = "…"


def screen_of(command, columns: int, cwd, rows: int = 60, timeout: float = 900) -> list:
    """Run ``command`` to its end in a pseudo-terminal ``columns`` wide; the lines a user then sees (scrollback
    included), trailing spaces removed."""
    screen = pyte.HistoryScreen(columns, rows, history=20000)
    stream = pyte.ByteStream(screen)
    env = {**os.environ, "COLUMNS": str(columns), "LINES": str(rows), "TERM": "xterm-256color", "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.chdir(cwd)
        os.execvpe(command[0], command, env)
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise AssertionError(f"{command} did not finish within {timeout} s")
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child is gone
                break
            if not data:
                break
            stream.feed(data)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, "\n".join(_lines(screen, columns))
    return _lines(screen, columns)


def _lines(screen, columns: int) -> list:
    scrolled = ["".join(line[column].data for column in range(columns)) for line in screen.history.top]
    lines = [line.rstrip() for line in scrolled + list(screen.display)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


# --- fbp compare ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three runs (one uses its learned decoder), with names as long as fbp's default ones, two differing settings."""
    from test_compare import write_run

    root = tmp_path_factory.mktemp("screens") / "runs"
    write_run(root / "minilm-3f2a9c1b", "minilm-3f2a9c1b", 0.61234, learning_rate=5e-5, seconds=600)
    write_run(root / "minilm-lr1e-4-e20", "minilm-lr1e-4-e20", 0.64, learning_rate=1e-4, seconds=4000)
    path = write_run(root / "deberta-v3-large-a1", "deberta-v3-large-a1", 0.70, learning_rate=2e-5, max_length=1024, seconds=9000)
    run = RunDir(path.parent)
    summary = run.read_record()
    summary.cv_f1_tuned, summary.cv_f1_learned, summary.decoder = 0.71, 0.7312, "learned"
    summary.cv_per_class_tuned = dict(summary.cv_per_class)
    summary.cv_per_class_learned = {name: round(f1 + 0.02, 4) for name, f1 in summary.cv_per_class.items()}
    run.write_record(summary)
    return root


RUN_NAMES = ("minilm-3f2a9c1b", "minilm-lr1e-4-e20", "deberta-v3-large-a1")


@pytest.mark.parametrize("columns", WIDTHS)
def test_compare_in_a_terminal_names_every_run_and_cuts_nothing(runs, columns):
    lines = screen_of([sys.executable, "-m", "fbp", "compare", str(runs)], columns, runs.parent)
    text = "\n".join(lines)
    assert ELLIPSIS not in text, text
    for name in RUN_NAMES:
        rows = [line for line in lines if line.startswith(name)]
        # every row of a run starts with its whole name: the scores, and F1 per class beside them or in a table of its own
        assert rows, text
        figures = " ".join(rows)
        assert re.search(r"\d\.\d{4}", figures), text  # its CV F1
        assert len(re.findall(r"\b\d\.\d{3}\b", figures)) >= len(CLASSES), text  # its F1 per class, whole
    # the learned run's figure to quote is marked, and its per-class F1 are those of its learned decoding
    deberta = [line for line in lines if line.startswith("deberta-v3-large-a1")]
    assert "0.7312*" in deberta[0] and "learned" in deberta[0], text
    assert any("0.720" in line for line in deberta), text  # Lead 0.70 + 0.02: the learned decoding's per-class F1
    assert "settings that differ" in text and "learning_rate" in text, text


@pytest.mark.parametrize("columns", (80, 120))
def test_compare_into_a_file_or_pipe_is_never_cut(runs, columns):
    from conftest import run_fbp_process

    completed = run_fbp_process("compare", runs, env={"COLUMNS": str(columns)})
    assert completed.returncode == 0, completed.stderr
    assert ELLIPSIS not in completed.stdout, completed.stdout
    for name in RUN_NAMES:  # one line per run, with every figure
        row = next(line for line in completed.stdout.splitlines() if line.startswith(name))
        assert len(re.findall(r"\b\d\.\d{3,4}\b", row)) >= 1 + len(CLASSES), row
    notes = [line for line in completed.stdout.splitlines() if line.startswith("CV F1:")]
    assert notes and notes[0].rstrip().endswith("(column decoding)."), completed.stdout  # a note is one whole line


# --- fbp train's epoch table ---------------------------------------------------------------------------------

def _epoch(epoch: int, f1: float, saved: bool) -> EpochRecord:
    return EpochRecord(epoch=epoch, loss=1.2345 / epoch, val_loss=1.0, f1=f1, per_class={name: f1 - 0.01 * i for i, name in enumerate(CLASSES)},
                       saved=saved, seconds=10.0)


@pytest.mark.parametrize("columns", WIDTHS)
def test_the_epoch_table_fits_the_terminal_and_cuts_nothing(columns):
    from fbp.cli.reporting import ConsoleTrainingReporter

    console = Console(width=columns, record=True, force_terminal=True, color_system=None)
    reporter = ConsoleTrainingReporter(console)
    reporter.epochs_begin(0, [])
    first, second, third = _epoch(1, 0.598, True), _epoch(2, 0.612, True), _epoch(12, 0.605, False)
    reporter.epoch_end(0, first, None)
    reporter.epoch_end(0, second, first)
    reporter.epoch_end(0, third, second)
    lines = console.export_text().splitlines()
    text = "\n".join(lines)
    assert ELLIPSIS not in text and all(len(line) <= columns for line in lines), text
    assert re.search(r"^epoch\s+loss\s+F1\b", lines[1]), text
    assert "F1 0.612 > best 0.598: saved" in text and "not saved: best 0.612 at epoch 2" in text, text
    assert re.search(r"^\s+12\s+0\.1029\s+0\.605\s", text, re.M), text
    # each class's F1, whole: in a column of its own when there is room, else on a line under the epoch's row
    assert len(re.findall(r"\.\d{3}\b", text)) >= 3 * (1 + len(CLASSES)), text
    if columns < 106:
        assert any(line.strip().startswith("Lead .598 Posit .588 Claim .578 Counter .568") for line in lines), text


def test_a_training_in_an_80_column_terminal(tmp_path, processed_demo, tiny_model_dir):
    """The whole screen of a small training in 80 columns: every fold's header and every epoch's row, nothing cut,
    no line of the live display left behind, the figure to quote last."""
    command = [sys.executable, "-m", "fbp", "train", "--data", str(processed_demo), "--model", str(tiny_model_dir), "--max-essays", "12",
               "--folds", "2", "--epochs", "2", "--set", "windows.max_length=64", "--set", "windows.stride=16", "--wandb", "disabled",
               "-o", str(tmp_path / "run")]
    lines = screen_of(command, 80, tmp_path)
    text = "\n".join(lines)
    assert ELLIPSIS not in text, text
    # the live display is gone, all of it
    assert not any(re.search(r"whole run|evaluating|epoch \d+/\d+", line) for line in lines), text
    for fold in (0, 1):
        start = next(i for i, line in enumerate(lines) if re.search(rf"fold {fold}: \d+ essays to train on", line))
        assert lines[start + 1].startswith("F1: validation essays of the fold"), text
        assert re.match(r"epoch\s+loss\s+F1\s+verdict$", lines[start + 2]), text
        assert re.match(r"\s+1\s+\d\.\d{4}\s+\d\.\d{3}\s+F1 \d\.\d{3}: first epoch, saved$", lines[start + 3]), text
        assert re.match(r"  Lead (\.\d{3}|1\.00|-) .* Concl (\.\d{3}|1\.00|-)$", lines[start + 4]), text
        assert re.match(r"\s+2\s+\d\.\d{4}\s+\d\.\d{3}\s+(F1|not saved)", lines[start + 5]), text
    assert lines[-2:] and re.search(r"The figure to quote: CV F1 \d\.\d{4} \(", " ".join(lines[-2:])), text
    # paths are wrapped as whole words (a 70-character path here), never broken inside
    run_dir = str(tmp_path / "run")
    assert any(run_dir in line for line in lines[:2]), text
    for fold in (0, 1):
        assert any(f"{run_dir}/fold_{fold}" in line for line in lines), text


# --- fbp ensemble --fit-weights ------------------------------------------------------------------------------

def test_ensemble_fit_weights_compares_like_with_like_and_ends_with_the_figure_to_quote(tmp_path, monkeypatch):
    import numpy as np
    from conftest import run_cli
    from test_learned_decoder import _oof_run, synthetic_essays

    from fbp.cli import _app
    from fbp.labels import NUM_LABELS

    probs, truth = synthetic_essays(90)
    rng = np.random.default_rng(1)
    noisy = {essay_id: rows * 0.5 + rng.dirichlet(np.ones(NUM_LABELS), len(rows)).astype(np.float32) * 0.5 for essay_id, rows in probs.items()}
    a, truth_path = _oof_run(tmp_path / "a", probs, truth)
    b, _ = _oof_run(tmp_path / "b", noisy, truth)
    monkeypatch.setattr(_app.console, "width", 80)
    result = run_cli("ensemble", a.path, b.path, "--fit-weights", "--truth", truth_path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert ELLIPSIS not in result.stdout and all(len(line) <= 80 for line in lines), result.stdout
    # every blend row names its decoding and how it was measured
    assert re.search(r"blend, tuned\s+tuned thresholds\s+cross-fitted\s+\d\.\d{4}", result.stdout), result.stdout
    assert re.search(r"blend, learned\s+learned decoding\s+cross-fitted\s+\d\.\d{4}", result.stdout), result.stdout
    text = " ".join(lines)  # (sentences wrap at spaces in 80 columns)
    assert re.search(r"learned decoding \d\.\d{4} (beats|does not beat) the tuned thresholds \d\.\d{4} \(both cross-fitted out of fold\)", text), text
    last = " ".join(lines[-2:])
    assert re.search(r"^The figure to quote for the blend: F1 \d\.\d{4} \((learned decoding|tuned thresholds), cross-fitted", last), last


# --- warnings that are not the user's business ---------------------------------------------------------------

def test_gradient_checkpointing_is_enabled_without_a_deprecation_warning(tiny_model_dir):
    import warnings

    from fbp.config import Config
    from fbp.model import load_model_for_training

    config = Config.model_validate({"model": {"name": str(tiny_model_dir), "gradient_checkpointing": True}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model_for_training(str(tiny_model_dir), config.model)
    assert model.is_activation_checkpointing
    assert not [w for w in caught if "checkpointing" in str(w.message)], [str(w.message) for w in caught]


def test_the_trainers_checkpoint_sorting_remark_stays_off_the_screen():
    """Two epochs of a small model can finish within a second; the Trainer then remarks that mtime "may not be
    reliable" while sorting its checkpoints, and that line broke through the live display of fbp train. Its other
    warnings still show."""
    import logging

    from fbp.quiet import quiet_trainer_bookkeeping

    shown = []
    handler = logging.Handler()
    handler.emit = lambda record: shown.append(record.getMessage())
    logger = logging.getLogger("transformers.trainer_utils")  # the logger sort_checkpoints warns through
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        quiet_trainer_bookkeeping()
        logger.warning("mtime may not be reliable on this filesystem, falling back to numerical ordering")
        logger.warning("a warning the user should see")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert shown == ["a warning the user should see"]
