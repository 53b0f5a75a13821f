"""Per-epoch evaluation inside the Trainer: window probabilities -> word probabilities -> spans -> competition F1.

The Trainer gathers the softmax of every validation window (in dataset order, across processes too);
:class:`FoldEvaluator` stitches them into word probabilities, decodes spans and scores them, so the metric
that picks the best epoch is the competition's, not the loss.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from torch.utils.data import SequentialSampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from ..config import ThresholdConfig
from ..faults import crash_point
from ..io.run_dir import CHECKPOINT_EVAL_FILE
from ..quiet import quiet_trainer_bookkeeping
from .best_epoch import SELECTION_METRIC, metric_key, selection_score


class ShuffledLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped batches (little padding), the batches in random order.

    The stock sampler sorts each mega-batch longest first, so every few dozen steps the model trains on a run of
    consecutive short batches: the tails of long essays, mostly their conclusions, a label mix unlike the rest.
    Shuffling whole batches keeps the padding saving and makes consecutive steps independent again. The batch
    holding the longest window still goes first, so an out-of-memory error comes at once.
    """

    def __iter__(self):
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]
        order = torch.randperm(len(batches), generator=self.generator).tolist()
        order.remove(0)  # batch 0 holds the longest window (get_length_grouped_indices puts it first)
        return iter([index for k in [0, *order] for index in batches[k]])


