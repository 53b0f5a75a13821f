"""``fbp pretrain``: domain-adaptive masked-LM pretraining of an encoder on essay text ("Don't Stop Pretraining",
Gururangan et al., 2020), so that ``fbp train --model DIR`` starts from an encoder that has read essays.

Flow (:func:`pretrain`): gather the text (the processed essays', plus folders of ``.txt`` essays) -> tokenize each
essay's words, concatenate, cut into blocks of ``pretrain.max_length`` tokens -> the Hugging Face Trainer on
``AutoModelForMaskedLM`` with whole-word masking (``DataCollatorForLanguageModeling(whole_word_mask=True)``) ->
the masked-LM loss on held-out blocks -> the model directory (:mod:`fbp.io.pretrained`).

Unfinished work lives next to the output, in ``OUT.pretrain-work/`` (Trainer checkpoints, the lock, the settings):
running the same command again resumes from the last checkpoint; it is removed once the model is written.
Nothing here prints: progress goes to a :class:`PretrainReporter`.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .config import PretrainConfig, flatten_config
from .errors import FbpError, UsageError
from .faults import crash_point
from .io.pretrained import PretrainedMeta, is_pretrained_dir, save_pretrained_dir, text_hash

WORK_SUFFIX = ".pretrain-work"
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class PretrainText:
    """The essays read: ids, texts, and where they came from."""

    ids: List[str]
    texts: List[str]
    sources: List[str]


@dataclass(frozen=True)
class PretrainPlan:
    """What this invocation does: the text, its blocks, the steps, where it resumes from."""

    output: Path
    work_dir: Path
    essays: int
    words: int
    tokens: int
    train_blocks: int
    eval_blocks: int
    total_steps: int
    device: str
    resumed_from: Optional[str]


@dataclass(frozen=True)
class PretrainProgress:
    """Where the pretraining stands: steps done of all, the latest training loss, seconds so far and left (None: not timed yet)."""

    step: int
    total_steps: int
    loss: Optional[float]
    elapsed: float
    remaining: Optional[float]
    tokens_per_second: Optional[float]


class PretrainReporter:
    """What pretraining tells whoever watches it; every method does nothing here."""

    def begin(self, plan: PretrainPlan) -> None:
        """The text is tokenized and the Trainer is about to start."""

    def progress(self, progress: PretrainProgress) -> None:
        """After an optimizer step (and after each logged loss)."""

    def evaluating(self, blocks: int) -> None:
        """Training is done; the held-out blocks are being scored."""

    def end(self, meta: PretrainedMeta, output: Path) -> None:
        """The model directory is written."""

    def note(self, message: str) -> None:
        """A remark worth showing (a new masked-LM head, wandb, a stale lock taken over)."""


# --- the text ------------------------------------------------------------------------------------------------

def gather_text(config: PretrainConfig) -> PretrainText:
    """Every essay to pretrain on: the processed essays (optionally the fixed subset ``fbp train --max-essays N``
    picks) and each text folder's ``*.txt``; an essay in two sources (same id, same words) is read once."""
    import numpy as np

    from .io.kaggle import EssayDir
    from .io.processed import load_processed

    ids: List[str] = []
    texts: List[str] = []
    sources: List[str] = []
    hashes: Dict[str, Tuple[str, str]] = {}  # id -> (hash, source)

    def add(essay_id: str, text: str, source: str) -> None:
        if not text.split():
            return  # an empty essay has nothing to learn from
        digest = text_hash(text)
        known = hashes.get(essay_id)
        if known is not None:
            if known[0] == digest:
                return
            raise FbpError(f"essay {essay_id} is in {known[1]} and in {source} with different text; "
                           "give each essay one id (rename one file) or drop one of the sources")
        hashes[essay_id] = (digest, source)
        ids.append(essay_id)
        texts.append(text)

    data = config.data
    if data.processed_dir is not None:
        processed = load_processed(Path(data.processed_dir))
        essays = processed.essays
        if data.max_essays is not None and data.max_essays < len(essays):
            # The same subset as `fbp train --max-essays N` with the same seed (fbp.training.loop.select_essays).
            picked = np.random.default_rng(config.pretrain.seed).choice(len(essays), data.max_essays, replace=False)
            essays = essays.iloc[np.sort(picked)]
        for essay_id, text in zip(essays["id"], essays["text"]):
            add(str(essay_id), str(text), f"processed data {data.processed_dir}")
        sources.append(str(Path(data.processed_dir).resolve()))
    for directory in data.text_dirs:
        folder = EssayDir.scan(Path(directory))
        for essay_id, text in zip(folder.ids, folder.texts()):
            add(essay_id, text, f"text folder {directory}")
        sources.append(str(Path(directory).resolve()))
    if not sources:
        raise UsageError("no text to pretrain on: give --data DIR (processed essays) or --text DIR (a folder of .txt essays)")
    if not ids:
        raise FbpError(f"no text to pretrain on: every essay in {', '.join(sources)} is empty")
    return PretrainText(ids=ids, texts=texts, sources=sources)


