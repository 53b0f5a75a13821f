"""The one rule that picks a fold's best epoch (the epoch its checkpoint keeps).

The competition F1, ties broken by the lower validation loss (:func:`selection_score`); a later epoch wins only
when its score is strictly higher (:func:`improves`). The Trainer applies this rule when it decides which
checkpoint to keep (:data:`TRAINER_ARGUMENTS`: ``metric_for_best_model`` is the score, greater is better, and
the Trainer compares with a strict ``>``, as :func:`improves` does); ``epoch_records``, the per-epoch table, the
evaluator that keeps the best epoch's word probabilities and the fold summary all ask :func:`improves` and
:func:`best_epoch`.
"""

from __future__ import annotations

from typing import Optional, Sequence

SELECTION_METRIC = "selection"  # the name of selection_score in the Trainer's metrics (eval_selection in its log)
# The TrainingArguments that make the Trainer keep the epoch this rule picks.
TRAINER_ARGUMENTS = {"metric_for_best_model": SELECTION_METRIC, "greater_is_better": True, "load_best_model_at_end": True}


def selection_score(f1: float, loss: float) -> float:
    """What picks the best epoch: the competition F1, ties broken by the lower validation loss.

    F1 values of different epochs differ by far more than 1e-6, so the loss term decides only exact ties (for
    example every epoch at F1 0 early in training, where the first epoch would otherwise win).
    """
    return float(f1) - 1e-6 * min(loss, 100.0)


def improves(score: float, best: Optional[float]) -> bool:
    """Whether an epoch scoring ``score`` replaces the best so far (``best`` None: it is the first epoch)."""
    return best is None or score > best


def best_epoch(records: Sequence["EpochRecord"]) -> "EpochRecord":  # noqa: F821
    """The best of a fold's epoch records (each marked ``saved`` by :func:`improves` when it was the new best)."""
    saved = [record for record in records if record.saved]
    if not saved:
        raise ValueError("no epoch was evaluated")
    return saved[-1]
