"""The span scorer: LightGBM model(s) predicting whether a candidate matches a true span."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..labels import CLASSES
from .candidates import Candidates
from .settings import DecoderSettings

N_CLASSES = len(CLASSES)
CATEGORICAL_FEATURES = ("class", "prev_class", "next_class")


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


def fit_models(candidates: Candidates, labels: np.ndarray, settings: DecoderSettings) -> List[Tuple[Tuple[int, ...], object]]:
    """The models of ``settings`` (one, or one per class) fitted on ``candidates``; a class with no positive
    or no negative candidate gets no model (its candidates score 0)."""
    models = []
    for codes in _model_groups(settings):
        rows = np.isin(candidates.class_code, codes)
        if rows.any() and 0 < labels[rows].sum() < rows.sum():
            models.append((codes, _fit_model(candidates.features[rows], labels[rows], candidates.feature_names, settings)))
    return models


def predict_scores(models: Sequence[Tuple[Tuple[int, ...], object]], candidates: Candidates) -> np.ndarray:
    scores = np.zeros(len(candidates), np.float64)
    for codes, model in models:
        rows = np.isin(candidates.class_code, codes)
        if rows.any():
            scores[rows] = model.predict(candidates.features[rows])
    return scores
