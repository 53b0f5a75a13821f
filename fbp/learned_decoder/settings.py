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

    def to_dict(self) -> Dict[str, object]:
        values = asdict(self)
        values["levels"] = list(self.levels)
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "DecoderSettings":
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        if "levels" in known:
            known["levels"] = tuple(float(level) for level in known["levels"])
        return cls(**known)
