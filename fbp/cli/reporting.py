"""Everything the command line shows while the core works: the training reporter (a rule per fold, one table
row per epoch with a save verdict, step progress bars, the run's summary table) and prediction progress.

The core takes these as plain objects and callbacks (:class:`fbp.training.loop.TrainingReporter`, the
``on_progress`` of :func:`fbp.word_probs.predict_word_probs`); only the main process reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from ..labels import CLASSES, SHORT_NAMES
from ..training.loop import TrainingReporter


# --- training ------------------------------------------------------------------------------------------------

def _row_table(show_header: bool) -> Table:
    # Fixed widths so that rows printed one per epoch line up under the header printed at the start of a fold.
    table = Table(show_header=show_header, show_edge=False, box=None, pad_edge=False, header_style="bold")
    table.add_column("epoch", justify="right", width=5, no_wrap=True)
    table.add_column("loss", justify="right", width=6, no_wrap=True)
    table.add_column("F1", justify="right", width=5, style="bold", no_wrap=True)
    for name in CLASSES:
        table.add_column(SHORT_NAMES[name], justify="right", width=max(5, len(SHORT_NAMES[name])), no_wrap=True)
    table.add_column("verdict", min_width=34, no_wrap=True)
    return table


# What each F1 on screen is, in a few words (fbp train, fbp compare, fbp evaluate say the same).
F1_EPOCH = "competition F1 on the fold's validation essays, configured decoding thresholds"
F1_CONFIGURED = "out-of-fold, configured thresholds"
F1_TUNED = "out-of-fold, thresholds tuned on the other folds, cross-fitted"
F1_LEARNED = "out-of-fold, learned decoding, cross-fitted"
# A whole run this long on a CPU gets one note with the ways to a first result sooner.
LONG_RUN_ON_CPU_SECONDS = 2 * 3600


def figures(summary: dict) -> List[tuple]:
    """The run's CV F1 figures present in ``run.json``, as (key, value, what it is)."""
    return [(key, summary.get(key), what) for key, what in
            (("cv_f1", F1_CONFIGURED), ("cv_f1_tuned", F1_TUNED), ("cv_f1_learned", F1_LEARNED)) if summary.get(key) is not None]


def figure_to_quote(summary: dict) -> Optional[tuple]:
    """The honest figure for what ``fbp infer`` will do with the run: its learned decoder's when the run uses it
    (``decoder: learned``), else the tuned thresholds' (cross-fitted), else the configured thresholds'."""
    found = {key: (key, value, what) for key, value, what in figures(summary)}
    if summary.get("decoder") == "learned" and "cv_f1_learned" in found:
        return found["cv_f1_learned"]
    return found.get("cv_f1_tuned") or found.get("cv_f1")


