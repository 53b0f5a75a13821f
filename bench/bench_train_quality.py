"""Training quality on the shared data: `fbp train` vs the notebook way, same essays, folds, epochs and model.

- fbp: `fbp.training.loop.train_run` with configs/default.yaml (MiniLM, windows of 512 with stride 128 covering every
  word, length-grouped batches, best epoch of each fold by competition F1, the default decoding thresholds).
- notebook: a plain Hugging Face Trainer set-up as in the public notebooks: each essay truncated to one
  512-token window (no stride: words past it are predicted "O"), every window padded to 512, the last
  epoch kept, spans decoded with no thresholds (any argmax span of at least one word).

Both see the same fixed random subset of the shared essays, the same stratified folds, epochs, model settings
(dropout included), learning rate and batch size, so the difference is only what the notebooks do differently;
both are scored out-of-fold with fbp's competition metric.

    python bench/bench_train_quality.py [--essays 500] [--folds 2] [--epochs 5] [--fold K ...] [--work /tmp/fbp-bench]

``--fold K`` trains and scores only those folds on both sides (a holdout when the CPU budget allows one fold).
``--set KEY=VALUE --fbp-only`` trains a variant of fbp's side alone, into its own run directory, e.g. the model's own
dropout: ``--set model.hidden_dropout=null --set model.attention_dropout=null --fbp-only --fold 0``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021"


def notebook_oof(config, essays, folds):
    """Out-of-fold word probabilities the notebook way (truncated, padded to 512, last epoch)."""
    import torch
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    from fbp.labels import NUM_LABELS
    from fbp.model import load_model_for_training, load_tokenizer, resolve_model_name

    path = resolve_model_name(config.model.name)
    tokenizer = load_tokenizer(path)
    max_length = config.windows.max_length

    def encode(subset):
        encoded = tokenizer([t.split() for t in subset["text"]], is_split_into_words=True, truncation=True,
                            max_length=max_length, padding="max_length")
        rows = []
        for i, labels in enumerate(subset["word_labels"]):
            word_ids = encoded.word_ids(i)
            first = [w is not None and (k == 0 or word_ids[k - 1] != w) for k, w in enumerate(word_ids)]
            row = {"input_ids": encoded["input_ids"][i], "attention_mask": encoded["attention_mask"][i], "word_ids": word_ids, "first": first}
            row["labels"] = [int(labels[w]) if f else -100 for w, f in zip(word_ids, first)]
            rows.append(row)
        return rows

    oof = {}
    for fold in folds:
        train_rows = encode(essays[essays["fold"] != fold])
        val = essays[essays["fold"] == fold]
        val_rows = encode(val)
        model = load_model_for_training(path, config.model, max_length=max_length)
        training = config.training
        args = TrainingArguments(output_dir="/tmp/fbp-bench/notebook-tmp", num_train_epochs=training.epochs,
                                 learning_rate=training.learning_rate, weight_decay=training.weight_decay,
                                 warmup_steps=training.warmup, lr_scheduler_type=training.scheduler,
                                 per_device_train_batch_size=training.batch_size, per_device_eval_batch_size=training.eval_batch_size,
                                 eval_strategy="no", save_strategy="no", report_to=[], seed=training.seed, use_cpu=True,
                                 disable_tqdm=True, logging_strategy="no")
        features = [{k: r[k] for k in ("input_ids", "attention_mask", "labels")} for r in train_rows]
        trainer = Trainer(model=model, args=args, train_dataset=features, data_collator=DataCollatorForTokenClassification(tokenizer))
        trainer.train()
        logits = trainer.predict([{k: r[k] for k in ("input_ids", "attention_mask")} for r in val_rows]).predictions
        probs = torch.softmax(torch.from_numpy(logits).float(), -1).numpy()
        for row, window_probs, essay_id, n_words in zip(val_rows, probs, val["id"], val["n_words"]):
            word_probs = np.zeros((n_words, NUM_LABELS), np.float32)
            word_probs[:, 0] = 1.0  # words cut off by truncation are "O"
            for k, (w, f) in enumerate(zip(row["word_ids"], row["first"])):
                if f:
                    word_probs[w] = window_probs[k]
            oof[essay_id] = word_probs
        print(f"notebook fold {fold} done", flush=True)
    return oof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--essays", type=int, default=500)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fold", type=int, action="append", help="Only these folds, on both sides (repeatable).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fbp-bench"))
    parser.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE", help="fbp config override (repeatable); the run directory gets a suffix")
    parser.add_argument("--tag", default="", help="suffix of the fbp run directory (to train a code change anew)")
    parser.add_argument("--fbp-only", action="store_true", help="train and score the fbp side only (e.g. a variant of an earlier comparison)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the shared data at {SHARED}")

    from fbp.config import ThresholdConfig, load_config, parse_sets
    from fbp.preprocess import preprocess
    from fbp.labels import CLASSES
    from fbp.metric import score
    from fbp.decode import cross_fitted_thresholds, decode_essays
    from fbp.training.loop import select_essays, train_run
    from fbp.io.word_probs import load_word_probs, save_word_probs

    processed = args.work / "processed"
    if not (processed / "meta.json").exists():
        preprocess(SHARED, processed, n_folds=5, seed=42)
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml", {
        "data.processed_dir": str(processed), "data.max_essays": args.essays, "data.folds": args.folds,
        "training.epochs": args.epochs, "tracking.wandb": "disabled", "name": "quality-fbp", "data.train_folds": args.fold or None,
        **parse_sets(args.sets)})
    essays, spans = select_essays(config)
    folds = args.fold or sorted(int(f) for f in essays["fold"].unique())
    print(f"folds trained and scored: {folds}; config: {args.essays} essays ({int(essays['n_words'].sum()):,} words), {args.folds} folds, {args.epochs} epochs, "
          f"model {config.model.name}, lr {config.training.learning_rate}, batch {config.training.batch_size}, "
          f"max_length {config.windows.max_length}, stride {config.windows.stride}", flush=True)

    # one flat name: a --set value may be a path (model.name=/some/dir), whose slashes would nest the run directory
    suffix = re.sub(r"[^\w.-]+", "_", "".join(f"-{item}" for item in args.sets or []) + (f"-{args.tag}" if args.tag else ""))
    run_dir = args.work / "runs" / f"quality-{args.essays}x{args.folds}x{args.epochs}{suffix}"
    summary = train_run(config, run_dir)  # resumes: finished folds of an earlier run are kept

    # Every side scored on the same out-of-fold essays. "No thresholds" keeps any argmax span of a word or more
    # (the notebook way); "tuned, cross-fitted" decodes each fold with thresholds tuned on the other folds.
    no_thresholds = ThresholdConfig(min_words={c: 1 for c in CLASSES}, min_confidence={c: 0.0 for c in CLASSES})
    fold_of = dict(zip(essays["id"], essays["fold"]))
    fbp_probs = load_word_probs(run_dir / "oof_word_probs.npz")

    def scored(word_probs, decoding=None):
        truth = spans[spans["id"].isin(set(word_probs))]
        if decoding is None:
            _, predictions = cross_fitted_thresholds(word_probs, truth, ThresholdConfig(), [fold_of[i] for i in word_probs])
        else:
            predictions = decode_essays(word_probs, decoding)
        result = score(predictions, truth)
        return result.f1, result.class_f1()

    notebook_file = args.work / f"notebook_oof_{args.essays}x{args.folds}x{args.epochs}.npz"
    notebook_probs, notebook_seconds = None, None
    if not args.fbp_only:
        started = time.monotonic()
        notebook_probs = notebook_oof(config, essays, folds)
        notebook_seconds = time.monotonic() - started
        save_word_probs(notebook_file, notebook_probs)
    elif notebook_file.exists() and set(load_word_probs(notebook_file)) == set(fbp_probs):
        notebook_probs = load_word_probs(notebook_file)  # the notebook side of an earlier run on the same essays
    rows = []
    if notebook_probs is not None:
        rows = [("notebook way (no thresholds)", *scored(notebook_probs, no_thresholds), notebook_seconds),
                ("notebook model, thresholds tuned out of fold (not the notebook way)", *scored(notebook_probs), None)]
    rows = [("fbp train: cv_f1_tuned (thresholds tuned out of fold, saved for infer)", summary["cv_f1_tuned"], summary["cv_per_class_tuned"], summary["train_seconds"]),
            ("fbp train: cv_f1 (default thresholds)", summary["cv_f1"], summary["cv_per_class"], None),
            ("fbp model, no thresholds", *scored(fbp_probs, no_thresholds), None)] + rows
    print(f"\n| side | CV F1 | {' | '.join(CLASSES)} | minutes |\n|---|---:|{'---:|' * len(CLASSES)}---:|")
    for name, f1, per_class, seconds in rows:
        minutes = f"{seconds / 60:.1f}" if seconds is not None else ""
        print(f"| {name} | {f1:.4f} | {' | '.join(f'{per_class.get(c, 0):.3f}' for c in CLASSES)} | {minutes} |")
    if len(rows) == 5:
        print(f"\ndifference, fbp train (cv_f1_tuned) - notebook way: {rows[0][1] - rows[3][1]:+.4f} macro F1 (target +0.03)")
        print(f"models alone, both decoded with no thresholds: {rows[2][1] - rows[3][1]:+.4f}")
    print("best epochs per fold (fbp):", [f["best_epoch"] for f in summary["folds"]])
    (args.work / f"quality{suffix}.json").write_text(json.dumps({"rows": rows, "run_dir": str(run_dir)}, indent=1))


if __name__ == "__main__":
    main()
