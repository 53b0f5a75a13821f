"""``fbp compare`` (also ``fbp compare-runs``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape

from ._app import app, console

RunsArg = typer.Argument(..., metavar="RUN...", help="run.json files, run directories (or folders of them), or Hugging Face trainer_state.json files.", show_default=False)
SortOpt = typer.Option(None, "--sort", help="Sort by a column: cv_f1, a class (Claim, Evidence...), time, run, or a setting.", show_default=False)
CsvOpt = typer.Option(None, "--csv", help="Also write the table as CSV.", show_default=False)
JsonOpt = typer.Option(None, "--json", help="Also write the runs (settings, scores, per-epoch F1) as JSON.", show_default=False)
PlotOpt = typer.Option(None, "--plot", help="Draw the validation F1 per epoch of every run and fold into an image (.png, .svg, .pdf).", show_default=False)


@app.command("compare")
def compare_command(
    runs: List[Path] = RunsArg,
    sort: Optional[str] = SortOpt,
    csv: Optional[Path] = CsvOpt,
    json: Optional[Path] = JsonOpt,
    plot: Optional[Path] = PlotOpt,
) -> None:
    """Runs side by side: the settings that differ, CV F1 and F1 per class (best in green), best epochs, time.

    Runs still training or interrupted are shown with their finished folds and epochs and their status, so a run
    can be followed from another terminal while it trains. Also available as `fbp compare-runs`.

    Examples: `fbp compare runs` (a folder of runs), `fbp compare runs/*`, or
    `fbp compare runs/*/run.json --sort Claim --csv runs.csv --plot f1.png`.
    """
    from ..compare import compare_runs, plot_epoch_f1, write_csv, write_json

    comparison = compare_runs(runs, sort=sort)
    console.print(render_table(comparison))
    for _, row in comparison.table.iterrows():
        if isinstance(row["progress"], str) and row["progress"]:
            console.print(escape(f"{row['run']}: {row['status']}, {row['progress']}"), highlight=False)
    if csv:
        write_csv(comparison, csv)
        console.print(f"table written to [bold]{escape(str(csv))}[/]")
    if json:
        write_json(comparison, json)
        console.print(f"runs written to [bold]{escape(str(json))}[/]")
    if plot:
        curves = plot_epoch_f1(comparison, plot)
        console.print(f"{curves} F1 curves drawn in [bold]{escape(str(plot))}[/]")


# Up to this many differing settings share the scores table; more get a table of their own, so that a
# wide comparison stays readable in a terminal instead of folding every column into fragments.
SETTINGS_IN_SCORES_TABLE = 3


def render_table(comparison):
    """Rich tables of a :class:`fbp.compare.Comparison`: scores (best value of each score column in bold green)
    and the settings that differ."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    from ..compare import SCORE_COLUMNS
    from ..labels import CLASSES, SHORT_NAMES

    table = comparison.table
    settings = comparison.differing_settings
    leaves = [key.rpartition(".")[2] for key in settings]
    # the setting's own name is enough unless two sections share it
    headers = [leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(settings, leaves)]
    inline = len(settings) <= SETTINGS_IN_SCORES_TABLE
    best = {column: table[column].max() for column in SCORE_COLUMNS if len(table) > 1 and table[column].notna().any()}
    count = f"{len(table)} run{'s' if len(table) != 1 else ''}"
    scores = Table(title=count + (f"; settings that differ: {', '.join(settings)}" if settings and inline else ""))
    show_status = any(status not in ("complete", "HF Trainer") for status in table["status"])
    scores.add_column("run", style="bold", overflow="fold", min_width=min(12, max(len(str(run)) for run in table["run"])))
    scores.add_column("model", overflow="fold", min_width=6)
    for header in headers if inline else []:
        scores.add_column(header, overflow="fold", style="cyan")
    scores.add_column("CV F1", justify="right", no_wrap=True)
    scores.add_column("tuned", justify="right", no_wrap=True)  # thresholds tuned out of fold, cross-fitted
    scores.add_column("learned", justify="right", no_wrap=True)  # learned span decoder, cross-fitted
    for name in CLASSES:
        scores.add_column(SHORT_NAMES[name], justify="right", no_wrap=True)
    scores.add_column("kept", justify="right", no_wrap=True)
    scores.add_column("time", justify="right", no_wrap=True)
    notes = ["CV F1: out-of-fold, configured thresholds", "tuned: thresholds tuned on the other folds, cross-fitted",
             "learned: learned span decoder fitted on the other folds, cross-fitted (a run uses the better of tuned and learned: quote that one)",
             "per class: configured thresholds", "kept: each fold's best epoch (its checkpoint)"]
    if any(str(epochs).count("(") for epochs in table["best_epochs"]):
        notes.append("(n): the best so far of a fold still training or interrupted")
    scores.caption = "; ".join(notes)
    for _, row in table.iterrows():
        run = escape(str(row["run"])) + (f"\n{_status_cell(row['status'])}" if show_status and row["status"] != "complete" else "")
        cells = [run, _text(row["model"])]
        cells += [_text(row[key]) for key in settings] if inline else []
        for column in SCORE_COLUMNS:
            value = row[column]
            text = "-" if _missing(value) else f"{value:.4f}" if column.startswith("cv_f1") else f"{value:.3f}"
            cells.append(f"[bold green]{text}[/]" if column in best and value == best[column] else text)
        cells += [_text(row["best_epochs"]), format_seconds(row["train_seconds"])]
        scores.add_row(*cells)
    if inline:
        return scores
    differing = Table(title="settings that differ")
    differing.add_column("setting", style="cyan")
    for run in table["run"]:
        differing.add_column(escape(str(run)), overflow="fold")
    for key in settings:
        differing.add_row(key, *[_text(value) for value in table[key]])
    return Group(scores, differing)


def _status_cell(status: str) -> str:
    colour = {"running": "cyan", "interrupted": "yellow", "partial": "yellow"}.get(status)
    return f"[not bold {colour}]{status}[/]" if colour else f"[not bold]{status}[/]"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    if _missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))  # run files and configs supply these: text, not markup


def format_seconds(seconds: Optional[float]) -> str:
    """``4321.0`` -> ``1h12m``; ``75`` -> ``1m15s``."""
    if _missing(seconds):
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


app.command("compare-runs", hidden=True, help="Same as `fbp compare`: runs side by side, best scores highlighted.")(compare_command)
