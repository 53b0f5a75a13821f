"""``fbp train``'s live display in a terminal: progress bars for the steps of each epoch (loss, learning rate,
speed), evaluation, and the whole run (every fold and epoch: elapsed, time left).

Laid out for the terminal's width, so that no bar line is wider than the terminal (a wrapped line would throw the
live display's redraws off, overwriting rows above it or leaving stale lines): the bar shrinks first, then the
speed is left out. A log or a pipe gets no live display (a line per epoch instead, from the reporter).
"""

from __future__ import annotations

from typing import Dict, Optional

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column
from rich.text import Text

from .words import clock_time, duration

DESCRIPTION_WIDTH = 19  # "fold 10 epoch 12/20"
COUNT_WIDTH = 9  # "1234/1234"
TIME_WIDTH = 7  # "0:12:04"
INFO_WIDTH = 22  # "loss 1.2345 lr 2.0e-04", "about 1 h 25 min left"
SPEED_WIDTH = 18  # "  12.3 windows/s"


def layout(width: int) -> tuple:
    """(bar width, whether the speed is shown) for a terminal ``width`` columns wide."""
    fixed = DESCRIPTION_WIDTH + COUNT_WIDTH + 2 * TIME_WIDTH + INFO_WIDTH + 5  # five one-space gaps
    room = width - 1 - fixed  # (the last column of a terminal line is left free)
    show_speed = room - SPEED_WIDTH >= 20
    return max(5, min(40, room - (SPEED_WIDTH if show_speed else 0))), show_speed


def live_training_callback(reporter, fold: int):
    """A Trainer callback with progress bars for the steps of each epoch, evaluation and the whole run."""
    from transformers import TrainerCallback

    return type("LiveTrainingCallback", (LiveTrainingDisplay, TrainerCallback), {})(reporter, fold)


class _RunTime(ProgressColumn):
    """Elapsed and remaining time of a task; the whole run's come from its clock (in the task's fields)."""

    def __init__(self, remaining: bool):
        super().__init__(table_column=Column(no_wrap=True, justify="right", min_width=TIME_WIDTH))
        self.column = TimeRemainingColumn() if remaining else TimeElapsedColumn()
        self.remaining = remaining

    def render(self, task: Task) -> Text:
        if "run" not in task.fields:
            return self.column.render(task)
        estimate = task.fields["run"]
        if self.remaining:
            text = clock_time(estimate.remaining) if estimate.remaining is not None else "-:--:--"
            return Text(text, style="progress.remaining")
        return Text(clock_time(estimate.elapsed), style="progress.elapsed")


class LiveTrainingDisplay:
    """Progress bars for the steps of each epoch (live loss, learning rate, speed), evaluation, and the whole run
    (all folds x epochs: elapsed, time left). Feeds the reporter's :class:`fbp.training.eta.RunClock`."""

    def __init__(self, reporter, fold: int):
        self.reporter = reporter
        self.console = reporter.console
        self.fold = fold
        self.label = f"fold {fold}"
        self.clock = reporter.clock
        self.progress: Optional[Progress] = None
        self.train_task = self.run_task = None
        self.evaluating = False
        self.last_logs: Dict[str, float] = {}
        self.show_speed = True

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.clock is not None:
            steps = self._steps_per_epoch(state)
            eval_batch = max(1, args.eval_batch_size)
            self.clock.fold_begin(self.fold, steps, -(-self.reporter.val_windows // eval_batch), epochs_done=state.global_step // steps,
                                  windows_per_step=args.train_batch_size * args.gradient_accumulation_steps, windows_per_eval_batch=eval_batch)
        bar_width, self.show_speed = layout(self.console.width)
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}", table_column=Column(no_wrap=True, min_width=DESCRIPTION_WIDTH)),
            BarColumn(bar_width=bar_width),
            MofNCompleteColumn(table_column=Column(no_wrap=True, justify="right", min_width=COUNT_WIDTH)),
            _RunTime(remaining=False),
            _RunTime(remaining=True),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis")),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # a log or a pipe gets a line per epoch instead (epoch_end)
        )
        # Every row exists from the start and is only updated: a live display whose height changes while it is
        # redrawn (a row added or removed) can lose count of its lines and overwrite the rows printed above it.
        if self.clock is not None:
            self.run_task = self.progress.add_task("whole run, epochs", total=self.clock.epochs_total, info="", run=self.clock.estimate())
            self._update_run()
        self.train_task = self.progress.add_task(f"{self.label} epoch", total=None, info="")
        self.evaluating = False
        self.reporter.progress = self
        self.progress.start()

    def _steps_per_epoch(self, state) -> int:
        return max(1, state.max_steps // max(1, int(round(state.num_train_epochs))))

    def _update_run(self) -> None:
        if self.progress is None or self.run_task is None:
            return
        estimate = self.clock.estimate()
        within = min(1.0, self.clock.steps_in_epoch / max(1, self.clock.steps_per_epoch))
        left = f"about {duration(estimate.remaining)} left" if estimate.remaining is not None else "timing the first steps"
        self.progress.update(self.run_task, completed=estimate.epochs_done + within, run=estimate, info=left)

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        epoch = int(state.epoch or 0) + 1
        done = state.global_step - (epoch - 1) * self._steps_per_epoch(state)
        self.evaluating = False
        self.progress.reset(self.train_task, total=self._steps_per_epoch(state), completed=max(0, done), info="",
                            description=f"{self.label} epoch {epoch}/{int(state.num_train_epochs)}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        if self.train_task is not None:
            self.progress.advance(self.train_task)
        if self.clock is not None:
            self.clock.step()
            self._update_run()
            self.reporter.steps_timed()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or self.evaluating or not logs or "loss" not in logs:
            return
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(self.train_task)]
        speed = f"  {task.speed * args.train_batch_size * args.gradient_accumulation_steps:.1f} windows/s" if task.speed and self.show_speed else ""
        self.progress.update(self.train_task, info=f"loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.1e}{speed}")

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.progress is not None and self.clock is not None:
            self.clock.evaluation_begin()

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.progress is None:
            return
        if not self.evaluating:  # the epoch's row shows the evaluation that follows it
            self.evaluating = True
            total = len(eval_dataloader) if eval_dataloader is not None else None
            self.progress.reset(self.train_task, total=total, completed=0, info="", description=f"{self.label} evaluating")
        self.progress.advance(self.train_task)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        if self.clock is not None:
            self.clock.evaluation_end()
            self.clock.epoch_end()
            self._update_run()

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.train_task = self.run_task = None
        if self.reporter.progress is self:
            self.reporter.progress = None
