"""The features of candidate spans: length, position, statistics of the class probability over the words, the
B-probability at the first word, the probabilities just outside the ends, the argmax classes around, the rank
among the class's candidates in the essay, ...

To add a feature: its name in :func:`feature_names` and its column, at the same position, in
:func:`chunk_features` (a saved decoder records its feature names, so one fitted before asks to be refitted).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..labels import CLASSES
from .arrays import cumulative, range_reduce, range_sum, rank_in_groups
from .settings import DecoderSettings

N_CLASSES = len(CLASSES)
ARGMAX_SOURCE = 1  # bit of Candidates.source: the span is an argmax span; bit 1 + k: a run at levels[k]


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
    if settings.sub_span > 0:
        names.append("is_sub_span")
    if settings.stretch > 0:
        names.append("is_stretched")
    if settings.context_features:
        names += list(CONTEXT_FEATURES)
    return tuple(names)


# Neighbourhood and essay-order features (settings.context_features), after the 1st place's second stage.
CONTEXT_FEATURES = (
    "other_max", "p_before3", "p_after3",
    "mean_before_half", "mean_before_full", "mean_after_half", "mean_after_full",
    "ratio_before_half", "ratio_before_full", "ratio_after_half", "ratio_after_full",
    "spans_before", "spans_after", "order_in_class", "order_in_class_from_end",
)


def chunk_features(chunk, class_code: np.ndarray, start: np.ndarray, end: np.ndarray, source: np.ndarray,
                    settings: DecoderSettings) -> np.ndarray:
    """The feature matrix of one chunk's candidates (chunk-global positions), columns as :func:`feature_names`."""
    n_words, n, offsets = chunk.n_words, len(start), chunk.offsets
    begin, inside, class_prob, outside, word_class = chunk.begin, chunk.inside, chunk.class_prob, chunk.outside, chunk.word_class
    essay = np.searchsorted(offsets, start, side="right") - 1
    essay_first, essay_end = offsets[essay], offsets[essay + 1]
    essay_words = (essay_end - essay_first).astype(np.float64)
    length = (end - start).astype(np.float64)

    grouped = np.concatenate([outside[None, :], class_prob])  # (8, n_words): O, then each class
    cum_grouped = cumulative(grouped)
    cum_square = cumulative(np.square(class_prob, dtype=np.float64))
    cum_half = cumulative(class_prob >= 0.5, np.int32)
    cum_argmax = cumulative(word_class[None, :] == np.arange(N_CLASSES)[:, None], np.int32)
    cum_begin = cumulative(begin)

    row = class_code + 1  # this class's row of grouped
    means_all = (cum_grouped[:, end] - cum_grouped[:, start]).T / length[:, None]  # (n, 8)
    mean = means_all[np.arange(n), row]
    variance = range_sum(cum_square, class_code, start, end) / length - mean**2
    flat_start, flat_end = class_code * n_words + start, class_code * n_words + end
    span_min = range_reduce(np.minimum, chunk.class_prob_padded, flat_start, flat_end)
    span_max = range_reduce(np.maximum, chunk.class_prob_padded, flat_start, flat_end)
    longer = length > 1
    b_inside_max = np.zeros(n, np.float32)
    b_inside_max[longer] = range_reduce(np.maximum, chunk.begin_padded, flat_start[longer] + 1, flat_end[longer])
    b_inside_sum = range_sum(cum_begin, class_code, start + 1, end) * longer

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
    mean_before5 = np.where(has_before, range_sum(cum_grouped, row, window_start, start) / np.maximum(start - window_start, 1), nan)
    mean_after5 = np.where(has_after, range_sum(cum_grouped, row, end, window_end) / np.maximum(window_end - end, 1), nan)
    # Argmax class of the words just outside (-1: O, -2: the essay's edge), shifted to be non-negative for LightGBM.
    prev_class = np.where(has_before, word_class[before], -2) + 2
    next_class = np.where(has_after, word_class[after], -2) + 2

    others = means_all[:, 1:].copy()
    others[np.arange(n), class_code] = -1.0
    best_other = others.max(axis=1)

    n_levels_all = len(settings.all_levels())
    levels_hit = (source[:, None] >> (1 + np.arange(n_levels_all))) & 1
    n_levels = levels_hit.sum(axis=1)
    lowest_level = np.where(n_levels > 0, np.argmax(levels_hit, axis=1), -1)

    group = essay * N_CLASSES + class_code
    order = np.lexsort((-mean, group))
    rank = np.empty(n, np.int64)
    rank[order] = rank_in_groups(group[order])
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
        range_sum(cum_half, class_code, start, end) / length, range_sum(cum_argmax, class_code, start, end) / length,
        begin[class_code, start], inside[class_code, start], b_inside_max, b_inside_sum, inside[class_code, end - 1],
        p_before, p_after, b_after, mean_before5, mean_after5, o_before, o_after,
        prev_class, next_class,
        means_all[:, 0], best_other, mean - best_other,
        *(means_all[:, 1 + code] for code in range(N_CLASSES)),
        (source & ARGMAX_SOURCE) > 0, n_levels, lowest_level,
        rank, group_sizes[group_index], mean - group_best[group_index], essay_max[class_code, essay], essay_mass[class_code, essay],
    ]
    if settings.sub_span > 0:
        columns.append((source >> (1 + n_levels_all)) & 1)
    if settings.stretch > 0:
        columns.append((source >> (2 + n_levels_all)) & 1)
    if settings.context_features:
        columns += _context_columns(chunk, class_code, start, end, essay, essay_first, essay_end, length, mean, cum_grouped, row, group)
    features = np.empty((n, len(columns)), np.float32)
    for index, values in enumerate(columns):
        features[:, index] = values
    return features


