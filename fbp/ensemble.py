"""Ensembles scored out of fold: each run's out-of-fold word probabilities, their weighted average,
and weights fitted on the competition F1, all without running a model.

Runs trained on the same processed data share their out-of-fold essays, so the blend of their word
probabilities can be decoded and scored on exactly the essays each run predicted unseen.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .config import ThresholdConfig, read_decoding
from .errors import FbpError, UsageError
from .io.checkpoint import check_label_sets, is_checkpoint, run_checkpoints
from .io.run_dir import RunDir, TruthNotFound


class NoOutOfFold(UsageError):
    """A member has no out-of-fold predictions to score (a checkpoint, or a directory that is not a run)."""


@dataclass
class OofMember:
    """A member's out-of-fold word probabilities and the decoding thresholds of its run."""

    name: str
    word_probs: Dict[str, np.ndarray]
    decoding: ThresholdConfig
    folds: Optional[Dict[str, int]] = None  # the fold each essay was predicted out of, when the file records it


@dataclass
class OofReport:
    """Out-of-fold scores of each member, of the ensemble, and (when fitted) of the fitted ensemble."""

    members: List[str]
    member_results: List["MetricResult"]  # noqa: F821
    weights: List[float]
    ensemble_result: "MetricResult"  # noqa: F821
    essays: int
    fitted_weights: Optional[List[float]] = None
    fitted_result: Optional["MetricResult"] = None  # noqa: F821
    thresholds_result: Optional["MetricResult"] = None  # noqa: F821  # the blend's thresholds tuned, cross-fitted
    learned_result: Optional["MetricResult"] = None  # noqa: F821  # the decoder fitted on the blend, cross-fitted
    learned_decoder: Optional[object] = None  # fbp.learned_decoder.LearnedDecoder fitted on the blend
    uses_learned: bool = False  # the blend decodes with learned_decoder: it beat the thresholds out of fold
    cross_fitted_by: Optional[str] = None  # "the folds ...", or why two random halves
    saved_dir: Optional[Path] = None  # where the weights and the blend's decoder were saved


def load_oof_members(paths: Sequence[Path]) -> List[OofMember]:
    """Out-of-fold word probabilities of runs (``oof_word_probs.npz``) or ``.npz`` files."""
    from .io.word_probs import load_folds, load_word_probs

    members = []
    for path in map(Path, paths):
        if path.is_file() and path.suffix == ".npz":
            members.append(OofMember(str(path), load_word_probs(path), ThresholdConfig(), load_folds(path)))
            continue
        run = RunDir(path)
        if not run.oof_path.exists():
            kind = "a checkpoint" if is_checkpoint(path) else "not a run directory"
            raise NoOutOfFold(f"{path} has no out-of-fold word probabilities ({kind}); scoring an ensemble out of fold needs run directories")
        if run_checkpoints(path):
            check_label_sets(run_checkpoints(path))
        members.append(OofMember(str(path), load_word_probs(run.oof_path), run.decoding(), load_folds(run.oof_path)))
    return members


def _processed_truth(paths: Sequence[Path]) -> "pd.DataFrame":  # noqa: F821
    """The ground truth spans of the processed dataset the first run (that says which) was trained on."""
    from .io.kaggle import read_span_file

    for path in map(Path, paths):
        run = RunDir(path)
        if run.is_run() and run.processed_dir() is not None:
            return read_span_file(run.truth_path(), "truth")[0]
    raise TruthNotFound("cannot find the ground truth: none of the runs records the processed data it was trained on", exit_code=UsageError.exit_code)


