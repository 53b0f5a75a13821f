"""Trainer callbacks of the core: per-epoch records from the Trainer's log, and the hook that reports each
epoch to a :class:`~fbp.training.loop.TrainingReporter` and to an ``epoch_callback`` (``fbp tune`` prunes with it).

Nothing here prints; the command line's reporter (``fbp/cli/reporting.py``) turns the reports into tables
and progress bars.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from transformers import TrainerCallback

from ..io.run_record import EpochRecord
from ..labels import CLASSES
from . import EpochCallback
from .best_epoch import SELECTION_METRIC, improves, metric_key



def epoch_records(log_history: List[Dict]) -> List[EpochRecord]:
    """Per-epoch records (loss, F1, per-class F1, saved) from the Trainer's log history, which survives resuming."""
    records: List[EpochRecord] = []
    best, losses, last_step = None, [], 0
    for entry in log_history:
        if "loss" in entry:
            # each logged loss is the mean over the optimizer steps since the last one: weigh it by them, so the
            # epoch's loss is its steps' mean whatever the logging interval (the last interval is often shorter)
            step = int(entry.get("step", last_step + 1))
            losses.append((entry["loss"], max(step - last_step, 1)))
            last_step = step
        if "eval_f1" in entry:
            f1 = entry["eval_f1"]
            score = entry.get(f"eval_{SELECTION_METRIC}", f1)
            saved = improves(score, best)
            best = score if saved else best
            records.append(
                EpochRecord(
                    epoch=int(round(entry["epoch"])),
                    loss=sum(loss * steps for loss, steps in losses) / sum(steps for _, steps in losses) if losses else None,
                    eval_loss=entry.get("eval_loss"),
                    f1=f1,
                    per_class={name: entry.get(f"eval_{metric_key(name)}") for name in CLASSES},
                    saved=saved,
                    seconds=entry.get("eval_epoch_seconds"),
                )
            )
            losses = []
    return records


def records_with(state, metrics: Dict) -> List[EpochRecord]:
    """The epoch records including the evaluation whose ``metrics`` just came (logged already or not)."""
    logged = state.log_history and "eval_f1" in state.log_history[-1]
    return epoch_records(state.log_history if logged else state.log_history + [{**metrics, "epoch": state.epoch}])


class EpochHook(TrainerCallback):
    """After each evaluation: the epoch's record to the reporter (main process) and to ``epoch_callback``."""

    def __init__(self, reporter, fold: int, epoch_callback: Optional[EpochCallback] = None):
        self.reporter = reporter
        self.fold = fold
        self.epoch_callback = epoch_callback

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.reporter.epochs_begin(self.fold, epoch_records(state.log_history))  # restored from a resumed checkpoint

    def on_epoch_end(self, args, state, control, **kwargs):
        control.should_log = True  # log the epoch's last steps before its evaluation: its loss covers all its steps
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_f1" not in metrics:
            return
        # The Trainer logs the metrics before this call (and decides what to save after it, by the same rule).
        records = records_with(state, metrics)
        previous_best = next((r for r in reversed(records[:-1]) if r.saved), None)
        if state.is_world_process_zero:
            self.reporter.epoch_end(self.fold, records[-1], previous_best)
        if self.epoch_callback is not None:
            self.epoch_callback(self.fold, records[-1].epoch, metrics["eval_f1"])
