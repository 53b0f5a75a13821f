"""Benchmark-only diagnostics of decoding (used by bench_decoding.py; fbp itself never needs them): each class's
word-level signal, and the candidate recall of a learned-decoder fit."""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np
import pandas as pd

from fbp.decode import stack_word_probs
from fbp.labels import CLASSES
from fbp.metric import match_table, parse_spans

N_CLASSES = len(CLASSES)


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


def candidate_recall(fit, truth: pd.DataFrame) -> Dict[str, float]:
    """Per class, the share of true spans that some candidate of ``fit`` (a :class:`fbp.learned_decoder.LearnedFit`)
    matches: the ceiling of any selection."""
    truth = truth[truth["id"].astype(str).isin(set(fit.candidates.essay_ids))]
    table = match_table(fit.candidates.span_set(), parse_spans(truth, "truth"))
    matched = np.bincount(table.truth_classes[np.unique(table.truth_index)], minlength=N_CLASSES)
    return {name: float(matched[code] / table.truth_per_class[code]) for code, name in enumerate(CLASSES) if table.truth_per_class[code]}
