"""`fbp infer` and `fbp ensemble`: checkpoints -> word probabilities -> a Kaggle submission."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..device import PREDICT_BATCH_CPU, PREDICT_BATCH_GPU
from ._app import app, console, err_console, truth_hint

CheckpointsArg = typer.Argument(..., metavar="CKPT_OR_RUN...", help="Fold checkpoints and/or run directories (a run means all its folds).", show_default=False)
InputOpt = typer.Option(..., "--input", "-i", metavar="TEXT_DIR", help="Directory of essays to predict (every *.txt).", show_default=False)
SaveProbsOpt = typer.Option(None, "--save-probs", help="Also save the word probabilities (a .npz file, or word_probs.npz in a directory).", show_default=False)
HtmlOpt = typer.Option(None, "--html", help="Write an HTML view: one page per essay, predicted (and true) spans in colour.", show_default=False)
TruthOpt = typer.Option(None, "--truth", "-t", help="Ground truth (train.csv format) to show beside the predictions / to score against.", show_default=False)
BatchOpt = typer.Option(None, "--batch-size", "-b", min=1, show_default=False,
                        help=f"Windows per forward pass. \\[default: {PREDICT_BATCH_CPU} on a CPU (as fast as larger batches, in less memory), {PREDICT_BATCH_GPU} on a GPU]")
DeviceOpt = typer.Option(None, "--device", metavar="DEVICE", help="cpu, cuda, cuda:N (a GPU's index) or mps. \\[default: cuda when available, else cpu]", show_default=False)
DecodingOpt = typer.Option(None, "--decoding", metavar="MODE|FILE",
                           help="How spans are decoded: auto (the run's choice), learned (the run's learned decoder), thresholds (the run's or checkpoint's), argmax (no thresholds), or a decoding.json of thresholds. \\[default: auto]", show_default=False)


def parse_decoding(value: Optional[str]):
    """``--decoding`` -> (mode, thresholds file or None): a keyword, or a decoding.json path (thresholds)."""
    from ..errors import UsageError
    from ..infer import DECODINGS

    if value is None:
        return "auto", None
    if value in DECODINGS:
        return value, None
    if not Path(value).is_file():
        raise UsageError(f"--decoding {value}: neither {', '.join(d for d in DECODINGS if d != 'auto')} nor a decoding.json file")
    return "thresholds", Path(value)
RuntimeOpt = typer.Option("auto", "--runtime", metavar="auto|torch|onnx|onnx-int8",
                          help="What runs the models: torch, onnx (fp32 export), onnx-int8, or auto: on a CPU the fastest export that keeps the spans (int8 when fbp export checked it on held-out essays, else fp32 ONNX), PyTorch when a checkpoint has no export (auto does not export: run fbp export once) and on a GPU.")
WeightsOpt = typer.Option(None, "--weights", "-w", metavar="W,W,...", help="One weight per member, as 0.6,0.4 or repeated. \\[default: equal]", show_default=False)


def _group_runtimes(runtimes: dict) -> dict:
    """``{checkpoint: "runtime (why)"}`` -> ``{"runtime (why)": [checkpoints]}``, so five folds print one line."""
    grouped: dict = {}
    for checkpoint, runtime in runtimes.items():
        grouped.setdefault(runtime, []).append(checkpoint)
    return grouped


def _print_result(result, started: float) -> None:
    from rich.markup import escape

    from ..labels import CLASSES

    seconds = time.monotonic() - started
    console.print(
        f"[bold green]predicted[/] {result.essays:,} essays with {result.checkpoints} checkpoint(s) in {seconds:.1f}s "
        f"(loading included): {len(result.spans):,} spans"
    )
    for runtime, checkpoints in _group_runtimes(result.runtimes).items():
        console.print(f"[bold]runtime:[/] {escape(runtime)}" + (f" for {len(checkpoints)} checkpoints" if len(checkpoints) > 1 else ""))
    counts = result.spans["class"].value_counts()
    table = Table(title="predicted spans per class", title_justify="left")
    table.add_column("class")
    table.add_column("spans", justify="right")
    if not result.learned:
        table.add_column("min words", justify="right")
        table.add_column("min confidence", justify="right")
    for name in CLASSES:
        min_words, min_confidence = result.decoding.min_words.get(name), result.decoding.min_confidence.get(name)
        thresholds = [] if result.learned else ["-" if min_words is None else str(min_words), "-" if min_confidence is None else f"{min_confidence:.2f}"]
        table.add_row(name, f"{int(counts.get(name, 0)):,}", *thresholds)
    console.print(table)
    # On lines of their own, not as the table's caption: a caption is wrapped to the table's width, inside the path.
    console.print(f"[bold]decoding:[/] {escape(result.decoding_source)}", soft_wrap=not console.is_terminal)
    for label, path in (("submission", result.output), ("word probabilities", result.probs_file), ("HTML view", result.html_dir and Path(result.html_dir) / "index.html")):
        if path is not None:
            console.print(f"[bold]{label}:[/] {escape(str(path))}", soft_wrap=not console.is_terminal)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")


@app.command()
def infer(
    checkpoints: List[Path] = CheckpointsArg,
    input_dir: Path = InputOpt,
    output: Path = typer.Option(Path("submission.csv"), "--output", "-o", help="Submission CSV to write (columns id, class, predictionstring)."),
    save_probs: Optional[Path] = SaveProbsOpt,
    html: Optional[Path] = HtmlOpt,
    truth: Optional[Path] = TruthOpt,
    batch_size: Optional[int] = BatchOpt,
    device: Optional[str] = DeviceOpt,
    decoding: Optional[str] = DecodingOpt,
    runtime: str = RuntimeOpt,
) -> None:
    """Predict every essay of --input TEXT_DIR (its *.txt files) and write a Kaggle submission (works offline).

    Several checkpoints (or a run directory: all its folds) are averaged at the word level; spans are decoded with the thresholds stored with the run or checkpoint (or --decoding).

    Examples:

    - `fbp infer runs/minilm --input data/demo/test -o submission.csv`

    - `fbp infer runs/minilm/fold_0 --input data/demo/test --html view` (one fold, and a page per essay to look at)
    """
    check_paths_exist(("CKPT_OR_RUN", "checkpoint or run directory", checkpoints), ("--input", "directory of essays", [input_dir]))
    started = time.monotonic()
    result = _predict(checkpoints, input_dir, output=output, weights=None, save_probs=save_probs, html=html, truth=truth,
                      batch_size=batch_size, device=device, decoding=decoding, runtime=runtime)
    _print_result(result, started)


def check_paths_exist(*arguments) -> None:
    """Before anything is loaded: a path given on the command line that is not there, named with its argument.

    Each argument is (its name in the usage line, what it should be, the paths given).
    """
    from ..errors import FbpError

    from ..errors import UsageError

    for name, what, paths in arguments:
        for path in paths:
            if path is not None and not Path(path).exists():
                raise FbpError(f"{name} {path}: no such {what}")
            if name == "--input" and path is not None and Path(path).is_file():
                raise UsageError(f"--input {path} is a file; --input takes a folder of essays (every *.txt in it): to predict "
                                 f"this essay alone, put it in a folder of its own and give that folder")


def _predict(paths, input_dir, *, output, weights, save_probs, html, truth, batch_size, device, decoding, blend_decoder=None, runtime="auto"):
    """Resolve the device, then predict with a progress line and bar per checkpoint."""
    from ..device import resolve_device
    from ..infer import predict_directory
    from .reporting import PredictionProgress

    resolved = resolve_device(device)
    total = len(list(input_dir.glob("*.txt"))) if input_dir.is_dir() else None
    with PredictionProgress(console, err_console, total) as progress:
        mode, decoding_file = parse_decoding(decoding)
        return predict_directory(paths, input_dir, output=output, weights=weights, save_probs=save_probs, html_dir=html, truth=truth,
                                 batch_size=batch_size, device=resolved, decoding_file=decoding_file, on_checkpoint=progress,
                                 decoding_mode=mode, blend_decoder=blend_decoder, runtime=runtime)


def parse_weights(raw: Optional[List[str]]) -> Optional[List[float]]:
    """``--weights 0.6,0.4`` or ``--weights 0.6 --weights 0.4`` -> floats (None: equal weights)."""
    from ..errors import UsageError

    if not raw:
        return None
    try:
        return [float(part) for item in raw for part in str(item).split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--weights must be numbers, got {','.join(raw)}") from None


def check_weights(members: List[Path], weights: Optional[List[float]]) -> None:
    """One weight per member (an ensemble directory given alone brings its own), finite, not all zero: UsageError."""
    from ..infer import expand_ensemble_dir
    from ..word_probs import normalise_weights

    paths, weights, _ = expand_ensemble_dir(members, weights)
    normalise_weights(weights, len(paths))


@app.command()
def ensemble(
    members: List[Path] = typer.Argument(..., metavar="MEMBER...", help="Checkpoints, run directories and/or saved word-probability .npz files; each is one member.", show_default=False),
    input_dir: Optional[Path] = typer.Option(None, "--input", "-i", metavar="TEXT_DIR", help="Essays to predict (every *.txt); without it, score the runs' out-of-fold predictions.", show_default=False),
    weights: Optional[List[str]] = WeightsOpt,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Submission CSV to write (with --input). \\[default: submission.csv]", show_default=False),
    fit_weights: bool = typer.Option(False, "--fit-weights", help="Fit the weights on out-of-fold F1 (runs sharing folds), then use them; also fits a learned decoder on the blend."),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", metavar="DIR", help="With --fit-weights: save the weights and the blend's learned decoder in DIR, which fbp ensemble and fbp infer accept like a run.", show_default=False),
    save_probs: Optional[Path] = SaveProbsOpt,
    html: Optional[Path] = HtmlOpt,
    truth: Optional[Path] = TruthOpt,
    batch_size: Optional[int] = BatchOpt,
    device: Optional[str] = DeviceOpt,
    decoding: Optional[str] = DecodingOpt,
    runtime: str = RuntimeOpt,
) -> None:
    """Weighted average of word probabilities from any mix of checkpoints, runs and models.

    Different models and tokenizers mix freely: everything meets at the word level. Without --input, runs that share folds are scored out of fold (each member and the ensemble), and --fit-weights searches the weights that maximise that F1.

    Examples:

    - `fbp ensemble runs/minilm runs/deberta --fit-weights` (out-of-fold F1 of the blend, weights fitted)

    - `fbp ensemble ckpts/* --input test/ -w 0.6,0.4 -o submission.csv`
    """
    from ..ensemble import ensemble_oof

    check_paths_exist(("MEMBER", "checkpoint, run directory or .npz file", members), ("--input", "directory of essays", [input_dir]))
    member_weights = parse_weights(weights)
    check_weights(members, member_weights)  # before any model is loaded or file written
    if save_dir is not None:
        from ..atomic import guard_output

        guard_output(save_dir, "--save-dir", inputs=members, directory=True)  # never a member, a link or inside a run
    blend_decoder = None
    if input_dir is None or fit_weights:
        from ..ensemble import NoOutOfFold

        try:
            with truth_hint():
                report = ensemble_oof(members, member_weights, fit_weights, truth, parse_decoding(decoding)[1], save_dir)
        except NoOutOfFold as error:
            raise NoOutOfFold(f"{error}. To predict essays, add --input TEXT_DIR") from None
        _print_oof_report(report)
        if report.saved_dir is not None:
            # Predict with what was saved: its weights and (when it won out of fold) the blend's decoder.
            members, member_weights = [report.saved_dir], None
        else:
            if report.fitted_weights is not None:
                member_weights = list(report.fitted_weights)
            if report.uses_learned:
                blend_decoder = report.learned_decoder  # it won out of fold: decode the blend with it
    if input_dir is None:
        if output is not None or save_probs is not None or html is not None:
            err_console.print("[yellow]note:[/] -o, --save-probs and --html need --input TEXT_DIR; nothing written")
        return
    started = time.monotonic()
    result = _predict(members, input_dir, output=output or Path("submission.csv"), weights=member_weights, save_probs=save_probs,
                      html=html, truth=truth, batch_size=batch_size, device=device, decoding=decoding, blend_decoder=blend_decoder,
                      runtime=runtime)
    _print_result(result, started)


def _print_oof_report(report) -> None:
    """Each member's and the blend's out-of-fold F1, each row naming its decoding and how it was measured; then
    the learned decoder against the tuned thresholds (both cross-fitted, like with like) and the figure to quote."""
    from rich import box
    from rich.markup import escape

    from ..labels import CLASSES, SHORT_NAMES

    in_sample = "in-sample"  # thresholds tuned (or weights fitted) on these same essays
    names = [Path(str(name)).name or str(name) for name in report.members]
    names = names if len(set(names)) == len(names) else [str(name) for name in report.members]  # short unless ambiguous
    rows = [(escape(name), f"{weight:.2f}", "its tuned thresholds", in_sample, result)
            for name, weight, result in zip(names, report.weights, report.member_results)]
    rows.append(("blend", "", "first member's thresholds", in_sample, report.ensemble_result))
    if report.fitted_result is not None:
        rows.append(("blend, fitted", "fitted", "first member's thresholds", in_sample, report.fitted_result))
    if report.thresholds_result is not None:
        rows.append(("blend, tuned", "", "tuned thresholds", "cross-fitted", report.thresholds_result))
    if report.learned_result is not None:
        rows.append(("blend, learned", "", "learned decoding", "cross-fitted", report.learned_result))
    style = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "title_justify": "left", "title_style": "bold"}
    table = Table(title=f"out-of-fold F1 on {report.essays:,} essays shared by all members", **style)
    for column in ("F1 of", "weight", "decoding", "measured", "macro F1"):
        table.add_column(column, justify="right" if column in ("weight", "macro F1") else "left", no_wrap=True)
    per_class = Table(title="F1 per class", **style)
    per_class.add_column("F1 of", no_wrap=True)
    for name in CLASSES:
        per_class.add_column(SHORT_NAMES[name], justify="right", no_wrap=True)
    for name, weight, decoding, measured, result in rows:
        table.add_row(name, weight, decoding, measured, f"[bold]{result.f1:.4f}[/]")
        scores = result.class_f1()
        per_class.add_row(name, *(f"{scores[c]:.3f}" if c in scores else "-" for c in CLASSES))
    console.print(table)
    console.print(per_class)
    console.print("[dim]in-sample: thresholds tuned (and weights fitted) on these same essays, so optimistic; cross-fitted: "
                  "each essay decoded by what was fitted without it.[/]", highlight=False)
    if report.cross_fitted_by is not None and not report.cross_fitted_by.startswith("the folds"):
        err_console.print(f"[yellow]note:[/] the blend's decoding was cross-fitted by {report.cross_fitted_by}", highlight=False)
    best_member = max(result.f1 for result in report.member_results)
    final = report.fitted_result or report.ensemble_result
    console.print(f"blend {final.f1:.4f} vs best single member {best_member:.4f} ({final.f1 - best_member:+.4f}), "
                  "both in-sample with their thresholds", highlight=False)
    if report.fitted_weights is not None:
        if report.fitted_result.f1 > report.ensemble_result.f1:
            console.print(f"fitted weights: [bold]--weights {','.join(f'{w:g}' for w in report.fitted_weights)}[/]")
        else:
            console.print("fitting found no weights better than the ones given; keeping them")
    if report.learned_result is not None and report.thresholds_result is not None:
        learned, thresholds = report.learned_result.f1, report.thresholds_result.f1
        verdict = "beats" if report.uses_learned else "does not beat"
        console.print(f"learned decoding {learned:.4f} {verdict} the tuned thresholds {thresholds:.4f} (both cross-fitted out of fold): "
                      f"the blend decodes with {'its learned decoder' if report.uses_learned else 'thresholds'}", highlight=False)
        quote, what = (learned, "learned decoding") if report.uses_learned else (thresholds, "tuned thresholds")
        if report.saved_dir is not None:
            kept = "weights and learned decoder" if report.uses_learned else "weights (thresholds decoding)"
            console.print(f"saved {kept} in [bold]{escape(str(report.saved_dir))}[/]: fbp infer {escape(str(report.saved_dir))} --input TEXT_DIR",
                          highlight=False)
        console.print(f"[bold]The figure to quote for the blend: F1 [green]{quote:.4f}[/] ({what}, cross-fitted out of fold: the decoding "
                      f"it uses).[/]", highlight=False)
    elif report.saved_dir is not None:
        console.print(f"saved weights in [bold]{escape(str(report.saved_dir))}[/]: fbp infer {escape(str(report.saved_dir))} --input TEXT_DIR",
                      highlight=False)
