"""``fbp compare`` (also ``fbp compare-runs``)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

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

    Example: `fbp compare runs/*` or `fbp compare runs/*/run.json --sort Claim --csv runs.csv --plot f1.png`.
    """
    from ..compare import compare_runs, plot_epoch_f1, render_table, write_csv, write_json

    comparison = compare_runs(runs, sort=sort)
    console.print(render_table(comparison))
    if csv:
        write_csv(comparison, csv)
        console.print(f"table written to [bold]{csv}[/]")
    if json:
        write_json(comparison, json)
        console.print(f"runs written to [bold]{json}[/]")
    if plot:
        curves = plot_epoch_f1(comparison, plot)
        console.print(f"{curves} F1 curves drawn in [bold]{plot}[/]")


app.command("compare-runs", help="Same as `fbp compare`: runs side by side, best scores highlighted.")(compare_command)
