"""``fbp evaluate``: score a submission CSV or a run's out-of-fold predictions, and tune decoding thresholds.

A run directory is scored from its ``oof_word_probs.npz``, decoded with its ``decoding.json``, against
the spans of the processed data it was trained on (only the essays it predicted out of fold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

import pandas as pd

from .errors import FbpError, UsageError
from .io.kaggle import read_span_file
from .io.run_dir import TruthNotFound
from .metric import MetricResult, score

if TYPE_CHECKING:  # pydantic models and the run directory load only when a run is evaluated
    from .config import DecodingConfig
    from .decode import TuningReport
    from .io.run_dir import RunDir

@dataclass
class Evaluation:
    """What was scored and the result (and, after ``--tune``, the tuning report)."""

    result: MetricResult
    predictions: str
    truth: str
    n_predicted: int
    n_true: int
    n_essays: int
    tuning: Optional["TuningReport"] = None  # after --tune: per-class F1 before and after
    saved: List[Path] = field(default_factory=list)  # files the tuned thresholds were written to

    def to_dict(self) -> Dict[str, object]:
        numbers = self.result.to_dict()
        numbers.update({"predictions": self.predictions, "truth": self.truth, "predicted_spans": self.n_predicted, "true_spans": self.n_true, "essays": self.n_essays})
        if self.tuning is not None:
            numbers["tuning"] = self.tuning.to_dict()
        return numbers


def evaluate(pred: Path, truth: Optional[Path] = None, tune: bool = False) -> Evaluation:
    """Score ``pred`` (a submission CSV or a run directory) against ``truth``.

    For a run directory, ``truth`` defaults to its processed data's ``spans.parquet``, only the essays
    it predicted out of fold are scored, and ``tune=True`` first tunes the decoding thresholds on them
    and saves them (see :func:`save_decoding`).
    """
    pred = Path(pred)
    if not pred.exists():
        raise FbpError(f"predictions not found: {pred} (give a submission CSV or a run directory)")
    if pred.is_dir():
        return _evaluate_run(pred, truth, tune)
    if tune:
        raise UsageError("tuning thresholds needs a run directory (its out-of-fold word probabilities), not a submission file")
    if truth is None:
        raise TruthNotFound("a submission file is scored against a ground truth, and none was given", exit_code=UsageError.exit_code)
    predictions, predicted_set = read_span_file(pred, "predictions", skip_blank=True)
    true_spans, true_set = read_span_file(truth, "truth")
    if true_spans.empty:
        raise FbpError(f"truth file {truth} has no spans")
    result = score(predicted_set, true_set)
    essays = pd.concat([true_spans["id"], predictions["id"]]).nunique()
    return Evaluation(result, str(pred), str(truth), len(predictions), len(true_spans), essays)


def _evaluate_run(path: Path, truth: Optional[Path], tune: bool) -> Evaluation:
    from .decode import decode_essays, tune_thresholds
    from .io.run_dir import RunDir
    from .io.word_probs import load_word_probs

    run = RunDir(path)
    if not run.is_run():
        raise FbpError(f"{path} is a directory but not an fbp run (no run.json or oof_word_probs.npz); give a run directory or a submission CSV")
    if not run.oof_path.exists():
        raise FbpError(f"run {path} has no out-of-fold predictions yet ({run.oof_path.name} is missing): train at least one fold first")
    word_probs = load_word_probs(run.oof_path)
    if not word_probs:
        raise FbpError(f"{run.oof_path} holds no essays")
    truth_path = Path(truth) if truth is not None else run.truth_path()
    true_spans, _ = read_span_file(truth_path, "truth")
    true_spans = true_spans[true_spans["id"].isin(set(word_probs))]
    if true_spans.empty:
        raise FbpError(f"{truth_path} has no spans for the {len(word_probs)} essays of {run.oof_path} (is it the truth this run was trained on?)")
    decoding = run.decoding()
    tuning, saved = None, []
    if tune:
        decoding, tuning = tune_thresholds(word_probs, true_spans, decoding)
        saved = save_decoding(run, decoding)
    predictions = decode_essays(word_probs, decoding)
    result = score(predictions, true_spans)
    return Evaluation(result, f"{path} (out-of-fold)", str(truth_path), len(predictions), len(true_spans), len(word_probs), tuning, saved)


def save_decoding(run: "RunDir", decoding: "DecodingConfig") -> List[Path]:
    """Save tuned thresholds as the run's ``decoding.json``, where ``fbp infer`` and ``fbp ensemble`` find them
    for the run and for each of its fold checkpoints (:func:`fbp.io.checkpoint.checkpoint_decoding`). Returns
    the paths written."""
    return [run.write_decoding(decoding)]
