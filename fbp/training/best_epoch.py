"""The one rule that picks a fold's best epoch (the epoch its checkpoint keeps).

The competition F1, ties broken by the lower validation loss (:func:`selection_score`); a later epoch wins only
when its score is strictly higher (:func:`improves`). The Trainer applies this rule when it decides which
checkpoint to keep (:data:`TRAINER_ARGUMENTS`: ``metric_for_best_model`` is the score, greater is better, and
the Trainer compares with a strict ``>``, as :func:`improves` does).

One source of truth: the checkpoint the Trainer keeps (its ``best_global_step``) is the fold's best epoch. Its
weights become the fold's checkpoint and its word probabilities the fold's rows of the out-of-fold file, and
:func:`kept_evaluation` names its epoch for ``run.json`` (``fbp train``) and for a fold still training
(``fbp compare``). :func:`improves` marks, in the per-epoch table, the epochs that were a new best when evaluated.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

EVAL_F1 = "eval_f1"  # the competition F1 in the Trainer's log
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


def metric_key(class_name: str) -> str:
    """Name of a class's F1 in the Trainer's metrics (``f1_Concluding_Statement``)."""
    return "f1_" + class_name.replace(" ", "_")


def evaluations(log_history: Sequence[Any]) -> List[Dict[str, Any]]:
    """The Trainer log's evaluation entries (one per epoch), in order."""
    return [entry for entry in log_history if isinstance(entry, dict) and EVAL_F1 in entry and "epoch" in entry]


def kept_evaluation(log_history: Sequence[Any], best_global_step: Optional[int]) -> Optional[Dict[str, Any]]:
    """The evaluation of the epoch whose checkpoint the Trainer keeps: the one logged at ``best_global_step``.

    Before the Trainer has recorded a best step (or in a log that lacks it), the rule applied to the evaluations
    so far picks the same one. None when nothing was evaluated yet."""
    scored = evaluations(log_history)
    kept = next((entry for entry in scored if best_global_step is not None and entry.get("step") == best_global_step), None)
    if kept is None:
        best = None
        for entry in scored:
            score = float(entry.get(f"eval_{SELECTION_METRIC}", entry[EVAL_F1]))
            if improves(score, best):
                best, kept = score, entry
    return kept


def kept_epoch_number(log_history: Sequence[Any], best_global_step: Optional[int]) -> Optional[int]:
    """The epoch number (1, 2, ...) of :func:`kept_evaluation`."""
    kept = kept_evaluation(log_history, best_global_step)
    return None if kept is None else int(round(float(kept["epoch"])))
