"""``fbp train``: k folds with the Hugging Face Trainer; the best epoch of each fold is kept by competition F1.

Flow of one run (``train_run``): load the processed essays -> for each fold not yet finished: windows ->
Trainer (evaluating word-level F1 every epoch, saving the best) -> export the best checkpoint and its
out-of-fold word probabilities -> ``run.json``. Stopping and re-running the same command resumes.

Nothing here prints: progress goes to a :class:`TrainingReporter` passed in (the command line gives a rich
one, ``fbp.cli.reporting.ConsoleTrainingReporter``), as spaCy's training loop takes its printer.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..config import Config
from ..errors import UsageError
from ..io.run_dir import RunDir
from ..io.run_record import EpochRecord, FoldRecord, RunRecord
from . import EpochCallback



@dataclass(frozen=True)
class RunPlan:
    """What one invocation of ``fbp train`` trains: ``folds`` (``finished`` ones are skipped), ``epochs`` each, on ``device``."""

    folds: List[int]
    epochs: int
    finished: List[int]
    device: str


class TrainingReporter:
    """What training tells whoever watches it. Every method does nothing here; override the ones you need.

    Only the main process reports (under DDP the other processes train silently).
    """

    def run_begin(self, run_dir: Path, plan: "RunPlan") -> None:
        """The run directory exists (created or resumed); ``plan`` says which folds and epochs this invocation trains."""

    def fold_skipped(self, fold: FoldRecord) -> None:
        """A fold finished by an earlier invocation, not trained again."""

    def fold_begin(self, fold: int, train_essays: int, train_windows: int, val_essays: int, val_windows: int) -> None:
        """A fold starts (before its Trainer is built)."""

    def fold_resumed(self, fold: int, checkpoint: str) -> None:
        """An unfinished fold continues from the Trainer checkpoint ``checkpoint``."""

    def epochs_begin(self, fold: int, restored: Sequence[EpochRecord]) -> None:
        """The Trainer starts; ``restored`` are the epochs done before a resume."""

    def epoch_end(self, fold: int, record: EpochRecord, previous_best: Optional[EpochRecord]) -> None:
        """An epoch was evaluated; ``record.saved`` says whether it is the new best (``previous_best``: the one before)."""

    def fold_end(self, fold: FoldRecord, checkpoint: Path) -> None:
        """A fold finished: its best epoch is in ``checkpoint``."""

    def run_end(self, record: RunRecord) -> None:
        """Every requested fold is done and ``run.json`` is written."""

    def note(self, message: str) -> None:
        """A remark worth showing (e.g. how experiment tracking runs)."""

    def trainer_callbacks(self, fold: int) -> List[Any]:
        """Extra Trainer callbacks (e.g. progress bars for the steps of an epoch)."""
        return []


def select_essays(config: Config, processed: Optional["ProcessedData"] = None):  # noqa: F821
    """The processed essays of this run: optionally a fixed random subset, optionally re-folded.

    ``processed``: the dataset, when the caller has loaded it already (default: ``config.data.processed_dir``).
    """
    from ..io.processed import load_processed
    from ..preprocess import assign_folds

    processed = processed if processed is not None else load_processed(config.data.processed_dir)
    essays, spans = processed.essays, processed.spans
    if config.data.max_essays is not None and config.data.max_essays < len(essays):
        picked = np.random.default_rng(config.training.seed).choice(len(essays), config.data.max_essays, replace=False)
        essays = essays.iloc[np.sort(picked)].reset_index(drop=True)
        spans = spans[spans["id"].isin(set(essays["id"]))].reset_index(drop=True)
    n_folds = config.data.folds or processed.meta["folds"]
    if config.data.max_essays is not None or n_folds != processed.meta["folds"]:
        # A subset, or another number of folds: re-fold, still stratified and deterministic by seed.
        essays = essays.assign(fold=assign_folds(essays["id"], spans, n_folds, config.training.seed))
    return essays, spans


def folds_to_train(config: Config, essays: pd.DataFrame) -> List[int]:
    available = sorted(int(f) for f in essays["fold"].unique())
    wanted = config.data.train_folds if config.data.train_folds is not None else available
    missing = [f for f in wanted if f not in available]
    if missing:
        raise UsageError(f"fold {missing[0]} does not exist: the data has folds {available[0]}..{available[-1]}")
    return list(wanted)


def train_run(config: Config, run_dir: Path, epoch_callback: Optional[EpochCallback] = None,
              reporter: Optional[TrainingReporter] = None) -> Dict:
    """Train the folds of ``config`` into ``run_dir`` (resuming whatever was finished); return ``run.json``'s content.

    ``epoch_callback(fold, epoch, f1)`` is called after every epoch's evaluation (``fbp tune`` prunes with it;
    an exception it raises stops the run, leaving finished epochs resumable). ``reporter`` is told about
    folds and epochs as they go (default: nothing is shown).
    """
    import torch
    from accelerate import PartialState
    from transformers.utils import logging as transformers_logging

    from ..device import resolve_device
    from ..model import prepare_model

    transformers_logging.disable_progress_bar()  # the reporter's progress replaces the per-save tqdm noise
    reporter = reporter or TrainingReporter()
    # Without a GPU, accelerate runs several processes (torchrun on CPU, gloo) only when told it is on CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    from ..faults import crash_point
    from ..io.processed import load_processed
    from .tracking import quiet_wandb_import_notice

    quiet_wandb_import_notice()  # before the Trainer is imported (WANDB_MODE=offline would print a line)
    run = RunDir(run_dir)
    processed = load_processed(config.data.processed_dir)
    essays, spans = select_essays(config, processed)
    folds = folds_to_train(config, essays)
    tokenizer = prepare_model(config.model.name, config.windows.max_length, config.windows.stride)  # fail before writing
    # One training per run directory: a second one refuses at once, naming the holder; a lock left by a killed
    # process is taken over. Only the main process locks (under DDP the others follow it).
    lock = run.lock() if state.is_main_process else None
    if lock is not None:
        lock.acquire()
    try:
        if lock is not None and lock.took_over is not None:
            reporter.note(f"removed a stale lock of {run.path} left by pid {lock.took_over.get('pid')} "
                          f"({lock.took_over.get('command', 'fbp')}, since {lock.took_over.get('started', '?')}), which is no longer running")
        record = run.open(config, processed.fingerprint()) if state.is_main_process else None
        state.wait_for_everyone()
        record = record or run.read_record() or RunRecord()
        finished = run.finished_folds(record)
        if state.is_main_process:
            overlap = pretraining_overlap(config.model.name, essays, folds)
            if overlap:
                reporter.note(overlap)
            reporter.run_begin(run.path, RunPlan(folds=list(folds), epochs=config.training.epochs,
                                                 finished=[fold for fold in folds if fold in finished], device=resolve_device()))
        # train_seconds adds up every invocation's time (a resumed run counts the time before the interruption too):
        # it is brought up to date whenever run.json is written, and when training stops early.
        counted = [time.monotonic()]

        def count_time() -> None:
            now = time.monotonic()
            record.train_seconds = round((record.train_seconds or 0.0) + now - counted[0], 1)
            counted[0] = now

        try:
            for fold in folds:
                if fold in finished:
                    if state.is_main_process:
                        reporter.fold_skipped(finished[fold])
                    continue
                fold_record, oof_word_probs = train_fold(config, run, essays, spans, fold, tokenizer, epoch_callback, reporter)
                if state.is_main_process:
                    crash_point("fold_end")  # the fold's checkpoint is exported; its record is not written yet
                    count_time()
                    _record_fold(run, record, fold_record, oof_word_probs, essays)
                    # Only now that the fold is recorded: its Trainer checkpoints are what a kill before here resumes from.
                    run.discard_work(fold)
                state.wait_for_everyone()
        except BaseException:
            if state.is_main_process:  # Ctrl-C, SIGTERM, an error: the time spent so far is kept for the resume
                count_time()
                try:
                    run.write_record(record)
                except Exception:  # (a full disk, say): the error that stopped training is the one to report
                    pass
            raise
        if state.is_main_process:
            count_time()
            _finish_record(run, record, spans, config, essays)
            reporter.run_end(record)
        state.wait_for_everyone()
    finally:
        if lock is not None:
            lock.release()
    return run.read_record().to_dict()


def pretraining_overlap(model_name: str, essays: pd.DataFrame, folds: Sequence[int]) -> Optional[str]:
    """One line when ``model_name`` is an ``fbp pretrain`` output whose text included validation essays of ``folds``."""
    from ..io.pretrained import read_pretrained_meta, validation_overlap
    from ..model import resolve_model_name

    meta = read_pretrained_meta(resolve_model_name(model_name)) if Path(resolve_model_name(model_name)).is_dir() else None
    if meta is None:
        return None
    counts = validation_overlap(meta, zip(essays["id"], essays["text"], essays["fold"]))
    per_fold = {fold: counts[fold] for fold in folds if counts.get(fold)}
    if not per_fold:
        return None
    sizes = essays["fold"].value_counts()
    listed = ", ".join(f"fold {fold} {count}/{int(sizes[fold])}" for fold, count in per_fold.items())
    return (f"note: {model_name} was pretrained on text that includes validation essays ({listed}): unlabelled text, common "
            "practice, but the CV F1 may read higher than on essays outside both; check with fbp infer + fbp evaluate on other essays")


def _record_fold(run: RunDir, record: RunRecord, fold_record: FoldRecord, oof_word_probs: Dict[str, np.ndarray],
                 essays: pd.DataFrame) -> None:
    """Merge a finished fold into the run's out-of-fold probabilities (with each essay's fold) and ``run.json``
    (in that order)."""
    from ..io.word_probs import load_folds, load_word_probs, save_word_probs

    oof = load_word_probs(run.oof_path) if run.oof_path.exists() else {}
    # Folds of essays recorded before: from the file, or (a file written before fbp recorded folds) this training's own assignment.
    folds = {**dict(zip(essays["id"].astype(str), essays["fold"].astype(int))), **((load_folds(run.oof_path) or {}) if oof else {})}
    oof.update(oof_word_probs)
    folds.update({essay_id: fold_record.fold for essay_id in oof_word_probs})
    save_word_probs(run.oof_path, oof, {essay_id: folds[essay_id] for essay_id in oof})
    record.with_fold(fold_record)
    run.write_record(record)


def _finish_record(run: RunDir, record: RunRecord, spans: pd.DataFrame, config: Config, essays: pd.DataFrame) -> None:
    """CV F1 over all out-of-fold predictions, the post-training decoding (:mod:`fbp.post_training`); the run is
    complete once every fold of the data is."""
    from ..io.word_probs import load_folds, load_word_probs
    from ..post_training import choose_decoding, cross_fit_groups, record_in_run

    if not run.decoding_path.exists():
        run.write_decoding(config.decoding)
    oof = load_word_probs(run.oof_path) if run.oof_path.exists() else {}
    if oof:
        truth = spans[spans["id"].isin(set(oof))]
        groups = cross_fit_groups(list(oof), load_folds(run.oof_path), "the out-of-fold file records no folds")
        # cv_f1: the configured thresholds, the ones every epoch was scored with.
        configured = choose_decoding(oof, truth, config.decoding, groups, tune=False, learn=False)
        record.cv_f1 = round(float(configured.thresholds_result.f1), 6)
        record.cv_per_class = {name: round(f1, 6) for name, f1 in configured.thresholds_result.class_f1().items()}
        record.cv_essays = len(oof)
        if config.training.tune_thresholds or config.training.learned_decoding:
            choice = choose_decoding(oof, truth, config.decoding, groups, tune=config.training.tune_thresholds,
                                     learn=config.training.learned_decoding)
            record_in_run(run, record, choice, learning_enabled=config.training.learned_decoding)
        elif record.decoder == "learned":
            record.decoder = "thresholds"  # turned off: a decoder fitted before is kept on disk but not used
    all_folds = {int(f) for f in essays["fold"].unique()}
    record.status = "complete" if all_folds <= {f.fold for f in record.folds} else "partial"
    run.write_record(record)
    if run.work_path.is_dir() and not any(run.work_path.iterdir()):
        run.work_path.rmdir()


def train_fold(config: Config, run: RunDir, essays: pd.DataFrame, spans: pd.DataFrame, fold: int, tokenizer,
               epoch_callback: Optional[EpochCallback], reporter: TrainingReporter):
    """Train one fold; return its record (every epoch's numbers) and its best epoch's validation word probabilities."""
    import torch
    from transformers import DataCollatorForTokenClassification, EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from ..device import resolve_device, resolve_precision
    from ..io.checkpoint import CheckpointMeta, save_checkpoint
    from ..model import class_label_weights, load_model_for_training, token_classification_loss
    from ..windows import make_windows, model_features, window_metadata
    from .best_epoch import TRAINER_ARGUMENTS, kept_epoch_number
    from .callbacks import EpochHook, epoch_records
    from .tracking import start_wandb_run
    from .trainer import FoldEvaluator, WordLevelTrainer

    started = time.monotonic()
    train_essays = essays[essays["fold"] != fold]
    # Validation essays in length order: an essay's windows stay consecutive (stitching needs that) and
    # evaluation batches pad little.
    val_essays = essays[essays["fold"] == fold].sort_values("n_words", kind="stable")
    windows = config.windows

    def windows_of(subset: pd.DataFrame) -> List[Dict]:
        return make_windows(tokenizer, subset["text"].tolist(), windows.max_length, windows.stride,
                            word_labels=subset["word_labels"].tolist(), label_subtokens=windows.label_subtokens)

    train_windows, val_windows = windows_of(train_essays), windows_of(val_essays)
    is_main = run_is_main()
    if is_main:
        reporter.fold_begin(fold, len(train_essays), len(train_windows), len(val_essays), len(val_windows))

    work_dir = run.fold_work_dir(fold)
    evaluator = FoldEvaluator(val_essays, spans, window_metadata(val_windows), config.decoding, work_dir)
    training = config.training
    device = resolve_device()
    precision = resolve_precision(training.precision, device)
    args = TrainingArguments(
        output_dir=str(work_dir),
        run_name=f"{config.name or run.path.name}-fold{fold}",
        num_train_epochs=training.epochs,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup,  # a float below 1 is a fraction of the steps in transformers 5
        lr_scheduler_type=training.scheduler,
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.eval_batch_size,
        gradient_accumulation_steps=training.gradient_accumulation,
        adam_epsilon=training.adam_epsilon,
        adam_beta1=training.adam_beta1,
        adam_beta2=training.adam_beta2,
        max_grad_norm=training.max_grad_norm,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=config.model.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if training.group_by_length else "random",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the Trainer keeps the best and the latest (to resume)
        **TRAINER_ARGUMENTS,  # the best-epoch rule: competition F1, ties broken by validation loss
        logging_strategy="steps",
        logging_steps=max(1, min(50, len(train_windows) // (training.batch_size * 10) or 1)),
        report_to=["wandb"] if config.tracking.wandb != "disabled" else [],
        seed=training.seed,
        use_cpu=device == "cpu",
        ddp_find_unused_parameters=False,  # token classifiers use every parameter; the search costs a graph pass
        dataloader_num_workers=training.dataloader_workers,
        dataloader_pin_memory=precision != "fp32",
        disable_tqdm=True,
        save_only_model=False,
    )
    # Seed before the new classification head is drawn: otherwise fold 0's head came from whatever the process had
    # done before (two runs of one config differed by 0.04 F1 on fold 0), and later folds' from the folds before them.
    set_seed(training.seed)
    model = load_model_for_training(config.model.name, config.model, max_length=windows.max_length)
    callbacks = [*reporter.trainer_callbacks(fold), EpochHook(reporter, fold, epoch_callback), evaluator]
    if training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training.early_stopping_patience))
    trainer = WordLevelTrainer(
        model=model,
        args=args,
        train_dataset=model_features(train_windows),
        eval_dataset=model_features(val_windows),
        data_collator=DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if precision != "fp32" else None),
        processing_class=tokenizer,
        # exact under DDP and gradient accumulation; training.class_weights / begin_weight weight the labels' tokens
        compute_loss_func=functools.partial(token_classification_loss, label_weights=class_label_weights(training.class_weights, training.begin_weight)),
        compute_metrics=evaluator,
        head_learning_rate=training.head_learning_rate,
        preprocess_logits_for_metrics=WordLevelTrainer.probabilities,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    # The last complete Trainer checkpoint; the main process first deletes any that a kill left half-written.
    if is_main:
        run.resumable_checkpoint(fold)
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    resume_from = run.resumable_checkpoint(fold)
    if resume_from and is_main:
        reporter.fold_resumed(fold, resume_from.name)
    with start_wandb_run(config, run, fold, trainer.is_world_process_zero(), reporter.note) as wandb_run:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        records = epoch_records(trainer.state.log_history)
        # The one source of truth: the checkpoint the Trainer kept (its weights and its epoch's word probabilities).
        kept = kept_epoch_number(trainer.state.log_history, trainer.state.best_global_step)
        best = next(record for record in records if record.epoch == kept)
        if wandb_run is not None:
            wandb_run.summary.update({"best_f1": best.f1, "best_epoch": best.epoch})

    # The best epoch's out-of-fold probabilities, stored in its checkpoint when it was saved.
    oof_word_probs = evaluator.load_best_word_probs(work_dir / f"checkpoint-{trainer.state.best_global_step}")
    if trainer.is_world_process_zero():
        fold_dir = run.fold_dir(fold)
        save_checkpoint(fold_dir, trainer.model, tokenizer, CheckpointMeta(
            max_length=windows.max_length, stride=windows.stride, label_subtokens=windows.label_subtokens,
            model=config.model.name, fold=fold, run=config.name or run.path.name, fbp_version=__version__,
            decoding=run.decoding(), best_epoch=best.epoch, best_f1=best.f1,
        ))
    fold_record = FoldRecord(fold=fold, best_epoch=best.epoch, best_f1=best.f1,
                              seconds=round(time.monotonic() - started, 1), epochs=records)
    if trainer.is_world_process_zero():
        reporter.fold_end(fold_record, run.fold_dir(fold))
    return fold_record, oof_word_probs


def run_is_main() -> bool:
    """Whether this is the main process (the only one that writes and reports)."""
    from accelerate import PartialState

    return PartialState().is_main_process