class WordLevelTrainer(Trainer):
    """The Hugging Face Trainer, evaluating windows in dataset order so each maps back to its essay, and training
    on length-grouped batches in random order (:class:`ShuffledLengthGroupedSampler`)."""

    def __init__(self, *args, head_learning_rate: Optional[float] = None, **kwargs):
        quiet_trainer_bookkeeping()  # its checkpoint-sorting remarks would break through the live display
        self.head_learning_rate = head_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        made_here = self.optimizer is None
        optimizer = super().create_optimizer(model)
        if made_here and self.head_learning_rate is not None:
            # Before the scheduler reads each group's learning rate, and before a resume loads the optimizer's state.
            separate_head_groups(optimizer, self.model if model is None else model, self.head_learning_rate)
        return optimizer

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        # Batches of one process's micro-batch size: under DDP and gradient accumulation each optimizer step then
        # gathers several independent batches.
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return ShuffledLengthGroupedSampler(self.args.train_batch_size, dataset=dataset, model_input_name="input_ids")

    def _save_rng_state(self, output_dir: str) -> None:
        # The last step of a checkpoint before the Trainer writes trainer_state.json: fbp's evaluation goes in here.
        super()._save_rng_state(output_dir)
        if isinstance(self.compute_metrics, FoldEvaluator):
            self.compute_metrics.store_in_checkpoint(Path(output_dir))
        crash_point("checkpoint_save")  # weights written, trainer_state.json not yet: a half-saved checkpoint

    def _get_eval_sampler(self, eval_dataset):
        # The stock sampler shuffles by length when group_by_length is on; order matters for stitching.
        # With several processes, accelerate shards batches in order and gathers them back in order.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    @staticmethod
    def probabilities(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Softmax on the device, kept as float16: half the memory for the gathered validation predictions."""
        return torch.softmax(logits.float(), dim=-1).to(torch.float16)


def separate_head_groups(optimizer: torch.optim.Optimizer, model: torch.nn.Module, head_learning_rate: float) -> None:
    """Move the head's parameters (those outside the pretrained encoder, ``model.base_model``) out of each of the
    optimizer's groups into a group of their own (same settings, ``head_learning_rate``): a random head learns fast
    while the pretrained encoder keeps its smaller rate."""
    encoder = {id(parameter) for parameter in model.base_model.parameters()}
    for group in list(optimizer.param_groups):
        head_params = [parameter for parameter in group["params"] if id(parameter) not in encoder]
        if head_params:
            group["params"] = [parameter for parameter in group["params"] if id(parameter) in encoder]
            optimizer.add_param_group({**{key: value for key, value in group.items() if key != "params"}, "params": head_params, "lr": head_learning_rate})
    optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]


def validation_loss(token_probs: np.ndarray, token_labels: np.ndarray) -> float:
    """Mean cross-entropy of the labelled tokens (labels of -100, and padding, are skipped)."""
    labelled = token_labels >= 0
    if not labelled.any():
        return 0.0
    probs_of_labels = np.take_along_axis(token_probs[labelled], token_labels[labelled][:, None], axis=1)[:, 0]
    return float(-np.log(np.clip(probs_of_labels.astype(np.float32), 1e-7, 1.0)).mean())


class FoldEvaluator(TrainerCallback):
    """``compute_metrics`` for one fold, and a callback that keeps the best epoch's word probabilities.

    Each evaluation writes its word probabilities to ``last_eval.npz``, which goes into the epoch's checkpoint as it
    is saved (:data:`~fbp.io.run_dir.CHECKPOINT_EVAL_FILE`, written before the Trainer's ``trainer_state.json``). The
    best epoch's probabilities are then read from the best checkpoint: the two never disagree, even when a kill
    lands in the middle of a save and the fold resumes.
    """

    def __init__(self, val_essays: pd.DataFrame, spans: pd.DataFrame, val_windows_meta, decoding: ThresholdConfig, work_dir: Path):
        self.essay_ids = val_essays["id"].tolist()
        self.n_words = val_essays["n_words"].astype(int).tolist()
        from ..metric import parse_spans

        self.truth = parse_spans(spans[spans["id"].isin(set(self.essay_ids))], "validation truth")  # parsed once, scored every epoch
        self.val_windows_meta = val_windows_meta
        self.decoding = decoding
        self.work_dir = Path(work_dir)
        self.is_main = PartialState().is_main_process
        self.last_time = time.monotonic()

    @property
    def last_path(self) -> Path:
        return self.work_dir / "last_eval.npz"

    def __call__(self, eval_prediction) -> Dict[str, float]:
        from ..decode import decode_essays
        from ..io.word_probs import save_word_probs
        from ..metric import score
        from ..word_probs import stitch_word_probs

        token_probs = eval_prediction.predictions
        per_essay = stitch_word_probs(token_probs, self.val_windows_meta, self.n_words)
        word_probs = dict(zip(self.essay_ids, per_essay))
        result = score(decode_essays(word_probs, self.decoding), self.truth)
        if self.is_main:
            save_word_probs(self.last_path, word_probs)
        now = time.monotonic()
        loss = validation_loss(token_probs, eval_prediction.label_ids)
        metrics = {"f1": float(result.f1), SELECTION_METRIC: selection_score(result.f1, loss), "epoch_seconds": round(now - self.last_time, 1)}
        self.last_time = now
        metrics.update({metric_key(name): f1 for name, f1 in result.class_f1().items()})
        return metrics

    def on_step_end(self, args, state, control, **kwargs):
        crash_point("train_step")  # mid-epoch, for the crash tests

    def store_in_checkpoint(self, checkpoint_dir: Path) -> None:
        """Put this evaluation's word probabilities into the checkpoint being saved (before the Trainer's
        ``trainer_state.json``, its last file): a checkpoint and the probabilities of its epoch go together."""
        if not self.is_main or not self.last_path.exists():
            return
        from ..atomic import atomic_file

        with open(self.last_path, "rb") as source, atomic_file(Path(checkpoint_dir) / CHECKPOINT_EVAL_FILE, "wb") as target:
            shutil.copyfileobj(source, target)

    def load_best_word_probs(self, best_checkpoint: Path) -> Dict[str, np.ndarray]:
        """The word probabilities of the best epoch, from its checkpoint (main process; others get nothing)."""
        from ..io.word_probs import load_word_probs

        return load_word_probs(Path(best_checkpoint) / CHECKPOINT_EVAL_FILE) if self.is_main else {}