def _context_columns(chunk, class_code, start, end, essay, essay_first, essay_end, length, mean, cum_grouped, row, group):
    """The columns of :data:`CONTEXT_FEATURES`."""
    n_words, n = chunk.n_words, len(start)
    class_prob = chunk.class_prob
    nan = np.float64("nan")

    # The highest probability of any other class over the span's words: top two classes per word.
    if n_words:
        top_two = np.sort(class_prob, axis=0)[-2:]  # (2, n_words): second best, best
        best_class = class_prob.argmax(axis=0)
        other_best = np.where(best_class[None, :] == np.arange(N_CLASSES)[:, None], top_two[0][None, :], top_two[1][None, :])
    else:
        other_best = np.zeros((N_CLASSES, 0), np.float32)
    other_padded = np.append(other_best.astype(np.float32).ravel(), np.float32(0))
    other_max = range_reduce(np.maximum, other_padded, class_code * n_words + start, class_code * n_words + end)

    def window_mean(lo, hi):
        """Mean class probability over [lo, hi) clipped to the essay; nan where empty."""
        lo, hi = np.clip(lo, essay_first, essay_end), np.clip(hi, essay_first, essay_end)
        size = hi - lo
        return np.where(size > 0, range_sum(cum_grouped, row, lo, hi) / np.maximum(size, 1), nan)

    half = np.maximum(length.astype(np.int64) // 2, 1)
    full = length.astype(np.int64)
    before_half, before_full = window_mean(start - half, start), window_mean(start - full, start)
    after_half, after_full = window_mean(end, end + half), window_mean(end, end + full)

    def ratio(window):
        return np.where(np.isnan(window), nan, mean / np.maximum(window, 1e-3))

    # Order in the essay: argmax spans (any class) starting before and after the candidate, and the candidate's
    # order among its class's candidates by position (the Lead first, the Concluding Statement last).
    labels = chunk.probs.argmax(axis=1) if n_words else np.zeros(0, np.int64)
    word_class = chunk.word_class
    previous = np.empty_like(word_class)
    if n_words:
        previous[0], previous[1:] = -1, word_class[:-1]
    span_start = (word_class >= 0) & ((word_class != previous) | (labels % 2 == 1) | chunk.essay_start)
    cum_starts = np.concatenate([[0], np.cumsum(span_start)])
    spans_before = cum_starts[start] - cum_starts[essay_first]
    spans_after = cum_starts[essay_end] - cum_starts[end]
    order = np.lexsort((start, group))
    in_class = np.empty(n, np.int64)
    in_class[order] = rank_in_groups(group[order])
    _, group_index, group_sizes = np.unique(group, return_inverse=True, return_counts=True)
    from_end = group_sizes[group_index] - 1 - in_class

    return [other_max, window_mean(start - 3, start), window_mean(end, end + 3),
            before_half, before_full, after_half, after_full,
            ratio(before_half), ratio(before_full), ratio(after_half), ratio(after_full),
            spans_before, spans_after, in_class, from_end]
