"""Learned span decoding: candidate spans per class, scored by a gradient-boosted model, selected per class.

The threshold decoding (:mod:`fbp.decode`) only ever sees the spans that each word's argmax forms, so a class
that rarely wins a word's argmax (Counterclaim, Rebuttal) is lost before any threshold applies. Here:

1. **Candidates** (:mod:`.candidates`, features in :mod:`.features`). For every class, the runs of words where
   that class's probability (B + I) stays at or above each of a few levels, split where a new span begins,
   plus the argmax spans; each with features (length, position, probability statistics, context, rank, ...).
2. **Scoring** (:mod:`.scorer`). A LightGBM model predicts whether a candidate matches a true span under the
   competition rule (each covers at least half of the other).
3. **Selection** (:mod:`.selection`). Among overlapping candidates of one class the best score wins; then a
   per-class score threshold and cap on spans per essay apply.
4. **Fitting** (:mod:`.fitting`), cross-fitted on out-of-fold word probabilities so the reported F1 is honest;
   the fitted :class:`LearnedDecoder` (:mod:`.decoder`) applies all of it.

Nothing here prints; files are :mod:`fbp.io.decoder`'s job; whether a run uses this decoder or its tuned
thresholds is :mod:`fbp.post_training`'s decision. Benchmark-only diagnostics live in bench/.
"""

from .candidates import Candidates, candidate_labels, make_candidates
from .decoder import LearnedDecoder
from .features import feature_names
from .fitting import LearnedFit, essay_groups, fit_learned_decoder
from .selection import MAX_PER_ESSAY_GRID, THRESHOLD_GRID, ClassRule, select, suppress_overlaps, tune_rules
from .settings import DecoderSettings

__all__ = [
    "Candidates", "ClassRule", "DecoderSettings", "LearnedDecoder", "LearnedFit", "MAX_PER_ESSAY_GRID", "THRESHOLD_GRID",
    "candidate_labels", "essay_groups", "feature_names", "fit_learned_decoder", "make_candidates",
    "select", "suppress_overlaps", "tune_rules",
]
