"""Learned span decoding: candidate spans per class, scored by a gradient-boosted model, selected per class.

The threshold decoding (:mod:`fbp.decode`) only ever sees the spans that each word's argmax forms, so a class
that rarely wins a word's argmax (Counterclaim, Rebuttal) is lost before any threshold applies. Here:

1. **Candidates.** For every class, the runs of words where that class's probability (B + I) stays at or
   above each of a few levels, split where the class's own B- outweighs its I- (a new span begins), plus the
   argmax spans of :func:`fbp.decode.candidate_spans`. Candidates of one class may overlap; each essay keeps
   at most ``max_candidates`` per class (the most probable).
2. **Scoring.** Each candidate gets features (length, position, statistics of its class probability over its
   words, the B-probability at its first word, the probabilities just outside its ends, the argmax classes
   around it, its rank among its class in the essay, ...) and a LightGBM model predicts whether it matches a
   true span under the competition rule (each covers at least half of the other; labels come from
   :func:`fbp.metric.match_table`).
3. **Selection.** Among overlapping candidates of one class the best score wins (greedy, like non-maximum
   suppression); then a per-class score threshold and a per-class cap on spans per essay apply.

Fitting is cross-fitted on out-of-fold word probabilities: each group's candidates are scored by a model fitted
on the other groups only, and each group is decoded with thresholds tuned on the other groups' (cross-fitted)
scores, so the reported F1 is honest. The decoder that is kept uses a model fitted on every essay and
thresholds tuned on every candidate's cross-fitted score.

Everything works on the concatenated words of many essays at once (chunks of ~1M words), so 15,000 essays are
a few hundred array operations, not 15,000 loops. Nothing here prints; files are :mod:`fbp.io.decoder`'s job.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from .decode import candidate_spans, spans_frame, stack_word_probs
from .errors import FbpError
from .labels import CLASSES, NUM_LABELS
from .metric import MetricResult, match_table, parse_spans, score, span_set_from_ranges

N_CLASSES = len(CLASSES)
ARGMAX_SOURCE = 1  # bit of Candidates.source: the span is an argmax span; bit 1 + k: a run at levels[k]
CATEGORICAL_FEATURES = ("class", "prev_class", "next_class")
# Per-class caps on spans per essay searched when tuning (0 = no cap).
MAX_PER_ESSAY_GRID = (0, 1, 2, 3, 4, 6)
THRESHOLD_GRID = tuple(np.round(np.arange(0.02, 0.981, 0.02), 3))
CHUNK_WORDS = 1 << 20


@dataclass(frozen=True)
class DecoderSettings:
    """How candidates are formed and how the span scorer is fitted (stored with the decoder)."""

    # Defaults chosen out of fold on the benchmark runs (bench/bench_decoding.py, bench/RESULTS.md): every negative
    # candidate kept gave +0.005 to +0.016 macro F1 over 2 per positive on four runs, for about 2.5x the fit time.
    levels: Tuple[float, ...] = (0.1, 0.2, 0.3, 0.45, 0.6)  # class-probability levels whose runs become candidates
    max_candidates: int = 48  # per essay and class, the most probable first
    unsplit_runs: bool = False  # also each whole run of a level, not split where a new B- begins
    per_class_models: bool = False  # one LightGBM model per class instead of one with the class as a feature
    nms_overlap: float = 0.0  # a candidate is suppressed when it shares more than this share of the shorter one's words
    negatives_per_positive: float = 0.0  # training keeps at most this many negatives per positive (weighted up); 0: all
    rounds: int = 100
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_child_samples: int = 20
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    seed: int = 0
    threads: int = 1  # LightGBM threads; 0: all cores (OpenMP threads spin badly on a busy machine, so 1 by default)

    def to_dict(self) -> Dict[str, object]:
        values = asdict(self)
        values["levels"] = list(self.levels)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "DecoderSettings":
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        if "levels" in known:
            known["levels"] = tuple(float(level) for level in known["levels"])
        return cls(**known)


# --------------------------------------------------------------------------------------------------
# Candidates and their features


@dataclass
class Candidates:
    """Candidate spans of many essays: parallel arrays, one entry per candidate, with their features."""

    essay_ids: Tuple[str, ...]
    essay: np.ndarray  # index into essay_ids
    class_code: np.ndarray  # index into CLASSES
    start: np.ndarray  # first word within the essay
    end: np.ndarray  # one past the last word
    source: np.ndarray  # bit 0: argmax span; bit 1 + k: a run of the class probability at levels[k]
    features: np.ndarray  # (n_candidates, n_features) float32
    feature_names: Tuple[str, ...]

    def __len__(self) -> int:
        return len(self.essay)

    def subset(self, mask: np.ndarray, with_features: bool = True) -> "Candidates":
        features = self.features[mask] if with_features else self.features[:0]
        return Candidates(self.essay_ids, self.essay[mask], self.class_code[mask], self.start[mask], self.end[mask],
                          self.source[mask], features, self.feature_names)

    def span_set(self):
        """The candidates as a :class:`fbp.metric.SpanSet` (for matching against the truth)."""
        ids = np.asarray(self.essay_ids, dtype=object)[self.essay] if len(self.essay) else np.array([], dtype=object)
        return span_set_from_ranges(ids, self.class_code, self.start, self.end)


def feature_names(settings: DecoderSettings) -> Tuple[str, ...]:
    names = [
        "class", "length", "log_length", "essay_words", "rel_start", "rel_end", "words_before", "words_after",
        "mean", "std", "min", "max", "frac_above_half", "frac_argmax_class",
        "b_first", "i_first", "b_inside_max", "b_inside_sum", "i_last",
        "p_before", "p_after", "b_after", "mean_before5", "mean_after5", "o_before", "o_after",
        "prev_class", "next_class",
        "mean_o", "best_other_mean", "mean_minus_best_other",
        *(f"mean_{name.split()[0].lower()}" for name in CLASSES),
        "is_argmax", "n_levels", "lowest_level",
        "rank_in_class", "candidates_in_class", "mean_minus_class_best", "essay_class_max", "essay_class_mass",
    ]
    return tuple(names)


def _chunks(word_probs_by_id: Mapping[str, np.ndarray], chunk_words: int) -> List[List[str]]:
    """Consecutive essays in groups of about ``chunk_words`` words."""
    chunks, current, words = [], [], 0
    for essay_id, probs in word_probs_by_id.items():
        current.append(essay_id)
        words += len(probs)
        if words >= chunk_words:
            chunks.append(current)
            current, words = [], 0
    if current:
        chunks.append(current)
    return chunks


def _cumulative(rows: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``(k, n + 1)`` running sums along each row of a class-major ``(k, n)`` array, with a leading 0."""
    cumulative = np.zeros((rows.shape[0], rows.shape[1] + 1), dtype)
    np.cumsum(rows, axis=1, dtype=dtype, out=cumulative[:, 1:])
    return cumulative


