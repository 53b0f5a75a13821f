"""`fbp demo-data`: generate a small demo corpus in the Kaggle layout."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ._app import app, console


@app.command("demo-data")
def demo_data(
    output: Path = typer.Argument(..., help="Directory to write (train.csv, train/, test/, sample_submission.csv).", show_default=False),
    essays: int = typer.Option(200, "--essays", min=2, help="Number of labeled essays."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed: the same seed always gives the same corpus."),
) -> None:
    """Generate a demo corpus in the Kaggle layout (all 7 classes, generated from templates, no real essay).

    Use it to try the whole lifecycle offline.

    Examples:

    - `fbp demo-data data/demo && fbp preprocess data/demo -o data/processed`
    """
    from ..demo import generate_demo_corpus

    counts = generate_demo_corpus(output, n_essays=essays, seed=seed)
    console.print(
        f"[bold green]wrote[/] {escape(str(output))}: {counts['essays']:,} labeled essays ({counts['words']:,} words), "
        f"{counts['test_essays']} unlabeled test essays"
    )
    table = Table(title="spans per class", title_justify="left")
    table.add_column("class")
    table.add_column("spans", justify="right")
    for name, count in counts["spans_per_class"].items():
        table.add_row(name, f"{count:,}")
    console.print(table)
