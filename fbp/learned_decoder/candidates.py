"""Candidate spans of many essays at once: per class, the runs of words whose class probability stays at or
above each of a few levels (split where the class's own B- outweighs its I-), plus the argmax spans of
:func:`fbp.decode.candidate_spans`; each essay keeps at most ``max_candidates`` per class (the most probable).
Each candidate carries its features (:mod:`.features`). Everything works on concatenated essays in chunks of
~1M words, so 15,000 essays are a few hundred array operations, not 15,000 loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd

from ..decode import candidate_spans, stack_word_probs
from ..labels import CLASSES
from ..metric import match_table, parse_spans, span_set_from_ranges
from .arrays import range_reduce, rank_in_groups
from .features import ARGMAX_SOURCE, chunk_features, feature_names
from .settings import DecoderSettings

N_CLASSES = len(CLASSES)
CHUNK_WORDS = 1 << 20


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
    rare_rows = np.zeros(N_CLASSES * n_words, bool)
    for name in settings.rare_classes:
        if name in CLASSES:
            code = CLASSES.index(name)
            rare_rows[code * n_words : (code + 1) * n_words] = True
    for level_index, level in enumerate(settings.all_levels()):
        high = flat_prob >= level
        if level not in settings.levels:  # a level of the rare classes only
            high &= rare_rows
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
    extra = _derived_candidates(class_code, start, end, source, offsets, settings)
    if extra is not None:
        class_code, start, end, source = (np.concatenate([a, b]) for a, b in zip((class_code, start, end, source), extra))
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
    mean = range_reduce(np.add, chunk.class_prob_padded, class_code * n_words + start, class_code * n_words + end) / (end - start)
    essay = np.searchsorted(offsets, start, side="right") - 1
    group = essay * N_CLASSES + class_code
    order = np.lexsort((-mean, group))
    rank = rank_in_groups(group[order])
    keep = np.zeros(len(order), bool)
    keep[order[rank < settings.max_candidates]] = True
    return class_code[keep], start[keep], end[keep], source[keep]


SHORT_SPAN = 12  # rare-class candidates shorter than this are stretched (settings.stretch)


def _derived_candidates(class_code, start, end, source, offsets, settings: DecoderSettings):
    """Candidates made from the level candidates: their first and last ``sub_span`` share (1st place's sub-span
    candidates), and the rare classes' short ones stretched by ``stretch`` words at both ends (2nd/12th place)."""
    bits = len(settings.all_levels())
    parts = []
    from_levels = (source & ~ARGMAX_SOURCE) > 0
    if settings.sub_span > 0:
        length = end - start
        take = from_levels & (length >= 5)
        keep = np.maximum(np.ceil(length[take] * settings.sub_span).astype(np.int64), 1)
        code, first, last = class_code[take], start[take], end[take]
        parts.append((np.concatenate([code, code]), np.concatenate([first, last - keep]), np.concatenate([first + keep, last]),
                      np.full(2 * len(code), 1 << (1 + bits), np.int64)))
    if settings.stretch > 0:
        rare = np.isin(class_code, [CLASSES.index(name) for name in settings.rare_classes if name in CLASSES])
        take = rare & ((end - start) < SHORT_SPAN)
        essay = np.searchsorted(offsets, start[take], side="right") - 1
        parts.append((class_code[take], np.maximum(start[take] - settings.stretch, offsets[essay]),
                      np.minimum(end[take] + settings.stretch, offsets[essay + 1]), np.full(int(take.sum()), 1 << (2 + bits), np.int64)))
    if not parts:
        return None
    return tuple(np.concatenate(column) for column in zip(*parts))


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
        features = chunk_features(arrays, class_code, start, end, source, settings)
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