def _range_sum(cumulative: np.ndarray, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return cumulative[rows, ends] - cumulative[rows, starts]


def _range_reduce(ufunc, padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``ufunc`` over ``padded[starts[k]:ends[k]]`` for every k (each range non-empty) with one reduceat;
    ``padded`` has one spare element at its end (ends may reach the last real element's end)."""
    if not len(starts):
        return np.zeros(0, padded.dtype)
    order = np.argsort(starts, kind="stable")
    indices = np.empty(2 * len(starts), np.int64)
    indices[0::2], indices[1::2] = starts[order], ends[order]
    reduced = ufunc.reduceat(padded, indices)[0::2]
    result = np.empty(len(starts), padded.dtype)
    result[order] = reduced
    return result


class _Chunk:
    """The class-major arrays of one chunk of concatenated essays, shared by candidates and features."""

    def __init__(self, probs: np.ndarray, offsets: np.ndarray):
        self.probs, self.offsets = probs, offsets
        self.n_words = n_words = len(probs)
        by_label = np.ascontiguousarray(probs.T)  # (15, n_words)
        self.outside = by_label[0]
        self.begin = np.ascontiguousarray(by_label[1::2])  # (7, n_words): B-class
        self.inside = np.ascontiguousarray(by_label[2::2])
        # B + I of each class, flattened class-major (position c * n_words + word) with one spare element.
        self.class_prob_padded = np.zeros(N_CLASSES * n_words + 1, np.float32)
        self.class_prob = self.class_prob_padded[:-1].reshape(N_CLASSES, n_words)
        np.add(self.begin, self.inside, out=self.class_prob)
        self.begin_padded = np.append(self.begin.ravel(), np.float32(0))
        self.essay_start = np.zeros(n_words, bool)
        self.essay_start[offsets[:-1][offsets[:-1] < n_words]] = True
        labels = probs.argmax(axis=1)
        self.word_class = np.where(labels > 0, (labels - 1) // 2, -1)


def _chunk_candidates(chunk: _Chunk, essay_ids: Sequence[str], settings: DecoderSettings) -> Tuple[np.ndarray, ...]:
    """Candidates of one chunk in chunk-global word positions: (class, start, end, source), deduplicated, bounded."""
    n_words, offsets = chunk.n_words, chunk.offsets
    classes, starts, ends, sources = [], [], [], []
    argmax = candidate_spans({essay_id: chunk.probs[offsets[i] : offsets[i + 1]] for i, essay_id in enumerate(essay_ids)})
    classes.append(argmax.class_code)
    starts.append(argmax.start + offsets[argmax.essay])
    ends.append(argmax.end + offsets[argmax.essay])
    sources.append(np.full(len(argmax.start), ARGMAX_SOURCE, np.int64))

    new_begin = (chunk.begin > chunk.inside).ravel()  # class-major: position c * n_words + word
    first_word = np.tile(chunk.essay_start, N_CLASSES)
    flat_prob = chunk.class_prob.ravel()
    for level_index, level in enumerate(settings.levels):
        high = flat_prob >= level
        previous = np.zeros_like(high)
        previous[1:] = high[:-1]
        previous &= ~first_word
        for split in (True, False) if settings.unsplit_runs else (True,):
            run_starts = high & (~previous | new_begin) if split else high & ~previous
            stops = np.append(np.flatnonzero(~high | run_starts), len(high))  # a run ends where the next one starts, or at a low word
            begin_at = np.flatnonzero(run_starts)
            end_at = stops[np.searchsorted(stops, begin_at, side="right")]
            code = begin_at // n_words
            classes.append(code)
            starts.append(begin_at - code * n_words)
            ends.append(end_at - code * n_words)
            sources.append(np.full(len(begin_at), 1 << (1 + level_index), np.int64))

    class_code, start, end, source = (np.concatenate(parts).astype(np.int64) for parts in (classes, starts, ends, sources))
    # One entry per distinct (class, start, end), its sources combined.
    order = np.lexsort((end, start, class_code))
    class_code, start, end, source = class_code[order], start[order], end[order], source[order]
    distinct = np.ones(len(start), bool)
    distinct[1:] = (class_code[1:] != class_code[:-1]) | (start[1:] != start[:-1]) | (end[1:] != end[:-1])
    firsts = np.flatnonzero(distinct)
    if len(firsts):
        source = np.bitwise_or.reduceat(source, firsts)
    class_code, start, end = class_code[firsts], start[firsts], end[firsts]

    # At most max_candidates per essay and class: the highest mean class probability first.
    mean = _range_reduce(np.add, chunk.class_prob_padded, class_code * n_words + start, class_code * n_words + end) / (end - start)
    essay = np.searchsorted(offsets, start, side="right") - 1
    group = essay * N_CLASSES + class_code
    order = np.lexsort((-mean, group))
    rank = _rank_in_groups(group[order])
    keep = np.zeros(len(order), bool)
    keep[order[rank < settings.max_candidates]] = True
    return class_code[keep], start[keep], end[keep], source[keep]


def _rank_in_groups(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal values of an already sorted array."""
    if not len(sorted_groups):
        return np.zeros(0, np.int64)
    new = np.ones(len(sorted_groups), bool)
    new[1:] = sorted_groups[1:] != sorted_groups[:-1]
    first_of_run = np.maximum.accumulate(np.where(new, np.arange(len(sorted_groups)), 0))
    return np.arange(len(sorted_groups)) - first_of_run


def _chunk_features(chunk: _Chunk, class_code: np.ndarray, start: np.ndarray, end: np.ndarray, source: np.ndarray,
                    settings: DecoderSettings) -> np.ndarray:
    """The feature matrix of one chunk's candidates (chunk-global positions), columns as :func:`feature_names`."""
    n_words, n, offsets = chunk.n_words, len(start), chunk.offsets
    begin, inside, class_prob, outside, word_class = chunk.begin, chunk.inside, chunk.class_prob, chunk.outside, chunk.word_class
    essay = np.searchsorted(offsets, start, side="right") - 1
    essay_first, essay_end = offsets[essay], offsets[essay + 1]
    essay_words = (essay_end - essay_first).astype(np.float64)
    length = (end - start).astype(np.float64)

    grouped = np.concatenate([outside[None, :], class_prob])  # (8, n_words): O, then each class
    cum_grouped = _cumulative(grouped)
    cum_square = _cumulative(np.square(class_prob, dtype=np.float64))
    cum_half = _cumulative(class_prob >= 0.5, np.int32)
    cum_argmax = _cumulative(word_class[None, :] == np.arange(N_CLASSES)[:, None], np.int32)
    cum_begin = _cumulative(begin)

    row = class_code + 1  # this class's row of grouped
    means_all = (cum_grouped[:, end] - cum_grouped[:, start]).T / length[:, None]  # (n, 8)
    mean = means_all[np.arange(n), row]
    variance = _range_sum(cum_square, class_code, start, end) / length - mean**2
    flat_start, flat_end = class_code * n_words + start, class_code * n_words + end
    span_min = _range_reduce(np.minimum, chunk.class_prob_padded, flat_start, flat_end)
    span_max = _range_reduce(np.maximum, chunk.class_prob_padded, flat_start, flat_end)
    longer = length > 1
    b_inside_max = np.zeros(n, np.float32)
    b_inside_max[longer] = _range_reduce(np.maximum, chunk.begin_padded, flat_start[longer] + 1, flat_end[longer])
    b_inside_sum = _range_sum(cum_begin, class_code, start + 1, end) * longer

    has_before, has_after = start > essay_first, end < essay_end
    before, after = np.maximum(start - 1, 0), np.minimum(end, n_words - 1)
    nan = np.float64("nan")
    p_before = np.where(has_before, class_prob[class_code, before], nan)
    p_after = np.where(has_after, class_prob[class_code, after], nan)
    b_after = np.where(has_after, begin[class_code, after], nan)
    o_before = np.where(has_before, outside[before], nan)
    o_after = np.where(has_after, outside[after], nan)
    window_start = np.maximum(start - 5, essay_first)
    window_end = np.minimum(end + 5, essay_end)
    mean_before5 = np.where(has_before, _range_sum(cum_grouped, row, window_start, start) / np.maximum(start - window_start, 1), nan)
    mean_after5 = np.where(has_after, _range_sum(cum_grouped, row, end, window_end) / np.maximum(window_end - end, 1), nan)
    # Argmax class of the words just outside (-1: O, -2: the essay's edge), shifted to be non-negative for LightGBM.
    prev_class = np.where(has_before, word_class[before], -2) + 2
    next_class = np.where(has_after, word_class[after], -2) + 2

    others = means_all[:, 1:].copy()
    others[np.arange(n), class_code] = -1.0
    best_other = others.max(axis=1)

    levels_hit = (source[:, None] >> (1 + np.arange(len(settings.levels)))) & 1
    n_levels = levels_hit.sum(axis=1)
    lowest_level = np.where(n_levels > 0, np.argmax(levels_hit, axis=1), -1)

    group = essay * N_CLASSES + class_code
    order = np.lexsort((-mean, group))
    rank = np.empty(n, np.int64)
    rank[order] = _rank_in_groups(group[order])
    group_codes, group_index, group_sizes = np.unique(group, return_inverse=True, return_counts=True)
    group_best = np.full(len(group_codes), -np.inf)
    np.maximum.at(group_best, group_index, mean)

    essay_firsts = np.minimum(offsets[:-1], max(n_words - 1, 0))
    essay_max = np.maximum.reduceat(class_prob, essay_firsts, axis=1) if n_words else np.zeros((N_CLASSES, len(offsets) - 1))
    essay_mass = (cum_grouped[1:, offsets[1:]] - cum_grouped[1:, offsets[:-1]]) / np.maximum(np.diff(offsets), 1)

    columns = [
        class_code, length, np.log(length), essay_words, (start - essay_first) / essay_words, (end - essay_first) / essay_words,
        start - essay_first, essay_end - end,
        mean, np.sqrt(np.maximum(variance, 0.0)), span_min, span_max,
        _range_sum(cum_half, class_code, start, end) / length, _range_sum(cum_argmax, class_code, start, end) / length,
        begin[class_code, start], inside[class_code, start], b_inside_max, b_inside_sum, inside[class_code, end - 1],
        p_before, p_after, b_after, mean_before5, mean_after5, o_before, o_after,
        prev_class, next_class,
        means_all[:, 0], best_other, mean - best_other,
        *(means_all[:, 1 + code] for code in range(N_CLASSES)),
        (source & ARGMAX_SOURCE) > 0, n_levels, lowest_level,
        rank, group_sizes[group_index], mean - group_best[group_index], essay_max[class_code, essay], essay_mass[class_code, essay],
    ]
    features = np.empty((n, len(columns)), np.float32)
    for index, values in enumerate(columns):
        features[:, index] = values
    return features


def make_candidates(word_probs_by_id: Mapping[str, np.ndarray], settings: DecoderSettings, chunk_words: int = CHUNK_WORDS) -> Candidates:
    """Every essay's candidate spans with their features, in essay order (then class, start, end)."""
    essay_ids = tuple(word_probs_by_id)
    names = feature_names(settings)
    parts = []
    first_essay = 0
    for chunk in _chunks(word_probs_by_id, chunk_words):
        probs, offsets = stack_word_probs(word_probs_by_id, chunk)
        arrays = _Chunk(probs, offsets)
        class_code, start, end, source = _chunk_candidates(arrays, chunk, settings)
        features = _chunk_features(arrays, class_code, start, end, source, settings)
        del arrays
        essay = np.searchsorted(offsets, start, side="right") - 1
        order = np.lexsort((end, start, class_code, essay))
        parts.append((essay[order] + first_essay, class_code[order], (start - offsets[essay])[order], (end - offsets[essay])[order],
                      source[order], features[order]))
        first_essay += len(chunk)
    if not parts:
        empty = np.zeros(0, np.int64)
        return Candidates(essay_ids, empty, empty, empty, empty, empty, np.zeros((0, len(names)), np.float32), names)
    essay, class_code, start, end, source, features = (np.concatenate(column) for column in zip(*parts))
    return Candidates(essay_ids, essay, class_code, start, end, source, features, names)


def candidate_labels(candidates: Candidates, truth: pd.DataFrame) -> np.ndarray:
    """1 for each candidate that matches a true span of its essay and class (each covers half of the other), else 0."""
    truth = truth[truth["id"].astype(str).isin(set(candidates.essay_ids))]
    table = match_table(candidates.span_set(), parse_spans(truth, "truth"))
    labels = np.zeros(len(candidates), np.int8)
    labels[table.pred_index] = 1
    return labels


# --------------------------------------------------------------------------------------------------
# The span scorer


def _lightgbm_params(settings: DecoderSettings) -> Dict[str, object]:
    params = {
        "objective": "binary", "learning_rate": settings.learning_rate, "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples, "feature_fraction": settings.feature_fraction,
        "bagging_fraction": settings.bagging_fraction, "bagging_freq": 1 if settings.bagging_fraction < 1 else 0,
        "lambda_l2": 1.0, "seed": settings.seed, "deterministic": True, "force_row_wise": True, "verbose": -1,
    }
    if settings.threads:
        params["num_threads"] = settings.threads
    return params


def _fit_model(features: np.ndarray, labels: np.ndarray, names: Sequence[str], settings: DecoderSettings):
    """One LightGBM booster on ``features`` -> P(candidate matches a true span)."""
    import lightgbm

    categorical = [name for name in CATEGORICAL_FEATURES if name in names]
    weights = None
    n_positive = int(labels.sum())
    n_negative = len(labels) - n_positive
    if settings.negatives_per_positive and n_negative > settings.negatives_per_positive * n_positive:
        # Most candidates are negatives, and most of those are easy: a random share of them (weighted up to keep
        # the scores calibrated) fits almost the same model in a fraction of the time.
        rate = settings.negatives_per_positive * n_positive / n_negative
        rows = (labels == 1) | (np.random.default_rng(settings.seed).random(len(labels)) < rate)
        features, labels = features[rows], labels[rows]
        weights = np.where(labels == 1, 1.0, 1.0 / rate)
    dataset = lightgbm.Dataset(features, label=labels, weight=weights, feature_name=list(names), categorical_feature=categorical, free_raw_data=True)
    return lightgbm.train(_lightgbm_params(settings), dataset, num_boost_round=settings.rounds)


def _model_groups(settings: DecoderSettings) -> List[Tuple[int, ...]]:
    return [(code,) for code in range(N_CLASSES)] if settings.per_class_models else [tuple(range(N_CLASSES))]


def _fit_models(candidates: Candidates, labels: np.ndarray, settings: DecoderSettings) -> List[Tuple[Tuple[int, ...], object]]:
    """The models of ``settings`` (one, or one per class) fitted on ``candidates``; a class with no positive
    or no negative candidate gets no model (its candidates score 0)."""
    models = []
    for codes in _model_groups(settings):
        rows = np.isin(candidates.class_code, codes)
        if rows.any() and 0 < labels[rows].sum() < rows.sum():
            models.append((codes, _fit_model(candidates.features[rows], labels[rows], candidates.feature_names, settings)))
    return models


def _predict(models: Sequence[Tuple[Tuple[int, ...], object]], candidates: Candidates) -> np.ndarray:
    scores = np.zeros(len(candidates), np.float64)
    for codes, model in models:
        rows = np.isin(candidates.class_code, codes)
        if rows.any():
            scores[rows] = model.predict(candidates.features[rows])
    return scores


# --------------------------------------------------------------------------------------------------
# Selection


def suppress_overlaps(candidates: Candidates, scores: np.ndarray, max_overlap: float = 0.0) -> np.ndarray:
    """Mask of the candidates that survive greedy non-maximum suppression within each essay and class.

    Going from the best score down, a candidate is dropped when it shares more than ``max_overlap`` of the
    shorter one's words with a candidate already kept (ties: the earlier candidate first). Computed in rounds
    over all groups at once: every candidate that beats all its live overlapping rivals is kept, the rivals
    it overlaps are dropped, until none is undecided (the same result as the one-by-one greedy pass).
    """
    n = len(candidates)
    if n < 2:  # nothing to overlap with
        return np.ones(n, bool)
    group = candidates.essay.astype(np.int64) * N_CLASSES + candidates.class_code
    order = np.lexsort((candidates.start, group))
    # Pairs of overlapping candidates of one group: candidates sorted by start, so each one's overlapping
    # later neighbours are contiguous after it.
    sorted_group, sorted_start, sorted_end = group[order], candidates.start[order], candidates.end[order]
    left, right = [], []
    offset = 1
    alive_pairs = np.arange(n - 1)
    while len(alive_pairs):
        partner = alive_pairs + offset
        valid = partner < n
        alive_pairs, partner = alive_pairs[valid], partner[valid]
        same = (sorted_group[partner] == sorted_group[alive_pairs]) & (sorted_start[partner] < sorted_end[alive_pairs])
        alive_pairs, partner = alive_pairs[same], partner[same]
        left.append(alive_pairs)
        right.append(partner)
        offset += 1
    left, right = np.concatenate(left), np.concatenate(right)
    shared = np.minimum(sorted_end[left], sorted_end[right]) - sorted_start[right]
    shorter = np.minimum(sorted_end[left] - sorted_start[left], sorted_end[right] - sorted_start[right])
    clash = shared > max_overlap * shorter
    a, b = order[left[clash]], order[right[clash]]
    # Strict order: higher score, then the earlier candidate.
    priority = np.empty(n, np.int64)
    priority[np.lexsort((np.arange(n), -scores))] = np.arange(n)  # 0 = best
    winner = np.where(priority[a] < priority[b], a, b)
    loser = np.where(priority[a] < priority[b], b, a)
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, -1 dropped
    while (state == 0).any():
        live = (state[winner] == 0) & (state[loser] == 0)
        beaten = np.zeros(n, bool)
        beaten[loser[live]] = True  # an undecided rival ranks above it
        newly_kept = (state == 0) & ~beaten
        state[newly_kept] = 1
        drop = newly_kept[winner] & (state[loser] == 0)
        state[loser[drop]] = -1
    return state == 1


def _rank_among_kept(candidates: Candidates, scores: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Rank (0 = best score) of each kept candidate among the kept ones of its essay and class; -1 elsewhere."""
    rank = np.full(len(candidates), -1, np.int64)
    index = np.flatnonzero(kept)
    group = candidates.essay[index].astype(np.int64) * N_CLASSES + candidates.class_code[index]
    order = np.lexsort((index, -scores[index], group))
    rank[index[order]] = _rank_in_groups(group[order])
    return rank


@dataclass(frozen=True)
class ClassRule:
    """The selection of one class: a minimum score and at most ``max_per_essay`` spans per essay (0: no cap)."""

    threshold: float
    max_per_essay: int = 0


def _suppress_above(candidates: Candidates, scores: np.ndarray, floor: np.ndarray, max_overlap: float) -> np.ndarray:
    """:func:`suppress_overlaps` restricted to candidates scoring at least their class's ``floor``.

    A candidate can only suppress lower-scored ones, so leaving out those below the floor first (most of them)
    changes nothing above it."""
    alive = scores >= floor[candidates.class_code]
    kept = np.zeros(len(candidates), bool)
    kept[alive] = suppress_overlaps(candidates.subset(alive, with_features=False), scores[alive], max_overlap)
    return kept


def select(candidates: Candidates, scores: np.ndarray, rules: Mapping[str, ClassRule], max_overlap: float) -> np.ndarray:
    """Mask of the candidates that become spans: overlaps suppressed, then each class's rule applied."""
    threshold = np.array([rules[name].threshold if name in rules else np.inf for name in CLASSES])
    kept = _suppress_above(candidates, scores, threshold, max_overlap)
    rank = _rank_among_kept(candidates, scores, kept)
    cap = np.array([rules[name].max_per_essay if name in rules and rules[name].max_per_essay else np.iinfo(np.int64).max for name in CLASSES])
    return kept & (scores >= threshold[candidates.class_code]) & (rank < cap[candidates.class_code])


def tune_rules(candidates: Candidates, scores: np.ndarray, truth: pd.DataFrame, max_overlap: float) -> Dict[str, ClassRule]:
    """Per class, the score threshold and cap on spans per essay with the best F1 on ``candidates``.

    Suppression keeps the higher score, so thresholding before or after it gives the same spans: suppress
    once, match the survivors once, then every (threshold, cap) pair is a filter on them. A class absent
    from the truth predicts nothing (threshold above every score).
    """
    kept = _suppress_above(candidates, scores, np.full(N_CLASSES, THRESHOLD_GRID[0]), max_overlap)
    rank = _rank_among_kept(candidates, scores, kept)
    survivors = candidates.subset(kept, with_features=False)
    truth = truth[truth["id"].astype(str).isin(set(candidates.essay_ids))]
    table = match_table(survivors.span_set(), parse_spans(truth, "truth"))
    survivor_scores, survivor_rank = scores[kept], rank[kept]
    rules = {}
    for code, name in enumerate(CLASSES):
        if not table.truth_per_class[code]:
            rules[name] = ClassRule(threshold=float("inf"))
            continue
        class_table = table.of_class(code)
        in_class = survivors.class_code == code
        class_scores, class_rank = survivor_scores[in_class], survivor_rank[in_class]
        best, best_f1 = ClassRule(threshold=float("inf")), 0.0
        for cap in MAX_PER_ESSAY_GRID:
            under_cap = class_rank < cap if cap else np.ones(len(class_rank), bool)
            for threshold in THRESHOLD_GRID:
                tp, fp, fn = class_table.counts(under_cap & (class_scores >= threshold))[code]
                f1 = tp / (tp + (fp + fn) / 2) if tp else 0.0
                if f1 > best_f1 + 1e-12:
                    best, best_f1 = ClassRule(float(threshold), int(cap)), f1
        rules[name] = best
    return rules


# --------------------------------------------------------------------------------------------------
# The decoder


@dataclass
class LearnedDecoder:
    """A fitted learned decoding: candidate settings, span-scoring model(s), per-class selection rules."""

    settings: DecoderSettings
    models: List[Tuple[Tuple[int, ...], object]]  # (class codes, lightgbm.Booster)
    rules: Dict[str, ClassRule]
    feature_names: Tuple[str, ...]
    classes: Tuple[str, ...] = CLASSES
    info: Dict[str, object] = field(default_factory=dict)  # what fitting measured (cross-fitted F1, sizes, times)

    def score_candidates(self, candidates: Candidates) -> np.ndarray:
        return _predict(self.models, candidates)

    def decode(self, word_probs_by_id: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """Spans of every essay as a submission frame ``DataFrame[id, class, predictionstring]``.

        Rows follow the input essay order, then reading order; an essay with no span has no row.
        """
        candidates = make_candidates(word_probs_by_id, self.settings)
        if tuple(candidates.feature_names) != tuple(self.feature_names):
            raise FbpError("this learned decoder was fitted with other features than this version of fbp computes; refit it (fbp evaluate RUN --tune)")
        chosen = select(candidates, self.score_candidates(candidates), self.rules, self.settings.nms_overlap)
        return _frame(candidates, chosen)


def _frame(candidates: Candidates, chosen: np.ndarray) -> pd.DataFrame:
    index = np.flatnonzero(chosen)
    order = index[np.lexsort((candidates.end[index], candidates.start[index], candidates.essay[index]))]
    return spans_frame(candidates.essay_ids, candidates.essay[order], candidates.class_code[order], candidates.start[order], candidates.end[order])


@dataclass
class LearnedFit:
    """What fitting measured: cross-fitted predictions and their score, and where the time went."""

    decoder: LearnedDecoder
    cross_fitted: pd.DataFrame  # every essay decoded by a model and rules fitted without its group
    result: MetricResult  # score of ``cross_fitted``
    candidate_scores: np.ndarray  # each candidate's cross-fitted score
    candidates: Candidates
    labels: np.ndarray
    groups: np.ndarray  # cross-fitting group of each essay
    seconds: Dict[str, float]

    def candidate_recall(self, truth: pd.DataFrame) -> Dict[str, float]:
        """Per class, the share of true spans that some candidate matches (the ceiling of any selection)."""
        truth = truth[truth["id"].astype(str).isin(set(self.candidates.essay_ids))]
        table = match_table(self.candidates.span_set(), parse_spans(truth, "truth"))
        matched = np.bincount(table.truth_classes[np.unique(table.truth_index)], minlength=N_CLASSES)
        return {name: float(matched[code] / table.truth_per_class[code]) for code, name in enumerate(CLASSES) if table.truth_per_class[code]}


def essay_groups(n_essays: int, groups: Optional[Sequence[int]], seed: int = 0) -> np.ndarray:
    """Cross-fitting groups: the given ones (e.g. the run's folds), or two random halves when fewer than two."""
    if groups is not None:
        groups = np.asarray(groups)
        if len(groups) != n_essays:
            raise ValueError(f"{len(groups)} groups for {n_essays} essays")
        if len(np.unique(groups)) >= 2:
            return groups
    return np.random.default_rng(seed).permutation(n_essays) % 2


def fit_learned_decoder(
    word_probs_by_id: Mapping[str, np.ndarray],
    truth: pd.DataFrame,
    groups: Optional[Sequence[int]] = None,
    settings: DecoderSettings = DecoderSettings(),
    progress: Optional[Callable[[str], None]] = None,
) -> LearnedFit:
    """Fit a learned decoder on (out-of-fold) word probabilities, cross-fitted by ``groups`` (one per essay).

    Each group's candidates are scored by models fitted on the other groups and selected with rules tuned on
    the other groups' cross-fitted scores, so ``result`` is an honest estimate. The returned decoder's models
    are fitted on every essay and its rules tuned on every candidate's cross-fitted score.
    """
    say = progress or (lambda message: None)
    seconds: Dict[str, float] = {}
    clock = time.perf_counter()
    essay_ids = tuple(word_probs_by_id)
    truth = truth[truth["id"].astype(str).isin(set(essay_ids))]
    say(f"candidate spans of {len(essay_ids)} essays")
    candidates = make_candidates(word_probs_by_id, settings)
    labels = candidate_labels(candidates, truth)
    seconds["candidates"] = time.perf_counter() - clock

    essay_group = essay_groups(len(essay_ids), groups, settings.seed)
    candidate_group = essay_group[candidates.essay]
    distinct = np.unique(essay_group)
    scores = np.zeros(len(candidates), np.float64)
    clock = time.perf_counter()
    for group in distinct:
        say(f"span scorer without group {group} ({len(distinct)} groups)")
        held_out = candidate_group == group
        models = _fit_models(candidates.subset(~held_out), labels[~held_out], settings)
        scores[held_out] = _predict(models, candidates.subset(held_out))
    seconds["cross_fit"] = time.perf_counter() - clock

    clock = time.perf_counter()
    ids = np.asarray(essay_ids, dtype=object)
    frames = []
    for group in distinct:
        held_out = candidate_group == group
        tune_on = candidates.subset(~held_out, with_features=False)
        rules = tune_rules(tune_on, scores[~held_out], truth[truth["id"].isin(set(ids[essay_group != group]))], settings.nms_overlap)
        evaluate_on = candidates.subset(held_out, with_features=False)
        frames.append(_frame(evaluate_on, select(evaluate_on, scores[held_out], rules, settings.nms_overlap)))
    cross_fitted = _reorder(pd.concat(frames, ignore_index=True), essay_ids)
    rules = tune_rules(candidates, scores, truth, settings.nms_overlap)
    seconds["rules"] = time.perf_counter() - clock

    clock = time.perf_counter()
    say("span scorer on every essay")
    models = _fit_models(candidates, labels, settings)
    seconds["final_fit"] = time.perf_counter() - clock
    result = score(cross_fitted, truth)
    decoder = LearnedDecoder(settings, models, rules, candidates.feature_names, CLASSES, {
        "essays": len(essay_ids), "candidates": len(candidates), "groups": int(len(distinct)),
        "cv_f1": float(result.f1), "cv_per_class": result.class_f1(),
    })
    return LearnedFit(decoder, cross_fitted, result, scores, candidates, labels, essay_group, seconds)


def _reorder(frame: pd.DataFrame, essay_ids: Sequence[str]) -> pd.DataFrame:
    """Rows in the input essay order (stable within an essay)."""
    position = {essay_id: index for index, essay_id in enumerate(essay_ids)}
    order = np.argsort(frame["id"].map(position).to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def class_signal(word_probs_by_id: Mapping[str, np.ndarray], truth: pd.DataFrame) -> Dict[str, float]:
    """Per class, the word-level ROC AUC of its B + I probability against "this word is in a true span of
    that class" (0.5: no signal; 1: perfectly separated). Classes with no true word are left out."""
    essay_ids = tuple(word_probs_by_id)
    probs, offsets = stack_word_probs(word_probs_by_id, essay_ids)
    class_prob = probs[:, 1::2] + probs[:, 2::2]
    truth = truth[truth["id"].astype(str).isin(set(essay_ids))]
    spans = parse_spans(truth, "truth")
    position = {essay_id: index for index, essay_id in enumerate(essay_ids)}
    span_essay = np.array([position[essay_id] for essay_id in spans.essay_ids.to_pylist()], np.int64)
    # +1 where a true span's run begins, -1 where it ends (clipped to its essay), per class: a running sum > 0 is "inside".
    run_span = np.repeat(np.arange(len(spans)), np.diff(spans.run_offsets))
    run_essay = span_essay[run_span]
    first = offsets[run_essay] + np.minimum(spans.run_starts, np.diff(offsets)[run_essay])
    last = offsets[run_essay] + np.minimum(spans.run_ends, np.diff(offsets)[run_essay])
    steps = np.zeros((len(probs) + 1, N_CLASSES), np.int64)
    np.add.at(steps, (first, spans.class_codes[run_span]), 1)
    np.add.at(steps, (last, spans.class_codes[run_span]), -1)
    in_class = np.cumsum(steps, axis=0)[:-1] > 0
    result = {}
    for code, name in enumerate(CLASSES):
        positives = int(in_class[:, code].sum())
        if positives and positives < len(probs):
            result[name] = _auc(class_prob[:, code], in_class[:, code])
    return result


def _auc(values: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula (ties get their average rank)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), np.float64)
    new = np.ones(len(values), bool)
    new[1:] = sorted_values[1:] != sorted_values[:-1]
    run_id = np.cumsum(new) - 1
    run_first = np.flatnonzero(new)
    run_last = np.append(run_first[1:], len(values)) - 1
    ranks[order] = ((run_first + run_last) / 2.0 + 1.0)[run_id]
    n_pos = int(positive.sum())
    n_neg = len(values) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fit_for_run(run, summary, word_probs_by_id: Mapping[str, np.ndarray], truth: pd.DataFrame, groups: Optional[Sequence[int]],
                baseline_f1: Optional[float], settings: DecoderSettings = DecoderSettings(),
                progress: Optional[Callable[[str], None]] = None) -> LearnedFit:
    """Fit a run's learned decoder on its out-of-fold probabilities, save it in the run directory, and record in
    ``summary`` (a :class:`fbp.io.run_dir.RunRecord`; the caller writes it) its cross-fitted ``cv_f1_learned`` and
    which decoding the run uses: the learned one only when it beats ``baseline_f1`` (the thresholds' cross-fitted F1)."""
    fit = fit_learned_decoder(word_probs_by_id, truth, groups, settings, progress)
    summary.cv_f1_learned = round(float(fit.result.f1), 6)
    summary.cv_per_class_learned = {name: round(f1, 6) for name, f1 in fit.result.class_f1().items()}
    run.write_learned_decoder(fit.decoder)
    summary.decoder = "learned" if baseline_f1 is None or fit.result.f1 > baseline_f1 else "thresholds"
    return fit
