"""``fbp train``: k folds with the Hugging Face Trainer; the best epoch of each fold is kept by competition F1.

Flow of one run (``train_run``): load the processed essays -> for each fold not yet finished: windows ->
Trainer (evaluating word-level F1 every epoch, saving the best) -> export the best checkpoint and its
out-of-fold word probabilities -> ``run.json``. Stopping and re-running the same command resumes.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import pandas as pd
from rich.console import Console
from rich.rule import Rule

from . import __version__
from .config import Config
from .errors import UsageError
from .atomic import write_atomic
from .output import console as default_console
from .run import RunDir

EpochCallback = Callable[[int, int, float], None]


def select_essays(config: Config):
    """The processed essays of this run: optionally a fixed random subset, optionally re-folded."""
    from .data import assign_folds, load_processed

    processed = load_processed(config.data.processed_dir)
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


def train_run(config: Config, run_dir: Path, epoch_callback: Optional[EpochCallback] = None, console: Optional[Console] = None) -> Dict:
    """Train the folds of ``config`` into ``run_dir`` (resuming whatever was finished); return the run summary.

    ``epoch_callback(fold, epoch, f1)`` is called after every epoch's evaluation (``fbp tune`` prunes with it;
    an exception it raises stops the run, leaving finished epochs resumable).
    """
    import torch
    from accelerate import PartialState
    from transformers.utils import logging as transformers_logging

    from .model import prepare_model

    transformers_logging.disable_progress_bar()  # our own progress bars replace the per-save tqdm noise
    console = console or default_console
    # Without a GPU, accelerate runs several processes (torchrun on CPU, gloo) only when told it is on CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    run = RunDir(run_dir)
    essays, spans = select_essays(config)
    folds = folds_to_train(config, essays)
    tokenizer = prepare_model(config.model.name, config.windows.max_length, config.windows.stride)  # fail before writing
    summary = run.open(config) if state.is_main_process else None
    state.wait_for_everyone()
    summary = summary or run.read_summary() or {"folds": []}
    finished = run.finished_folds(summary)
    started = time.monotonic()
    for fold in folds:
        if fold in finished:
            console.print(f"[dim]fold {fold}: finished before (best F1 {finished[fold]['best_f1']:.4f} at epoch {finished[fold]['best_epoch']}), skipped[/]")
            continue
        fold_summary, oof_word_probs = train_fold(config, run, essays, spans, fold, tokenizer, epoch_callback, console)
        if state.is_main_process:
            _record_fold(run, summary, fold_summary, oof_word_probs)
        state.wait_for_everyone()
    if state.is_main_process:
        summary["train_seconds"] = round(summary.get("train_seconds", 0.0) + time.monotonic() - started, 1)
        _finish_summary(run, summary, spans, config, essays)
        print_run_summary(summary, console)
    state.wait_for_everyone()
    return run.read_summary()


def _record_fold(run: RunDir, summary: Dict, fold_summary: Dict, oof_word_probs: Dict[str, np.ndarray]) -> None:
    """Merge a finished fold into the run's out-of-fold probabilities and ``run.json`` (in that order)."""
    from .word_probs import load_word_probs, save_word_probs

    oof = load_word_probs(run.oof_path) if run.oof_path.exists() else {}
    oof.update(oof_word_probs)
    save_word_probs(run.oof_path, oof)
    summary["folds"] = [f for f in summary["folds"] if f["fold"] != fold_summary["fold"]] + [fold_summary]
    summary["folds"].sort(key=lambda f: f["fold"])
    run.write_summary(summary)


def _finish_summary(run: RunDir, summary: Dict, spans: pd.DataFrame, config: Config, essays: pd.DataFrame) -> None:
    """CV F1 over all out-of-fold predictions; the run is complete once every fold of the data is."""
    import json

    from .evaluate import save_decoding
    from .metric import score
    from .decode import cross_fitted_thresholds, decode_essays
    from .word_probs import load_word_probs

    if not run.decoding_path.exists():
        write_atomic(run.decoding_path, json.dumps(config.decoding.model_dump(mode="json"), indent=2))
    oof = load_word_probs(run.oof_path) if run.oof_path.exists() else {}
    if oof:
        truth = spans[spans["id"].isin(set(oof))]
        # cv_f1: the configured thresholds, the ones every epoch was scored with.
        result = score(decode_essays(oof, config.decoding), truth)
        summary["cv_f1"] = round(float(result.f1), 6)
        summary["cv_per_class"] = {name: round(f1, 6) for name, f1 in result.class_f1().items()}
        summary["cv_essays"] = len(oof)
        if config.training.tune_thresholds:
            # Default thresholds suit strong models; tuned ones can be worth a lot more on others. The F1 of
            # tuning is estimated cross-fitted (each fold decoded with thresholds tuned on the other folds).
            fold_of = dict(zip(essays["id"], essays["fold"]))
            tuned, cross_fitted = cross_fitted_thresholds(oof, truth, config.decoding, [fold_of[i] for i in oof])
            tuned_result = score(cross_fitted, truth)
            summary["cv_f1_tuned"] = round(float(tuned_result.f1), 6)
            summary["cv_per_class_tuned"] = {name: round(f1, 6) for name, f1 in tuned_result.class_f1().items()}
            save_decoding(run, tuned)
    all_folds = {int(f) for f in essays["fold"].unique()}
    summary["status"] = "complete" if all_folds <= {f["fold"] for f in summary["folds"]} else "partial"
    run.write_summary(summary)
    if run.work_path.exists() and not any(run.work_path.iterdir()):
        run.work_path.rmdir()


