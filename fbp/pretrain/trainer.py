"""The Trainer's pieces for masked-LM pretraining: the loss on the masked tokens only, the progress callback,
the dropout settings, the wandb run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import PretrainConfig
from ..errors import UsageError
from ..faults import crash_point
from .report import PretrainProgress, PretrainReporter
from .workdir import created_stamp


def progress_callback(reporter: PretrainReporter, tokens_per_step: float):
    """A Trainer callback timing the steps (the first of this invocation excluded: set-up) into :class:`PretrainProgress`."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.monotonic()
            self.first_step_done: Optional[float] = None
            self.first_step = 0
            self.loss: Optional[float] = None

        def _report(self, state) -> None:
            now = time.monotonic()
            remaining = speed = None
            timed = state.global_step - self.first_step
            if self.first_step_done is not None and timed > 0:
                per_step = (now - self.first_step_done) / timed
                remaining = per_step * (state.max_steps - state.global_step)
                speed = tokens_per_step / per_step if per_step > 0 else None
            reporter.progress(PretrainProgress(step=state.global_step, total_steps=state.max_steps, loss=self.loss,
                                               elapsed=now - self.started, remaining=remaining, tokens_per_second=speed))

        def on_step_end(self, args, state, control, **kwargs):
            crash_point("pretrain_step")  # FBP_CRASH_AT=pretrain_step@N: killed after the N-th step (the resume test)
            if not state.is_world_process_zero:
                return
            if self.first_step_done is None:
                self.first_step_done, self.first_step = time.monotonic(), state.global_step
            self._report(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs and "loss" in logs:
                self.loss = float(logs["loss"])

    return ProgressCallback()


MLM_HEAD_NAMES = ("cls", "lm_head", "lm_predictions")  # BERT/DeBERTa, RoBERTa/Longformer, DeBERTa-v2 (legacy=False)


def masked_lm_trainer():
    """The Trainer, scoring the masked-LM head on the masked tokens only.

    A stock masked-LM model projects every token onto the vocabulary (MiniLM: 384 x 30,522, about as many
    multiply-adds per token as its six layers) and then ignores all but the ~15% masked ones. Gathering the masked
    positions first gives the same loss for a fraction of the head's multiply-adds (measured under heavy load:
    1.06x per step, bench/RESULTS.md). Models whose head is not found under a
    known name run the stock forward.
    """
    import torch
    import torch.nn.functional as F
    from transformers import Trainer

    class MaskedLMTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # The loss below divides by the Trainer's count of masked tokens per optimizer step (as a stock model
            # taking **kwargs does): the Trainer then counts them and does not rescale for gradient accumulation.
            self.model_accepts_loss_kwargs = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            unwrapped = self.accelerator.unwrap_model(model)
            head = next((getattr(unwrapped, name) for name in MLM_HEAD_NAMES if isinstance(getattr(unwrapped, name, None), torch.nn.Module)), None)
            if head is None or return_outputs or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            hidden = unwrapped.base_model(**inputs).last_hidden_state
            masked = labels != -100
            logits = head(hidden[masked])
            loss = F.cross_entropy(logits.float(), labels[masked], reduction="sum")
            # Divided by the masked tokens of the whole optimizer step (all accumulation steps and processes) when the
            # Trainer counts them, as the stock loss does; else this batch's own mean.
            if num_items_in_batch is None:
                return loss / masked.sum().clamp(min=1)
            loss = loss / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes  # the count spans every process; gradients are averaged
            return loss

    return MaskedLMTrainer


def model_config_with_dropouts(name: str, settings: Any) -> Tuple[Any, Dict[str, Any]]:
    """The model's config with ``pretrain.hidden_dropout`` / ``attention_dropout`` set (None: kept), and the values
    they replaced, restored before saving (the saved model keeps its own dropout; fbp train sets its own)."""
    from transformers import AutoConfig

    from ..model import ATTENTION_DROPOUT_NAMES, HIDDEN_DROPOUT_NAMES, _from_pretrained

    model_config = _from_pretrained(AutoConfig, name)
    replaced: Dict[str, Any] = {}
    for value, candidates, what in ((settings.hidden_dropout, HIDDEN_DROPOUT_NAMES, "hidden"),
                                    (settings.attention_dropout, ATTENTION_DROPOUT_NAMES, "attention")):
        if value is None:
            continue
        present = [attribute for attribute in candidates if hasattr(model_config, attribute)]
        if not present:
            raise UsageError(f"model '{name}' ({model_config.model_type}) has no {what} dropout setting to override")
        replaced[present[0]] = getattr(model_config, present[0])
        setattr(model_config, present[0], value)
    return model_config, replaced


def start_wandb(config: PretrainConfig, output: Path, work_dir: Path, reporter: PretrainReporter):
    """A wandb run for the pretraining (None when tracking is off); offline files go into the work folder first."""
    import hashlib
    import os

    from ..training.tracking import resolve_wandb_mode

    mode = resolve_wandb_mode(config.tracking.wandb)
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    name = config.name or output.name
    run_id = hashlib.sha1(f"{Path(output).resolve()}|pretrain|{created_stamp(work_dir)}".encode()).hexdigest()[:12]
    init_args = dict(project=config.tracking.project, entity=config.tracking.entity, group=config.tracking.group or name, name=f"{name}-pretrain",
                     id=run_id, resume="allow", dir=str(work_dir), job_type="pretrain", config=config.model_dump(mode="json"))
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, silent=True), **init_args)
    except Exception as error:  # an unreachable server must not stop the pretraining
        if mode != "online":
            raise
        reporter.note(f"wandb online failed ({error}); logging offline instead")
        return wandb.init(mode="offline", settings=wandb.Settings(silent=True), **init_args)