def make_blocks(tokenizer: Any, texts: List[str], max_length: int) -> Tuple[List[Dict[str, List]], int]:
    """The essays' tokens (each essay with its own special tokens), concatenated and cut into blocks of
    ``max_length``; the remainder after the last full block is dropped unless there is no full block. Each block
    keeps its offsets and special-token mask, which whole-word masking reads to find the words. Returns the
    blocks and the number of tokens."""
    from .model import quiet_transformers

    input_ids: List[int] = []
    offsets: List[Tuple[int, int]] = []
    special: List[int] = []
    with quiet_transformers():  # "sequence longer than the model's maximum": blocks are cut below
        for text in texts:
            encoded = tokenizer(text.split(), is_split_into_words=True, return_offsets_mapping=True,
                                return_special_tokens_mask=True, truncation=False)
            input_ids.extend(encoded["input_ids"])
            offsets.extend(tuple(pair) for pair in encoded["offset_mapping"])
            special.extend(encoded["special_tokens_mask"])
    total = len(input_ids)
    if total == 0:
        return [], 0
    length = max_length if total >= max_length else total
    blocks = []
    for start in range(0, total - length + 1, length):
        end = start + length
        blocks.append({"input_ids": input_ids[start:end], "attention_mask": [1] * length,
                       "special_tokens_mask": special[start:end], "offset_mapping": [list(pair) for pair in offsets[start:end]]})
    return blocks, total


# --- checks before any work ------------------------------------------------------------------------------------

def _inside(path: Path, other: Path) -> bool:
    try:
        path.resolve().relative_to(other.resolve())
        return True
    except ValueError:
        return False


def work_dir_of(output: Path) -> Path:
    return Path(output).parent / f"{Path(output).name}{WORK_SUFFIX}"


def check_output(config: PretrainConfig, output: Path) -> None:
    """Refuse, before any work, an output that is (or holds, or lies inside) an input, a symlink, a file, or a
    directory that ``fbp pretrain`` did not write."""
    from .atomic import check_output_location
    from .model import resolve_model_name

    output = Path(output)
    inputs = []
    if config.data.processed_dir is not None:
        inputs.append(("the processed data", Path(config.data.processed_dir)))
    inputs += [("the text folder", Path(directory)) for directory in config.data.text_dirs]
    base = Path(resolve_model_name(config.model.name))
    if base.exists():
        inputs.append(("the base model", base))
    for what, path in inputs:
        if path.exists() and (_inside(output, path) or _inside(path, output)):
            raise UsageError(f"output {output} overlaps {what} {path}: write the pretrained model somewhere else (-o)")
    for path in (output, work_dir_of(output)):
        if path.is_symlink():
            raise UsageError(f"output {path} is a symlink; fbp does not write through links (give a real directory)")
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} is a file; give a directory")
    if output.is_dir() and any(output.iterdir()) and not is_pretrained_dir(output):
        raise UsageError(f"output {output} exists and was not written by `fbp pretrain`; refusing to replace it (choose another -o)")
    check_output_location(output, "the pretrained model")


def _settings(config: PretrainConfig, text: PretrainText) -> Dict[str, Any]:
    """What a resumed pretraining must share with the one it continues: the settings and the text."""
    from .io.pretrained import PretrainedMeta

    digest = PretrainedMeta(base_model="", created="", settings={}, sources=[], essays=dict(zip(text.ids, map(text_hash, text.texts))),
                            tokens=0, steps=0, seconds=0, tokens_per_second=0).essays_digest()
    resolved = config.model_dump(mode="json")
    resolved.pop("tracking", None)
    resolved.pop("name", None)
    return {"config": resolved, "essays": len(text.ids), "text_digest": digest}


