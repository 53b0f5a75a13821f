"""``fbp train``'s reporter: a rule per fold, one table row per epoch with its save verdict, the live display
(:mod:`.live`) and, at the end, the run's summary (:mod:`.run_summary`).

The epoch table is laid out for the terminal's width: with room for everything (about 106 columns) the F1 of
each class has a column of its own; in a narrower terminal (80 columns) each epoch's row holds the epoch, loss,
F1 and verdict, and the F1 per class follows on an indented line of its own. Names and numbers are never cut.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from ...labels import CLASSES, SHORT_NAMES
from ...training.loop import TrainingReporter
from .run_summary import F1_EPOCH, print_run_summary
from .words import duration, plural, run_progress_line

# A whole run this long on a CPU gets one note with the ways to a first result sooner.
LONG_RUN_ON_CPU_SECONDS = 2 * 3600
VERDICT_WIDTH = 34  # the longest verdict: "F1 0.612 = best, lower loss: saved"
COLUMN_GAP = 2


def _columns(wide: bool) -> List[tuple]:
    """(header, width) of each column of the epoch table."""
    columns = [("epoch", 5), ("loss", 6), ("F1", 5)]
    if wide:
        columns += [(SHORT_NAMES[name], max(5, len(SHORT_NAMES[name]))) for name in CLASSES]
    return columns + [("verdict", VERDICT_WIDTH)]


def wide_table_width() -> int:
    """The width the one-line-per-epoch table (a column per class) needs."""
    columns = _columns(wide=True)
    return sum(width for _, width in columns) + COLUMN_GAP * (len(columns) - 1)


def _row_table(show_header: bool, wide: bool) -> Table:
    # Fixed widths so that rows printed one per epoch line up under the header printed at the start of a fold.
    table = Table(show_header=show_header, show_edge=False, box=None, pad_edge=False, header_style="bold", padding=(0, COLUMN_GAP // 2))
    for header, width in _columns(wide):
        table.add_column(header, justify="left" if header == "verdict" else "right", width=width, no_wrap=True,
                         style="bold" if header == "F1" else None)
    return table


def epoch_verdict(record, previous_best) -> str:
    """Why an epoch was kept or not, in words."""
    if previous_best is None:
        return f"[green]F1 {record.f1:.3f}: first epoch, saved[/]"
    if record.saved and record.f1 > previous_best.f1:
        return f"[green]F1 {record.f1:.3f} > best {previous_best.f1:.3f}: saved[/]"
    if record.saved:
        return f"[green]F1 {record.f1:.3f} = best, lower loss: saved[/]"
    return f"[dim]not saved: best {previous_best.f1:.3f} at epoch {previous_best.epoch}[/]"


def per_class_cells(record) -> List[str]:
    return [f"{record.per_class[name]:.3f}" if record.per_class.get(name) is not None else "-" for name in CLASSES]


class ConsoleTrainingReporter(TrainingReporter):
    """``fbp train``'s display: a rule per fold, progress bars (the epoch's steps and the whole run), one table row
    per epoch, the run summary. Close it (or use it as a context manager) so that a live display never outlives it."""

    def __init__(self, console: Console, notes: Optional[Console] = None):
        self.console = console
        self.notes = notes or console
        self.clock = None  # fbp.training.eta.RunClock, from run_begin
        self.plan = None
        self.progress = None  # the live display of the fold in training (.live.LiveTrainingDisplay)
        self.val_windows = 0
        self.long_run_noted = False

    @property
    def wide(self) -> bool:
        """Whether each class's F1 gets a column of its own (else an indented line under each epoch's row)."""
        return self.console.width >= wide_table_width()

    def run_begin(self, run_dir: Path, plan) -> None:
        from ...training.eta import RunClock

        self.plan = plan
        self.clock = RunClock(plan.folds, plan.epochs, plan.finished)
        self.long_run_noted = False
        left = [fold for fold in plan.folds if fold not in plan.finished]
        folds = f"fold{'s' if len(left) != 1 else ''} {', '.join(map(str, left))} to train" if left else "every fold finished"
        self.console.print(f"run directory: [bold]{escape(str(run_dir))}[/] ({folds}, {plural(plan.epochs, 'epoch')} each, on {plan.device})",
                           highlight=False)

    def fold_skipped(self, fold) -> None:
        self.console.print(f"[dim]fold {fold.fold}: finished before (kept epoch {fold.best_epoch}, validation F1 {fold.best_f1:.4f}), skipped[/]",
                           highlight=False)

    def fold_begin(self, fold: int, train_essays: int, train_windows: int, val_essays: int, val_windows: int) -> None:
        self.val_windows = val_windows
        title = (f"fold {fold}: {plural(train_essays, 'essay')} to train on ({plural(train_windows, 'window')}), "
                 f"{val_essays} to validate ({plural(val_windows, 'window')})")
        if self.console.is_terminal and len(title) + 6 <= self.console.width:
            self.console.print(Rule(title))
        else:  # a rule would cut the title (or, in a log, be as wide as the log)
            if self.console.is_terminal:
                self.console.print(Rule())
            self.console.print(title, highlight=False)

    def fold_resumed(self, fold: int, checkpoint: str) -> None:
        self.console.print(f"[yellow]resuming fold {fold} from {escape(str(checkpoint))}[/]", highlight=False)

    def epochs_begin(self, fold: int, restored) -> None:
        self.console.print(f"[dim]F1: {F1_EPOCH}; the best epoch is kept[/]", highlight=False)
        self.console.print(_row_table(show_header=True, wide=self.wide))
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
                           f"thresholds; the best of {plural(len(fold.epochs), 'epoch')}) in {escape(str(checkpoint))}[/]", highlight=False)

    def run_end(self, summary) -> None:
        self.close()
        print_run_summary(summary, self.console)

    def note(self, message: str) -> None:
        # wrapped at spaces in a terminal (never inside a word); a log gets it on one line
        self.notes.print(f"[dim]{escape(message)}[/]", soft_wrap=not self.notes.is_terminal, highlight=False)

    def trainer_callbacks(self, fold: int) -> List:
        from .live import live_training_callback

        return [live_training_callback(self, fold)]

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
                f"[yellow]note: at this speed the whole run ({plural(len(self.plan.folds), 'fold')} x "
                f"{plural(self.plan.epochs, 'epoch')}) needs about {duration(estimate.remaining)} more on this CPU. For a first result "
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
        wide = self.wide
        table = _row_table(show_header=False, wide=wide)
        loss = f"{record.loss:.4f}" if record.loss is not None else "-"
        per_class = per_class_cells(record)
        table.add_row(str(record.epoch), loss, f"{record.f1:.3f}", *(per_class if wide else []), verdict)
        self.console.print(table)
        if not wide:
            self.console.print(f"[dim]  {compact_per_class(record.per_class)}[/]", highlight=False, no_wrap=True, crop=False)


def compact_f1(value: Optional[float]) -> str:
    """An F1 in 4 characters: ``.912``, ``1.00``, ``-``."""
    if value is None:
        return "-"
    return "1.00" if value >= 0.9995 else f"{value:.3f}"[1:]


def compact_per_class(per_class: dict) -> str:
    """``Lead .912 Posit .881 Claim .700 Counter .000 Rebut .000 Evid .850 Concl .912``: 76 characters, so that it
    fits an 80-column terminal with an indent."""
    return " ".join(f"{SHORT_NAMES[name]} {compact_f1(per_class.get(name))}" for name in CLASSES)
