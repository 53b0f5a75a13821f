"""``fbp quickstart``: the whole lifecycle on the built-in demo corpus, one real command after another."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import List, Sequence

import typer
from rich.markup import escape
from rich.rule import Rule

from ._app import WANDB_HELP, app, check_wandb_mode, console

# Small windows, a small batch and no dropout: many optimizer steps per CPU minute, which is what a
# 6-layer model needs to learn the demo corpus in a few epochs.
DEMO_TRAIN_SETTINGS = ("training.learning_rate=3e-4", "training.batch_size=4", "windows.max_length=256", "windows.stride=64",
                       "model.hidden_dropout=0", "model.attention_dropout=0")


def quickstart_commands(directory: Path, essays: int, folds: int, epochs: int, wandb: str) -> list[list[str]]:
    """The fbp commands the quickstart runs, in order (each as the user would type it)."""
    kaggle, processed, run = directory / "kaggle", directory / "processed", quickstart_run_dir(directory)
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


def quickstart_run_dir(directory: Path) -> Path:
    """The quickstart's run: a named run in a folder of runs, as `fbp train -o runs/NAME` makes them."""
    return directory / "runs" / "minilm-demo"


def command_lines(arguments: Sequence[str], width: int) -> List[str]:
    """``$ fbp ...`` whole, as a shell takes it: wrapped before an option (a trailing backslash continues the line)
    when it is wider than ``width``, never cut. Each option stays with its value."""
    words = [shlex.quote(str(argument)) for argument in arguments]
    groups: List[str] = []
    for word in words:
        if groups and groups[-1].startswith("-") and " " not in groups[-1] and not word.startswith("-"):
            groups[-1] += " " + word  # an option and its value
        else:
            groups.append(word)
    lines, current = [], "$ fbp"
    for group in groups:
        if len(current) + 1 + len(group) + 2 > width and current not in ("$ fbp", "   "):
            lines.append(current + " \\")
            current = "   "
        current += " " + group
    lines.append(current)
    return lines


def check_quickstart_dir(directory: Path) -> None:
    """Before any step: the quickstart's files follow the rule of its folders. ``DIR/submission.csv`` and ``DIR/html``
    are replaced only when an earlier quickstart made them (its demo corpus, ``DIR/kaggle/fbp-demo.json``, is there)."""
    from ..demo import MARKER
    from ..errors import FbpError

    earlier_quickstart = (directory / "kaggle" / MARKER).is_file()
    for name in ("submission.csv", "html"):
        path = directory / name
        if path.is_symlink() or (path.exists() and not earlier_quickstart):
            raise FbpError(f"{path} exists and was not written by fbp quickstart; refusing to replace it (choose another DIR)")


@app.command("quickstart")
def quickstart_command(
    directory: Path = typer.Argument(Path("quickstart"), metavar="DIR", help="Where to put the demo corpus, processed data, run and submission."),
    essays: int = typer.Option(120, "--essays", min=10, help="Demo essays to generate."),
    folds: int = typer.Option(2, "--folds", min=2, help="Folds to train."),
    epochs: int = typer.Option(4, "--epochs", "-e", min=1, help="Epochs per fold."),
    wandb: str = typer.Option("disabled", "--wandb", metavar="MODE", callback=check_wandb_mode, help=WANDB_HELP + " \\[default: disabled]",
                              show_default=False),
) -> None:
    """Run the whole lifecycle on a generated demo corpus with the packaged MiniLM, offline, on a CPU (a few minutes).

    Generates essays in the Kaggle layout, preprocesses them into folds, trains every fold keeping the best epoch by competition F1, scores the out-of-fold predictions, and writes a submission (and an HTML view) for the demo test essays. Each step is an ordinary fbp command, printed before it runs.
    """
    check_quickstart_dir(directory)
    started = time.monotonic()
    for arguments in quickstart_commands(directory, essays, folds, epochs, wandb):
        console.print(Rule(style="dim"))
        for line in command_lines(arguments, console.width):
            console.print(line, style="bold", markup=False, highlight=False, soft_wrap=True)
        code = app(arguments, standalone_mode=False)
        if isinstance(code, int) and code != 0:  # e.g. training stopped with Ctrl-C: the later steps need it
            raise typer.Exit(code)
    console.print(Rule(style="dim"))
    print_outcome(directory, time.monotonic() - started)


def print_outcome(directory: Path, seconds: float) -> None:
    """The last screen: the figure to quote (the one of the decoding the run uses) and where each output is."""
    from ..figures import describe, quoted_key
    from ..io.run_dir import RunDir

    run = RunDir(quickstart_run_dir(directory))
    summary = run.read_record()
    record = summary.to_dict() if summary is not None else {}
    key = quoted_key(record)
    console.print(f"done in {seconds / 60:.1f} minutes.", highlight=False)
    if key is not None:
        console.print(f"[bold]The figure to quote: CV F1 [green]{record[key]:.4f}[/] ({describe(key)}; {key} in run.json).[/]", highlight=False)
    outputs = [("the run (fold checkpoints, run.json, decoding)", run.path), ("the submission", directory / "submission.csv"),
               ("the predictions to look at", directory / "html" / "index.html"), ("the demo corpus", directory / "kaggle"),
               ("the processed data", directory / "processed")]
    for what, path in outputs:
        console.print(f"  {what}: [bold]{escape(str(path))}[/]", highlight=False)
    console.print(f"Next: `fbp compare {escape(str(run.path.parent))}` shows the run beside the ones you train next.", highlight=False)