def _open_work_dir(work_dir: Path, settings: Dict[str, Any]) -> None:
    """Create the work folder, or check that the one there holds this same pretraining (to resume it)."""
    from .atomic import write_atomic

    path = work_dir / SETTINGS_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != settings:
            differences = []
            if isinstance(previous, dict) and isinstance(previous.get("config"), dict):
                old, new = flatten_config(previous["config"]), flatten_config(settings["config"])
                differences = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
            if isinstance(previous, dict) and previous.get("text_digest") != settings["text_digest"]:
                differences.append(f"the text ({previous.get('essays')} essays then, {settings['essays']} now)")
            raise UsageError(f"{work_dir} holds an unfinished pretraining with other settings ({'; '.join(differences[:4]) or 'unreadable settings'}); "
                             "run its own command again to resume it, or delete that folder to start anew")
    work_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(settings, sort_keys=True, indent=1))


def _resumable_checkpoint(work_dir: Path) -> Optional[Path]:
    """The last complete Trainer checkpoint (``trainer_state.json`` written last); incomplete ones are deleted."""
    import re

    found = {}
    for path in work_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found[path] = int(match.group(1))
    complete = []
    for path in found:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            if any(path.glob("*.safetensors")):
                complete.append(path)
                continue
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
        shutil.rmtree(path, ignore_errors=True)
    return max(complete, key=found.get) if complete else None


# --- the run ---------------------------------------------------------------------------------------------------

def _progress_callback(reporter: PretrainReporter, tokens_per_step: float):
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


def _masked_lm_trainer():
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


def _model_config(name: str, settings: Any) -> Tuple[Any, Dict[str, Any]]:
    """The model's config with ``pretrain.hidden_dropout`` / ``attention_dropout`` set (None: kept), and the values
    they replaced, restored before saving (the saved model keeps its own dropout; fbp train sets its own)."""
    from transformers import AutoConfig

    from .model import ATTENTION_DROPOUT_NAMES, HIDDEN_DROPOUT_NAMES, _from_pretrained

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


def _wandb_run(config: PretrainConfig, output: Path, work_dir: Path, reporter: PretrainReporter):
    """A wandb run for the pretraining (None when tracking is off); offline files go into the work folder first."""
    import hashlib
    import os

    from .training.tracking import resolve_wandb_mode

    mode = resolve_wandb_mode(config.tracking.wandb)
    if mode == "disabled":
        return None
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    name = config.name or output.name
    run_id = hashlib.sha1(f"{Path(output).resolve()}|pretrain|{_created(work_dir)}".encode()).hexdigest()[:12]
    init_args = dict(project=config.tracking.project, entity=config.tracking.entity, group=config.tracking.group or name, name=f"{name}-pretrain",
                     id=run_id, resume="allow", dir=str(work_dir), job_type="pretrain", config=config.model_dump(mode="json"))
    try:
        return wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, silent=True), **init_args)
    except Exception as error:  # an unreachable server must not stop the pretraining
        if mode != "online":
            raise
        reporter.note(f"wandb online failed ({error}); logging offline instead")
        return wandb.init(mode="offline", settings=wandb.Settings(silent=True), **init_args)


def _created(work_dir: Path) -> str:
    try:
        return str((work_dir / SETTINGS_FILE).stat().st_mtime_ns)
    except OSError:
        return ""


def pretrain(config: PretrainConfig, output: Path, reporter: Optional[PretrainReporter] = None) -> PretrainedMeta:
    """Pretrain ``config.model.name`` on the essays' text with masked-LM; write the model directory ``output``.

    Re-running the same command after a stop resumes from the last checkpoint in ``OUT.pretrain-work/``.
    """
    import torch
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils import logging as transformers_logging

    from .device import resolve_device, resolve_precision
    from .io.run_dir import RunLock
    from .model import _from_pretrained, load_tokenizer, resolve_model_name
    from .training.tracking import quiet_wandb_import_notice

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
        _open_work_dir(work_dir, _settings(config, text))
        resume_from = _resumable_checkpoint(work_dir)

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
        model_config, saved_dropouts = _model_config(config.model.name, settings)
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
        wandb_run = _wandb_run(config, output, work_dir, reporter)
        started = time.monotonic()
        try:
            trainer = _masked_lm_trainer()(model=model, args=args, train_dataset=train_blocks, eval_dataset=eval_blocks or None,
                              data_collator=collator, processing_class=tokenizer,
                              callbacks=[_progress_callback(reporter, per_step * block_length)])
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

