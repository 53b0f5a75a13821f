"""``fbp tune``'s display: a line per trial, the best trials as a table, where the best config went."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ...labels import CLASSES
from ...training.loop import TrainingReporter
from .training import ConsoleTrainingReporter


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
