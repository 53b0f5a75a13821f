"""Every run's and fold's validation F1 per epoch, drawn into an image file (``fbp compare --plot``)."""

from __future__ import annotations

import io
from pathlib import Path

from ..atomic import write_atomic_bytes
from ..errors import FbpError, UsageError
from .table import Comparison


def plot_epoch_f1(comparison: Comparison, path: Path) -> int:
    """Draw the validation F1 per epoch of every run and fold into an image file.

    One colour per run, one line style and marker per fold, and a star on each fold's kept epoch (its best, the
    one its checkpoint holds; the best so far for a fold still training). Two legends tell them apart: runs
    (with their status when not complete) and folds. Returns the number of curves drawn; a run without
    per-epoch F1 is left out.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    figure, axes = plt.subplots(figsize=(10, 5.8))
    colours = plt.get_cmap("tab10")
    styles, markers = ("-", "--", ":", "-."), ("o", "s", "^", "D", "v", "P")
    run_handles, fold_handles = [], {}
    curves = 0
    for index, run in enumerate(comparison.runs):
        colour = colours(index % 10)
        drawn = False
        for position, fold in enumerate(run.folds):
            if not fold.epoch_f1:
                continue
            epochs, f1s = zip(*fold.epoch_f1)
            key = fold.fold if fold.fold is not None else position
            style, marker = styles[key % len(styles)], markers[key % len(markers)]
            axes.plot(epochs, f1s, linestyle=style, marker=marker, markersize=3.5, linewidth=1.4, color=colour, alpha=0.9)
            if fold.best_epoch is not None and fold.best_f1 is not None:
                axes.plot([fold.best_epoch], [fold.best_f1], marker="*", markersize=14, color=colour if fold.finished else "white",
                          markeredgecolor=colour if not fold.finished else "black", markeredgewidth=1.0, linestyle="none", zorder=5)
            if fold.fold is not None and key not in fold_handles:
                fold_handles[key] = Line2D([], [], color="0.3", linestyle=style, marker=marker, markersize=3.5, label=f"fold {fold.fold}")
            drawn = True
            curves += 1
        if drawn:
            status = f" ({run.status})" if run.status not in ("complete", "trainer_state") else ""
            run_handles.append(Line2D([], [], color=colour, linewidth=3, label=f"{run.name}{status}"))
    if curves == 0:
        plt.close(figure)
        raise FbpError("nothing to plot: none of the runs has per-epoch validation F1")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation F1 (competition metric, configured thresholds)")
    axes.set_title("Validation F1 per epoch: a colour per run, a line style per fold")
    axes.grid(alpha=0.3)
    runs_legend = axes.legend(handles=run_handles, title="run", fontsize=8, title_fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.add_artist(runs_legend)
    kept = [Line2D([], [], color="0.3", marker="*", markersize=12, markeredgecolor="black", linestyle="none", label="kept epoch (best)")]
    if any(not fold.finished for run in comparison.runs for fold in run.folds):
        kept.append(Line2D([], [], color="white", marker="*", markersize=12, markeredgecolor="0.3", linestyle="none", label="best so far (unfinished fold)"))
    axes.legend(handles=[*(fold_handles[key] for key in sorted(fold_handles)), *kept], title="fold", fontsize=8, title_fontsize=9,
                loc="lower left", bbox_to_anchor=(1.01, 0.0))
    figure.tight_layout()
    image_format = path.suffix.lstrip(".").lower() or "png"
    if image_format not in figure.canvas.get_supported_filetypes():
        plt.close(figure)
        raise UsageError(f"{path}: unsupported image type '.{image_format}' for the F1 plot (use .png, .svg or .pdf)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=120)
    plt.close(figure)
    write_atomic_bytes(path, buffer.getvalue())
    return curves


