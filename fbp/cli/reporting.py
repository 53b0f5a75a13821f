"""Everything the command line shows while the core works: the training reporter (a rule per fold, one table
row per epoch with a save verdict, step progress bars, the run's summary table) and prediction progress.

The core takes these as plain objects and callbacks (:class:`fbp.training.loop.TrainingReporter`, the
``on_progress`` of :func:`fbp.word_probs.predict_word_probs`); only the main process reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from rich.console import Console
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


def print_run_summary(summary: "RunRecord", console: Console) -> None:  # noqa: F821
    """The run's folds (best epoch, F1, time) and CV F1, as ``fbp train`` ends."""
    summary = summary.to_dict()
    table = Table(title=f"run {summary['name']}: CV F1 {summary['cv_f1']:.4f}" if summary.get("cv_f1") is not None else f"run {summary['name']}")
    table.add_column("fold", justify="right")
    table.add_column("best epoch", justify="right")
    table.add_column("best F1", justify="right")
    table.add_column("minutes", justify="right")
    for fold in summary["folds"]:
        table.add_row(str(fold["fold"]), str(fold["best_epoch"]), f"{fold['best_f1']:.4f}", f"{fold['seconds'] / 60:.1f}")
    console.print(table)
    if summary.get("cv_per_class"):
        console.print("  ".join(f"{name} [bold]{f1:.3f}[/]" for name, f1 in summary["cv_per_class"].items()))
    if summary.get("cv_f1_tuned") is not None:
        console.print(f"with decoding thresholds tuned out of fold: CV F1 [bold]{summary['cv_f1_tuned']:.4f}[/] (cross-fitted); "
                      "the tuned thresholds are saved for fbp infer")

def epoch_verdict(record, previous_best) -> str:
    """Why an epoch was kept or not, in words."""
    if previous_best is None:
        return f"[green]F1 {record.f1:.3f}: first epoch, saved[/]"
    if record.saved and record.f1 > previous_best.f1:
        return f"[green]F1 {record.f1:.3f} > best {previous_best.f1:.3f}: saved[/]"
    if record.saved:
        return f"[green]F1 {record.f1:.3f} = best, lower loss: saved[/]"
    return f"[dim]not saved: best {previous_best.f1:.3f} at epoch {previous_best.epoch}[/]"


class ConsoleTrainingReporter(TrainingReporter):
    """``fbp train``'s display: a rule per fold, progress bars, one table row per epoch, the run summary."""

    def __init__(self, console: Console, notes: Optional[Console] = None):
        self.console = console
        self.notes = notes or console

    def fold_skipped(self, fold) -> None:
        self.console.print(f"[dim]fold {fold.fold}: finished before (best F1 {fold.best_f1:.4f} at epoch {fold.best_epoch}), skipped[/]")

    def fold_begin(self, fold: int, train_essays: int, train_windows: int, val_essays: int, val_windows: int) -> None:
        self.console.print(Rule(f"fold {fold}: {train_essays} training essays ({train_windows} windows), "
                                f"{val_essays} validation essays ({val_windows} windows)"))

    def fold_resumed(self, fold: int, checkpoint: str) -> None:
        self.console.print(f"[yellow]resuming fold {fold} from {checkpoint}[/]")

    def epochs_begin(self, fold: int, restored) -> None:
        self.console.print(_row_table(show_header=True))
        for record in restored:
            self._print_row(record, "[dim]done before resuming[/]")

    def epoch_end(self, fold: int, record, previous_best) -> None:
        self._print_row(record, epoch_verdict(record, previous_best))

    def fold_end(self, fold, checkpoint: Path) -> None:
        self.console.print(f"[green]fold {fold.fold}: kept epoch {fold.best_epoch} (F1 {fold.best_f1:.4f}, the best of {len(fold.epochs)}) in {checkpoint}[/]")

    def run_end(self, summary) -> None:
        print_run_summary(summary, self.console)

    def note(self, message: str) -> None:
        self.notes.print(f"[dim]{message}[/]", soft_wrap=True, highlight=False)

    def trainer_callbacks(self, fold: int) -> List:
        return [_rich_progress_callback(self.console, f"fold {fold}")]

    def _print_row(self, record, verdict: str) -> None:
        table = _row_table(show_header=False)
        loss = f"{record.loss:.4f}" if record.loss is not None else "-"
        per_class = [f"{record.per_class[name]:.3f}" if record.per_class.get(name) is not None else "-" for name in CLASSES]
        table.add_row(str(record.epoch), loss, f"{record.f1:.3f}", *per_class, verdict)
        self.console.print(table)


