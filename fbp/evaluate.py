"""``fbp evaluate``: score a submission CSV or a run's out-of-fold predictions, and tune decoding thresholds.

A run directory is scored from its ``oof_word_probs.npz``, decoded with its ``decoding.json``, against
the spans of the processed data it was trained on (only the essays it predicted out of fold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import pandas as pd

from .errors import FbpError, UsageError
from .io.kaggle import read_span_file
from .io.run_dir import TruthNotFound
from .metric import MetricResult, score

if TYPE_CHECKING:  # pydantic models and the run directory load only when a run is evaluated
    from .config import ThresholdConfig
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
    warnings: List[str] = field(default_factory=list)  # e.g. predicted essays the truth does not have
    what: str = "the predicted spans as given"  # what the F1 is: whose thresholds, in-sample or not
    to_quote: Optional[Tuple[str, float]] = None  # a run's honest figure (run.json key, value), when this one is optimistic
    learned: Optional[Dict[str, object]] = None  # after --tune on a run: the refitted learned decoder's cross-fitted F1 and the choice

    def to_dict(self) -> Dict[str, object]:
        numbers = self.result.to_dict()
        numbers.update({"predictions": self.predictions, "truth": self.truth, "predicted_spans": self.n_predicted, "true_spans": self.n_true, "essays": self.n_essays})
        if self.tuning is not None:
            numbers["tuning"] = self.tuning.to_dict()
        if self.learned is not None:
            numbers["learned_decoding"] = self.learned
        return numbers


def evaluate(pred: Path, truth: Optional[Path] = None, tune: bool = False, decoding: str = "auto") -> Evaluation:
    """Score ``pred`` (a submission CSV or a run directory) against ``truth``.

    For a run directory, ``truth`` defaults to its processed data's ``spans.parquet``, only the essays
    it predicted out of fold are scored, and ``tune=True`` first tunes the decoding thresholds on them
    and saves them as the run's ``decoding.json``, where ``fbp infer`` and ``fbp ensemble`` find them for the run
    and each of its fold checkpoints; with a ``run.json`` it also refits the learned decoder (:mod:`fbp.post_training`).
    """
    pred = Path(pred)
    if not pred.exists():
        raise FbpError(f"predictions not found: {pred} (give a submission CSV or a run directory)")
    if pred.is_dir():
        return _evaluate_run(pred, truth, tune, decoding)
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
    warnings = []
    unknown = sorted(set(predictions["id"].astype(str)) - set(true_spans["id"].astype(str)))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        warnings.append(
            f"{len(unknown)} of {predictions['id'].nunique()} predicted essays are not in the truth ({shown}): all their "
            f"spans count as false positives. Is {truth} the truth of these essays?"
        )
    return Evaluation(result, str(pred), str(truth), len(predictions), len(true_spans), essays, warnings=warnings)


def _evaluate_run(path: Path, truth: Optional[Path], tune: bool, mode: str = "auto") -> Evaluation:
    from .decode import decode_essays
    from .infer import ARGMAX, DECODINGS
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
    if mode not in DECODINGS:
        raise UsageError(f"unknown decoding {mode!r}; choose one of {', '.join(DECODINGS)}")
    decoding = run.decoding()
    record = run.read_record() if run.record_path.exists() else None
    tuning, saved, learned, warnings = None, [], None, []
    if tune:
        # A training of this run rewrites run.json and the out-of-fold probabilities: one writer at a time.
        with run.lock("fbp evaluate --tune"):
            decoding, tuning, learned = _retune(run, record, word_probs, true_spans, decoding)
            saved = [run.decoding_path] + ([run.decoder_path] if learned is not None else [])
            if learned is not None and learned["cross_fitted_by"] != "folds":
                warnings.append(f"cross-fitted by {learned['cross_fitted_by']}: {run.oof_path.name} was written before fbp "
                                f"recorded each essay's fold; retrain the run to cross-fit by its folds")
    use_learned = mode == "learned" or (mode == "auto" and run.uses_learned_decoder())
    if use_learned:
        decoder = run.learned_decoder()
        if decoder is None:
            raise UsageError(f"learned decoding was asked for, but run {path} has no learned decoder ({run.decoder_path.name}); fit one with fbp evaluate {path} --tune")
        predictions = decoder.decode(word_probs)
        what = "out-of-fold predictions, the run's learned decoder, fitted on these same essays (in-sample: optimistic)"
        honest = getattr(record, "cv_f1_learned", None) if record is not None else None
        to_quote = ("cv_f1_learned", honest) if honest is not None else None
    elif mode == "argmax":
        predictions = decode_essays(word_probs, ARGMAX)
        what, to_quote = "out-of-fold predictions, every argmax span (no thresholds)", None
    else:
        predictions = decode_essays(word_probs, decoding)
        configured = run.decoding_path.exists() is False or decoding == _configured_decoding(run)
        if tune:
            what = "out-of-fold predictions, thresholds tuned just now on these same essays (in-sample: optimistic)"
        elif configured:
            what = "out-of-fold predictions, the run's configured thresholds"
        else:
            what = "out-of-fold predictions, the run's tuned thresholds (decoding.json), tuned on these same essays (in-sample: optimistic)"
        honest = getattr(record, "cv_f1_tuned", None) if record is not None else None
        to_quote = ("cv_f1_tuned", honest) if honest is not None and (tune or not configured) else None
    result = score(predictions, true_spans)
    return Evaluation(result, f"{path} (out-of-fold)", str(truth_path), len(predictions), len(true_spans), len(word_probs), tuning, saved,
                      what=what, to_quote=to_quote, learned=learned, warnings=warnings)


def _retune(run: "RunDir", record, word_probs, true_spans, decoding) -> Tuple["ThresholdConfig", "TuningReport", Optional[Dict[str, object]]]:
    """Tune the run's thresholds on its out-of-fold essays and save them; with a ``run.json``, also refit its learned
    decoder and record which decoding the run uses (:mod:`fbp.post_training`), cross-fitted by the folds recorded
    in the out-of-fold file. Returns (tuned thresholds, tuning report, the refit's figures or None)."""
    from .io.word_probs import load_folds
    from .post_training import choose_decoding, cross_fit_groups, record_in_run

    groups = cross_fit_groups(list(word_probs), load_folds(run.oof_path), f"{run.oof_path.name} records no folds")
    choice = choose_decoding(word_probs, true_spans, decoding, groups, tune=True, learn=record is not None)
    if record is None:
        run.write_decoding(choice.thresholds)
        return choice.thresholds, choice.tuning, None
    record_in_run(run, record, choice)
    run.write_record(record)
    learned = {"cv_f1_learned": record.cv_f1_learned, "thresholds": choice.thresholds_result.f1, "decoder": record.decoder,
               "seconds": sum(choice.learned.seconds.values()), "cross_fitted_by": "folds" if groups.are_folds else groups.source}
    return choice.thresholds, choice.tuning, learned


def _configured_decoding(run: "RunDir"):
    """The thresholds the run's config names (what every epoch was scored with)."""
    from .config import validate_decoding

    return validate_decoding(run.read_config().get("decoding", {}), str(run.config_path))
