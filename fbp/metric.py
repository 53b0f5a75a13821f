"""The competition metric: overlap F1 of predicted spans against ground-truth spans, exact and fast.

Rules (Feedback Prize 2021), applied per class and essay:

* a prediction and a ground truth *match* when each covers at least half of the other's words
  (``2 * |gt & pred| >= |gt|`` and ``2 * |gt & pred| >= |pred|``);
* each ground truth keeps at most one match, the prediction with the highest overlap, which is
  (as in Kaggle's scorer) the larger of the two ratios, ``|gt & pred| / min(|gt|, |pred|)``; ties go
  to the prediction that comes first in the input;
  ground truths are keyed by essay and word set, so exact duplicates count once;
* TP = kept matches, FP = predictions that no ground truth kept, FN = ground truths with no match;
* class F1 = TP / (TP + (FP + FN) / 2); the score is the mean over the classes present in the truth.

Speed comes from never looking at spans one by one in Python: predictionstrings are parsed straight
from the Arrow string buffer with numpy (in ~1 MB chunks of rows; each token's digits are read as one
integer and converted with SWAR arithmetic), every span becomes runs of consecutive word indices (one
run for the usual contiguous span), and all candidate pairs of one essay and class are compared at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Dict, Optional, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import FbpError
from .labels import CLASSES
from .predictionstrings import first_row, parse_word_lists, strings_array, word_runs

SpanFrame = pd.DataFrame  # columns: id, class (or discourse_type), predictionstring

@dataclass(frozen=True)
class SpanSet:
    """Spans parsed into runs of consecutive word indices: what the metric compares.

    Span ``i`` covers the half-open runs ``run_starts[k]:run_ends[k]`` for ``k`` in
    ``run_offsets[i]:run_offsets[i + 1]`` (maximal runs, sorted, so equal word sets have equal runs).
    """

    essay_ids: pa.Array  # essay id of each span (Arrow strings: no Python object per span)
    class_codes: np.ndarray  # index into CLASSES of each span
    sizes: np.ndarray  # number of distinct words of each span
    run_offsets: np.ndarray
    run_starts: np.ndarray
    run_ends: np.ndarray

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def contiguous(self) -> bool:
        """True when every span is one range of consecutive words (the fast path)."""
        return len(self.run_starts) == len(self.sizes)


@dataclass(frozen=True)
class ClassScore:
    """Counts and scores of one class."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denominator = self.tp + (self.fp + self.fn) / 2
        return self.tp / denominator if denominator else 0.0

    def to_dict(self) -> Dict[str, float]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True)
