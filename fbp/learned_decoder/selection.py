"""Selection: among overlapping candidates of one class the best score wins (greedy non-maximum suppression),
then a per-class score threshold and cap on spans per essay apply; :func:`tune_rules` chooses those."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping

import numpy as np
import pandas as pd

from ..decode import spans_frame
from ..labels import CLASSES
from ..metric import match_table, parse_spans
from .arrays import rank_in_groups
from .candidates import Candidates

N_CLASSES = len(CLASSES)
# Per-class caps on spans per essay searched when tuning (0 = no cap).
MAX_PER_ESSAY_GRID = (0, 1, 2, 3, 4, 6)
THRESHOLD_GRID = tuple(np.round(np.arange(0.02, 0.981, 0.02), 3))


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
    rank[index[order]] = rank_in_groups(group[order])
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


def chosen_spans_frame(candidates: Candidates, chosen: np.ndarray) -> pd.DataFrame:
    index = np.flatnonzero(chosen)
    order = index[np.lexsort((candidates.end[index], candidates.start[index], candidates.essay[index]))]
    return spans_frame(candidates.essay_ids, candidates.essay[order], candidates.class_code[order], candidates.start[order], candidates.end[order])
