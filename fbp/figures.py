"""The run's F1 figures: what each one is, and which one to quote.

One story everywhere (``fbp train``'s end, ``fbp evaluate``, ``fbp ensemble``, ``fbp compare``, ``fbp quickstart``):
each figure names its decoding and how it was measured, and the figure to quote is the one of the decoding the run
uses (``run.json``'s ``decoder``), cross-fitted, so that it is an honest estimate of what ``fbp infer`` will do.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

# run.json key of each CV F1 figure -> (its decoding, how it was measured), and the key of its per-class F1.
FIGURES: Dict[str, Tuple[str, str]] = {
    "cv_f1": ("configured thresholds", "out of fold"),
    "cv_f1_tuned": ("tuned thresholds", "cross-fitted out of fold"),  # tuned on the other folds
    "cv_f1_learned": ("learned decoding", "cross-fitted out of fold"),  # fitted on the other folds
}
PER_CLASS_KEY = {"cv_f1": "cv_per_class", "cv_f1_tuned": "cv_per_class_tuned", "cv_f1_learned": "cv_per_class_learned"}
# Short names of the decodings, as --decoding spells them, for each figure.
DECODING_OF = {"cv_f1": "thresholds (configured)", "cv_f1_tuned": "thresholds", "cv_f1_learned": "learned"}


def describe(key: str) -> str:
    """``cv_f1_tuned`` -> ``tuned thresholds, cross-fitted out of fold``."""
    decoding, measured = FIGURES[key]
    return f"{decoding}, {measured}"


def figures(record: Mapping[str, Any]) -> List[Tuple[str, float]]:
    """The CV F1 figures a run (``run.json`` as a dict) holds, as (key, value), in a fixed order."""
    return [(key, record[key]) for key in FIGURES if record.get(key) is not None]


def quoted_key(record: Mapping[str, Any]) -> Optional[str]:
    """The figure to quote: the learned decoder's when the run uses it (``decoder: learned``), else the tuned
    thresholds' (cross-fitted), else the configured thresholds'; None when the run has no figure yet."""
    present = dict(figures(record))
    if record.get("decoder") == "learned" and "cv_f1_learned" in present:
        return "cv_f1_learned"
    return next((key for key in ("cv_f1_tuned", "cv_f1") if key in present), None)


def quoted_per_class(record: Mapping[str, Any]) -> Tuple[Optional[str], Dict[str, Optional[float]]]:
    """The per-class F1 that goes with the figure to quote, and that figure's key (the configured thresholds' per
    class when a run made before the other figures had their own per-class F1 lacks them)."""
    key = quoted_key(record)
    for candidate in ([key] if key else []) + ["cv_f1"]:
        per_class = record.get(PER_CLASS_KEY[candidate]) or {}
        if per_class:
            return candidate, dict(per_class)
    return None, {}
