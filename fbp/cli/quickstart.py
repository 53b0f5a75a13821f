"""``fbp quickstart``: the whole lifecycle on the built-in demo corpus, one real command after another."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import typer
from rich.rule import Rule

from ._app import app, console

# Small windows, a small batch and no dropout: many optimizer steps per CPU minute, which is what a
# 6-layer model needs to learn the demo corpus in a few epochs.
DEMO_TRAIN_SETTINGS = ("training.learning_rate=3e-4", "training.batch_size=4", "windows.max_length=256", "windows.stride=64",
                       "model.hidden_dropout=0", "model.attention_dropout=0")


def quickstart_commands(directory: Path, essays: int, folds: int, epochs: int, wandb: str) -> list[list[str]]:
    """The fbp commands the quickstart runs, in order (each as the user would type it)."""
    kaggle, processed, run = directory / "kaggle", directory / "processed", directory / "run"
    train = ["train", "--data", str(processed), "--epochs", str(epochs), "--wandb", wandb, "-o", str(run)]
    for setting in DEMO_TRAIN_SETTINGS:
        train += ["--set", setting]
    return [
        ["demo-data", str(kaggle), "--essays", str(essays), "--seed", "0"],
        ["preprocess", str(kaggle), "-o", str(processed), "--folds", str(folds)],
        train,
        ["evaluate", str(run)],
        ["infer", str(run), "--input", str(kaggle / "test"), "-o", str(directory / "submission.csv"), "--html", str(directory / "html")],
    ]


@app.command("quickstart")
def quickstart_command(
    directory: Path = typer.Argument(Path("quickstart"), help="Where to put the demo corpus, processed data, run and submission."),
    essays: int = typer.Option(120, "--essays", min=10, help="Demo essays to generate."),
    folds: int = typer.Option(2, "--folds", min=2, help="Folds to train."),
    epochs: int = typer.Option(4, "--epochs", min=1, help="Epochs per fold."),
    wandb: str = typer.Option("disabled", "--wandb", help="wandb mode for the demo run (auto, online, offline, disabled)."),
) -> None:
    """Run the whole lifecycle on a generated demo corpus with the packaged MiniLM, offline, on a CPU (a few minutes).

    Generates essays in the Kaggle layout, preprocesses them into folds, trains every fold keeping the best epoch by competition F1, scores the out-of-fold predictions, and writes a submission (and an HTML view) for the demo test essays. Each step is an ordinary fbp command, printed before it runs.
    """
    started = time.monotonic()
    for arguments in quickstart_commands(directory, essays, folds, epochs, wandb):
        console.print(Rule(f"[bold]$ fbp {shlex.join(arguments)}", align="left"))
        app(arguments, standalone_mode=False)
    console.print(Rule())
    console.print(f"done in {(time.monotonic() - started) / 60:.1f} minutes: run in [bold]{directory / 'run'}[/], "
                  f"submission [bold]{directory / 'submission.csv'}[/], predictions to look at in [bold]{directory / 'html'}[/]")
