"""What ``fbp compare`` knows about one run, whatever file it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


@dataclass
class FoldCurve:
    """One fold's validation F1 per epoch and its kept (best) epoch."""

    fold: Optional[int]
    best_epoch: Optional[float]
    best_f1: Optional[float]
    epoch_f1: List[Tuple[float, float]] = field(default_factory=list)
    finished: bool = True  # False: a fold still training (or interrupted); best_epoch is the best so far


@dataclass
class RunSummary:
    """One run: its name, status, settings (dotted keys), CV F1 figures, folds and training time."""

    name: str
    source: Path
    model: Optional[str]
    status: str
    settings: Dict[str, Any]  # the config as dotted keys
    cv_f1: Optional[float]
    per_class: Dict[str, Optional[float]]  # the per-class F1 of the run's own decoding (see per_class_decoding)
    folds: List[FoldCurve]
    train_seconds: Optional[float]  # all invocations together; for a run in training, up to now
    best_checkpoint: Optional[str] = None
    cv_f1_tuned: Optional[float] = None  # fbp train: thresholds tuned out of fold, cross-fitted
    cv_f1_learned: Optional[float] = None  # fbp train: learned span decoder, cross-fitted
    decoder: Optional[str] = None  # the decoding the run uses: "learned" or "thresholds"
    quoted: Optional[str] = None  # the figure to quote: "cv_f1", "cv_f1_tuned" or "cv_f1_learned" (fbp.figures)
    per_class_decoding: Optional[str] = None  # which F1 per_class holds: "cv_f1", "cv_f1_tuned", "cv_f1_learned"
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
