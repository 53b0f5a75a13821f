"""Post-training decoding: how a run's (or an ensemble's) word probabilities become spans, decided in one place.

On out-of-fold word probabilities, cross-fitted by the fold each essay was predicted out of (recorded with the
probabilities by :mod:`fbp.io.word_probs`, never rebuilt):

- the configured thresholds' F1 (honest as it is: nothing was fitted on these essays);
- thresholds tuned per class (:func:`fbp.decode.tune_thresholds`), their F1 cross-fitted: each fold decoded
  with thresholds tuned on the other folds;
- a learned decoder (:mod:`fbp.learned_decoder`), cross-fitted by the same folds;
- the rule: the learned decoder is used only when its cross-fitted F1 beats the thresholds' (the tuned ones when
  tuned, else the configured ones), both measured on the same essays with the same groups.

Callers: ``fbp train`` (:mod:`fbp.training.loop`), ``fbp evaluate RUN --tune`` (:mod:`fbp.evaluate`), ``fbp ensemble
--fit-weights`` (:mod:`fbp.ensemble`; ``fbp.cli.infer`` reads its choice). Nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from .config import ThresholdConfig
from .metric import MetricResult, score

if TYPE_CHECKING:
    from .decode import TuningReport
    from .io.run_dir import RunDir
    from .io.run_record import RunRecord
    from .learned_decoder import DecoderSettings, LearnedFit

FOLDS = "the folds the essays were predicted out of"
HALVES_SEED = 0  # two random halves: the same split fbp.decode and fbp.learned_decoder have always drawn


@dataclass(frozen=True)
class CrossFitGroups:
    """One cross-fitting group per essay (in the order of the word probabilities) and where they come from."""

    groups: np.ndarray
    source: str  # FOLDS, or why two random halves were used (shown to the user)

    @property
    def are_folds(self) -> bool:
        return self.source == FOLDS


def cross_fit_groups(essay_ids: Sequence[str], folds: Optional[Mapping[str, int]], missing: str) -> CrossFitGroups:
    """Groups from ``folds`` (``{essay_id: fold}`` as recorded), else two random halves (seed 0) with the reason:
    ``missing`` says why there is no fold record; a record with a single fold cannot cross-fit either."""
    if folds is not None and all(essay_id in folds for essay_id in essay_ids):
        groups = np.array([int(folds[essay_id]) for essay_id in essay_ids], np.int64)
        if len(np.unique(groups)) >= 2:
            return CrossFitGroups(groups, FOLDS)
        missing = "the essays were all predicted out of one fold"
    elif folds is not None:
        missing = "the fold record does not cover every essay"
    halves = np.random.default_rng(HALVES_SEED).permutation(len(essay_ids)) % 2
    return CrossFitGroups(halves, f"two random halves of the essays ({missing})")


@dataclass
class DecodingChoice:
    """What post-training decoding measured and chose."""

    groups: CrossFitGroups
    thresholds: ThresholdConfig  # what the thresholds decoding uses: tuned on every essay when tuned, else as configured
    thresholds_result: MetricResult  # their F1: cross-fitted when tuned (honest either way)
    tuning: Optional["TuningReport"]  # tuned: per-class F1 before and after, on every essay (in-sample)
    learned: Optional["LearnedFit"]  # the learned decoder's fit, when fitted (its ``result`` is cross-fitted)

    @property
    def uses_learned(self) -> bool:
        """The rule: the learned decoder only when it beats the thresholds out of fold."""
        return self.learned is not None and self.learned.result.f1 > self.thresholds_result.f1


def choose_decoding(
    word_probs: Mapping[str, np.ndarray],
    truth: pd.DataFrame,
    thresholds: ThresholdConfig,
    groups: CrossFitGroups,
    tune: bool = True,
    learn: bool = True,
    settings: Optional["DecoderSettings"] = None,
    progress: Optional[Callable[[str], None]] = None,
) -> DecodingChoice:
    """Tune ``thresholds`` (from where they are) and fit a learned decoder on ``word_probs``, both cross-fitted by
    ``groups``; :attr:`DecodingChoice.uses_learned` says which one wins. ``truth``: the spans of these essays."""
    from .decode import cross_fitted_predictions, decode_essays, tune_thresholds

    tuning = None
    if tune:
        # Default thresholds suit strong models; tuned ones can be worth a lot more on others.
        cross_fitted = cross_fitted_predictions(word_probs, truth, thresholds, groups.groups)
        thresholds_result = score(cross_fitted, truth)
        thresholds, tuning = tune_thresholds(word_probs, truth, thresholds)
    else:
        thresholds_result = score(decode_essays(word_probs, thresholds), truth)
    learned = None
    if learn:
        from .learned_decoder import DecoderSettings, fit_learned_decoder

        learned = fit_learned_decoder(word_probs, truth, groups.groups, settings or DecoderSettings(), progress)
    return DecodingChoice(groups, thresholds, thresholds_result, tuning, learned)


def record_in_run(run: "RunDir", record: "RunRecord", choice: DecodingChoice, learning_enabled: bool = True) -> None:
    """Save the choice in the run directory and in ``record`` (run.json; the caller writes it): tuned thresholds as
    ``decoding.json`` (the fold checkpoints decode with them), the learned decoder's files, the cross-fitted F1s and
    which decoding the run uses."""
    if choice.tuning is not None:
        record.cv_f1_tuned = round(float(choice.thresholds_result.f1), 6)
        record.cv_per_class_tuned = {name: round(f1, 6) for name, f1 in choice.thresholds_result.class_f1().items()}
        run.write_decoding(choice.thresholds)
    if choice.learned is not None:
        record.cv_f1_learned = round(float(choice.learned.result.f1), 6)
        record.cv_per_class_learned = {name: round(f1, 6) for name, f1 in choice.learned.result.class_f1().items()}
        run.write_learned_decoder(choice.learned.decoder)
        record.decoder = "learned" if choice.uses_learned else "thresholds"
    elif not learning_enabled and record.decoder == "learned":
        record.decoder = "thresholds"  # turned off: a decoder fitted before is kept on disk but not used