def print_run_summary(summary: "RunRecord", console: Console) -> None:  # noqa: F821
    """The run's folds (kept epoch, validation F1, time) and its CV F1 figures, naming the one to quote, as ``fbp train`` ends."""
    summary = summary.to_dict()
    found = figures(summary)
    quote = figure_to_quote(summary)
    table = Table(title=f"run {summary['name']}", title_justify="left")
    table.add_column("fold", justify="right")
    table.add_column("kept epoch", justify="right")
    table.add_column("validation F1", justify="right")
    table.add_column("minutes", justify="right")
    for fold in summary["folds"]:
        table.add_row(str(fold["fold"]), str(fold["best_epoch"]), f"{fold['best_f1']:.4f}", f"{fold['seconds'] / 60:.1f}")
    console.print(table)
    console.print("[dim]validation F1: the kept epoch's F1 on the fold's validation essays, configured thresholds[/]", highlight=False)
    for key, value, what in found:
        marker = "  [bold green]<- the figure to quote[/]" if (key, value, what) == quote else ""
        console.print(f"CV F1 ({what}): [bold]{value:.4f}[/] [dim]({key})[/]{marker}", highlight=False)
    per_class = {"cv_f1_tuned": summary.get("cv_per_class_tuned"), "cv_f1_learned": summary.get("cv_per_class_learned")}.get(quote[0]) if quote else None
    per_class = per_class or summary.get("cv_per_class")
    if per_class and quote:
        console.print("  ".join(f"{name} [bold]{f1:.3f}[/]" for name, f1 in per_class.items() if f1 is not None)
                      + f" [dim](per class, {quote[2] if quote[0] in ('cv_f1_tuned', 'cv_f1_learned') else F1_CONFIGURED})[/]", highlight=False)
    if summary.get("cv_f1_learned") is not None:
        thresholds = summary.get("cv_f1_tuned") if summary.get("cv_f1_tuned") is not None else summary.get("cv_f1")
        if summary.get("decoder") == "learned":
            console.print(f"learned decoding {summary['cv_f1_learned']:.4f} beats the thresholds ({thresholds:.4f}) out of fold: "
                          "fbp infer uses it (learned_decoder.json)", highlight=False)
        else:
            console.print(f"learned decoding {summary['cv_f1_learned']:.4f} does not beat the thresholds ({thresholds:.4f}) out of fold: "
                          "the run keeps its thresholds (--decoding learned still tries it)", highlight=False)
    if summary.get("cv_f1_tuned") is not None:
        console.print("[dim]The tuned thresholds are saved in the run's decoding.json for fbp infer. `fbp evaluate` on the run "
                      "decodes the same essays the thresholds were tuned on (in-sample), so its F1 reads higher.[/]", highlight=False)


def epoch_verdict(record, previous_best) -> str:
    """Why an epoch was kept or not, in words."""
    if previous_best is None:
        return f"[green]F1 {record.f1:.3f}: first epoch, saved[/]"
    if record.saved and record.f1 > previous_best.f1:
        return f"[green]F1 {record.f1:.3f} > best {previous_best.f1:.3f}: saved[/]"
    if record.saved:
        return f"[green]F1 {record.f1:.3f} = best, lower loss: saved[/]"
    return f"[dim]not saved: best {previous_best.f1:.3f} at epoch {previous_best.epoch}[/]"


