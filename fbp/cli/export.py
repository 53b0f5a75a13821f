"""``fbp export``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List

import typer
from rich.markup import escape
from rich.table import Table

from ._app import app, console, err_console


@app.command("export")
def export_command(
    paths: List[Path] = typer.Argument(..., metavar="RUN_OR_CKPT...", help="Fold checkpoints, run directories (all their folds) or a saved ensemble directory (its members).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Export again even when the export is current (same weights, files intact)."),
    check_essays: int = typer.Option(100, "--check-essays", min=0, metavar="N",
                                     help="Held-out essays that check int8 against PyTorch (competition F1): processed essays outside the run, else each fold's own validation essays; 0 skips the check, and then --runtime auto does not choose int8."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also make the dynamic int8 model."),
) -> None:
    """ONNX models of fold checkpoints, for fbp infer --runtime and for use outside fbp.

    Each checkpoint gets CHECKPOINT/onnx/: model.onnx (fp32, ONNX Runtime's transformer fusions), model_quantized.onnx (dynamic int8 weights, the classifier kept in fp32) and export.json (the versions that made them, the weights they came from, how closely each matches PyTorch). Both files are checked against PyTorch; int8 is also checked on held-out essays, outside the run where its processed data has some, else of the fold (F1 within 0.005 macro and 0.01 per class), and only then does --runtime auto choose it. Running it again is quick: a current export is kept; a checkpoint retrained since is exported again. docs/export.md describes the files for use without fbp.

    Examples:

    - `fbp export runs/minilm` (every fold), then `fbp infer runs/minilm --input essays/` (auto picks the export)

    - `fbp export runs/minilm/fold_0 --no-int8`
    """
    from ..export import export_checkpoints
    from .infer import check_paths_exist

    check_paths_exist(("RUN_OR_CKPT", "checkpoint or run directory", paths))
    started = time.monotonic()

    def on_checkpoint(checkpoint: Path):
        err_console.print(f"[bold]{escape(str(checkpoint))}[/]")
        return lambda step: err_console.print(f"  {escape(step)}")

    results = export_checkpoints(paths, force=force, check_essays=check_essays, int8=int8, on_checkpoint=on_checkpoint)
    _print_results(results, time.monotonic() - started)
    unsupported = [result for result in results if result.status == "unsupported"]
    if unsupported and len(unsupported) == len(results):
        from ..errors import FbpError

        raise FbpError(f"nothing exported: {unsupported[0].notes[0]}")


def _print_results(results, seconds: float) -> None:
    table = Table(title="ONNX exports", title_justify="left", caption="diff: largest token-probability difference from PyTorch fp32 on check windows; "
                  "int8 F1: on held-out essays (outside the run, else of the fold), against PyTorch's", caption_justify="left")
    table.add_column("checkpoint", overflow="fold")
    table.add_column("status")
    table.add_column("fp32 diff", justify="right")
    table.add_column("int8 diff", justify="right")
    table.add_column("int8 F1 (PyTorch)", justify="right")
    table.add_column("auto uses")
    for result in results:
        record = result.record
        fp32 = record.variants.get("onnx") if record else None
        int8 = record.variants.get("onnx-int8") if record else None
        quality = int8.quality if int8 is not None else None
        f1 = f"{quality.f1:.4f} ({quality.torch_f1:.4f})" if quality is not None else "-"
        auto = "onnx-int8" if quality is not None and quality.keeps_spans else "onnx" if fp32 is not None else "torch"
        table.add_row(escape(str(result.checkpoint)), result.status, f"{fp32.max_prob_diff:.1e}" if fp32 else "-",
                      f"{int8.max_prob_diff:.1e}" if int8 else "-", f1, auto)
    console.print(table)
    for result in results:
        for note in result.notes:
            err_console.print(f"[yellow]note:[/] {escape(str(result.checkpoint))}: {escape(note)}")
    exported = sum(result.status == "exported" for result in results)
    console.print(f"[bold green]exported[/] {exported} of {len(results)} checkpoint(s) in {seconds:.1f}s"
                  + (f" ({len(results) - exported} already current or unsupported)" if exported < len(results) else ""))
