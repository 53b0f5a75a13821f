"""``run.json``: a run's record (:class:`RunRecord`, its folds and their epochs), one schema, read here and
written by :meth:`fbp.io.run_dir.RunDir.write_summary`.

Lenient on reading (unknown keys are kept, missing ones get defaults, so older or hand-made files still load),
exact on writing: keys fbp train never set are not written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import FbpError


def validated(record_type: Any, content: Any, source: Union[str, Path]) -> Any:
    """``record_type`` (a pydantic model) from parsed JSON; FbpError naming ``source``, the bad key and its value."""
    try:
        return record_type.model_validate(content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise FbpError(f"{source}: '{where}' {first['msg'].lower()} (got {first.get('input')!r})") from None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class EpochRecord(_Record):
    """One epoch of one fold: mean training loss, validation loss, F1, per-class F1, whether it was kept."""

    epoch: Union[int, float]
    loss: Optional[float] = None
    eval_loss: Optional[float] = None
    f1: Optional[float] = None
    per_class: Dict[str, Optional[float]] = {}
    saved: Optional[bool] = None
    seconds: Optional[float] = None


class FoldRecord(_Record):
    """A finished fold: its best epoch (the one its checkpoint holds) and every epoch's numbers."""

    fold: int
    best_epoch: Optional[Union[int, float]] = None
    best_f1: Optional[float] = None
    seconds: Optional[float] = None
    epochs: List[EpochRecord] = []


class RunRecord(_Record):
    """``run.json``: the run's summary."""

    name: Optional[str] = None
    model: Optional[str] = None
    fbp_version: Optional[str] = None
    created: Optional[str] = None
    status: str = "complete"
    processed_dir: Optional[str] = None  # absolute, so evaluate and ensemble find the truth from anywhere
    processed_fingerprint: Optional[str] = None  # of the processed data trained on: a resume against other data refuses
    config: Dict[str, Any] = {}
    cv_f1: Optional[float] = None  # macro F1 of all out-of-fold predictions, configured thresholds
    cv_per_class: Dict[str, Optional[float]] = {}
    cv_essays: Optional[int] = None
    cv_f1_tuned: Optional[float] = None  # thresholds tuned out of fold, cross-fitted
    cv_per_class_tuned: Dict[str, Optional[float]] = {}
    cv_f1_learned: Optional[float] = None  # the learned span decoder, cross-fitted
    cv_per_class_learned: Dict[str, Optional[float]] = {}
    decoder: Optional[str] = None  # the decoding the run uses: "learned" or "thresholds" (None: thresholds, runs made before)
    train_seconds: Optional[float] = None
    folds: List[FoldRecord] = []

    @classmethod
    def from_content(cls, content: Any, source: Union[str, Path]) -> "RunRecord":
        """Validate parsed ``run.json`` content; FbpError naming ``source`` and the bad key."""
        return validated(cls, content, source)

    @staticmethod
    def looks_like(content: Any) -> bool:
        """Whether parsed JSON is a run.json (it has ``folds`` and ``config``)."""
        return isinstance(content, dict) and "folds" in content and "config" in content

    def with_fold(self, fold: FoldRecord) -> None:
        """Add or replace a fold, keeping folds in order."""
        self.folds = sorted([f for f in self.folds if f.fold != fold.fold] + [fold], key=lambda f: f.fold)


def read_run_json(path: Union[str, Path]) -> RunRecord:
    """A ``run.json`` file, validated (FbpError when it is unreadable or not one)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FbpError(f"cannot read {path}: {error}") from None
    return RunRecord.from_content(content, path)
