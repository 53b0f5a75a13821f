"""``fbp evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ._app import app, console, err_console, truth_hint


@app.command("evaluate")
def evaluate_command(
    pred: Path = typer.Argument(..., help="Submission CSV (id,class,predictionstring) or a run directory (its out-of-fold predictions).", show_default=False),
    truth: Optional[Path] = typer.Option(
        None, "--truth", "-t", help="Ground truth: Kaggle train.csv, a spans.parquet or a span CSV. \\[default for a run: its processed data's spans.parquet]", show_default=False
    ),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers to this JSON file (macro F1 under \"f1\").", show_default=False),
    tune: bool = typer.Option(False, "--tune", help="Run directory only: tune per-class min_words / min_confidence on the out-of-fold probabilities and refit the learned decoder; save both for infer and ensemble."),
    decoding: Optional[str] = typer.Option(None, "--decoding", metavar="MODE",
                                           help="Run directory only: decode with the run's choice (auto), the learned decoder, the thresholds, or every argmax span. \\[default: auto]", show_default=False),
) -> None:
    """Score predictions with the competition metric: per-class TP, FP, FN, precision, recall, F1 and the macro F1.

    A run directory is scored on its out-of-fold word probabilities, decoded as the run decodes (its learned decoder or its decoding.json's thresholds). --tune searches better thresholds there and refits the learned decoder, and saves both in the run, where infer and ensemble find them for the run and each of its fold checkpoints.

    A run's F1 here uses thresholds (or a learned decoder) fitted on these same essays, so it is in-sample (optimistic); the figure to quote for a run is the cross-fitted one of the decoding the run uses, which `fbp train` marks at its end (run.json's cv_f1_tuned, or cv_f1_learned when the run uses its learned decoder).

    Examples:

    - `fbp evaluate runs/minilm` (its out-of-fold predictions, with the run's thresholds)

    - `fbp evaluate runs/minilm --tune` (tune the thresholds and save them for infer)

    - `fbp evaluate submission.csv --truth feedback-prize-2021/train.csv --json score.json`
    """
    from ..evaluate import evaluate

    from ..errors import UsageError

    if decoding is not None and pred.is_file():
        raise UsageError("--decoding applies to a run directory (a submission CSV is already decoded)")
    if json_path is not None:
        from ..atomic import guard_output

        guard_output(json_path, "--json", inputs=[pred, truth])  # never over an input or into a run, checked before any work
    with truth_hint():
        evaluation = evaluate(pred, truth, tune=tune, decoding=decoding or "auto")
    if evaluation.tuning is not None:
        console.print(_tuning_table(evaluation.tuning))
        for path in evaluation.saved:
            console.print(f"saved {'learned decoder' if path.name.startswith('learned_decoder') else 'thresholds'}: {escape(str(path))}", highlight=False)
    if evaluation.learned is not None:
        learned = evaluation.learned
        verdict = "beats" if learned["decoder"] == "learned" else "does not beat"
        outcome = "the run now decodes with it" if learned["decoder"] == "learned" else "the run keeps its thresholds"
        console.print(f"learned decoding {learned['cv_f1_learned']:.4f} (cross-fitted) {verdict} the thresholds ({learned['thresholds']:.4f}): {outcome}", highlight=False)
    console.print(_score_table(evaluation))
    console.print(f"macro F1 {evaluation.result.f1:.4f}: {escape(evaluation.what)}", highlight=False, soft_wrap=not console.is_terminal)
    if evaluation.to_quote is not None:
        from ..figures import DECODING_OF, describe

        key, value = evaluation.to_quote
        uses = DECODING_OF[key]
        evaluated = evaluation.decoded_with
        other = "" if uses.startswith(evaluated or "") else f"; this evaluation decoded with {evaluated}, which the run does not use"
        console.print(f"[dim]the figure to quote for this run is {key} = {value:.4f} in run.json ({describe(key)}: the decoding "
                      f"the run uses, {uses}){other}[/]", highlight=False)
    for warning in evaluation.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if json_path is not None:
        import json

        from ..atomic import write_atomic

        write_atomic(json_path, json.dumps(evaluation.to_dict(), indent=2))
        console.print(f"wrote {escape(str(json_path))}", highlight=False)


def _score_table(evaluation):
    from rich.table import Table

    result = evaluation.result
    table = Table(
        title=f"{escape(str(evaluation.predictions))} vs {escape(str(evaluation.truth))}",
        caption=f"{evaluation.n_predicted:,} predicted spans, {evaluation.n_true:,} true spans, {evaluation.n_essays:,} essays",
    )
    for column in ("class", "TP", "FP", "FN", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, scores in result.per_class.items():
        table.add_row(name, f"{scores.tp:,}", f"{scores.fp:,}", f"{scores.fn:,}", f"{scores.precision:.4f}", f"{scores.recall:.4f}", f"{scores.f1:.4f}")
    totals = result.totals
    table.add_section()
    table.add_row("[bold]macro[/]", f"{totals.tp:,}", f"{totals.fp:,}", f"{totals.fn:,}", "", "", f"[bold]{result.f1:.4f}[/]")
    if result.ignored_classes:
        table.caption += f"; not scored (absent from the truth): {', '.join(result.ignored_classes)}"
    return table


def _tuning_table(report):
    from rich.table import Table

    table = Table(title="decoding thresholds tuned on out-of-fold predictions", caption="F1 before and after: in-sample (tuned and scored on the same essays)")
    for column in ("class", "min_words", "min_confidence", "F1 before", "F1 after", "gain"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in report.classes:
        gain = row.after.f1 - row.before.f1
        table.add_row(
            row.name,
            f"{row.min_words_before} -> {row.min_words_after}",
            f"{row.min_confidence_before:.3f} -> {row.min_confidence_after:.3f}",
            f"{row.before.f1:.4f}",
            f"{row.after.f1:.4f}",
            f"[green]+{gain:.4f}[/]" if gain > 0 else f"{gain:+.4f}",
        )
    table.add_section()
    gain = report.f1_after - report.f1_before
    table.add_row("[bold]macro[/]", "", "", f"{report.f1_before:.4f}", f"[bold]{report.f1_after:.4f}[/]", f"{gain:+.4f}")
    return table
