"""``fbp compare``: training runs side by side, from ``run.json`` files, run directories or Hugging Face
``trainer_state.json`` files.

Each input becomes a :class:`RunSummary`; :func:`compare_runs` puts them in one table (a DataFrame) that
holds only the settings that differ between the runs, the CV F1 and F1 per class, each fold's best epoch
and the training time, exported as CSV or JSON; :func:`plot_epoch_f1` draws every fold's validation F1 per
epoch. The command line shows the table (``fbp.cli.compare.render_table``).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from pydantic import BaseModel, ConfigDict

from .config import default_settings, flatten_config
from .io.run_dir import RunDir, RunRecord, validated
from .errors import FbpError, UsageError
from .labels import CLASSES, SHORT_NAMES
from .atomic import write_atomic, write_atomic_bytes

if TYPE_CHECKING:
    import pandas as pd

SCORE_COLUMNS = ["cv_f1", "cv_f1_tuned", "cv_f1_learned", *CLASSES]  # higher is better; the best of each is highlighted
HIDDEN_SETTINGS = {"name"}  # already the first column

# --- a Hugging Face trainer_state.json (lenient: extra keys are fine, wrong types are reported) ------------
# (run.json's schema is fbp.io.run_dir.RunRecord, read through its owner.)

class TrainerStateRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    log_history: List[Dict[str, Any]]
    best_metric: Optional[float] = None
    best_global_step: Optional[int] = None
    best_model_checkpoint: Optional[str] = None
    epoch: Optional[float] = None
    num_train_epochs: Optional[int] = None
    train_batch_size: Optional[int] = None
    trial_name: Optional[str] = None
    trial_params: Optional[Dict[str, Any]] = None


@dataclass
class FoldCurve:
    """One fold's validation F1 per epoch and its best epoch."""

    fold: Optional[int]
    best_epoch: Optional[float]
    best_f1: Optional[float]
    epoch_f1: List[Tuple[float, float]] = field(default_factory=list)
    finished: bool = True  # False: a fold still training (or interrupted); best_epoch is the best so far


@dataclass
class RunSummary:
    """What ``fbp compare`` knows about one run, whatever file it came from."""

    name: str
    source: Path
    model: Optional[str]
    status: str
    settings: Dict[str, Any]  # the config as dotted keys
    cv_f1: Optional[float]
    per_class: Dict[str, Optional[float]]
    folds: List[FoldCurve]
    train_seconds: Optional[float]
    best_checkpoint: Optional[str] = None
    cv_f1_tuned: Optional[float] = None  # fbp train: thresholds tuned out of fold, cross-fitted
    cv_f1_learned: Optional[float] = None  # fbp train: learned span decoder, cross-fitted
    folds_planned: Optional[int] = None  # folds the run trains (fbp runs), to tell how far it is
    epochs_planned: Optional[int] = None  # epochs per fold

    @property
    def progress(self) -> str:
        """How far an fbp run is: ``2/5 folds, fold 2 at epoch 3/20`` (empty for a complete run)."""
        if self.status in ("complete", "trainer_state"):
            return ""
        done = sum(fold.finished for fold in self.folds)
        parts = [f"{done}/{self.folds_planned if self.folds_planned else '?'} folds"]
        for fold in self.folds:
            if not fold.finished:
                parts.append(f"fold {fold.fold} at epoch {len(fold.epoch_f1)}/{self.epochs_planned or '?'}")
        return ", ".join(parts)


@dataclass
class Comparison:
    """Runs side by side: the summaries, the settings that differ, and the table (one row per run)."""

    runs: List[RunSummary]
    differing_settings: List[str]
    table: "pd.DataFrame"


# --- finding and reading runs -------------------------------------------------------------------------------

def _is_fbp_run(directory: Path) -> bool:
    """An fbp run directory, finished or not: its ``run.json``, or the ``config.yaml`` written as training starts."""
    run = RunDir(directory)
    return run.summary_path.is_file() or run.config_path.is_file()


