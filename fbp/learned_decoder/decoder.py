"""A fitted learned decoder: candidate settings, span-scoring model(s) and per-class selection rules, applied
to word probabilities. Fitting is :mod:`.fitting`'s job; files are :mod:`fbp.io.decoder`'s."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Tuple

import numpy as np
import pandas as pd

from ..errors import FbpError
from ..labels import CLASSES
from .candidates import Candidates, make_candidates
from .scorer import predict_scores
from .selection import ClassRule, chosen_spans_frame, select
from .settings import DecoderSettings


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
        return predict_scores(self.models, candidates)

    def decode(self, word_probs_by_id: Mapping[str, np.ndarray]) -> pd.DataFrame:
        """Spans of every essay as a submission frame ``DataFrame[id, class, predictionstring]``.

        Rows follow the input essay order, then reading order; an essay with no span has no row.
        """
        candidates = make_candidates(word_probs_by_id, self.settings)
        if tuple(candidates.feature_names) != tuple(self.feature_names):
            raise FbpError("this learned decoder was fitted with other features than this version of fbp computes; refit it (fbp evaluate RUN --tune)")
        chosen = select(candidates, self.score_candidates(candidates), self.rules, self.settings.nms_overlap)
        return chosen_spans_frame(candidates, chosen)
