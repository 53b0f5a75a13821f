"""What ``fbp compare`` shows of a run that is not complete: whether a live ``fbp train`` holds it, the epochs of
the fold in training (from its Trainer checkpoints), how many folds it trains, and its time so far.

The run directory's owner (:mod:`fbp.io.run_dir`) says whether a live process trains the run and reads the
processed data's ``meta.json``; the best epoch so far is the one the Trainer keeps (:mod:`fbp.training.best_epoch`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..io.run_dir import RunDir, RunLock, RunRecord
from .summary import FoldCurve

def training_status(run: RunDir, recorded: str) -> str:
    """``complete``, ``running``, ``interrupted`` or ``partial``: the run directory's owner decides
    (:meth:`fbp.io.run_dir.RunDir.training_status`: the lock and whether its process still runs)."""
    return run.training_status(recorded)


def elapsed_seconds(run: RunDir, recorded: Optional[float], status: str) -> Optional[float]:
    """A run's training time: what ``run.json`` recorded (every invocation's time, added as each fold ends and when
    one stops), plus, while it trains, the time since that record was written."""
    if status != "running":
        return recorded
    try:
        since = max(0.0, time.time() - run.record_path.stat().st_mtime)
    except OSError:  # no run.json yet: the time since the lock was taken
        since = max(0.0, time.time() - _lock_time(run))
    return (recorded or 0.0) + since


def _lock_time(run: RunDir) -> float:
    try:
        return RunLock(run.path).path.stat().st_mtime
    except OSError:
        return time.time()


def record_from_config(run: RunDir) -> RunRecord:
    """A run whose training started but that has no ``run.json`` yet: what its ``config.yaml`` says."""
    config = run.read_config()
    return RunRecord(name=config.get("name") or run.path.name, model=(config.get("model") or {}).get("name"),
                     status="running", config=config, folds=[])


def checkpoint_step(state_file: Path) -> int:
    """The step N of a ``checkpoint-N/trainer_state.json`` (-1 when the folder is not named so)."""
    step = state_file.parent.name.rpartition("-")[2]
    return int(step) if step.isdigit() else -1


def unfinished_folds(run: RunDir) -> List[FoldCurve]:
    """Folds with Trainer checkpoints in ``.work`` (a fold in training, or interrupted): the epochs evaluated so far,
    the best so far being the one the Trainer keeps (its ``best_global_step``)."""
    from ..training.best_epoch import kept_evaluation

    curves = []
    for work in sorted(run.work_path.glob("fold_*")):
        suffix = work.name.rpartition("_")[2]
        if not suffix.isdigit():
            continue
        state = None
        for state_file in sorted(work.glob("checkpoint-*/trainer_state.json"), key=checkpoint_step, reverse=True):
            try:  # the newest one whole; a checkpoint being written or rotated away is skipped
                state = json.loads(state_file.read_text(encoding="utf-8"))
                break
            except (OSError, ValueError):
                continue
        if not isinstance(state, dict):
            continue
        scored = [entry for entry in state.get("log_history") or []
                  if isinstance(entry, dict) and isinstance(entry.get("eval_f1"), (int, float)) and "epoch" in entry]
        if not scored:
            continue
        best = kept_evaluation(state.get("log_history") or [], state.get("best_global_step")) or scored[-1]
        curves.append(FoldCurve(int(suffix), round(float(best["epoch"])), float(best["eval_f1"]),
                                [(round(float(entry["epoch"])), float(entry["eval_f1"])) for entry in scored], finished=False))
    return curves


def planned_folds(run: RunDir, settings: Dict[str, Any]) -> Optional[int]:
    """How many folds the run trains: ``--fold``'s, else ``data.folds``, else its processed data's (``meta.json``)."""
    if settings.get("data.train_folds"):
        return len(settings["data.train_folds"])
    if settings.get("data.folds"):
        return int(settings["data.folds"])
    folds = (run.processed_meta() or {}).get("folds")
    return int(folds) if isinstance(folds, int) else None