def find_run_files(paths: Sequence[Path]) -> List[Path]:
    """Expand the command-line inputs into run files, each once (a run given twice, or as a directory and as a file).

    A file is taken as given. A directory means its ``run.json`` (an fbp run; the path even while a run that
    has only its ``config.yaml`` so far trains), else its ``trainer_state.json``, else the runs among its
    subdirectories (a folder of runs, a tuning directory), else the ``trainer_state.json`` of its last
    ``checkpoint-N`` (a Trainer output directory).
    """
    files: List[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif not path.exists():
            raise FbpError(f"{path}: no such file or directory")
        elif _is_fbp_run(path):
            files.append(RunDir(path).summary_path)
        elif (path / "trainer_state.json").is_file():
            files.append(path / "trainer_state.json")
        elif child_runs := sorted(RunDir(child).summary_path for child in path.iterdir() if child.is_dir() and _is_fbp_run(child)):
            files.extend(child_runs)
        elif checkpoints := sorted(path.glob("checkpoint-*/trainer_state.json"), key=_checkpoint_step):
            files.append(checkpoints[-1])  # the last checkpoint's state holds the whole log history
        else:
            raise FbpError(f"{path}: no run.json or trainer_state.json in this directory (is it an fbp run directory?)")
    if not files:
        raise UsageError("no runs to compare")
    unique: Dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def _checkpoint_step(state_file: Path) -> int:
    step = state_file.parent.name.rpartition("-")[2]
    return int(step) if step.isdigit() else -1


def load_run(path: Path) -> RunSummary:
    """Read an fbp ``run.json`` or a Hugging Face ``trainer_state.json`` (told apart by their content)."""
    path = Path(path)
    if path.name == RunDir(path.parent).summary_path.name and not path.exists() and RunDir(path.parent).config_path.is_file():
        return _from_run_json(path, _record_from_config(RunDir(path.parent)))  # training started, no fold finished yet
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise FbpError(f"{path} is not a text file (expected an fbp run.json or a trainer_state.json)") from None
    except json.JSONDecodeError as error:
        raise FbpError(f"{path} is not valid JSON ({error}); expected an fbp run.json or a trainer_state.json") from None
    except OSError as error:
        raise FbpError(f"cannot read {path}: {error.strerror}") from None
    if isinstance(content, dict) and "log_history" in content:
        return _from_trainer_state(path, content)
    if RunRecord.looks_like(content):
        return _from_run_json(path, RunRecord.from_content(content, path))
    raise FbpError(f"{path} is neither an fbp run.json (no 'folds' and 'config') nor a Hugging Face trainer_state.json (no 'log_history')")


def _from_run_json(path: Path, record: RunRecord) -> RunSummary:
    folds = [
        FoldCurve(fold.fold, fold.best_epoch, fold.best_f1, [(epoch.epoch, epoch.f1) for epoch in fold.epochs if epoch.f1 is not None])
        for fold in record.folds
    ]
    run = RunDir(path.parent)
    status = record.status
    settings = flatten_config(record.config)
    if status != "complete":
        # A run not complete: the epochs of the fold in training (or interrupted) from its Trainer state, and
        # whether a live process trains it.
        finished = {fold.fold for fold in folds}
        folds = sorted(folds + [curve for curve in _unfinished_folds(run) if curve.fold not in finished], key=lambda c: c.fold)
        status = training_status(run, status)
    return RunSummary(
        name=record.name or path.parent.name,
        source=path,
        model=record.model or flatten_config(record.config).get("model.name"),
        status=status,
        settings=settings,
        cv_f1=record.cv_f1,
        cv_f1_tuned=record.cv_f1_tuned,
        cv_f1_learned=record.cv_f1_learned,
        per_class=dict(record.cv_per_class),
        folds=folds,
        train_seconds=record.train_seconds,
        folds_planned=_planned_folds(run, settings),
        epochs_planned=settings.get("training.epochs"),
    )


# How long after its last write a run locked on another host (whose process cannot be checked) counts as running.
RECENT_SECONDS = 30 * 60


def training_status(run: RunDir, recorded: str) -> str:
    """``complete``; ``running`` (a live ``fbp train`` holds the run's lock); ``interrupted`` (stopped before the folds it
    trains were done); ``partial`` (finished the folds it was asked for, not all of the data's)."""
    import socket
    import time

    from .io.lock import RunLock, holder_running

    if recorded == "complete":
        return "complete"
    holder = RunLock(run.path).holder()
    if holder:
        pid, host = holder.get("pid"), holder.get("host")
        if host == socket.gethostname() and isinstance(pid, int):
            if holder_running(holder):
                return "running"
        elif time.time() - _last_write(run) < RECENT_SECONDS:
            return "running"  # locked on another host and written to recently
    return "partial" if recorded == "partial" else "interrupted"


def _last_write(run: RunDir) -> float:
    """When the run last wrote anything (run.json, a Trainer state), as a time stamp."""
    candidates = [run.summary_path, run.config_path, *run.work_path.glob("fold_*/checkpoint-*/trainer_state.json")]
    times = []
    for candidate in candidates:
        try:
            times.append(candidate.stat().st_mtime)
        except OSError:
            pass
    return max(times, default=0.0)


def _record_from_config(run: RunDir) -> RunRecord:
    """A run whose training started but that has no ``run.json`` yet: what its ``config.yaml`` says."""
    config = run.read_config()
    return RunRecord(name=config.get("name") or run.path.name, model=(config.get("model") or {}).get("name"),
                     status="running", config=config, folds=[])


def _unfinished_folds(run: RunDir) -> List[FoldCurve]:
    """Folds with Trainer checkpoints in ``.work`` (a fold in training, or interrupted): the epochs evaluated so far."""
    curves = []
    for work in sorted(run.work_path.glob("fold_*")):
        suffix = work.name.rpartition("_")[2]
        if not suffix.isdigit():
            continue
        state = None
        for state_file in sorted(work.glob("checkpoint-*/trainer_state.json"), key=_checkpoint_step, reverse=True):
            try:  # the newest one whole; a checkpoint being written or rotated away is skipped
                state = json.loads(state_file.read_text(encoding="utf-8"))
                break
            except (OSError, ValueError):
                continue
        if not isinstance(state, dict):
            continue
        scored = [entry for entry in state.get("log_history") or [] if isinstance(entry, dict) and "eval_f1" in entry and "epoch" in entry]
        if not scored:
            continue
        best_step = state.get("best_global_step")
        best = next((entry for entry in scored if entry.get("step") == best_step), None) or max(scored, key=lambda entry: entry["eval_f1"])
        curves.append(FoldCurve(int(suffix), round(float(best["epoch"])), float(best["eval_f1"]),
                                [(round(float(entry["epoch"])), float(entry["eval_f1"])) for entry in scored], finished=False))
    return curves


def _planned_folds(run: RunDir, settings: Dict[str, Any]) -> Optional[int]:
    """How many folds the run trains: ``--fold``'s, else ``data.folds``, else its processed data's."""
    if settings.get("data.train_folds"):
        return len(settings["data.train_folds"])
    if settings.get("data.folds"):
        return int(settings["data.folds"])
    processed = run.processed_dir() if run.config_path.exists() or run.summary_path.exists() else None
    try:
        return int(json.loads((processed / "meta.json").read_text(encoding="utf-8"))["folds"]) if processed else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _from_trainer_state(path: Path, content: Dict[str, Any]) -> RunSummary:
    """Take what a Trainer state has: per-evaluation F1 (its best one stands in for CV F1), epochs, runtime."""
    state: TrainerStateRecord = validated(TrainerStateRecord, content, path)
    evaluations = [entry for entry in state.log_history if any(key.startswith("eval_") for key in entry)]
    f1_key = _overall_f1_key(evaluations)
    class_keys = {name: _class_f1_key(evaluations, name) for name in CLASSES}
    curve = [(float(entry["epoch"]), float(entry[f1_key])) for entry in evaluations if f1_key and f1_key in entry and "epoch" in entry]
    best_entry = None
    if f1_key:
        scored = [entry for entry in evaluations if f1_key in entry]
        at_best_step = [entry for entry in scored if state.best_global_step is not None and entry.get("step") == state.best_global_step]
        best_entry = at_best_step[0] if at_best_step else max(scored, key=lambda entry: entry[f1_key], default=None)
    runtime = next((entry["train_runtime"] for entry in reversed(state.log_history) if "train_runtime" in entry), None)
    settings: Dict[str, Any] = {"training.epochs": state.num_train_epochs, "training.batch_size": state.train_batch_size}
    settings.update(state.trial_params or {})
    directory = path.parent
    name = state.trial_name or (f"{directory.parent.name}/{directory.name}" if directory.name.startswith("checkpoint-") else directory.name)
    return RunSummary(
        name=name,
        source=path,
        model=_model_name_near(directory),
        status="trainer_state",
        settings={key: value for key, value in settings.items() if value is not None},
        cv_f1=best_entry[f1_key] if best_entry else None,
        per_class={name: best_entry.get(key) if best_entry and key else None for name, key in class_keys.items()},
        folds=[FoldCurve(None, best_entry.get("epoch") if best_entry else None, best_entry[f1_key] if best_entry else None, curve)],
        train_seconds=runtime,
        best_checkpoint=state.best_model_checkpoint,
    )


def _metric_words(key: str) -> List[str]:
    return re.split(r"[_\s]+", key.lower())


def _overall_f1_key(evaluations: List[Dict[str, Any]]) -> Optional[str]:
    """The macro F1 among the logged metrics: ``eval_f1`` or the like, not a per-class one."""
    keys = {key for entry in evaluations for key in entry if key.startswith("eval_") and "f1" in _metric_words(key)}
    class_keys = {key for key in keys for name in CLASSES if _class_f1_matches(key, name)}
    for preferred in ("eval_f1", "eval_macro_f1", "eval_cv_f1", "eval_overall_f1"):
        if preferred in keys:
            return preferred
    return min(keys - class_keys, key=len, default=None)


def _class_f1_matches(key: str, class_name: str) -> bool:
    words, class_words = _metric_words(key), _metric_words(class_name)
    # whole words only, so that "Claim" does not match "Counterclaim"
    return "f1" in words and any(words[i : i + len(class_words)] == class_words for i in range(len(words)))


def _class_f1_key(evaluations: List[Dict[str, Any]], class_name: str) -> Optional[str]:
    return next((key for entry in evaluations for key in entry if key.startswith("eval_") and _class_f1_matches(key, class_name)), None)


def _model_name_near(directory: Path) -> Optional[str]:
    """The model a Trainer directory holds, from the ``config.json`` saved next to its state."""
    config_file = directory / "config.json"
    try:
        model_config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, RecursionError):
        return None
    architectures = model_config.get("architectures") or [None]
    return model_config.get("_name_or_path") or model_config.get("model_type") or architectures[0]


