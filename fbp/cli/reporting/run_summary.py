"""The end of ``fbp train``: the folds (kept epoch, validation F1, time), the run's CV F1 figures (each naming its
decoding and how it was measured), the decoding the run uses, and last the figure to quote.

Which figure to quote is :func:`fbp.figures.quoted_key`'s rule; the words for each figure are :mod:`fbp.figures`'.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from ...figures import FIGURES, describe, figures, quoted_key, quoted_per_class
from ...labels import CLASSES, SHORT_NAMES

# What each F1 on screen is, in a few words (fbp train, fbp compare, fbp evaluate say the same).
F1_EPOCH = "validation essays of the fold, configured thresholds"


def per_class_table(per_class: dict) -> Table:
    """The F1 of each class under its short name: a table 50 columns wide (fits any terminal fbp is used in)."""
    table = Table(box=None, show_edge=False, pad_edge=False, padding=(0, 1))
    for name in CLASSES:
        table.add_column(SHORT_NAMES[name], justify="right", no_wrap=True)
    table.add_row(*(f"{per_class[name]:.3f}" if per_class.get(name) is not None else "-" for name in CLASSES))
    return table


def print_run_summary(summary: "RunRecord", console: Console) -> None:  # noqa: F821
    """The run's folds and figures as ``fbp train`` ends, the figure to quote last (so it is on screen at the end)."""
    record = summary.to_dict()
    table = Table(title=f"run {escape(str(record['name']))}", title_justify="left")
    table.add_column("fold", justify="right")
    table.add_column("kept epoch", justify="right")
    table.add_column("validation F1", justify="right")
    table.add_column("minutes", justify="right")
    for fold in record["folds"]:
        minutes = f"{fold['seconds'] / 60:.1f}" if fold.get("seconds") is not None else "-"
        table.add_row(str(fold["fold"]), str(fold["best_epoch"]), f"{fold['best_f1']:.4f}", minutes)
    console.print(table)
    console.print(f"[dim]validation F1: the kept epoch's F1 on the {F1_EPOCH}[/]", highlight=False)
    found = figures(record)
    if not found:
        return
    quote = quoted_key(record)
    console.print("CV F1, out of fold (each essay scored by the fold that did not train on it):", highlight=False)
    scores = Table(box=None, show_header=False, pad_edge=False, padding=(0, 1))
    for column in ("figure", "F1", "key", "note"):
        scores.add_column(column, no_wrap=True)
    for key, value in found:
        decoding, measured = FIGURES[key]
        scores.add_row(f"  {decoding}" + (", cross-fitted" if "cross-fitted" in measured else ""), f"[bold]{value:.4f}[/]",
                       f"[dim]{key}[/]", "[bold green]<- quote this[/]" if key == quote else "")
    console.print(scores)
    per_class_key, per_class = quoted_per_class(record)
    if per_class:
        console.print(f"F1 per class, {describe(per_class_key)}:", highlight=False)
        console.print(Padding(per_class_table(per_class), (0, 0, 0, 2)))
    learned, tuned = record.get("cv_f1_learned"), record.get("cv_f1_tuned")
    thresholds = tuned if tuned is not None else record.get("cv_f1")
    if learned is not None and record.get("decoder") == "learned":
        console.print(f"The run decodes with its learned decoder (learned_decoder.json): {learned:.4f} beats the thresholds' "
                      f"{thresholds:.4f} out of fold. fbp infer uses it.", highlight=False)
    elif tuned is not None:
        beaten = f"; the learned decoder ({learned:.4f}) does not beat them out of fold (--decoding learned still tries it)" if learned is not None else ""
        console.print(f"The run decodes with its tuned thresholds (decoding.json){beaten}. fbp infer uses them.", highlight=False)
    if tuned is not None:
        console.print("[dim]`fbp evaluate RUN` decodes the essays the decoding was fitted on (in-sample), so its F1 reads higher; "
                      "quote the cross-fitted figure.[/]", highlight=False)
    value = dict(found)[quote]
    console.print(f"[bold]The figure to quote: CV F1 [green]{value:.4f}[/] ({describe(quote)}; {quote} in run.json).[/]", highlight=False)
