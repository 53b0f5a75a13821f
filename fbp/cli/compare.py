"""``fbp compare`` (also ``fbp compare-runs``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape

from rich import box
from rich.table import Table

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

    Runs still training or interrupted are shown with their finished folds and epochs, their status and their time so far, so a run can be followed from another terminal while it trains. Also available as `fbp compare-runs`.

    Examples:

    - `fbp compare runs` (a folder of runs)

    - `fbp compare runs/*/run.json --sort Claim --csv runs.csv --plot f1.png`
    """
    from ..atomic import guard_output
    from ..compare import compare_runs, plot_epoch_f1, write_csv, write_json

    for output, what in ((csv, "CSV table"), (json, "JSON of the runs"), (plot, "plot")):
        if output is not None:  # checked before any run is read: never a link, an input, or inside a run directory
            guard_output(output, what, runs)
    comparison = compare_runs(runs, sort=sort)
    print_comparison(comparison, console)
    if csv:
        write_csv(comparison, csv)
        console.print(f"table written to [bold]{escape(str(csv))}[/]")
    if json:
        write_json(comparison, json)
        console.print(f"runs written to [bold]{escape(str(json))}[/]")
    if plot:
        curves = plot_epoch_f1(comparison, plot)
        console.print(f"{curves} F1 curves drawn in [bold]{escape(str(plot))}[/]")


# Up to this many differing settings share the scores table; more get a table of their own.
SETTINGS_IN_SCORES_TABLE = 3
DECODING_NAMES = {"cv_f1": "configured", "cv_f1_tuned": "tuned", "cv_f1_learned": "learned"}


def print_comparison(comparison, console) -> None:
    """The comparison's tables and notes, laid out for the terminal: the widest layout that fits its width, so that
    run names and figures are never cut (F1 per class and the settings move to tables of their own when they do not
    fit beside the scores). Output that is not a terminal (a file, a pipe) gets everything in one table, at its full
    width, never cut."""
    from rich.measure import Measurement

    terminal = console.is_terminal
    layouts = LAYOUTS if terminal else LAYOUTS[:1]
    for layout in layouts:
        tables = render_tables(comparison, **layout)
        widths = [Measurement.get(console, console.options.update_width(100_000), table).maximum for table in tables]
        if not terminal or max(widths) <= console.width:
            break
    if not terminal:  # a file or a pipe: as wide as the widest table, so that nothing is cut
        from rich.console import Console

        console = Console(width=max(max(widths), console.width), force_terminal=False, highlight=False, stderr=console.stderr)
    for table in tables:
        console.print(table)
    for line in notes(comparison):
        console.print(f"[dim]{escape(line)}[/]", highlight=False, soft_wrap=not terminal)
    for _, row in comparison.table.iterrows():
        if isinstance(row["progress"], str) and row["progress"]:
            console.print(escape(f"{row['run']}: {row['status']}, {row['progress']}"), highlight=False, soft_wrap=not terminal)


# Rules under the header only (no vertical lines): two spaces between columns, so that more fits in 80 columns.
TABLE_STYLE = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "title_justify": "left", "title_style": "bold"}

# From the widest to the narrowest: everything in one table; F1 per class in a table of its own; the settings too;
# the model under the run's name.
LAYOUTS = [
    {"per_class_inline": True, "settings_inline": True, "model_column": True},
    {"per_class_inline": False, "settings_inline": True, "model_column": True},
    {"per_class_inline": False, "settings_inline": False, "model_column": True},
    {"per_class_inline": False, "settings_inline": False, "model_column": False},
    {"per_class_inline": False, "settings_inline": False, "model_column": False, "settings_long": True},
]


def render_table(comparison):
    """All of a comparison in rich tables, the widest layout (scores, F1 per class and up to three settings in one
    table); for a terminal's width, :func:`print_comparison` picks the layout."""
    from rich.console import Group

    return Group(*render_tables(comparison, **LAYOUTS[0]))


def notes(comparison) -> List[str]:
    """What each column is: each figure's decoding and how it was measured."""
    table = comparison.table
    lines = ["CV F1: configured thresholds, out of fold. tuned: thresholds tuned on the other folds, cross-fitted. "
             "learned: learned decoder fitted on the other folds, cross-fitted. *: the figure to quote, that of the "
             "decoding the run uses (column decoding).",
             "Per class: F1 of the decoding the run uses, as at the end of fbp train. kept: each fold's best epoch (its checkpoint)."]
    if table["per_class_of"].nunique(dropna=True) > 1:
        lines.append("The runs use different decodings, so their per-class F1 are not highlighted against each other.")
    if any(str(epochs).count("(") for epochs in table["best_epochs"]):
        lines.append("(n): the best epoch so far of a fold still training or interrupted.")
    if (table["status"] == "running").any():
        lines.append("time: of a run in training, so far.")
    return lines


