"""Decoding: word probabilities ``(n_words, 15)`` -> spans, and tuning its thresholds.

Each word takes its most probable label. A span starts at ``B-X`` (or at ``I-X`` after a word of
another class or ``O``) and continues over the following ``I-X`` words. It is kept when it has at
least ``decoding.min_words[X]`` words and the mean probability of class X (``B-X`` + ``I-X``) over its
words is at least ``decoding.min_confidence[X]`` (a class missing from either dict has no threshold).

All essays are decoded at once on their concatenated rows, so decoding 15,000 essays is a handful of
array operations rather than 15,000 small loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd

from .config import ThresholdConfig
from .errors import FbpError
from .labels import CLASSES, NUM_LABELS
from .metric import ClassScore, match_table, parse_spans, span_set_from_ranges

# Threshold grid searched by tune_thresholds (the current thresholds are always candidates too).
MIN_WORDS_GRID = tuple(range(1, 31))
MIN_CONFIDENCE_GRID = tuple(np.round(np.arange(0.0, 0.951, 0.025), 3))


@dataclass(frozen=True)
class CandidateSpans:
    """Every span the argmax labels form, before thresholds: parallel arrays, one entry per span."""

    essay_ids: Tuple[str, ...]  # the essays, in input order
    essay: np.ndarray  # index into essay_ids
    class_code: np.ndarray  # index into CLASSES
    start: np.ndarray  # first word (within the essay)
    end: np.ndarray  # one past the last word
    confidence: np.ndarray  # mean probability of the span's class over its words

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start

    def kept(self, decoding: ThresholdConfig) -> np.ndarray:
        """Mask of the spans that pass ``decoding``'s per-class thresholds."""
        min_words = np.array([decoding.min_words.get(name, 0) for name in CLASSES])
        min_confidence = np.array([decoding.min_confidence.get(name, 0.0) for name in CLASSES])
        return (self.length >= min_words[self.class_code]) & (self.confidence >= min_confidence[self.class_code])