def _rich_progress_callback(console: Console, label: str):
    """A Trainer callback with progress bars for the steps of each epoch and for evaluation."""
    from transformers import TrainerCallback

    return type("RichProgressCallback", (_RichProgress, TrainerCallback), {})(console, label)


class _RichProgress:
    """Progress bars for the steps of each epoch (live loss, learning rate, speed) and for evaluation."""

    def __init__(self, console: Console, label: str):
        self.console = console
        self.label = label
        self.progress: Optional[Progress] = None
        self.train_task = self.eval_task = None
        self.last_logs: Dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.progress = Progress(
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=self.console,
            transient=True,
        )
        self.progress.start()

    def _steps_per_epoch(self, state) -> int:
        return max(1, state.max_steps // max(1, int(round(state.num_train_epochs))))

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
        if self.progress is not None and self.train_task is not None:
            self.progress.advance(self.train_task)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or self.train_task is None or not logs or "loss" not in logs:
            return
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(self.train_task)]
        speed = f"{task.speed * args.train_batch_size * args.gradient_accumulation_steps:.1f} windows/s" if task.speed else ""
        self.progress.update(self.train_task, info=f"loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0):.2e}  {speed}")

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.progress is None:
            return
        if self.eval_task is None:
            self.eval_task = self.progress.add_task("evaluating", total=len(eval_dataloader) if eval_dataloader is not None else None, info="")
        self.progress.advance(self.eval_task)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.progress is not None and self.eval_task is not None:
            self.progress.remove_task(self.eval_task)
            self.eval_task = None

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.train_task = None


# --- prediction ----------------------------------------------------------------------------------------------


class EssaysPerSecond(ProgressColumn):
    """A rich progress column showing essays per second (rich's own speed column assumes bytes and needs many updates)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        speed = task.completed / elapsed if elapsed else None
        return Text(f"{speed:.1f} essays/s" if speed else "- essays/s", style="progress.data.speed")


class PredictionProgress:
    """``on_checkpoint`` for :func:`fbp.predict.predict_directory`: a line per checkpoint (on ``notes``) and a bar
    counting essays per second while it predicts. Use as a context manager, so the last bar is closed."""

    def __init__(self, console: Console, notes: Console, total: Optional[int]):
        self.console, self.notes, self.total = console, notes, total
        self.bar: Optional[Progress] = None

    def __call__(self, checkpoint: Path, meta) -> Callable[[float], None]:
        self.close()
        self.notes.print(f"[bold]{checkpoint}[/] (windows of {meta.max_length}, stride {meta.stride})")
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
        self.console.print(f"study [bold]{study_name}[/] in {storage_url}: {finished} of {n_trials} trials finished"
                           + (f"; interrupted trial(s) {', '.join(map(str, requeued))} queued again" if requeued else ""))

    def trial_end(self, study, trial) -> None:
        from optuna.trial import TrialState

        values = ", ".join(f"{key.rpartition('.')[2]}={_format_value(value)}" for key, value in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            self.console.print(f"[bold]trial {trial.number}[/]: CV F1 [bold]{trial.value:.4f}[/] ({values}); "
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
        self.console.print(f"best config (trial {result.best_trial}, CV F1 [bold]{result.best_value:.4f}[/]) written to [bold]{path}[/]; "
                           f"train it with `fbp train {path}`")

    def training_reporter(self) -> TrainingReporter:
        return self.training


def best_trials_table(trials: Sequence, study_name: str, counts: Dict[str, int]) -> Table:
    """The best trials, best first: number, CV F1, per-class F1 summary and the sampled values."""
    keys = list(dict.fromkeys(key for trial in trials for key in trial.params))
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    table = Table(title=f"study {study_name}: best trials ({summary or 'no trials'})")
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