def render_tables(comparison, per_class_inline: bool, settings_inline: bool, model_column: bool, settings_long: bool = False) -> list:
    """The comparison as rich tables: scores (best of each column in bold green), and, when they are not among the
    scores, F1 per class and the settings that differ. Nothing is wrapped or cut: the caller picks a layout that fits."""
    from ..compare import SCORE_COLUMNS
    from ..labels import CLASSES, SHORT_NAMES

    table = comparison.table
    settings = comparison.differing_settings
    leaves = [key.rpartition(".")[2] for key in settings]
    # the setting's own name is enough unless two sections share it
    headers = [leaf if leaves.count(leaf) == 1 else key for key, leaf in zip(settings, leaves)]
    inline = settings_inline and len(settings) <= SETTINGS_IN_SCORES_TABLE
    one_decoding = table["per_class_of"].nunique(dropna=True) <= 1
    best = {column: table[column].max() for column in SCORE_COLUMNS if len(table) > 1 and table[column].notna().any()
            and (column.startswith("cv_f1") or one_decoding)}
    count = f"{len(table)} run{'s' if len(table) != 1 else ''}"
    show_status = any(status not in ("complete", "HF Trainer") for status in table["status"])

    models = set(table["model"].dropna())
    if not model_column and "model.name" not in settings and len(models) == 1:
        count += f" of {escape(str(next(iter(models))))}"

    def run_cell(row) -> str:
        cell = escape(str(row["run"]))
        # (an fbp run's model is among the settings that differ; a model name longer than the run names is left to
        # the wider layouts, --csv and --json rather than folded)
        if (not model_column and "model.name" not in settings and len(models) > 1 and not _missing(row["model"])
                and len(str(row["model"])) <= max(len(str(run)) for run in table["run"])):
            cell += f"\n[not bold dim]{_text(row['model'])}[/]"
        if show_status and row["status"] != "complete":
            cell += f"\n{_status_cell(row['status'])}"
        return cell

    def score(row, column) -> str:
        value = row[column]
        text = "- " if _missing(value) and column.startswith("cv_f1") else "-" if _missing(value) else f"{value:.4f}" if column.startswith("cv_f1") else f"{value:.3f}"
        if column.startswith("cv_f1") and not _missing(value):
            text += "*" if row["quoted"] == column else " "
        return f"[bold green]{text}[/]" if column in best and value == best[column] else text

    scores = Table(title=count + (f"; settings that differ: {', '.join(settings)}" if settings and inline else ""), **TABLE_STYLE)
    # the run's name is folded onto a second line rather than cut when even the narrowest layout is too wide
    scores.add_column("run", style="bold", no_wrap=not settings_long, overflow="fold")
    if model_column:
        scores.add_column("model", no_wrap=True)
    for header in headers if inline else []:
        scores.add_column(escape(header), no_wrap=True, style="cyan")
    for header in ("CV F1", "tuned", "learned"):
        scores.add_column(header, justify="right", no_wrap=True)
    scores.add_column("decoding", no_wrap=True)
    for name in CLASSES if per_class_inline else []:
        scores.add_column(SHORT_NAMES[name], justify="right", no_wrap=True)
    scores.add_column("kept", justify="right", no_wrap=True)
    scores.add_column("time", justify="right", no_wrap=True)
    for _, row in table.iterrows():
        cells = [run_cell(row)] + ([_text(row["model"])] if model_column else [])
        cells += [_text(row[key]) for key in settings] if inline else []
        cells += [score(row, column) for column in ("cv_f1", "cv_f1_tuned", "cv_f1_learned")]
        cells.append(DECODING_NAMES.get(row["per_class_of"], "-"))
        cells += [score(row, name) for name in CLASSES] if per_class_inline else []
        cells += [_text(row["best_epochs"]), format_seconds(row["train_seconds"])]
        scores.add_row(*cells)
    tables = [scores]
    if not per_class_inline:
        per_class = Table(title="F1 per class (of the decoding each run uses: column decoding above)", **TABLE_STYLE)
        per_class.add_column("run", style="bold", no_wrap=not settings_long, overflow="fold")
        for name in CLASSES:
            per_class.add_column(SHORT_NAMES[name], justify="right", no_wrap=True)
        for _, row in table.iterrows():
            per_class.add_row(escape(str(row["run"])), *[score(row, name) for name in CLASSES])
        tables.append(per_class)
    if settings and not inline and settings_long:  # one row per run and setting: as narrow as a table gets
        differing = Table(title="settings that differ", **TABLE_STYLE)
        for header in ("run", "setting", "value"):
            differing.add_column(header, no_wrap=True, style="cyan" if header == "setting" else None)
        for _, row in table.iterrows():
            for key in settings:
                differing.add_row(escape(str(row["run"])), escape(key), _text(row[key]))
        tables.append(differing)
    elif settings and not inline:
        differing = Table(title="settings that differ", **TABLE_STYLE)
        differing.add_column("run", style="bold", no_wrap=True)
        for header in headers:
            differing.add_column(escape(header), style="cyan", no_wrap=True)
        for _, row in table.iterrows():
            differing.add_row(escape(str(row["run"])), *[_text(row[key]) for key in settings])
        tables.append(differing)
    return tables


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