def print_run_summary(summary: Dict, console: Console) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary['name']}: CV F1 {summary['cv_f1']:.4f}" if summary.get("cv_f1") is not None else f"run {summary['name']}")
    table.add_column("fold", justify="right")
    table.add_column("best epoch", justify="right")
    table.add_column("best F1", justify="right")
    table.add_column("minutes", justify="right")
    for fold in summary["folds"]:
        table.add_row(str(fold["fold"]), str(fold["best_epoch"]), f"{fold['best_f1']:.4f}", f"{fold['seconds'] / 60:.1f}")
    console.print(table)
    if summary.get("cv_per_class"):
        console.print("  ".join(f"{name} [bold]{f1:.3f}[/]" for name, f1 in summary["cv_per_class"].items()))
    if summary.get("cv_f1_tuned") is not None:
        console.print(f"with decoding thresholds tuned out of fold: CV F1 [bold]{summary['cv_f1_tuned']:.4f}[/] (cross-fitted); "
                      "the tuned thresholds are saved for fbp infer")


def train_fold(config: Config, run: RunDir, essays: pd.DataFrame, spans: pd.DataFrame, fold: int, tokenizer,
               epoch_callback: Optional[EpochCallback], console: Console):
    """Train one fold; return its summary (every epoch's numbers) and its best epoch's validation word probabilities."""
    import torch
    from transformers import DataCollatorForTokenClassification, EarlyStoppingCallback, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_utils import get_last_checkpoint

    from .callbacks import EpochReportCallback, RichProgressCallback, epoch_records
    from .evaluation import FoldEvaluator, WordLevelTrainer
    from .model import load_model_for_training, save_checkpoint, token_classification_loss
    from .tracking import start_wandb_run
    from .windows import make_windows, model_features, window_metadata

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
    console.print(Rule(f"fold {fold}: {len(train_essays)} training essays ({len(train_windows)} windows), "
                       f"{len(val_essays)} validation essays ({len(val_windows)} windows)"))

    work_dir = run.fold_work_dir(fold)
    evaluator = FoldEvaluator(val_essays, spans, window_metadata(val_windows), config.decoding, work_dir)
    training = config.training
    precision = _precision(training.precision)
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
        load_best_model_at_end=True,
        metric_for_best_model="selection",  # the competition F1, ties broken by validation loss
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=max(1, min(50, len(train_windows) // (training.batch_size * 10) or 1)),
        report_to=["wandb"] if config.tracking.wandb != "disabled" else [],
        seed=training.seed,
        use_cpu=not torch.cuda.is_available(),
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
    callbacks = [RichProgressCallback(console, f"fold {fold}"), EpochReportCallback(console, fold, epoch_callback), evaluator]
    if training.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=training.early_stopping_patience))
    trainer = WordLevelTrainer(
        model=model,
        args=args,
        train_dataset=model_features(train_windows),
        eval_dataset=model_features(val_windows),
        data_collator=DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if precision != "fp32" else None),
        processing_class=tokenizer,
        compute_loss_func=token_classification_loss,  # exact under DDP and gradient accumulation
        compute_metrics=evaluator,
        preprocess_logits_for_metrics=WordLevelTrainer.probabilities,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    resume_from = get_last_checkpoint(str(work_dir)) if work_dir.exists() else None
    if resume_from:
        console.print(f"[yellow]resuming fold {fold} from {Path(resume_from).name}[/]")
    with start_wandb_run(config, run, fold, trainer.is_world_process_zero()) as wandb_run:
        trainer.train(resume_from_checkpoint=resume_from)
        records = epoch_records(trainer.state.log_history)
        best = [r for r in records if r["saved"]][-1]  # the epoch the Trainer kept
        if wandb_run is not None:
            wandb_run.summary.update({"best_f1": best["f1"], "best_epoch": best["epoch"]})

    oof_word_probs = evaluator.load_best_word_probs()
    if trainer.is_world_process_zero():
        fold_dir = run.fold_dir(fold)
        save_checkpoint(fold_dir, trainer.model, tokenizer, {
            "max_length": windows.max_length, "stride": windows.stride, "label_subtokens": windows.label_subtokens,
            "model": config.model.name, "fold": fold, "run": config.name or run.path.name, "fbp_version": __version__,
            "decoding": run.decoding().model_dump(mode="json"), "best_epoch": best["epoch"], "best_f1": best["f1"],
        })
        console.print(f"[green]fold {fold}: kept epoch {best['epoch']} (F1 {best['f1']:.4f}, the best of {len(records)}) in {fold_dir}[/]")
        shutil.rmtree(work_dir, ignore_errors=True)
    fold_summary = {"fold": fold, "best_epoch": best["epoch"], "best_f1": best["f1"],
                    "seconds": round(time.monotonic() - started, 1), "epochs": records}
    return fold_summary, oof_word_probs


def _precision(requested: str) -> str:
    """Resolve ``auto``: bf16 on GPUs that support it, fp16 on other GPUs, fp32 on CPU."""
    import torch

    if requested != "auto":
        if requested in ("bf16", "fp16") and not torch.cuda.is_available():
            raise UsageError(f"training.precision={requested} needs a GPU; use fp32 (or auto) on CPU")
        return requested
    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
