"""``fbp train``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

import typer

from ._app import ConfigArg, SetOpt, WandbOpt, app, console


def default_run_dir(config, config_path: Optional[Path]) -> Path:
    """``runs/<config>-<hash of the settings>``: the same command resumes the same run, another config gets its own."""
    from ..run import run_settings

    settings = run_settings(config.model_dump(mode="json"))
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return Path("runs") / f"{config_path.stem if config_path else 'default'}-{digest}"


@app.command("train")
def train_command(
    config_path: Optional[Path] = ConfigArg,
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="Processed data directory (from `fbp preprocess`).", show_default=False),
    folds: Optional[int] = typer.Option(None, "--folds", help="Number of folds (re-folds when it differs from preprocess).", show_default=False),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Epochs per fold.", show_default=False),
    fold: Optional[List[int]] = typer.Option(None, "--fold", "-f", help="Train only this fold (repeatable).", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="minilm (packaged), a hub name or a local path.", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (default: runs/CONFIG-HASH, a hash of the settings, so the same command resumes the same run).", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (wandb group, compare tables).", show_default=False),
    max_essays: Optional[int] = typer.Option(None, "--max-essays", help="Train on a fixed random subset of this many essays.", show_default=False),
    wandb: Optional[str] = WandbOpt,
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """Train every fold (or --fold K), keep the best epoch of each fold by competition F1, write the run directory.

    Re-running the same command resumes: finished folds are skipped, an unfinished fold continues from its last finished epoch. Works unchanged under `torchrun --nproc_per_node N -m fbp train ...` or `accelerate launch -m fbp train ...`.
    """
    from ..config import command_overrides, load_config
    from ..train import train_run

    options = {
        "data.processed_dir": str(data) if data else None, "data.folds": folds, "data.train_folds": fold or None,
        "data.max_essays": max_essays, "training.epochs": epochs, "model.name": model, "name": name, "tracking.wandb": wandb,
    }
    config = load_config(config_path, command_overrides(options, sets))
    run_dir = output or default_run_dir(config, config_path)
    console.print(f"run directory: [bold]{run_dir}[/]")
    try:
        train_run(config, run_dir, console=console)
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped: finished folds and epochs are kept in {run_dir}; run the same command again to resume[/]")
        raise
