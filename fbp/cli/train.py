"""``fbp train``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

import typer

from ._app import ConfigArg, DataOpt, EpochsOpt, FoldsOpt, MaxEssaysOpt, SetOpt, WandbOpt, app, console, err_console, training_options


def default_run_dir(config, config_path: Optional[Path]) -> Path:
    """``runs/<config>-<hash of the settings>``: the same command resumes the same run, another config gets its own."""
    from ..io.run_dir import run_settings

    settings = run_settings(config.model_dump(mode="json"))
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return Path("runs") / f"{config_path.stem if config_path else 'default'}-{digest}"


@app.command("train")
def train_command(
    config_path: Optional[Path] = ConfigArg,
    data: Optional[Path] = DataOpt,
    folds: Optional[int] = FoldsOpt,
    epochs: Optional[int] = EpochsOpt,
    fold: Optional[List[int]] = typer.Option(None, "--fold", "-f", help="Train only this fold (repeatable).", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="minilm (packaged), a hub name or a local path.", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (default: runs/CONFIG-HASH, a hash of the settings, so the same command resumes the same run).", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (wandb group, compare tables).", show_default=False),
    max_essays: Optional[int] = MaxEssaysOpt,
    wandb: Optional[str] = WandbOpt,
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """Train every fold (or --fold K), keep the best epoch of each fold by competition F1, write the run directory.

    Re-running the same command resumes: finished folds are skipped, an unfinished fold continues from its last finished epoch. Works unchanged under `torchrun --nproc_per_node N -m fbp train ...` or `accelerate launch -m fbp train ...`.
    """
    from ..config import command_overrides, load_config
    from ..training.loop import train_run
    from .reporting import ConsoleTrainingReporter

    options = {**training_options(data, folds, epochs, max_essays, wandb), "data.train_folds": fold or None, "model.name": model, "name": name}
    config = load_config(config_path, command_overrides(options, sets))
    run_dir = output or default_run_dir(config, config_path)
    console.print(f"run directory: [bold]{run_dir}[/]")
    try:
        train_run(config, run_dir, reporter=ConsoleTrainingReporter(console, err_console))
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped: finished folds and epochs are kept in {run_dir}; run the same command again to resume[/]")
        raise
