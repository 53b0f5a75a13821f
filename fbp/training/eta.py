"""The whole run's clock: time elapsed and an estimate of the time left, over every fold and epoch still to train,
evaluation included.

Fed by whoever watches the Trainer (one call per optimizer step, per evaluation and per epoch), it prints
nothing: :meth:`RunClock.estimate` returns the numbers and the command line shows them. The estimate exists
as soon as a few steps have been timed; until an evaluation has been timed, an evaluation batch is guessed
from the step time (a forward pass only, about a third of a training step per window), then measured.
Later folds are assumed to be the size of the current one (stratified folds differ by a few essays).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

# Steps timed before the first estimate: the first step of a fold (model to device, first batch) is never timed.
MIN_TIMED_STEPS = 2
# Forward-only evaluation of one window, as a fraction of a training step's cost per window (forward + backward).
EVAL_COST_PER_WINDOW = 1 / 3


@dataclass(frozen=True)
class RunEstimate:
    """Where the whole run stands: epochs done of all of them, seconds so far, seconds left (None: not timed yet)."""

    epochs_done: int
    epochs_total: int
    elapsed: float
    remaining: Optional[float]

    @property
    def fraction_done(self) -> float:
        return self.epochs_done / self.epochs_total if self.epochs_total else 1.0


class RunClock:
    """Times one invocation of ``fbp train``: the folds it trains, ``epochs`` each (folds finished before count as done)."""

    def __init__(self, folds: Sequence[int], epochs: int, finished_folds: Iterable[int] = (),
                 now: Callable[[], float] = time.monotonic):
        self.now = now
        self.started = now()
        self.epochs = epochs
        finished = set(finished_folds)
        self.epochs_total = len(folds) * epochs
        self.epochs_done = sum(epochs for fold in folds if fold in finished)
        self.folds_left = [fold for fold in folds if fold not in finished]  # the current fold first, once it begins
        self.current_fold: Optional[int] = None
        self.steps_per_epoch = 0
        self.eval_batches = 0
        self.eval_batch_cost = 0.0  # one evaluation batch in training steps, until an evaluation is timed
        self.steps_in_epoch = 0
        self.evaluated_this_epoch = False
        # measurements
        self.train_seconds = 0.0
        self.timed_steps = 0
        self.last_step: Optional[float] = None
        self.eval_started: Optional[float] = None
        self.eval_seconds = 0.0
        self.timed_eval_batches = 0
        self.after_evaluation: Optional[float] = None  # saving the checkpoint and starting the next epoch
        self.between_epochs_seconds = 0.0
        self.timed_between_epochs = 0

    # --- events ------------------------------------------------------------------------------------------------

    def fold_begin(self, fold: int, steps_per_epoch: int, eval_batches: int, epochs_done: int = 0,
                   windows_per_step: int = 1, windows_per_eval_batch: int = 1) -> None:
        """A fold's Trainer starts: its steps per epoch, evaluation batches, and epochs done before a resume."""
        self.current_fold = fold
        if fold in self.folds_left:
            self.folds_left.remove(fold)
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.eval_batches = max(0, eval_batches)
        self.eval_batch_cost = EVAL_COST_PER_WINDOW * windows_per_eval_batch / max(1, windows_per_step)
        self.epochs_done += epochs_done
        self.steps_in_epoch = 0
        self.evaluated_this_epoch = False
        self.last_step = self.after_evaluation = None  # the first step of a fold includes its set-up: not timed

    def step(self) -> None:
        """One optimizer step finished."""
        now = self.now()
        if self.last_step is not None:
            self.train_seconds += now - self.last_step
            self.timed_steps += 1
        elif self.after_evaluation is not None:  # checkpoint saving, the next epoch's start and its first step
            self.between_epochs_seconds += now - self.after_evaluation
            self.timed_between_epochs += 1
        self.after_evaluation = None
        self.last_step = now
        self.steps_in_epoch += 1

    def evaluation_begin(self) -> None:
        self.eval_started = self.now()

    def evaluation_end(self) -> None:
        """The epoch's evaluation finished (prediction, stitching, decoding and scoring)."""
        if self.eval_started is not None:
            self.eval_seconds += self.now() - self.eval_started
            self.timed_eval_batches += max(1, self.eval_batches)
            self.eval_started = None
        self.evaluated_this_epoch = True
        self.last_step = None  # the next step's time includes the checkpoint: timed apart
        self.after_evaluation = self.now()

    def epoch_end(self) -> None:
        self.epochs_done += 1
        self.steps_in_epoch = 0
        self.evaluated_this_epoch = False

    def fold_end(self) -> None:
        self.current_fold = None

    # --- the estimate --------------------------------------------------------------------------------------------

    @property
    def step_seconds(self) -> Optional[float]:
        return self.train_seconds / self.timed_steps if self.timed_steps >= MIN_TIMED_STEPS else None

    def estimate(self) -> RunEstimate:
        return RunEstimate(self.epochs_done, self.epochs_total, self.now() - self.started, self.remaining())

    def remaining(self) -> Optional[float]:
        """Seconds left for every epoch still to train, evaluation included; None until steps have been timed."""
        step = self.step_seconds
        if step is None:
            return None
        if self.epochs_done >= self.epochs_total:
            return 0.0
        eval_batch = self.eval_seconds / self.timed_eval_batches if self.timed_eval_batches else step * self.eval_batch_cost
        between = self.between_epochs_seconds / self.timed_between_epochs - step if self.timed_between_epochs else 0.0
        epoch = self.steps_per_epoch * step + self.eval_batches * eval_batch + max(0.0, between)
        left = 0.0
        if self.current_fold is not None:
            left += max(0, self.steps_per_epoch - self.steps_in_epoch) * step
            if not self.evaluated_this_epoch:
                left += self.eval_batches * eval_batch
            whole_epochs = self.epochs_total - self.epochs_done - 1
        else:
            whole_epochs = self.epochs_total - self.epochs_done
        return left + max(0, whole_epochs) * epoch
