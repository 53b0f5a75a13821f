"""The whole-run time estimate: every fold and epoch counted, evaluation timed, and a run too long for a CPU said once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def test_whole_run_estimate_counts_every_fold_and_epoch_with_evaluation():
    from fbp.training.eta import RunClock

    now = [0.0]
    clock = RunClock(folds=[0, 1, 2], epochs=2, finished_folds=[0], now=lambda: now[0])
    assert clock.epochs_total == 6 and clock.epochs_done == 2  # a finished fold counts as done
    clock.fold_begin(1, steps_per_epoch=10, eval_batches=4, windows_per_step=4, windows_per_eval_batch=12)
    assert clock.estimate().remaining is None  # nothing timed yet
    for _ in range(11):
        now[0] += 1.0
        clock.step()
    # 1 s a step; an evaluation batch guessed at a third of a step per window (12 windows vs 4): 1 s
    remaining = clock.estimate().remaining
    assert remaining == pytest.approx(4 + 3 * (10 + 4))  # this epoch's evaluation, then 3 more epochs
    clock.evaluation_begin()
    now[0] += 8.0  # evaluation measured: 2 s a batch
    clock.evaluation_end()
    clock.epoch_end()
    assert clock.estimate().epochs_done == 3
    assert clock.estimate().remaining == pytest.approx(3 * (10 + 8))
    assert clock.estimate().elapsed == pytest.approx(19.0)


def test_a_very_long_run_on_a_cpu_says_so_once_with_the_way_out():
    import io

    from rich.console import Console

    from fbp.cli.reporting import ConsoleTrainingReporter
    from fbp.training.eta import RunClock
    from fbp.training.loop import RunPlan

    out = io.StringIO()
    reporter = ConsoleTrainingReporter(Console(file=out, width=200))
    reporter.run_begin(Path("runs/big"), RunPlan(folds=[0, 1, 2, 3, 4], epochs=20, finished=[], device="cpu"))
    assert "run directory: runs/big" in out.getvalue()
    now = [0.0]
    reporter.clock = RunClock([0, 1, 2, 3, 4], 20, now=lambda: now[0])
    reporter.clock.fold_begin(0, steps_per_epoch=2000, eval_batches=100)
    for _ in range(4):
        now[0] += 2.0  # 2 s a step: 5 folds x 20 epochs x 2000 steps is days
        reporter.clock.step()
        reporter.steps_timed()
    note = " ".join(out.getvalue().split())
    assert note.count("note:") == 1 and "on this CPU" in note
    for way_out in ("--max-essays", "--fold 0", "--epochs", "GPU"):
        assert way_out in note, note
    assert re.search(r"about [\d.]+ days", note), note
