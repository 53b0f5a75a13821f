"""``fbp train``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ._app import ConfigArg, DataOpt, EpochsOpt, FoldsOpt, MaxEssaysOpt, SetOpt, WandbOpt, app, console, err_console, training_options


def default_run_dir(config, config_path: Optional[Path]) -> Path:
    """``runs/<config>-<hash of the settings>``: the same command resumes the same run, another config gets its own.
    Only settings away from their defaults are hashed, so a setting added to fbp later leaves the name as it was."""
    from ..config import complete_settings, default_settings, flatten_config
    from ..io.run_settings import run_settings

    defaults = default_settings()
    completed = complete_settings(flatten_config(config.model_dump(mode="json")), defaults)
    settings = {key: value for key, value in run_settings(completed).items() if key not in defaults or defaults[key] != value}
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return Path("runs") / f"{config_path.stem if config_path else 'default'}-{digest}"


@app.command("train")
def train_command(
    config_path: Optional[Path] = ConfigArg,
    data: Optional[Path] = DataOpt,
    folds: Optional[int] = FoldsOpt,
    epochs: Optional[int] = EpochsOpt,
    fold: Optional[List[int]] = typer.Option(None, "--fold", "-f", metavar="K", min=0, help="Train only this fold (repeatable). \\[default: every fold]", show_default=False),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="NAME", help="minilm (packaged), a hub name or a local path. \\[default: minilm]", show_default=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="DIR", help="Run directory. \\[default: runs/CONFIG-HASH, a hash of the settings, so the same command resumes the same run]", show_default=False),
    name: Optional[str] = typer.Option(None, "--name", metavar="NAME", help="Run name (wandb group, compare tables). \\[default: the run directory's name]", show_default=False),
    max_essays: Optional[int] = MaxEssaysOpt,
    wandb: Optional[str] = WandbOpt,
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """Train every fold (or --fold K), keep the best epoch of each fold by competition F1, write the run directory.

    Re-running the same command resumes: finished folds are skipped, an unfinished fold continues from its last finished epoch. Follow a run from another terminal with `fbp compare runs`. Works unchanged under `torchrun --nproc_per_node N -m fbp train ...` or `accelerate launch -m fbp train ...`.

    Defaults come from CONFIG (configs/default.yaml without one); a flag overrides its key.

    Examples:

    - `fbp train --folds 5 --epochs 20 -o runs/minilm`

    - `fbp train configs/longformer-large.yaml --fold 0 --set training.learning_rate=2e-5`

    - `fbp train --max-essays 200 --epochs 2 -o runs/quick` (a quick look on a CPU)
    """
    from ..config import command_overrides, load_config

    options = {**training_options(data, folds, epochs, max_essays, wandb), "data.train_folds": fold or None, "model.name": model, "name": name}
    config = load_config(config_path, command_overrides(options, sets))
    check_processed_data(config.data.processed_dir, data, config_path, sets)  # seconds, before torch is imported

    from ..training.loop import train_run
    from .reporting import ConsoleTrainingReporter

    run_dir = output or default_run_dir(config, config_path)
    reporter = ConsoleTrainingReporter(console, err_console)  # says "run directory: ..." once the directory exists
    try:
        train_run(config, run_dir, reporter=reporter)
    except KeyboardInterrupt as interruption:
        reporter.close()  # the live progress display first, so that nothing is drawn below the message
        kept = f"finished folds and epochs are kept in {escape(str(run_dir))}" if run_dir.exists() else "nothing was written yet"
        console.print(f"[yellow]stopped: {kept}; run the same command again to resume[/]", highlight=False,
                      soft_wrap=not console.is_terminal)
        raise typer.Exit(getattr(interruption, "exit_code", 130)) from None
    except Exception as error:  # noqa: BLE001 - a library writing a checkpoint by itself onto a full disk
        from ..errors import FbpError, disk_full_reason

        reason = disk_full_reason(error) if not isinstance(error, FbpError) else None
        if reason is None:
            raise
        raise FbpError(f"cannot write into the run directory {run_dir}: {reason} ({str(error).splitlines()[0][:160]}); "
                       "free some space and run the same command again to resume") from None
    finally:
        reporter.close()


def check_processed_data(processed_dir, data_flag: Optional[Path], config_path: Optional[Path], sets: Optional[List[str]]) -> None:
    """Fail fast, naming where the path came from, when there is no processed dataset to train on."""
    from ..errors import FbpError
    from ..io.processed import is_processed_dir

    directory = Path(processed_dir)
    if is_processed_dir(directory):
        return
    if data_flag is not None:
        where = f"--data {directory}"
    elif any(s.replace(" ", "").startswith("data.processed_dir=") for s in sets or []):
        where = f"--set data.processed_dir={directory}"
    elif config_path is not None:
        where = f"{directory} (data.processed_dir in {config_path})"
    else:
        where = f"{directory} (the default --data)"
    what = "no processed dataset there" if not directory.exists() else "not a processed dataset (no meta.json from `fbp preprocess`)"
    raise FbpError(
        f"{where}: {what}. Make one from the Kaggle download with `fbp preprocess DATA_DIR -o {directory}`; "
        f"without data yet, `fbp demo-data data/demo && fbp preprocess data/demo -o {directory}` makes a demo corpus, "
        "and `fbp quickstart` runs the whole lifecycle on one"
    )