def clock_time(seconds: float) -> str:
    """``3725`` -> ``1:02:05``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def duration(seconds: float) -> str:
    """A rough length in words: ``40 s``, ``12 min``, ``1 h 05 min``, ``13 h``, ``2.5 days``."""
    if seconds < 60:
        return f"{max(1, int(round(seconds)))} s"
    if seconds < 3600:
        return f"{int(round(seconds / 60))} min"
    if seconds < 10 * 3600:
        hours, minutes = divmod(int(round(seconds / 60)), 60)
        return f"{hours} h {minutes:02d} min"
    if seconds < 48 * 3600:
        return f"{int(round(seconds / 3600))} h"
    return f"{seconds / 86400:.1f} days"


def run_progress_line(estimate) -> str:
    """``5/400 epochs done, 0:01:10 elapsed, about 2 h 03 min left`` for the whole run."""
    left = f"about {duration(estimate.remaining)} left" if estimate.remaining is not None else "time left: after the first steps"
    return f"{estimate.epochs_done}/{estimate.epochs_total} epochs done, {clock_time(estimate.elapsed)} elapsed, {left}"


class ConsoleTrainingReporter(TrainingReporter):
    """``fbp train``'s display: a rule per fold, progress bars (the epoch's steps and the whole run), one table row
    per epoch, the run summary. Close it (or use it as a context manager) so that a live display never outlives it."""

    def __init__(self, console: Console, notes: Optional[Console] = None):
        self.console = console
        self.notes = notes or console
        self.clock = None  # fbp.training.eta.RunClock, from run_begin
        self.plan = None
        self.progress: Optional["_RichProgress"] = None
        self.val_windows = 0
        self.long_run_noted = False

    def run_begin(self, run_dir: Path, plan) -> None:
        from ..training.eta import RunClock

        self.plan = plan
        self.clock = RunClock(plan.folds, plan.epochs, plan.finished)
        self.long_run_noted = False
        left = [fold for fold in plan.folds if fold not in plan.finished]
        folds = f"fold{'s' if len(left) != 1 else ''} {', '.join(map(str, left))} to train" if left else "every fold finished"
        self.console.print(f"run directory: [bold]{escape(str(run_dir))}[/] ({folds}, {plan.epochs} epochs each, on {plan.device})", highlight=False)

    def fold_skipped(self, fold) -> None:
        self.console.print(f"[dim]fold {fold.fold}: finished before (kept epoch {fold.best_epoch}, validation F1 {fold.best_f1:.4f}), skipped[/]")

    def fold_begin(self, fold: int, train_essays: int, train_windows: int, val_essays: int, val_windows: int) -> None:
        self.val_windows = val_windows
        self.console.print(Rule(f"fold {fold}: {train_essays} training essays ({train_windows} windows), "
                                f"{val_essays} validation essays ({val_windows} windows)"))

    def fold_resumed(self, fold: int, checkpoint: str) -> None:
        self.console.print(f"[yellow]resuming fold {fold} from {checkpoint}[/]")

    def epochs_begin(self, fold: int, restored) -> None:
        self.console.print(f"[dim]F1: {F1_EPOCH}; the best epoch is kept[/]", highlight=False)
        self.console.print(_row_table(show_header=True))
        for record in restored:
            self._print_row(record, "[dim]done before resuming[/]")

    def epoch_end(self, fold: int, record, previous_best) -> None:
        self._print_row(record, epoch_verdict(record, previous_best))
        if self.clock is not None and not self.console.is_terminal:
            # no live display in a log or a pipe: the whole run's progress after each epoch instead
            self.console.print(f"[dim]run: {run_progress_line(self.clock.estimate())}[/]", highlight=False)

    def fold_end(self, fold, checkpoint: Path) -> None:
        if self.clock is not None:
            self.clock.fold_end()
        self.console.print(f"[green]fold {fold.fold}: kept epoch {fold.best_epoch} (validation F1 {fold.best_f1:.4f}, configured "
                           f"thresholds; the best of {len(fold.epochs)} epochs) in {escape(str(checkpoint))}[/]", highlight=False)

    def run_end(self, summary) -> None:
        self.close()
        print_run_summary(summary, self.console)

    def note(self, message: str) -> None:
        self.notes.print(f"[dim]{escape(message)}[/]", soft_wrap=True, highlight=False)

    def trainer_callbacks(self, fold: int) -> List:
        return [_rich_progress_callback(self, fold)]

    def steps_timed(self) -> None:
        """Once the whole run's time left is known: one note when it is very long on a CPU, with the ways out."""
        if self.long_run_noted or self.clock is None or self.plan is None:
            return
        estimate = self.clock.estimate()
        if estimate.remaining is None:
            return
        self.long_run_noted = True
        if self.plan.device == "cpu" and estimate.remaining > LONG_RUN_ON_CPU_SECONDS:
            self.console.print(
                f"[yellow]note: at this speed the whole run ({len(self.plan.folds)} fold{'s' if len(self.plan.folds) != 1 else ''} x "
                f"{self.plan.epochs} epochs) needs about {duration(estimate.remaining)} more on this CPU. For a first result "
                "sooner: --max-essays 500 (a subset), --fold 0 or --folds 3 (fewer folds), fewer --epochs, or a GPU.[/]",
                highlight=False)

    def close(self) -> None:
        """Stop the live progress display (before anything is printed after an interruption)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self) -> "ConsoleTrainingReporter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _print_row(self, record, verdict: str) -> None:
        table = _row_table(show_header=False)
        loss = f"{record.loss:.4f}" if record.loss is not None else "-"
        per_class = [f"{record.per_class[name]:.3f}" if record.per_class.get(name) is not None else "-" for name in CLASSES]
        table.add_row(str(record.epoch), loss, f"{record.f1:.3f}", *per_class, verdict)
        self.console.print(table)


def _rich_progress_callback(reporter: ConsoleTrainingReporter, fold: int):
    """A Trainer callback with progress bars for the steps of each epoch, evaluation and the whole run."""
    from transformers import TrainerCallback

    return type("RichProgressCallback", (_RichProgress, TrainerCallback), {})(reporter, fold)


class _RunTime(ProgressColumn):
    """Elapsed and remaining time of a task; the whole run's come from its clock (in the task's fields)."""

    def __init__(self, remaining: bool):
        super().__init__()
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


class _RichProgress:
    """Progress bars for the steps of each epoch (live loss, learning rate, speed), evaluation, and the whole run
    (all folds x epochs: elapsed, time left). Feeds the reporter's :class:`fbp.training.eta.RunClock`."""

    def __init__(self, reporter: ConsoleTrainingReporter, fold: int):
        self.reporter = reporter
        self.console = reporter.console
        self.fold = fold
        self.label = f"fold {fold}"
        self.clock = reporter.clock
        self.progress: Optional[Progress] = None
        self.train_task = self.eval_task = self.run_task = None
        self.last_logs: Dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.clock is not None:
            steps = self._steps_per_epoch(state)
            eval_batch = max(1, args.eval_batch_size)
            self.clock.fold_begin(self.fold, steps, -(-self.reporter.val_windows // eval_batch), epochs_done=state.global_step // steps,
                                  windows_per_step=args.train_batch_size * args.gradient_accumulation_steps, windows_per_eval_batch=eval_batch)
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RunTime(remaining=False),
            _RunTime(remaining=True),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # a log or a pipe gets a line per epoch instead (epoch_end)
        )
        if self.clock is not None:
            self.run_task = self.progress.add_task("whole run", total=self.clock.epochs_total, info="", run=self.clock.estimate())
            self._update_run()
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
        self.progress.update(self.run_task, completed=estimate.epochs_done + within, run=estimate, info=f"epochs, {left}")

    def on_epoch_begin(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        epoch = int(state.epoch or 0) + 1
        description = f"{self.label} epoch {epoch}/{int(state.num_train_epochs)}"
        if self.train_task is not None:
            self.progress.remove_task(self.train_task)
        done = state.global_step - (epoch - 1) * self._steps_per_epoch(state)
        self.train_task = self.progress.add_task(description, total=self._steps_per_epoch(state), completed=max(0, done), info="")

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
        if self.progress is None or self.train_task is None or not logs or "loss" not in logs:
            return
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(self.train_task)]
        speed = f"{task.speed * args.train_batch_size * args.gradient_accumulation_steps:.1f} windows/s" if task.speed else ""
        self.progress.update(self.train_task, info=f"loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0):.2e}  {speed}")

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.progress is not None and self.clock is not None:
            self.clock.evaluation_begin()

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.progress is None:
            return
        if self.eval_task is None:
            self.eval_task = self.progress.add_task("evaluating", total=len(eval_dataloader) if eval_dataloader is not None else None, info="")
        self.progress.advance(self.eval_task)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.progress is None:
            return
        if self.eval_task is not None:
            self.progress.remove_task(self.eval_task)
            self.eval_task = None
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