class MetricResult:
    """Per-class scores (classes present in the truth, in :data:`CLASSES` order) and their macro F1."""

    per_class: Dict[str, ClassScore]
    ignored_classes: Tuple[str, ...] = ()  # predicted but absent from the truth, so not scored

    @property
    def f1(self) -> float:
        """Macro F1: the mean of the class F1 scores (0 when the truth is empty)."""
        return float(np.mean([score.f1 for score in self.per_class.values()])) if self.per_class else 0.0

    @property
    def totals(self) -> ClassScore:
        """TP, FP and FN summed over the scored classes."""
        scores = self.per_class.values()
        return ClassScore(sum(s.tp for s in scores), sum(s.fp for s in scores), sum(s.fn for s in scores))

    def class_f1(self) -> Dict[str, float]:
        """``{class: F1}``, the shape of ``run.json``'s ``cv_per_class``."""
        return {name: score.f1 for name, score in self.per_class.items()}

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready numbers, with the macro F1 under the top-level ``"f1"`` key."""
        return {
            "f1": self.f1,
            "per_class": {name: score.to_dict() for name, score in self.per_class.items()},
            "ignored_classes": list(self.ignored_classes),
        }


# --------------------------------------------------------------------------------------------------
# Parsing


def parse_spans(frame: SpanFrame, source: str = "spans", first_line: Optional[int] = None, skip_blank: bool = False) -> SpanSet:
    """Validate and parse ``DataFrame[id, class, predictionstring]`` into a :class:`SpanSet`.

    The class column may also be called ``discourse_type`` (as in the competition's ``train.csv``).
    Raises :class:`FbpError` naming ``source`` and the row for a missing column, an unknown class, or
    a predictionstring that is not a non-empty list of word indices. Rows are counted from 1, or
    named as file lines when ``first_line`` (the line of the first row, 2 for a CSV) is given.
    With ``skip_blank``, rows whose class and predictionstring are both empty (Kaggle's
    ``sample_submission.csv`` lists essays with no span that way) are left out instead.
    """
    class_column = "discourse_type" if "class" not in frame.columns and "discourse_type" in frame.columns else "class"
    missing = [column for column in ("id", class_column, "predictionstring") if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise FbpError(f"{source}: missing column(s) {', '.join(missing)} (expected id, class, predictionstring; found {found})")
    row_numbers = np.arange(1, len(frame) + 1)
    if skip_blank:
        blank = (frame[class_column].isna() & frame["predictionstring"].isna()).to_numpy()
        if blank.any():
            frame, row_numbers = frame[~blank], row_numbers[~blank]

    def where(row: int) -> str:
        """Name row ``row`` (1-based, of the rows parsed) as the user counts it."""
        original = int(row_numbers[row - 1])
        return f"{source}, line {original + first_line - 1}" if first_line is not None else f"{source}, row {original}"

    essay_ids = strings_array(frame["id"])
    classes = strings_array(frame[class_column])
    for column, values in (("id", essay_ids), (class_column, classes)):
        if values.null_count:
            raise FbpError(f"{where(first_row(values.is_null()))}: empty {column}")
    # Class names -> codes through Arrow's dictionary (a handful of distinct strings).
    encoded = classes.dictionary_encode()
    name_codes = pd.Index(CLASSES).get_indexer(encoded.dictionary.to_pylist())
    class_codes = name_codes[encoded.indices.to_numpy(zero_copy_only=False)] if len(classes) else np.zeros(0, np.int64)
    if (class_codes < 0).any():
        row = first_row(class_codes < 0)
        raise FbpError(f"{where(row)}: unknown class {classes[row - 1].as_py()!r} (allowed: {', '.join(CLASSES)})")
    words, word_offsets = parse_word_lists(frame["predictionstring"], essay_ids, where)
    sizes, run_offsets, run_starts, run_ends = word_runs(words, word_offsets)
    return SpanSet(essay_ids, class_codes.astype(np.int64), sizes, run_offsets, run_starts, run_ends)


def span_set_from_ranges(essay_ids, class_codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> SpanSet:
    """A :class:`SpanSet` of contiguous spans ``[start, end)`` (decoded spans: no strings to build or parse).

    ``essay_ids`` is one id per span (any sequence of str or an Arrow string array).
    """
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    if (ends <= starts).any():
        raise ValueError("every span needs end > start")
    essay_ids = essay_ids if isinstance(essay_ids, pa.Array) else pa.array(np.asarray(essay_ids, dtype=object), type=pa.large_string())
    return SpanSet(essay_ids, np.asarray(class_codes, np.int64), ends - starts, np.arange(len(starts) + 1), starts, ends)


def _as_span_set(spans: Union[SpanSet, SpanFrame], source: str) -> SpanSet:
    return spans if isinstance(spans, SpanSet) else parse_spans(spans, source)


# --------------------------------------------------------------------------------------------------
# Matching


def _pairs_in_groups(left_groups: np.ndarray, right_groups: np.ndarray, n_groups: int) -> Tuple[np.ndarray, np.ndarray]:
    """Every (left, right) index pair whose groups (essay and class) are equal, without a Python loop,
    sorted by left index, then right index."""
    right_order = np.argsort(right_groups, kind="stable")
    right_counts = np.bincount(right_groups, minlength=n_groups)
    right_first = np.concatenate([[0], np.cumsum(right_counts)[:-1]])
    per_left = right_counts[left_groups]
    left_index = np.repeat(np.arange(len(left_groups)), per_left)
    pair_starts = np.cumsum(per_left) - per_left
    rank = np.arange(len(left_index)) - np.repeat(pair_starts, per_left)
    right_index = right_order[np.repeat(right_first[left_groups], per_left) + rank]
    return left_index, right_index


def _overlaps(left: SpanSet, left_index: np.ndarray, right: SpanSet, right_index: np.ndarray) -> np.ndarray:
    """Number of shared words of each pair (left_index[k], right_index[k]) of general word sets.

    For each pair, the runs of the span with fewer runs are looked up in the other span's runs (a binary search
    each): time and memory grow with the runs of the smaller side times a logarithm, never with the product of
    both (two spans of 6,000 scattered words each are 6,000 searches, not 36 million run pairs).
    """
    swap = np.diff(left.run_offsets)[left_index] > np.diff(right.run_offsets)[right_index]
    shared = np.empty(len(left_index), np.int64)
    keep = ~swap
    shared[keep] = _covered_by(left, left_index[keep], right, right_index[keep])
    shared[swap] = _covered_by(right, right_index[swap], left, left_index[swap])
    return shared


def _covered_by(outer: SpanSet, outer_index: np.ndarray, inner: SpanSet, inner_index: np.ndarray) -> np.ndarray:
    """For each pair k, how many words of span ``inner_index[k]`` fall in the runs of span ``outer_index[k]``."""
    runs_per_pair = np.diff(outer.run_offsets)[outer_index]
    pair_of = np.repeat(np.arange(len(outer_index)), runs_per_pair)
    rank = np.arange(len(pair_of)) - np.repeat(np.cumsum(runs_per_pair) - runs_per_pair, runs_per_pair)
    outer_run = outer.run_offsets[outer_index][pair_of] + rank
    inner_span = inner_index[pair_of]
    covered = _words_below(inner, inner_span, outer.run_ends[outer_run]) - _words_below(inner, inner_span, outer.run_starts[outer_run])
    return np.bincount(pair_of, weights=covered, minlength=len(outer_index)).astype(np.int64)


def _words_below(spans: SpanSet, span: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """How many words of span ``span[i]`` are below word index ``bound[i]``: one binary search in that span's runs."""
    run_sizes = spans.run_ends - spans.run_starts
    words_before_run = np.concatenate([[0], np.cumsum(run_sizes)])  # over all spans; a span's own count is a difference
    # Runs of all spans in one sorted key: (span, run end). Word indices have at most 8 digits (< 2**27).
    span_of_run = np.repeat(np.arange(len(spans)), np.diff(spans.run_offsets))
    keys = span_of_run.astype(np.int64) << 27 | spans.run_ends
    run = np.searchsorted(keys, span.astype(np.int64) << 27 | bound, side="right")  # first run of the span ending above bound
    span_first_run, span_end_run = spans.run_offsets[span], spans.run_offsets[span + 1]
    inside = run < span_end_run
    safe_run = np.minimum(run, len(run_sizes) - 1)
    partial = np.where(inside, np.clip(bound - spans.run_starts[safe_run], 0, None), 0)
    return words_before_run[np.where(inside, run, span_end_run)] - words_before_run[span_first_run] + partial