def stack_word_probs(word_probs_by_id: Mapping[str, np.ndarray], essay_ids: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """The essays' word probabilities as one float32 ``(total_words, 15)`` array, and where each essay's rows start
    (``offsets[k]:offsets[k + 1]``); FbpError when an essay's array is not ``(n_words, 15)``."""
    arrays = [np.asarray(word_probs_by_id[essay_id]) for essay_id in essay_ids]
    for essay_id, probs in zip(essay_ids, arrays):
        if probs.ndim != 2 or probs.shape[1] != NUM_LABELS:
            raise FbpError(f"word probabilities of essay {essay_id} have shape {probs.shape}, expected (n_words, {NUM_LABELS})")
    offsets = np.concatenate([[0], np.cumsum([len(probs) for probs in arrays])]).astype(np.int64)
    probs = np.concatenate(arrays).astype(np.float32, copy=False) if arrays else np.zeros((0, NUM_LABELS), np.float32)
    return probs, offsets


def candidate_spans(word_probs_by_id: Mapping[str, np.ndarray]) -> CandidateSpans:
    """Split every essay's argmax labels into spans, with each span's length and mean confidence."""
    essay_ids = tuple(word_probs_by_id)
    probs, essay_offsets = stack_word_probs(word_probs_by_id, essay_ids)
    n_words = len(probs)

    labels = probs.argmax(axis=1)
    word_class = np.where(labels > 0, (labels - 1) // 2, -1)  # B-X and I-X -> X; O -> -1
    is_begin = (labels > 0) & (labels % 2 == 1)
    previous_class = np.empty_like(word_class)
    previous_class[1:] = word_class[:-1]
    previous_class[essay_offsets[:-1][essay_offsets[:-1] < n_words]] = -1  # essays never continue each other
    starts_span = (word_class >= 0) & (is_begin | (word_class != previous_class))
    # Any change of class (to O included), a new span, or a new essay ends the running span.
    boundary = starts_span | (word_class != previous_class)
    boundary[essay_offsets[:-1][essay_offsets[:-1] < n_words]] = True
    boundaries = np.append(np.flatnonzero(boundary), n_words)
    start_positions = np.flatnonzero(starts_span[boundaries[:-1]])
    starts, ends = boundaries[start_positions], boundaries[start_positions + 1]

    class_code = word_class[starts]
    # Probability of each word's own class (B + I), summed over spans with a cumulative sum.
    own_class_prob = probs[np.arange(n_words), 1 + 2 * np.maximum(word_class, 0)] + probs[np.arange(n_words), 2 + 2 * np.maximum(word_class, 0)]
    cumulative = np.concatenate([[0.0], np.cumsum(own_class_prob, dtype=np.float64)])
    confidence = (cumulative[ends] - cumulative[starts]) / (ends - starts)
    essay = np.searchsorted(essay_offsets, starts, side="right") - 1
    return CandidateSpans(essay_ids, essay, class_code, starts - essay_offsets[essay], ends - essay_offsets[essay], confidence)


def decode_spans(word_probs: np.ndarray, decoding: ThresholdConfig) -> List[Tuple[str, int, int]]:
    """Spans of one essay as ``[(class, start, end_exclusive), ...]`` in reading order."""
    candidates = candidate_spans({"essay": word_probs})
    kept = candidates.kept(decoding)
    return [(CLASSES[code], int(start), int(end)) for code, start, end in zip(candidates.class_code[kept], candidates.start[kept], candidates.end[kept])]


def decode_essays(word_probs_by_id: Mapping[str, np.ndarray], decoding: ThresholdConfig) -> pd.DataFrame:
    """Spans of every essay as a submission frame ``DataFrame[id, class, predictionstring]``.

    Rows follow the input essay order, then reading order; an essay with no span has no row.
    """
    candidates = candidate_spans(word_probs_by_id)
    kept = candidates.kept(decoding)
    return spans_frame(candidates.essay_ids, candidates.essay[kept], candidates.class_code[kept], candidates.start[kept], candidates.end[kept])


def spans_frame(essay_ids: Sequence[str], essay: np.ndarray, class_code: np.ndarray, start: np.ndarray, end: np.ndarray) -> pd.DataFrame:
    """Submission rows for spans ``[start, end)``; predictionstrings are cut from one prebuilt "0 1 2 ..." string."""
    longest = int(end.max()) if len(end) else 0
    numbers = [str(word) for word in range(longest + 1)]
    all_words = " ".join(numbers)
    word_at = np.concatenate([[0], np.cumsum([len(number) + 1 for number in numbers])])  # character offset of each word
    char_starts, char_ends = word_at[start].tolist(), (word_at[end] - 1).tolist()
    return pd.DataFrame(
        {
            "id": np.asarray(essay_ids, dtype=object)[essay] if len(essay) else np.array([], dtype=object),
            "class": np.asarray(CLASSES, dtype=object)[class_code] if len(class_code) else np.array([], dtype=object),
            "predictionstring": [all_words[begin:finish] for begin, finish in zip(char_starts, char_ends)],
        },
        columns=["id", "class", "predictionstring"],
    )


# --------------------------------------------------------------------------------------------------
# Threshold tuning


@dataclass(frozen=True)
class ClassTuning:
    """Before/after of one class."""

    name: str
    before: ClassScore
    after: ClassScore
    min_words_before: int
    min_words_after: int
    min_confidence_before: float
    min_confidence_after: float


@dataclass(frozen=True)
class TuningReport:
    """Per-class tuning results; macro F1 over the classes present in the truth."""

    classes: List[ClassTuning]

    @property
    def f1_before(self) -> float:
        return float(np.mean([row.before.f1 for row in self.classes])) if self.classes else 0.0

    @property
    def f1_after(self) -> float:
        return float(np.mean([row.after.f1 for row in self.classes])) if self.classes else 0.0

    def to_dict(self) -> Dict[str, object]:
        return {
            "f1_before": self.f1_before,
            "f1_after": self.f1_after,
            "per_class": {
                row.name: {
                    "f1_before": row.before.f1,
                    "f1_after": row.after.f1,
                    "min_words": [row.min_words_before, row.min_words_after],
                    "min_confidence": [row.min_confidence_before, row.min_confidence_after],
                }
                for row in self.classes
            },
        }


def tune_thresholds(
    word_probs_by_id: Mapping[str, np.ndarray],
    truth: pd.DataFrame,
    decoding: ThresholdConfig,
    min_words_grid: Sequence[int] = MIN_WORDS_GRID,
    min_confidence_grid: Sequence[float] = MIN_CONFIDENCE_GRID,
) -> Tuple[ThresholdConfig, TuningReport]:
    """Search each class's ``min_words`` x ``min_confidence`` for the best F1 on (out-of-fold) probabilities.

    Only the essays in ``word_probs_by_id`` are scored (truth of other essays is left out). Classes
    are independent in the macro F1, so each is tuned on its own. The candidate spans are decoded and
    matched against the truth once; each threshold pair then only filters them. The current thresholds
    are part of the search and win ties, so the F1 never gets worse. Returns the tuned config (classes
    absent from the truth keep their thresholds) and a before/after report.
    """
    candidates = candidate_spans(word_probs_by_id)
    truth_spans = parse_spans(truth[truth["id"].astype(str).isin(set(candidates.essay_ids))], "truth")
    predicted = span_set_from_ranges(np.asarray(candidates.essay_ids, dtype=object)[candidates.essay], candidates.class_code, candidates.start, candidates.end)
    matches = match_table(predicted, truth_spans)
    n_truth = np.bincount(truth_spans.class_codes, minlength=len(CLASSES))

    min_words, min_confidence = dict(decoding.min_words), dict(decoding.min_confidence)
    rows = []
    for code, name in enumerate(CLASSES):
        if not n_truth[code]:
            continue
        in_class = candidates.class_code == code
        class_matches = matches.of_class(code)
        lengths, confidences = candidates.length[in_class], candidates.confidence[in_class]
        current = (decoding.min_words.get(name, 0), decoding.min_confidence.get(name, 0.0))

        def class_score(threshold: Tuple[int, float]) -> ClassScore:
            kept = (lengths >= threshold[0]) & (confidences >= threshold[1])
            return ClassScore(*map(int, class_matches.counts(kept)[code]))

        before = class_score(current)
        best, best_score = current, before
        for words in sorted(set(min_words_grid) | {current[0]}):
            for confidence in sorted(set(min_confidence_grid) | {current[1]}):
                candidate_score = class_score((words, confidence))
                if candidate_score.f1 > best_score.f1:
                    best, best_score = (words, float(confidence)), candidate_score
        min_words[name], min_confidence[name] = int(best[0]), float(best[1])
        rows.append(ClassTuning(name, before, best_score, current[0], int(best[0]), current[1], float(best[1])))
    tuned = ThresholdConfig(min_words=min_words, min_confidence=min_confidence)
    return tuned, TuningReport(rows)


def cross_fitted_predictions(
    word_probs_by_id: Mapping[str, np.ndarray], truth: pd.DataFrame, decoding: ThresholdConfig, groups: Sequence[int]
) -> pd.DataFrame:
    """Each group's essays (``groups``: one per essay of ``word_probs_by_id``, in order) decoded with thresholds tuned
    (from ``decoding``) on the other groups only: predictions to score without the optimism of tuning and scoring on
    the same essays. With a single group, the essays are split in two random halves (seed 0)."""
    ids = list(word_probs_by_id)
    groups = np.asarray(groups)
    if len(np.unique(groups)) < 2:
        groups = np.random.default_rng(0).permutation(len(ids)) % 2
    predictions = []
    for group in np.unique(groups):
        tune_ids = {essay_id for essay_id, g in zip(ids, groups) if g != group}
        tuned, _ = tune_thresholds({i: word_probs_by_id[i] for i in tune_ids}, truth[truth["id"].isin(tune_ids)], decoding)
        predictions.append(decode_essays({i: word_probs_by_id[i] for i, g in zip(ids, groups) if g == group}, tuned))
    return pd.concat(predictions, ignore_index=True)


def cross_fitted_thresholds(
    word_probs_by_id: Mapping[str, np.ndarray], truth: pd.DataFrame, decoding: ThresholdConfig, groups: Sequence[int]
) -> Tuple[ThresholdConfig, pd.DataFrame]:
    """Thresholds tuned on all essays, and an honest estimate of what tuning gains: (thresholds tuned on every
    essay, :func:`cross_fitted_predictions`). Which decoding a run uses is :mod:`fbp.post_training`'s decision."""
    tuned_on_all, _ = tune_thresholds(word_probs_by_id, truth, decoding)
    return tuned_on_all, cross_fitted_predictions(word_probs_by_id, truth, decoding, groups)