# --- the comparison -------------------------------------------------------------------------------------------

_MISSING = object()


def setting_value(run: RunSummary, key: str, defaults: Dict[str, Any]) -> Any:
    """``run``'s value of a dotted setting. An fbp run without the key has the default (``None`` for an entry
    of a mapping it left out, e.g. ``training.class_weights.Rebuttal``); a Trainer's state has only a few
    settings, so for it an absent key is unknown (``_MISSING``)."""
    if key in run.settings:
        return run.settings[key]
    return _MISSING if run.status == "trainer_state" else defaults.get(key)


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
    from collections import Counter

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
        row.update({name: run.per_class.get(name) for name in CLASSES})
        row["best_epochs"] = " ".join(_format_epoch(fold.best_epoch) if fold.finished else f"({_format_epoch(fold.best_epoch)})"
                                      for fold in run.folds) or None
        row["train_seconds"] = run.train_seconds
        rows.append(row)
    table = pd.DataFrame(rows, columns=["run", "status", "progress", "model", *settings, "cv_f1", "cv_f1_tuned", "cv_f1_learned", *CLASSES, "best_epochs", "train_seconds"])
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
    aliases = {"name": "run", "f1": "cv_f1", "tuned": "cv_f1_tuned", "learned": "cv_f1_learned", "time": "train_seconds", "seconds": "train_seconds", "epochs": "best_epochs"}
    aliases.update({short.lower(): name for name, short in SHORT_NAMES.items()})
    lowered = {column.lower(): column for column in table.columns}
    key = wanted.strip().lower()
    column = lowered.get(key) or aliases.get(key) or lowered.get(key.replace("_", " "))
    if column is None:
        raise UsageError(f"cannot sort by '{wanted}': no column '{wanted}'; choose one of: {', '.join(table.columns)}")
    return column


# --- output ---------------------------------------------------------------------------------------------------

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
            "cv_per_class": run.per_class,
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


