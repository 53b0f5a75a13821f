"""``run.json``: a run's record (:class:`RunRecord`, its folds and their epochs), one schema, read here and
written by :meth:`fbp.io.run_dir.RunDir.write_record`.

Lenient on reading (unknown keys are kept, missing ones get defaults, so older or hand-made files still load),
exact on writing: keys fbp train never set are not written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import FbpError


def validated(record_type: Any, content: Any, source: Union[str, Path]) -> Any:
    """``record_type`` (a pydantic model) from parsed JSON; FbpError naming ``source``, the bad key and its value."""
    try:
        return record_type.model_validate(content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise FbpError(f"{source}: '{where}' {first['msg'].lower()} (got {shown})") from None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)  # no NaN or infinite figure is believed

    def to_dict(self) -> Dict[str, Any]:
        return _finite_or_none(self.model_dump(mode="json", exclude_unset=True))


def _finite_or_none(value: Any) -> Any:
    """A record as written: a NaN or infinite figure (a diverged training's loss) is stored as null, which reads back."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value


def _only_classes(value: Dict[str, Any]) -> Dict[str, Any]:
    from ..labels import CLASSES

    unknown = [name for name in value if name not in CLASSES]
    if unknown:
        raise ValueError(f"unknown class {unknown[0][:40]!r}")
    return value


Score = Optional[Annotated[float, Field(ge=0, le=1)]]  # an F1
Amount = Optional[Annotated[float, Field(ge=0, le=1e9)]]  # seconds, a loss
Count = Union[Annotated[int, Field(ge=0, le=100_000)], Annotated[float, Field(ge=0, le=100_000)]]  # an epoch


class EpochRecord(_Record):
    """One epoch of one fold: mean training loss, validation loss, F1, per-class F1, whether it was kept."""

    epoch: Count
    loss: Amount = None
    eval_loss: Amount = None
    f1: Score = None
    per_class: Dict[str, Score] = {}
    saved: Optional[bool] = None
    seconds: Amount = None

    @field_validator("per_class")
    @classmethod
    def _known_classes(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        return _only_classes(value)


class FoldRecord(_Record):
    """A finished fold: its best epoch (the one its checkpoint holds) and every epoch's numbers."""

    fold: int = Field(ge=0, le=1000)
    best_epoch: Optional[Count] = None
    best_f1: Score = None
    seconds: Amount = None
    epochs: List[EpochRecord] = []


class RunRecord(_Record):
    """``run.json``: the run's summary."""

    name: Optional[str] = None
    model: Optional[str] = None
    fbp_version: Optional[str] = None
    created: Optional[str] = None
    status: Literal["complete", "running", "partial", "interrupted"] = "complete"
    processed_dir: Optional[str] = None  # absolute, so evaluate and ensemble find the truth from anywhere
    processed_fingerprint: Optional[str] = None  # of the processed data trained on: a resume against other data refuses
    config: Dict[str, Any] = {}
    cv_f1: Score = None  # macro F1 of all out-of-fold predictions, configured thresholds
    cv_per_class: Dict[str, Score] = {}
    cv_essays: Optional[Annotated[int, Field(ge=0, le=100_000_000)]] = None
    cv_f1_tuned: Score = None  # thresholds tuned out of fold, cross-fitted
    cv_per_class_tuned: Dict[str, Score] = {}
    cv_f1_learned: Score = None  # the learned span decoder, cross-fitted
    cv_per_class_learned: Dict[str, Score] = {}
    decoder: Optional[Literal["learned", "thresholds"]] = None  # the decoding the run uses: "learned" or "thresholds" (None: thresholds, runs made before)
    train_seconds: Amount = None
    folds: List[FoldRecord] = []

    @field_validator("cv_per_class", "cv_per_class_tuned", "cv_per_class_learned")
    @classmethod
    def _known_classes(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        return _only_classes(value)

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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FbpError(f"cannot read {path}: {error}") from None
    return RunRecord.from_content(content, path)
