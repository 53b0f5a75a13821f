"""``fbp pretrain``'s whole flow: text -> blocks -> masked-LM with the Trainer -> the model directory."""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Optional

from ..config import PretrainConfig
from ..errors import UsageError
from ..io.pretrained import PretrainedMeta, save_pretrained_dir, text_hash
from .report import PretrainPlan, PretrainReporter
from .text import gather_text, make_blocks
from .trainer import masked_lm_trainer, model_config_with_dropouts, progress_callback, start_wandb
from .workdir import open_work_dir, resumable_checkpoint, resume_settings, check_output, work_dir_of


def pretrain(config: PretrainConfig, output: Path, reporter: Optional[PretrainReporter] = None) -> PretrainedMeta:
    """Pretrain ``config.model.name`` on the essays' text with masked-LM; write the model directory ``output``.

    Re-running the same command after a stop resumes from the last checkpoint in ``OUT.pretrain-work/``.
    """
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils import logging as transformers_logging

    from ..device import resolve_device, resolve_precision
    from ..io.run_dir import RunLock
    from ..model import _from_pretrained, load_tokenizer, resolve_model_name
    from ..training.tracking import quiet_wandb_import_notice

    reporter = reporter or PretrainReporter()
    output = Path(output)
    settings = config.pretrain
    check_output(config, output)
    text = gather_text(config)
    tokenizer = load_tokenizer(config.model.name)
    if tokenizer.mask_token is None:
        raise UsageError(f"model '{config.model.name}' has no mask token: it cannot be pretrained with masked-LM")
    blocks, tokens = make_blocks(tokenizer, text.texts, settings.max_length)
    transformers_logging.disable_progress_bar()
    quiet_wandb_import_notice()

    # Held-out blocks for the masked-LM loss at the end (perplexity), drawn by seed.
    import numpy as np

    order = np.random.default_rng(settings.seed).permutation(len(blocks))
    n_eval = int(round(len(blocks) * settings.eval_fraction)) if len(blocks) >= 2 else 0
    n_eval = min(max(n_eval, 1 if settings.eval_fraction > 0 and len(blocks) >= 2 else 0), len(blocks) - 1)
    eval_blocks = [blocks[i] for i in sorted(order[:n_eval])]
    train_blocks = [blocks[i] for i in sorted(order[n_eval:])]

    work_dir = work_dir_of(output)
    created_here = not work_dir.exists()
    lock = RunLock(work_dir, command="fbp pretrain")
    lock.acquire()
    try:
        if lock.took_over is not None:
            reporter.note(f"removed a stale lock of {work_dir} left by pid {lock.took_over.get('pid')}, which is no longer running")
        open_work_dir(work_dir, resume_settings(config, text))
        resume_from = resumable_checkpoint(work_dir)

        device = resolve_device()
        precision = resolve_precision(settings.precision, device)
        per_step = settings.batch_size * settings.gradient_accumulation
        steps_per_epoch = max(1, math.ceil(len(train_blocks) / per_step))
        total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
        args = TrainingArguments(
            output_dir=str(work_dir),
            run_name=f"{config.name or output.name}-pretrain",
            max_steps=total_steps,
            learning_rate=settings.learning_rate,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup,  # a fraction of the steps in transformers 5
            lr_scheduler_type=settings.scheduler,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation,
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            eval_strategy="no",
            save_strategy="steps",
            save_steps=min(settings.save_steps, steps_per_epoch),
            save_total_limit=1,
            logging_strategy="steps",
            logging_steps=max(1, min(50, total_steps // 20 or 1)),
            report_to=["wandb"] if config.tracking.wandb != "disabled" else [],
            seed=settings.seed,
            use_cpu=device == "cpu",
            disable_tqdm=True,
            remove_unused_columns=False,  # the collator needs the offsets and special-token masks
            dataloader_pin_memory=precision != "fp32",
        )
        set_seed(settings.seed)  # before the masked-LM head is drawn (when the base model has none)
        model_config, saved_dropouts = model_config_with_dropouts(config.model.name, settings)
        model, info = _from_pretrained(AutoModelForMaskedLM, config.model.name, config=model_config, output_loading_info=True, use_safetensors=True)
        head_missing = [key for key in info.get("missing_keys", []) if not key.startswith(getattr(model, "base_model_prefix", "\0") + ".")]
        if head_missing:
            reporter.note(f"'{config.model.name}' ships without a masked-LM head ({len(head_missing)} tensors missing, e.g. "
                          f"{sorted(head_missing)[0]}): a new one is drawn"
                          + (", its output layer tied to the word embeddings" if getattr(model.config, "tie_word_embeddings", False) else ""))
        # Whole-word masking in transformers 5 replaces every chosen word by the mask token (no random words): said
        # here, so that the collator does not warn about it.
        replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if settings.whole_word_mask else {}
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, whole_word_mask=settings.whole_word_mask,
                                                   mlm_probability=settings.mlm_probability, seed=settings.seed, **replace)
        if not settings.whole_word_mask:
            train_blocks = [{k: v for k, v in block.items() if k != "offset_mapping"} for block in train_blocks]
            eval_blocks = [{k: v for k, v in block.items() if k != "offset_mapping"} for block in eval_blocks]
        block_length = len(train_blocks[0]["input_ids"]) if train_blocks else 0
        plan = PretrainPlan(output=output, work_dir=work_dir, essays=len(text.ids), words=sum(len(t.split()) for t in text.texts),
                            tokens=tokens, train_blocks=len(train_blocks), eval_blocks=len(eval_blocks), total_steps=total_steps,
                            device=device, resumed_from=resume_from.name if resume_from else None)
        reporter.begin(plan)
        wandb_run = start_wandb(config, output, work_dir, reporter)
        started = time.monotonic()
        try:
            trainer = masked_lm_trainer()(model=model, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks or None,
                              data_collator=collator, processing_class=tokenizer,
                              callbacks=[progress_callback(reporter, per_step * block_length)])
            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
            result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            seconds = time.monotonic() - started
            steps_run = trainer.state.global_step - (int(resume_from.name.split("-")[1]) if resume_from else 0)
            eval_loss = None
            if eval_blocks:
                reporter.evaluating(len(eval_blocks))
                set_seed(settings.seed)  # the same masks for every evaluation of these blocks
                eval_loss = float(trainer.evaluate()["eval_loss"])
            if wandb_run is not None:
                wandb_run.summary.update({"eval_loss": eval_loss, "tokens": tokens})
        finally:
            if wandb_run is not None:
                wandb_run.finish()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        meta = PretrainedMeta(
            base_model=config.model.name if not Path(config.model.name).exists() else str(Path(resolve_model_name(config.model.name)).resolve()),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            settings=config.model_dump(mode="json"),
            sources=text.sources,
            essays=dict(zip(text.ids, map(text_hash, text.texts))),
            tokens=tokens,
            steps=trainer.state.global_step,
            seconds=round(seconds, 1),
            tokens_per_second=round(steps_run * per_step * block_length / seconds, 1) if seconds > 0 and steps_run > 0 else 0.0,
            train_loss=round(float(np.mean(losses[-5:])), 4) if losses else (round(float(result.training_loss), 4) if result.training_loss else None),
            eval_loss=round(eval_loss, 4) if eval_loss is not None else None,
            eval_perplexity=round(math.exp(eval_loss), 2) if eval_loss is not None and eval_loss < 50 else None,
            mlm_head_initialised=bool(head_missing),
        )
        trainer.model.to("cpu")
        for name, value in saved_dropouts.items():  # the saved model keeps its own dropout (fbp train sets its own)
            setattr(trainer.model.config, name, value)
        save_pretrained_dir(output, trainer.model, tokenizer, meta)
        wandb_files = work_dir / "wandb"
        if wandb_files.is_dir():
            shutil.move(str(wandb_files), str(output / "wandb"))
            reporter.note(f"wandb files: {output / 'wandb'} (upload offline runs later with `wandb sync {output / 'wandb'}/offline-run-*`)")
    except BaseException:
        lock.release()
        if created_here and not any(work_dir.glob("checkpoint-*")):  # nothing to resume from: leave nothing behind
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    lock.release()
    shutil.rmtree(work_dir, ignore_errors=True)
    reporter.end(meta, output)
    return meta