# --- prediction ----------------------------------------------------------------------------------------------


class EssaysPerSecond(ProgressColumn):
    """A rich progress column showing essays per second (rich's own speed column assumes bytes and needs many updates)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        speed = task.completed / elapsed if elapsed else None
        return Text(f"{speed:.1f} essays/s" if speed else "- essays/s", style="progress.data.speed")


class PredictionProgress:
    """``on_checkpoint`` for :func:`fbp.infer.predict_directory`: a line per checkpoint (on ``notes``) and a bar
    counting essays per second while it predicts. Use as a context manager, so the last bar is closed."""

    def __init__(self, console: Console, notes: Console, total: Optional[int]):
        self.console, self.notes, self.total = console, notes, total
        self.bar: Optional[Progress] = None

    def __call__(self, checkpoint: Path, meta) -> Callable[[float], None]:
        self.close()
        self.notes.print(f"[bold]{escape(str(checkpoint))}[/] (windows of {meta.max_length}, stride {meta.stride})")
        columns = [TextColumn("[bold]predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("essays"), TimeElapsedColumn(), EssaysPerSecond()]
        self.bar = Progress(*columns, console=self.console, transient=False)
        task = self.bar.add_task("predict", total=self.total)
        self.bar.start()
        return lambda essays: self.bar.update(task, advance=essays)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "PredictionProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- tuning --------------------------------------------------------------------------------------------------


def _format_value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class ConsoleTuneReporter:
    """``fbp tune``'s display: a line per trial, the best trials as a table, where the best config went.

    (A :class:`fbp.tune.TuneReporter`; each trial's training reports through ``ConsoleTrainingReporter``.)
    """

    def __init__(self, console: Console, training: Optional[TrainingReporter] = None):
        self.console = console
        self.training = training or ConsoleTrainingReporter(console)

    def study_opened(self, study_name: str, storage_url: str, finished: int, n_trials: int, requeued: List[int]) -> None:
        self.console.print(f"study [bold]{escape(str(study_name))}[/] in {escape(str(storage_url))}: {finished} of {n_trials} trials finished"
                           + (f"; interrupted trial(s) {', '.join(map(str, requeued))} queued again" if requeued else ""))

    def trial_end(self, study, trial) -> None:
        from optuna.trial import TrialState

        values = ", ".join(f"{key.rpartition('.')[2]}={_format_value(value)}" for key, value in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            self.console.print(f"[bold]trial {trial.number}[/]: CV F1 [bold]{trial.value:.4f}[/] (out-of-fold, configured thresholds; {values}); "
                               f"best so far {best.value:.4f} (trial {best.number})")
        elif trial.state == TrialState.PRUNED:
            last_step = max(trial.intermediate_values, default=None)
            self.console.print(f"[yellow]trial {trial.number} pruned[/] at step {last_step} ({values})")
        elif "invalid" in trial.user_attrs:
            self.console.print(f"[yellow]trial {trial.number} skipped[/]: {trial.user_attrs['invalid'].splitlines()[-1].strip()}")

    def gave_up(self, invalid_in_a_row: int) -> None:
        self.console.print(f"[red]{invalid_in_a_row} sampled configs in a row were invalid; narrow the search space[/]")

    def study_end(self, result) -> None:
        self.console.print(best_trials_table(result.best_trials, result.study_name, result.trial_counts))
        if result.best_config_path is None:
            self.console.print("[yellow]no trial completed yet, so there is no best config[/]")
            return
        path = result.best_config_path
        self.console.print(f"best config (trial {result.best_trial}, CV F1 [bold]{result.best_value:.4f}[/], out-of-fold, configured thresholds) written to [bold]{escape(str(path))}[/]; "
                           f"train it with `fbp train {path}`")

    def training_reporter(self) -> TrainingReporter:
        return self.training


def best_trials_table(trials: Sequence, study_name: str, counts: Dict[str, int]) -> Table:
    """The best trials, best first: number, CV F1, per-class F1 summary and the sampled values."""
    keys = list(dict.fromkeys(key for trial in trials for key in trial.params))
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    table = Table(title=f"study {study_name}: best trials ({summary or 'no trials'})", caption="CV F1: out-of-fold, configured thresholds")
    table.add_column("trial", justify="right")
    table.add_column("CV F1", justify="right")
    for key in keys:
        table.add_column(key, justify="right", style="cyan", overflow="fold")
    table.add_column("weakest class")
    table.add_column("run directory", overflow="fold")
    for rank, trial in enumerate(trials):
        per_class = {name: trial.user_attrs.get("cv_per_class", {}).get(name) for name in CLASSES}
        scored = {name: f1 for name, f1 in per_class.items() if f1 is not None}
        weakest = min(scored, key=scored.get) if scored else None
        score = f"{trial.value:.4f}"
        table.add_row(
            str(trial.number), f"[bold green]{score}[/]" if rank == 0 else score,
            *[_format_value(trial.params.get(key, "-")) for key in keys],
            f"{weakest} {scored[weakest]:.3f}" if weakest else "-", trial.user_attrs.get("run_dir", "-"),
        )
    return table