def ensemble_oof(
    paths: Sequence[Path],
    weights: Optional[Sequence[float]] = None,
    fit_weights: bool = False,
    truth: Optional[Path] = None,
    decoding_file: Optional[Path] = None,
    save_dir: Optional[Path] = None,
) -> OofReport:
    """Score each run and their weighted ensemble on the essays all of them predicted out of fold.

    With ``fit_weights`` the weights are also fitted by coordinate search on a grid (steps of 0.1,
    renormalised), keeping a change only when it raises the out-of-fold macro F1; then the blend's decoding is
    chosen (:mod:`fbp.post_training`): thresholds tuned and a learned decoder fitted on the blended out-of-fold
    probabilities (a run's decoder is not the blend's), both cross-fitted by the folds the members recorded. ``save_dir`` saves the weights and that decoder as an ensemble directory
    that ``fbp ensemble`` and ``fbp infer`` accept like a run.
    """
    from .infer import expand_ensemble_dir

    if save_dir is not None and not fit_weights:
        raise UsageError("saving an ensemble directory needs fitted weights (and the blend's decoder): fit the weights too")
    paths, weights, _ = expand_ensemble_dir(paths, weights)
    from .decode import decode_essays
    from .io.kaggle import read_span_file
    from .metric import score
    from .word_probs import average_word_probs, normalise_weights

    members = load_oof_members(paths)
    member_weights = normalise_weights(weights, len(members))
    common = set(members[0].word_probs).intersection(*(member.word_probs for member in members[1:]))
    if not common:
        raise FbpError("the runs share no out-of-fold essays (were they trained on the same processed data?)")
    essay_ids = sorted(common)
    truth_spans = read_span_file(truth, "truth")[0] if truth is not None else _processed_truth(paths)
    truth_spans = truth_spans[truth_spans["id"].isin(common)]
    decoding = read_decoding(Path(decoding_file)) if decoding_file is not None else members[0].decoding
    aligned = [{essay_id: member.word_probs[essay_id] for essay_id in essay_ids} for member in members]

    def ensemble_score(candidate_weights: Sequence[float]) -> "MetricResult":  # noqa: F821
        return score(decode_essays(average_word_probs(aligned, candidate_weights), decoding), truth_spans)

    member_results = [score(decode_essays(probs, member.decoding), truth_spans) for probs, member in zip(aligned, members)]
    report = OofReport([m.name for m in members], member_results, member_weights, ensemble_score(member_weights), len(essay_ids))
    if fit_weights and len(members) > 1:
        report.fitted_weights, report.fitted_result = _fit_weights(member_weights, report.ensemble_result, ensemble_score)
    if fit_weights:
        from .post_training import choose_decoding, cross_fit_groups

        final_weights = report.fitted_weights or member_weights
        folds = next((member.folds for member in members if member.folds is not None), None)
        groups = cross_fit_groups(essay_ids, folds, "no member's out-of-fold file records folds")
        # Like with like: the blend's thresholds tuned and its learned decoder fitted, both cross-fitted by the same groups.
        choice = choose_decoding(average_word_probs(aligned, final_weights), truth_spans, decoding, groups, tune=True, learn=True)
        report.thresholds_result, report.learned_result, report.learned_decoder = choice.thresholds_result, choice.learned.result, choice.learned.decoder
        report.uses_learned, report.cross_fitted_by = choice.uses_learned, groups.source
        if save_dir is not None:
            from .io.ensemble_dir import save_ensemble_dir

            report.saved_dir = save_ensemble_dir(save_dir, paths, final_weights, choice.learned.decoder if choice.uses_learned else None, {
                "oof_f1_thresholds": choice.thresholds_result.f1, "oof_f1_learned": choice.learned.result.f1, "essays": len(essay_ids),
                "cross_fitted_by": groups.source}, thresholds=choice.thresholds)
    return report


def _fit_weights(start: Sequence[float], start_result, evaluate, rounds: int = 3, grid: Sequence[float] = tuple(np.round(np.arange(0, 1.01, 0.1), 2))):
    """Coordinate search: set one member's weight to each grid value (others rescaled), keep the best; repeat."""
    best_weights, best_result = list(start), start_result
    for _ in range(rounds):
        improved = False
        for member, value in itertools.product(range(len(best_weights)), grid):
            others = sum(w for i, w in enumerate(best_weights) if i != member)
            if others <= 0 or abs(best_weights[member] - value) < 1e-9 or value >= 1:
                continue
            candidate = [value if i == member else w / others * (1 - value) for i, w in enumerate(best_weights)]
            result = evaluate(candidate)
            if result.f1 > best_result.f1 + 1e-9:
                best_weights, best_result, improved = candidate, result, True
        if not improved:
            break
    return [round(w, 4) for w in best_weights], best_result
