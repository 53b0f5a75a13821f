"""The learned decoder's settings: how candidates are formed and how the span scorer is fitted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Mapping, Tuple

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
    # The second stage after the Kaggle winners (bench/RESULTS.md, "A stronger second stage"); each off here unless it gained.
    # Lower levels for the rare classes gained +0.015 macro F1 cross-fitted on both 1,000-essay runs of issue 19 (the
    # others within +-0.006), so they are on.
    rare_levels: Tuple[float, ...] = (0.02, 0.05)  # extra, lower levels for the rare classes only (1st place: 0.015-0.02 against 0.05)
    rare_classes: Tuple[str, ...] = ("Counterclaim", "Rebuttal")
    sub_span: float = 0.0  # > 0: the first and the last this share of each level candidate (5+ words) become candidates too
    stretch: int = 0  # > 0: each rare-class candidate shorter than 12 words also stretched by this many words at both ends
    context_features: bool = False  # neighbourhood features: windows before/after at half and full length, ratios, other classes' max, order in the essay

    def all_levels(self) -> Tuple[float, ...]:
        """Every level candidates are cut at, ascending (the rare classes' own ones included)."""
        return tuple(sorted(set(self.levels) | set(self.rare_levels)))

    def to_dict(self) -> Dict[str, object]:
        values = asdict(self)
        values["levels"] = list(self.levels)
        values["rare_levels"] = list(self.rare_levels)
        values["rare_classes"] = list(self.rare_classes)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "DecoderSettings":
        # A decoder saved before a setting existed was fitted without it: the setting's "off" value, not its default.
        known = {**LEGACY_VALUES, **{name: values[name] for name in cls.__dataclass_fields__ if name in values}}
        for name in ("levels", "rare_levels"):
            known[name] = tuple(float(level) for level in known.get(name, getattr(cls, name)))
        known["rare_classes"] = tuple(str(name) for name in known.get("rare_classes", cls.rare_classes))
        return cls(**known)


# Settings added after decoders were first saved, with the value that reproduces a decoder saved without them.
LEGACY_VALUES: Dict[str, object] = {"rare_levels": (), "sub_span": 0.0, "stretch": 0, "context_features": False}
