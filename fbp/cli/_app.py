"""The one shared place for the CLI: the Typer app, common options and the error handler.

Each command lives in its own module as a thin wrapper over a plain function that code can call too
(as in spaCy's CLI). Heavy libraries (torch, transformers) are imported inside commands, so
``fbp --help`` stays fast.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

from .. import __version__
from ..errors import FbpError, describe_os_error, disk_full_reason

from rich.console import Console
from rich.markup import escape

# The consoles everything prints to (the core prints nothing). Output piped to a file or CI log gets a wide
# terminal's width rather than rich's 80 columns, so per-epoch tables stay readable.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

from ._help import FbpTyper  # noqa: E402  (how --help reads: flags, placeholders, usage lines, command order)

app = FbpTyper(
    name="fbp",
    help="Feedback Prize essay segmentation: preprocess, train k folds, evaluate, infer, ensemble, compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"fbp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Feedback Prize essay segmentation, from the Kaggle download to a scored submission."""
    _state["debug"] = debug


# Options shared by several commands, so every command spells them the same way.
ConfigArg = typer.Argument(None, metavar="CONFIG", help="YAML config (see configs/); command-line flags override it.", show_default=False)
SetOpt = typer.Option(None, "--set", "-s", metavar="KEY=VALUE", help="Override any config key: section.key=value (repeatable).", show_default=False)
OutputOpt = lambda default, what: typer.Option(default, "--output", "-o", help=what)  # noqa: E731
WANDB_MODES = ("auto", "online", "offline", "disabled")


def check_wandb_mode(value):
    """--wandb's value, checked as the command line is read (before any work): one of WANDB_MODES."""
    if value is not None and value not in WANDB_MODES:
        raise typer.BadParameter(f"'{value}' is not a wandb mode; choose one of {', '.join(WANDB_MODES)}")
    return value


WANDB_HELP = "wandb mode: auto (online if logged in, else offline), online, offline, disabled."
WandbOpt = typer.Option(None, "--wandb", metavar="MODE", callback=check_wandb_mode, help=WANDB_HELP + " \\[default: auto]", show_default=False)
# What to train on, shared by `fbp train` and `fbp tune` (each trial of a search is an `fbp train`).
DataOpt = typer.Option(None, "--data", "-d", metavar="DIR", help="Processed data directory (from `fbp preprocess`). \\[default: data/processed]", show_default=False)
FoldsOpt = typer.Option(None, "--folds", min=2, help="Number of folds (re-folds when it differs from preprocess). \\[default: preprocess's folds]", show_default=False)
EpochsOpt = typer.Option(None, "--epochs", "-e", min=1, help="Epochs per fold. \\[default: 3]", show_default=False)
MaxEssaysOpt = typer.Option(None, "--max-essays", min=1, help="Train on a fixed random subset of this many essays. \\[default: all]", show_default=False)


def training_options(data, folds, epochs, max_essays, wandb) -> dict:
    """The config keys set by the shared training options (None: not given, the config decides)."""
    return {"data.processed_dir": str(data) if data else None, "data.folds": folds, "data.max_essays": max_essays,
            "training.epochs": epochs, "tracking.wandb": wandb}


@contextmanager
def truth_hint():
    """Errors about a run's missing ground truth gain the flag that gives it."""
    from ..io.run_dir import TruthNotFound

    try:
        yield
    except TruthNotFound as error:
        raise TruthNotFound(f"{error}; give --truth TRAIN_CSV", exit_code=error.exit_code) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler's stop): handled as Ctrl-C is (message, lock released, nothing half-written)."""

    exit_code = 143


def _terminate(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    """Entry point: run the app, turning known errors into one clear message and an exit code."""
    import signal

    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (an embedding program): leave its handlers alone
        previous = None
    try:
        _run_app()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_app() -> None:
    try:
        app()
    except FbpError as error:
        if _state["debug"]:
            raise
        # What a user or a file supplied (paths, ids, values) is text, never rich markup: "in/[/x]" must print as is.
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        sys.exit(error.exit_code)
    except KeyboardInterrupt as interruption:
        err_console.print("[yellow]terminated[/]" if isinstance(interruption, Terminated) else "[yellow]interrupted[/]")
        sys.exit(getattr(interruption, "exit_code", 130))
    except OSError as error:
        # A write failure that escaped the owners' checks (a library writing by itself): still one line naming the path.
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(describe_os_error(error))}", highlight=False)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - torch's "iostream error", safetensors' "No space left on device"
        reason = disk_full_reason(error)
        if reason is None or _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {escape(reason)}: {escape(str(error).splitlines()[0][:200])}", highlight=False)
        sys.exit(1)
