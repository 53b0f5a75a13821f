"""The comparison: one row per run (the settings that differ, the CV F1 figures, F1 per class, each fold's kept
epoch, the training time), sortable, exported as CSV or JSON."""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from ..atomic import write_atomic
from ..config import default_settings, unrecorded_setting
from ..errors import UsageError
from ..labels import CLASSES, SHORT_NAMES
from .reading import find_run_files, load_run
from .summary import RunSummary

if TYPE_CHECKING:
    import pandas as pd

SCORE_COLUMNS = ["cv_f1", "cv_f1_tuned", "cv_f1_learned", *CLASSES]  # higher is better; the best of each is highlighted
HIDDEN_SETTINGS = {"name"}  # already the first column

_MISSING = object()


@dataclass
class Comparison:
    """Runs side by side: the summaries, the settings that differ, and the table (one row per run)."""

    runs: List[RunSummary]
    differing_settings: List[str]
    table: "pd.DataFrame"


def setting_value(run: RunSummary, key: str, defaults: Dict[str, Any]) -> Any:
    """``run``'s value of a dotted setting. An fbp run without the key has the default (``None`` for an entry
    of a mapping it left out, e.g. ``training.class_weights.Rebuttal``); a Trainer's state has only a few
    settings, so for it an absent key is unknown (``_MISSING``)."""
    if key in run.settings:
        return run.settings[key]
    return _MISSING if run.status == "trainer_state" else unrecorded_setting(run.settings, key, defaults)


def differing_settings(runs: Sequence[RunSummary]) -> List[str]:
    """Dotted keys with at least two different values among the runs (a setting one run sets and another
    leaves at its default differs too)."""
    keys = dict.fromkeys(key for run in runs for key in run.settings)  # first-seen order = config order
    defaults = default_settings()
    differing = []
    for key in keys:
        values = {json.dumps(value, sort_keys=True, default=str) for value in (setting_value(run, key, defaults) for run in runs)
                  if value is not _MISSING}
        if len(values) > 1 and key not in HIDDEN_SETTINGS:
            differing.append(key)
    return differing


def _distinct_names(runs: List[RunSummary]) -> List[RunSummary]:
    """Runs that share a name (the config's ``name``, e.g. every run of one config with other ``--set`` values)
    are told apart by their directory's name, or by their file's path when those are alike too."""
    for label in (lambda run: run.source.parent.name, lambda run: str(run.source)):
        counts = Counter(run.name for run in runs)
        for run in runs:
            if counts[run.name] > 1 and run.status != "trainer_state":
                run.name = label(run)
    return runs


def compare_runs(paths: Sequence[Path], sort: Optional[str] = None) -> Comparison:
    """Load every run under ``paths`` and build the comparison table, optionally sorted by a column."""
    import pandas as pd

    runs = _distinct_names([load_run(path) for path in find_run_files(paths)])
    settings = differing_settings(runs)
    defaults = default_settings()
    rows = []
    for run in runs:
        row: Dict[str, Any] = {"run": run.name, "status": "HF Trainer" if run.status == "trainer_state" else run.status,
                               "progress": run.progress or None, "model": run.model}
        row.update({key: _cell_value(None if value is _MISSING else value) for key, value in
                    ((key, setting_value(run, key, defaults)) for key in settings)})
        row["cv_f1"], row["cv_f1_tuned"], row["cv_f1_learned"] = run.cv_f1, run.cv_f1_tuned, run.cv_f1_learned
        row["decoder"] = run.decoder
        row["quoted"] = run.quoted
        row["per_class_of"] = run.per_class_decoding
        row.update({name: run.per_class.get(name) for name in CLASSES})
        row["best_epochs"] = " ".join(_format_epoch(fold.best_epoch) if fold.finished else f"({_format_epoch(fold.best_epoch)})"
                                      for fold in run.folds) or None
        row["train_seconds"] = run.train_seconds
        rows.append(row)
    columns = ["run", "status", "progress", "model", *settings, "cv_f1", "cv_f1_tuned", "cv_f1_learned", "decoder", "quoted", "per_class_of",
               *CLASSES, "best_epochs", "train_seconds"]
    table = pd.DataFrame(rows, columns=columns)
    table[SCORE_COLUMNS + ["train_seconds"]] = table[SCORE_COLUMNS + ["train_seconds"]].astype(float)
    if sort:
        column = _find_column(table, sort)
        order = table.sort_values(column, ascending=column not in SCORE_COLUMNS, na_position="last", kind="stable").index
        table = table.loc[order].reset_index(drop=True)
        runs = [runs[i] for i in order]
    return Comparison(runs, settings, table)


def _cell_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _format_epoch(epoch: Optional[float]) -> str:
    if epoch is None:
        return "-"
    return str(int(epoch)) if float(epoch).is_integer() else f"{epoch:.2f}"


def _find_column(table: "pd.DataFrame", wanted: str) -> str:
    """A column by its name, a class by name or short name, or a familiar alias (case-insensitive)."""
    aliases = {"name": "run", "f1": "cv_f1", "tuned": "cv_f1_tuned", "learned": "cv_f1_learned", "time": "train_seconds",
               "seconds": "train_seconds", "epochs": "best_epochs"}
    aliases.update({short.lower(): name for name, short in SHORT_NAMES.items()})
    lowered = {column.lower(): column for column in table.columns}
    key = wanted.strip().lower()
    column = lowered.get(key) or aliases.get(key) or lowered.get(key.replace("_", " "))
    if column is None:
        raise UsageError(f"cannot sort by '{wanted}': no column '{wanted}'; choose one of: {', '.join(table.columns)}")
    return column


def write_csv(comparison: Comparison, path: Path) -> None:
    """The table as CSV (one row per run; the source file added), written atomically."""
    buffer = io.StringIO()
    comparison.table.assign(source=[str(run.source) for run in comparison.runs]).to_csv(buffer, index=False)
    write_atomic(Path(path), buffer.getvalue())


def write_json(comparison: Comparison, path: Path) -> None:
    """Every run with its differing settings, scores and per-fold curves as JSON, written atomically."""
    runs = []
    defaults = default_settings()
    for run in comparison.runs:
        settings = {key: setting_value(run, key, defaults) for key in comparison.differing_settings}
        runs.append({
            "name": run.name,
            "source": str(run.source),
            "model": run.model,
            "status": run.status,
            "progress": run.progress or None,
            "settings": {key: value for key, value in settings.items() if value is not _MISSING},
            "cv_f1": run.cv_f1,
            "cv_f1_tuned": run.cv_f1_tuned,
            "cv_f1_learned": run.cv_f1_learned,
            "decoder": run.decoder,
            "figure_to_quote": run.quoted,
            "cv_per_class": run.per_class,
            "cv_per_class_of": run.per_class_decoding,  # which figure's decoding the per-class F1 are of
            "train_seconds": run.train_seconds,
            "best_checkpoint": run.best_checkpoint,
            "folds": [
                {"fold": fold.fold, "best_epoch": fold.best_epoch, "best_f1": fold.best_f1, "finished": fold.finished,
                 "epochs": [{"epoch": epoch, "f1": f1} for epoch, f1 in fold.epoch_f1]}
                for fold in run.folds
            ],
        })
    document = {"differing_settings": comparison.differing_settings, "runs": runs}
    write_atomic(Path(path), json.dumps(document, indent=2, default=str) + "\n")