def _candidate_pairs(left: SpanSet, left_groups: np.ndarray, right: SpanSet, right_groups: np.ndarray, n_groups: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of the same essay and class that could share half of each other's words, with their overlap."""
    left_index, right_index = _pairs_in_groups(left_groups, right_groups, n_groups)
    if left.contiguous and right.contiguous:  # one run per span: the overlap of two ranges
        shared = np.minimum(left.run_ends[left_index], right.run_ends[right_index])
        shared -= np.maximum(left.run_starts[left_index], right.run_starts[right_index])
        overlapping = shared > 0
        return left_index[overlapping], right_index[overlapping], shared[overlapping]
    left_size, right_size = left.sizes[left_index], right.sizes[right_index]
    # Cheap filters first: sizes within a factor of 2 and bounding ranges that intersect.
    possible = (2 * left_size >= right_size) & (2 * right_size >= left_size)
    possible &= left.run_starts[left.run_offsets[left_index]] < right.run_ends[right.run_offsets[right_index + 1] - 1]
    possible &= right.run_starts[right.run_offsets[right_index]] < left.run_ends[left.run_offsets[left_index + 1] - 1]
    left_index, right_index = left_index[possible], right_index[possible]
    return left_index, right_index, _overlaps(left, left_index, right, right_index)


def _distinct_truth(truth: SpanSet, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mask of ground truths to keep: the first of each set of exact duplicates (essay, class, words)."""
    first, second, shared = _candidate_pairs(truth, groups, truth, groups, n_groups)
    duplicate = (first < second) & (shared == truth.sizes[first]) & (shared == truth.sizes[second])
    keep = np.ones(len(truth), bool)
    keep[second[duplicate]] = False
    return keep


@dataclass(frozen=True)
class MatchTable:
    """Every potential match between a fixed set of predictions and the truth, sorted so that the
    first pair of each ground truth is the one it keeps. Scoring any subset of the predictions
    (e.g. those that pass decoding thresholds) is then a few array operations.
    """

    truth_index: np.ndarray  # ground truth of each pair (after merging duplicates)
    pred_index: np.ndarray  # prediction of each pair
    truth_classes: np.ndarray  # class code of each distinct ground truth
    pred_classes: np.ndarray  # class code of each prediction

    @cached_property
    def truth_per_class(self) -> np.ndarray:
        """Number of distinct ground truths of each class."""
        return np.bincount(self.truth_classes, minlength=len(CLASSES))

    def counts(self, pred_kept: Optional[np.ndarray] = None) -> np.ndarray:
        """``(n_classes, 3)`` array of TP, FP, FN, counting only predictions where ``pred_kept`` is true."""
        n_classes = len(CLASSES)
        truth_index, pred_index, pred_classes = self.truth_index, self.pred_index, self.pred_classes
        if pred_kept is not None:
            alive = pred_kept[pred_index]
            truth_index, pred_index = truth_index[alive], pred_index[alive]
            pred_classes = pred_classes[pred_kept]
        first = np.ones(len(truth_index), bool)
        first[1:] = truth_index[1:] != truth_index[:-1]
        tp = np.bincount(self.truth_classes[truth_index[first]], minlength=n_classes)
        kept_preds = np.zeros(len(self.pred_classes), bool)
        kept_preds[pred_index[first]] = True  # a prediction kept by two ground truths is one prediction
        fp = np.bincount(pred_classes, minlength=n_classes) - np.bincount(self.pred_classes[kept_preds], minlength=n_classes)
        fn = self.truth_per_class - tp
        return np.stack([tp, fp, fn], axis=1)

    def of_class(self, class_code: int) -> "MatchTable":
        """The pairs of one class, with predictions renumbered to that class's predictions in order."""
        class_preds = np.flatnonzero(self.pred_classes == class_code)
        local = np.full(len(self.pred_classes), -1)
        local[class_preds] = np.arange(len(class_preds))
        in_class = self.truth_classes[self.truth_index] == class_code
        return MatchTable(self.truth_index[in_class], local[self.pred_index[in_class]], self.truth_classes, self.pred_classes[class_preds])

    def result(self, pred_kept: Optional[np.ndarray] = None) -> MetricResult:
        """The :class:`MetricResult` of the predictions where ``pred_kept`` is true (all if None)."""
        counts = self.counts(pred_kept)
        n_truth = self.truth_per_class
        pred_classes = self.pred_classes if pred_kept is None else self.pred_classes[pred_kept]
        n_pred = np.bincount(pred_classes, minlength=len(CLASSES))
        per_class = {name: ClassScore(*map(int, counts[code])) for code, name in enumerate(CLASSES) if n_truth[code]}
        ignored = tuple(name for code, name in enumerate(CLASSES) if n_pred[code] and not n_truth[code])
        return MetricResult(per_class, ignored)


def match_table(predictions: Union[SpanSet, SpanFrame], truth: Union[SpanSet, SpanFrame]) -> MatchTable:
    """Find every potential match of ``predictions`` against ``truth`` (see :class:`MatchTable`)."""
    preds = _as_span_set(predictions, "predictions")
    truth = _as_span_set(truth, "truth")
    both_ids = pa.concat_arrays([truth.essay_ids.cast(pa.large_string()), preds.essay_ids.cast(pa.large_string())])
    essay_codes = both_ids.dictionary_encode().indices.to_numpy(zero_copy_only=False).astype(np.int64)
    groups = essay_codes * len(CLASSES) + np.concatenate([truth.class_codes, preds.class_codes])
    truth_groups, pred_groups = groups[: len(truth)], groups[len(truth) :]
    n_groups = int(groups.max()) + 1 if len(groups) else 0

    distinct = _distinct_truth(truth, truth_groups, n_groups)
    if not distinct.all():
        truth, truth_groups = _subset(truth, distinct), truth_groups[distinct]
    truth_index, pred_index, shared = _candidate_pairs(truth, truth_groups, preds, pred_groups, n_groups)
    truth_size, pred_size = truth.sizes[truth_index], preds.sizes[pred_index]
    match = (2 * shared >= truth_size) & (2 * shared >= pred_size)
    truth_index, pred_index, shared = truth_index[match], pred_index[match], shared[match]
    overlap = shared / np.minimum(truth_size[match], pred_size[match])
    # Best overlap first for each ground truth; ties go to the prediction that comes first. Pairs come
    # sorted by (truth, prediction), so a stable sort on "truth, then 1 - overlap" (one float key: the
    # overlap part stays below 1) keeps tied predictions in input order.
    order = np.argsort(truth_index * 2.0 + (1.0 - overlap), kind="stable")
    return MatchTable(truth_index[order], pred_index[order], truth.class_codes, preds.class_codes)


def score(predictions: Union[SpanSet, SpanFrame], truth: Union[SpanSet, SpanFrame]) -> MetricResult:
    """Competition F1 of ``predictions`` against ``truth``.

    Both are DataFrames[id, class, predictionstring] or :class:`SpanSet` from :func:`parse_spans`
    (parse a fixed truth once when scoring many prediction sets against it).
    """
    return match_table(predictions, truth).result()


def _subset(spans: SpanSet, mask: np.ndarray) -> SpanSet:
    """The spans selected by ``mask``, with their runs."""
    runs_per_span = np.diff(spans.run_offsets)
    run_mask = np.repeat(mask, runs_per_span)
    return SpanSet(
        essay_ids=spans.essay_ids.filter(pa.array(mask)),
        class_codes=spans.class_codes[mask],
        sizes=spans.sizes[mask],
        run_offsets=np.concatenate([[0], np.cumsum(runs_per_span[mask])]),
        run_starts=spans.run_starts[run_mask],
        run_ends=spans.run_ends[run_mask],
    )
