"""Finding the runs among ``fbp compare``'s inputs and reading each (an fbp ``run.json``, a run still training,
or a Hugging Face ``trainer_state.json``) into a :class:`~fbp.compare.summary.RunSummary`.

run.json's schema is :class:`fbp.io.run_dir.RunRecord`, read through its owner; a Trainer state is read leniently
(extra keys are fine, wrong types are reported).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from pydantic import BaseModel, ConfigDict

from ..config import flatten_config, validate_config
from ..errors import FbpError, UsageError
from ..figures import quoted_key, quoted_per_class
from ..io.run_dir import RunDir, RunRecord, check_run_config, validated
from ..labels import CLASSES
from ..training.best_epoch import improves, selection_score
from . import live
from .summary import FoldCurve, RunSummary


class TrainerStateRecord(BaseModel):
    """The part of a Hugging Face ``trainer_state.json`` that fbp compare reads."""

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


def _is_fbp_run(directory: Path) -> bool:
    """An fbp run directory, finished or not: its ``run.json``, or the ``config.yaml`` written as training starts."""
    run = RunDir(directory)
    return run.record_path.is_file() or run.config_path.is_file()


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
            files.append(RunDir(path).record_path)
        elif (path / "trainer_state.json").is_file():
            files.append(path / "trainer_state.json")
        elif child_runs := sorted(RunDir(child).record_path for child in path.iterdir() if child.is_dir() and _is_fbp_run(child)):
            files.extend(child_runs)
        elif checkpoints := sorted(path.glob("checkpoint-*/trainer_state.json"), key=live.checkpoint_step):
            files.append(checkpoints[-1])  # the last checkpoint's state holds the whole log history
        else:
            raise FbpError(f"{path}: no run.json or trainer_state.json in this directory (is it an fbp run directory?)")
    if not files:
        raise UsageError("no runs to compare")
    unique: Dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def load_run(path: Path) -> RunSummary:
    """Read an fbp ``run.json`` or a Hugging Face ``trainer_state.json`` (told apart by their content)."""
    path = Path(path)
    run = RunDir(path.parent)
    if path.name == run.record_path.name and not path.exists() and run.config_path.is_file():
        return _from_run_json(path, live.record_from_config(run))  # training started, no run.json yet
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
        return _from_run_json(path, _with_checked_config(RunRecord.from_content(content, path), path))
    raise FbpError(f"{path} is neither an fbp run.json (no 'folds' and 'config') nor a Hugging Face trainer_state.json (no 'log_history')")


def _with_checked_config(record: RunRecord, path: Path) -> RunRecord:
    """The record, once its copy of the run's config (the settings compare shows) passes the checks a run's
    ``config.yaml`` does: complete, and valid settings. A damaged copy is refused, not shown as the run's settings."""
    check_run_config(record.config, path)
    try:
        validate_config(record.config, f"{path} (the run's config)")
    except UsageError as error:
        raise FbpError(str(error)) from None
    return record


def _from_run_json(path: Path, record: RunRecord) -> RunSummary:
    folds = [
        FoldCurve(fold.fold, fold.best_epoch, fold.best_f1, [(epoch.epoch, epoch.f1) for epoch in fold.epochs if epoch.f1 is not None])
        for fold in record.folds
    ]
    run = RunDir(path.parent)
    status = record.status
    settings = flatten_config(record.config)
    seconds = record.train_seconds
    if status != "complete":
        # A run not complete: the epochs of the fold in training (or interrupted) from its Trainer state, whether a
        # live process trains it, and (while it does) its time so far.
        finished = {fold.fold for fold in folds}
        folds = sorted(folds + [curve for curve in live.unfinished_folds(run) if curve.fold not in finished], key=lambda c: c.fold)
        status = live.training_status(run, status)
        seconds = live.elapsed_seconds(run, record.train_seconds, status)
    content = record.to_dict()
    per_class_key, per_class = quoted_per_class(content)
    return RunSummary(
        name=record.name or path.parent.name,
        source=path,
        model=record.model or settings.get("model.name"),
        status=status,
        settings=settings,
        cv_f1=record.cv_f1,
        cv_f1_tuned=record.cv_f1_tuned,
        cv_f1_learned=record.cv_f1_learned,
        decoder=record.decoder,
        quoted=quoted_key(content),
        per_class=per_class,
        per_class_decoding=per_class_key,
        folds=folds,
        train_seconds=seconds,
        folds_planned=live.planned_folds(run, settings),
        epochs_planned=settings.get("training.epochs"),
    )


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
        best_entry = at_best_step[0] if at_best_step else best_logged_epoch(scored, f1_key)
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


def best_logged_epoch(scored: List[Dict[str, Any]], f1_key: str = "eval_f1") -> Optional[Dict[str, Any]]:
    """The best of a Trainer's logged evaluations by fbp's one rule (:mod:`fbp.training.best_epoch`): the highest F1,
    an exact tie going to the lower validation loss, an earlier epoch kept unless a later one is strictly better."""
    best, best_score = None, None
    for entry in scored:
        loss = entry.get("eval_loss")
        score = selection_score(entry[f1_key], loss if isinstance(loss, (int, float)) else 100.0)
        if improves(score, best_score):
            best, best_score = entry, score
    return best


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
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(model_config, dict):
        return None
    architectures = model_config.get("architectures") or [None]
    return model_config.get("_name_or_path") or model_config.get("model_type") or architectures[0]
