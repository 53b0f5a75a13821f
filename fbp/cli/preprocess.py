"""`fbp preprocess`: validate the Kaggle layout and write the processed dataset."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ._app import OutputOpt, app, console


@app.command()
def preprocess(
    data_dir: Path = typer.Argument(..., help="The Kaggle layout: train.csv and train/ID.txt for every id.", show_default=False),
    output: Path = OutputOpt(Path("data/processed"), "Where to write the processed dataset (replaced only once the new one is complete)."),
    folds: int = typer.Option(5, "--folds", min=2, help="Number of folds (multilabel-stratified by the classes each essay contains)."),
    seed: int = typer.Option(42, "--seed", min=0, help="Seed of the fold assignment."),
) -> None:
    """Validate a Kaggle download, make one BIO label per word and stratified folds, and write the processed dataset.

    Every problem in the data is reported at once (counts and the first rows or essays); if there is any, nothing is written and the exit code is 1.

    Examples:

    - `fbp preprocess feedback-prize-2021 -o data/processed --folds 5` (the Kaggle download)

    - `fbp demo-data data/demo && fbp preprocess data/demo` (a generated demo corpus)
    """
    from ..preprocess import preprocess as run_preprocess

    stages = 5
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=console, transient=True, disable=not console.is_terminal,  # a log or pipe gets the summary only
    ) as progress:
        task = progress.add_task("preprocessing", total=stages)
        started = []

        def on_stage(description: str) -> None:
            if started:
                progress.advance(task)
            started.append(description)
            progress.update(task, description=description)

        summary = run_preprocess(data_dir, output, n_folds=folds, seed=seed, on_stage=on_stage)
    _print_summary(summary)


def _print_summary(summary) -> None:
    from ..labels import CLASSES

    console.print(
        f"[bold green]wrote[/] {escape(str(summary.output_dir))}: {summary.essays:,} essays, {summary.words:,} words, "
        f"{sum(summary.spans_per_class.values()):,} spans, {summary.folds} folds (seed {summary.seed})",
        soft_wrap=not console.is_terminal,  # a terminal wraps at spaces (a path stays whole); a log gets one line
    )
    table = Table(title="spans per class and fold", title_justify="left")
    table.add_column("class")
    table.add_column("all", justify="right", style="bold")
    for fold in range(summary.folds):
        table.add_column(f"fold {fold}", justify="right")
    for name in CLASSES:
        table.add_row(name, f"{summary.spans_per_class[name]:,}", *(f"{counts[name]:,}" for counts in summary.spans_per_fold))
    table.add_section()
    table.add_row("essays", f"{summary.essays:,}", *(f"{count:,}" for count in summary.essays_per_fold), style="italic")
    console.print(table)
    for finding in summary.warnings:
        console.print(f"[yellow]warning:[/] {escape(str(finding))}", highlight=False)
    if summary.skipped_text_files:
        console.print(f"[yellow]warning:[/] {summary.skipped_text_files} text files have no rows in train.csv and were skipped")
