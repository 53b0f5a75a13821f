"""Trainer callbacks: live rich progress, one table row per epoch with a save verdict, and a hook for tuning.

They replace the Trainer's tqdm bars and dict printing, and only the main process prints.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from transformers import TrainerCallback

from .labels import CLASSES, SHORT_NAMES

def metric_key(class_name: str) -> str:
    """Name of a class's F1 in the Trainer's metrics (``f1_Concluding_Statement``)."""
    return "f1_" + class_name.replace(" ", "_")


def epoch_records(log_history: List[Dict]) -> List[Dict]:
    """Per-epoch records (loss, F1, per-class F1, saved) from the Trainer's log history, which survives resuming."""
    records, best, losses = [], None, []
    for entry in log_history:
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_f1" in entry:
            f1 = entry["eval_f1"]
            selection = entry.get("eval_selection", f1)  # what the Trainer compares (F1, ties broken by loss)
            saved = best is None or selection > best
            best = selection if saved else best
            records.append(
                {
                    "epoch": int(round(entry["epoch"])),
                    "loss": sum(losses) / len(losses) if losses else None,
                    "eval_loss": entry.get("eval_loss"),
                    "f1": f1,
                    "per_class": {name: entry.get(f"eval_{metric_key(name)}") for name in CLASSES},
                    "saved": saved,
                    "seconds": entry.get("eval_epoch_seconds"),
                }
            )
            losses = []
    return records


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


class EpochReportCallback(TrainerCallback):
    """After each evaluation: one table row (epoch, loss, F1, per-class F1) and a plain save verdict."""

    def __init__(self, console: Console, fold: int, epoch_callback: Optional[Callable[[int, int, float], None]] = None):
        self.console = console
        self.fold = fold
        self.epoch_callback = epoch_callback

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.console.print(_row_table(show_header=True))
            for record in epoch_records(state.log_history):  # epochs restored from a resumed checkpoint
                self._print_row(record, verdict="[dim]done before resuming[/]")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_f1" not in metrics:
            return
        # The Trainer logs the metrics before this call (and decides what to save after it, by the same rule
        # that ``epoch_records`` replays), so the log holds this epoch's numbers.
        logged = state.log_history and "eval_f1" in state.log_history[-1]
        records = epoch_records(state.log_history if logged else state.log_history + [{**metrics, "epoch": state.epoch}])
        record, f1 = records[-1], metrics["eval_f1"]
        previous_best = next((r for r in reversed(records[:-1]) if r["saved"]), None)
        if previous_best is None:
            verdict = f"[green]F1 {f1:.3f}: first epoch, saved[/]"
        elif record["saved"] and f1 > previous_best["f1"]:
            verdict = f"[green]F1 {f1:.3f} > best {previous_best['f1']:.3f}: saved[/]"
        elif record["saved"]:
            verdict = f"[green]F1 {f1:.3f} = best, lower loss: saved[/]"
        else:
            verdict = f"[dim]not saved: best {previous_best['f1']:.3f} at epoch {previous_best['epoch']}[/]"
        if state.is_world_process_zero:
            self._print_row(record, verdict)
        if self.epoch_callback is not None:
            self.epoch_callback(self.fold, record["epoch"], f1)

    def _print_row(self, record: Dict, verdict: str) -> None:
        table = _row_table(show_header=False)
        loss = f"{record['loss']:.4f}" if record["loss"] is not None else "-"
        per_class = [f"{record['per_class'][name]:.3f}" if record["per_class"][name] is not None else "-" for name in CLASSES]
        table.add_row(str(record["epoch"]), loss, f"{record['f1']:.3f}", *per_class, verdict)
        self.console.print(table)


class RichProgressCallback(TrainerCallback):
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
