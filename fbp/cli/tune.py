"""``fbp tune`` (an Optuna search over the config's ``search`` section) and ``fbp sweep-trial`` (one wandb sweep run)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ._app import ConfigArg, DataOpt, EpochsOpt, FoldsOpt, MaxEssaysOpt, SetOpt, WandbOpt, app, console, err_console, training_options


@app.command("tune")
def tune_command(
    config_path: Optional[Path] = ConfigArg,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Tuning directory (study.db, trial_NNN/, best.yaml). \\[default: tune/CONFIG_NAME]", show_default=False),
    trials: int = typer.Option(20, "--trials", "-n", min=1, help="Finished trials (complete or pruned) the study should reach; a resumed study counts its earlier ones."),
    fold: Optional[List[int]] = typer.Option(None, "--fold", "-f", metavar="K", min=0, help="Folds each trial trains (repeatable). \\[default: every fold]", show_default=False),
    folds: Optional[int] = FoldsOpt,
    data: Optional[Path] = DataOpt,
    epochs: Optional[int] = EpochsOpt,
    max_essays: Optional[int] = MaxEssaysOpt,
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", help="Optuna database URL shared by several machines (e.g. postgresql://...). \\[default: TUNE_DIR/study.db]", show_default=False),
    study_name: Optional[str] = typer.Option(None, "--study-name", metavar="NAME", help="Study name in the database. \\[default: the tuning directory's name]", show_default=False),
    wandb_sweep: Optional[Path] = typer.Option(None, "--wandb-sweep", metavar="FILE", help="Write the equivalent wandb sweep config (YAML) and exit without training.", show_default=False),
    wandb: Optional[str] = WandbOpt,
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """Search hyperparameters with Optuna over the config's `search` section; each trial is an `fbp train`.

    The objective is the competition F1 (cv_f1); a trial behind the median of earlier trials at the same fold and epoch is pruned.

    The study lives in TUNE_DIR/study.db: running the same command again resumes it, and an interrupted trial continues where it stopped. At the end: a table of the best trials and TUNE_DIR/best.yaml, a config `fbp train` takes.

    Examples:

    - `fbp tune configs/tune-example.yaml --trials 30 --fold 0`

    - `fbp tune configs/tune-example.yaml --wandb-sweep sweep.yaml` (the same search as a wandb sweep)
    """
    from ..config import command_overrides, load_config
    from ..errors import UsageError
    from ..tune import tune_study, write_wandb_sweep

    tune_dir = output or Path("tune") / (config_path.stem if config_path else "study")
    if config_path is None and (tune_dir / "config.yaml").exists():
        config_path = tune_dir / "config.yaml"  # resuming: the base config the study started with
        console.print(f"resuming with the base config in [bold]{escape(str(config_path))}[/]")
    config = load_config(config_path, command_overrides(training_options(data, folds, epochs, max_essays, wandb), sets))
    name = study_name or config.name or tune_dir.resolve().name
    if wandb_sweep is not None:
        if storage:
            raise UsageError("--wandb-sweep writes a sweep config for wandb; it does not use --storage")
        base_path = write_wandb_sweep(config, wandb_sweep, tune_dir, name)
        console.print(f"wandb sweep written to [bold]{escape(str(wandb_sweep))}[/] (base config: {escape(str(base_path))}); "
                      f"start it with `wandb sweep {wandb_sweep}` and run `wandb agent <sweep id>` on each machine")
        return
    from .reporting import ConsoleTrainingReporter, ConsoleTuneReporter

    training = ConsoleTrainingReporter(console, err_console)
    reporter = ConsoleTuneReporter(console, training)
    try:
        tune_study(config, tune_dir, trials, trial_folds=fold or None, storage=storage, study_name=name, reporter=reporter)
    finally:
        training.close()  # a live progress display never outlives the command (Ctrl-C included)


@app.command("sweep-trial", hidden=True)
def sweep_trial_command(
    config_path: Path = typer.Argument(..., help="Base config written by `fbp tune --wandb-sweep`.", show_default=False),
    assignments: Optional[List[str]] = typer.Argument(None, help="section.key=value pairs chosen by the sweep.", show_default=False),
    output: Path = typer.Option(Path("tune/sweep"), "--output", "-o", help="Directory for the sweep's run directories."),
) -> None:
    """Train one wandb sweep run (what `wandb agent` executes for a sweep written by `fbp tune --wandb-sweep`)."""
    from ..config import load_config, parse_sets
    from ..tune import run_sweep_trial

    run_sweep_trial(load_config(config_path), parse_sets(assignments), output)
