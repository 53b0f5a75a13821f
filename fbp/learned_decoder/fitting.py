"""The fitted decoder and its cross-fitted fit.

Fitting is cross-fitted on out-of-fold word probabilities: each group's candidates are scored by a model fitted
on the other groups only, and each group is decoded with rules tuned on the other groups' (cross-fitted)
scores, so the reported F1 is honest. The decoder that is kept uses a model fitted on every essay and rules
tuned on every candidate's cross-fitted score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..labels import CLASSES
from ..metric import MetricResult, score
from .candidates import Candidates, candidate_labels, make_candidates
from .scorer import fit_models, predict_scores
from .decoder import LearnedDecoder
from .selection import chosen_spans_frame, select, tune_rules
from .settings import DecoderSettings


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
        models = fit_models(candidates.subset(~held_out), labels[~held_out], settings)
        scores[held_out] = predict_scores(models, candidates.subset(held_out))
    seconds["cross_fit"] = time.perf_counter() - clock

    clock = time.perf_counter()
    ids = np.asarray(essay_ids, dtype=object)
    frames = []
    for group in distinct:
        held_out = candidate_group == group
        tune_on = candidates.subset(~held_out, with_features=False)
        rules = tune_rules(tune_on, scores[~held_out], truth[truth["id"].isin(set(ids[essay_group != group]))], settings.nms_overlap)
        evaluate_on = candidates.subset(held_out, with_features=False)
        frames.append(chosen_spans_frame(evaluate_on, select(evaluate_on, scores[held_out], rules, settings.nms_overlap)))
    cross_fitted = _reorder(pd.concat(frames, ignore_index=True), essay_ids)
    rules = tune_rules(candidates, scores, truth, settings.nms_overlap)
    seconds["rules"] = time.perf_counter() - clock

    clock = time.perf_counter()
    say("span scorer on every essay")
    models = fit_models(candidates, labels, settings)
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
