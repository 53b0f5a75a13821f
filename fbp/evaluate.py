"""``fbp evaluate``: score a submission CSV or a run's out-of-fold predictions, and tune decoding thresholds.

A run directory is scored from its ``oof_word_probs.npz``, decoded with its ``decoding.json``, against
the spans of the processed data it was trained on (only the essays it predicted out of fold).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import pandas as pd

from .errors import FbpError, UsageError
from .metric import MetricResult, SpanSet, parse_spans, score

if TYPE_CHECKING:  # pydantic models and the run directory load only when a run is evaluated
    from .config import DecodingConfig
    from .run import RunDir
    from .decode import TuningReport

SPAN_COLUMNS = ["id", "class", "predictionstring"]


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


def read_span_file(path: Path, role: str, skip_blank: bool = False) -> Tuple[pd.DataFrame, SpanSet]:
    """Spans from a CSV (submission, or Kaggle ``train.csv`` whose ``discourse_type`` is the class) or a
    ``spans.parquet``: the ``DataFrame[id, class, predictionstring]`` and its parsed :class:`SpanSet`.
    Bad rows raise FbpError naming the file and line. ``skip_blank`` leaves out rows with neither class
    nor predictionstring (an essay with no span, as in Kaggle's ``sample_submission.csv``)."""
    path = Path(path)
    if not path.exists():
        raise FbpError(f"{role} file not found: {path}")
    if path.is_dir():
        raise FbpError(f"{role} {path} is a directory, expected a CSV file")
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as error:
            raise FbpError(f"cannot read {role} file {path}: {error}") from None
        first_line = None
    else:
        frame = _read_csv(path, role)
        first_line = 2  # line 1 is the header
    frame = frame.rename(columns={"discourse_type": "class"}) if "class" not in frame.columns else frame
    missing = [column for column in SPAN_COLUMNS if column not in frame.columns]
    if missing:
        raise FbpError(
            f"{path}: missing column(s) {', '.join(missing)} (a {role} file needs id, class or discourse_type, predictionstring; "
            f"found {', '.join(map(str, frame.columns)) or 'no columns'})"
        )
    frame = frame[SPAN_COLUMNS]
    spans = parse_spans(frame, str(path), first_line, skip_blank=skip_blank)  # on all rows, so errors name the right line
    if skip_blank:
        frame = frame[~(frame["class"].isna() & frame["predictionstring"].isna())]
    return frame, spans


def _read_csv(path: Path, role: str) -> pd.DataFrame:
    try:
        header = pd.read_csv(path, nrows=0).columns
        wanted = [column for column in header if column in ("id", "class", "discourse_type", "predictionstring")]
        frame = pd.read_csv(path, usecols=wanted)  # only the needed columns (train.csv also holds the essay texts)
        if not all(pd.api.types.is_string_dtype(frame[column]) for column in wanted):
            # A column read as numbers (e.g. every predictionstring one word): read it again as text,
            # which is several times slower, so only when needed.
            frame = pd.read_csv(path, usecols=wanted, dtype=str)
        return frame
    except pd.errors.EmptyDataError:
        raise FbpError(f"{role} file {path} is empty (expected a header id,class,predictionstring)") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise FbpError(f"cannot read {role} file {path}: {str(error).strip()}") from None


def is_run_dir(path: Path) -> bool:
    """A directory written by ``fbp train`` (it has ``run.json`` or ``oof_word_probs.npz``)."""
    from .run import RunDir

    run = RunDir(path)
    return run.summary_path.exists() or run.oof_path.exists()


def run_truth_path(run: RunDir) -> Path:
    """``spans.parquet`` of the processed data the run was trained on (from run.json, else config.yaml)."""
    import yaml

    processed = None
    if run.summary_path.exists():
        processed = _read_json(run.summary_path).get("processed_dir")
    if not processed and run.config_path.exists():
        processed = ((yaml.safe_load(run.config_path.read_text(encoding="utf-8")) or {}).get("data") or {}).get("processed_dir")
    if not processed:
        raise UsageError(f"{run.path} does not say which processed data it was trained on; give --truth TRAIN_CSV")
    spans_path = Path(processed) / "spans.parquet"
    if not spans_path.exists():
        raise FbpError(f"the ground truth of run {run.path} is missing: {spans_path} (its processed_dir); give --truth TRAIN_CSV")
    return spans_path


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise FbpError(f"cannot read {path}: {error}") from None


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
        raise UsageError("--tune needs a run directory (it tunes thresholds on out-of-fold word probabilities), not a submission file")
    if truth is None:
        raise UsageError("give the ground truth with --truth TRAIN_CSV to score a submission file")
    predictions, predicted_set = read_span_file(pred, "predictions", skip_blank=True)
    true_spans, true_set = read_span_file(truth, "truth")
    if true_spans.empty:
        raise FbpError(f"truth file {truth} has no spans")
    result = score(predicted_set, true_set)
    essays = pd.concat([true_spans["id"], predictions["id"]]).nunique()
    return Evaluation(result, str(pred), str(truth), len(predictions), len(true_spans), essays)


def _evaluate_run(path: Path, truth: Optional[Path], tune: bool) -> Evaluation:
    from .run import RunDir
    from .decode import decode_essays, tune_thresholds
    from .word_probs import load_word_probs

    run = RunDir(path)
    if not is_run_dir(path):
        raise FbpError(f"{path} is a directory but not an fbp run (no run.json or oof_word_probs.npz); give a run directory or a submission CSV")
    if not run.oof_path.exists():
        raise FbpError(f"run {path} has no out-of-fold predictions yet ({run.oof_path.name} is missing): train at least one fold first")
    word_probs = load_word_probs(run.oof_path)
    if not word_probs:
        raise FbpError(f"{run.oof_path} holds no essays")
    truth_path = Path(truth) if truth is not None else run_truth_path(run)
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
    """Write thresholds to the run's ``decoding.json`` and to the ``decoding`` key of each fold's
    ``fbp.json`` (so ``fbp infer`` / ``fbp ensemble`` use them with a run or a single checkpoint).
    Each file is replaced atomically. Returns the paths written."""
    from .atomic import write_atomic

    thresholds = decoding.model_dump(mode="json")
    write_atomic(run.decoding_path, json.dumps(thresholds, indent=2))
    written = [run.decoding_path]
    for meta_path in sorted(run.path.glob("fold_*/fbp.json")):
        meta = _read_json(meta_path)
        meta["decoding"] = thresholds
        write_atomic(meta_path, json.dumps(meta, indent=2))
        written.append(meta_path)
    return written
