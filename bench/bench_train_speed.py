"""Training speed on CPU: fbp's batching vs the notebook's, and the cost of dropout, side by side in one run.

The same windows of the same essays (max_length 512, stride 128, MiniLM) go through the Hugging Face Trainer
for one epoch four ways; each way runs `--repeats` times, interleaved, so machine noise hits all alike:

- notebook: every window padded to max_length, random order, the model's dropout (the usual notebook set-up);
- notebook without dropout: the same, dropout 0 (separates the two savings);
- fbp: length-grouped batches padded only to their longest window, in random order (`fbp train`'s Trainer), dropout as
  the model has it (0.1);
- fbp train's default: the same with `model.hidden_dropout=0, model.attention_dropout=0` (configs/default.yaml).

Speed is real (non-padding) training tokens per second; the ratio is against the notebook.

    python bench/bench_train_speed.py [--essays 48] [--repeats 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021" / "train"
MAX_LENGTH, STRIDE = 512, 128


def essays(n_essays: int):
    if SHARED_TRAIN.is_dir():
        paths = sorted(random.Random(0).sample(sorted(SHARED_TRAIN.glob("*.txt")), n_essays))
        return [p.read_text(encoding="utf-8") for p in paths], f"{n_essays} shared essays (random sample, seed 0)"
    import tempfile

    from fbp.demo import generate_demo_corpus

    scratch = Path(tempfile.mkdtemp()) / "demo"
    generate_demo_corpus(scratch, n_essays=n_essays, seed=0)
    return [p.read_text() for p in sorted((scratch / "train").glob("*.txt"))], f"{n_essays} demo essays"


def one_epoch(features, padded: bool, dropout: bool, batch_size: int, tokenizer) -> float:
    """Seconds for one training epoch over ``features`` with the Trainer."""
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    from fbp.config import ModelConfig
    from fbp.training.trainer import WordLevelTrainer
    from fbp.model import load_model_for_training, resolve_model_name

    # Explicit both ways: ModelConfig()'s defaults are fbp's (no dropout), the notebooks keep the model's own 0.1.
    model_config = ModelConfig(hidden_dropout=None, attention_dropout=None) if dropout else ModelConfig(hidden_dropout=0.0, attention_dropout=0.0)
    model = load_model_for_training(resolve_model_name("minilm"), model_config, max_length=MAX_LENGTH)
    args = TrainingArguments(output_dir="/tmp/fbp-bench-speed", num_train_epochs=1, per_device_train_batch_size=batch_size,
                             learning_rate=1e-4, report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no",
                             disable_tqdm=True, use_cpu=True, seed=0, dataloader_pin_memory=False,
                             train_sampling_strategy="random" if padded else "group_by_length")
    collator = DataCollatorForTokenClassification(tokenizer, padding="max_length" if padded else True, max_length=MAX_LENGTH)
    trainer_class = Trainer if padded else WordLevelTrainer  # fbp's Trainer: length-grouped batches in random order
    trainer = trainer_class(model=model, args=args, train_dataset=features, data_collator=collator, processing_class=tokenizer)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--essays", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    import torch

    from fbp.model import load_tokenizer, resolve_model_name
    from fbp.windows import make_windows, model_features

    texts, source = essays(args.essays)
    tokenizer = load_tokenizer(resolve_model_name("minilm"))
    windows = make_windows(tokenizer, texts, MAX_LENGTH, STRIDE, word_labels=[[0] * len(t.split()) for t in texts])
    features = model_features(windows)
    real_tokens = sum(len(f["input_ids"]) for f in features)
    padded_tokens = len(features) * MAX_LENGTH
    print(f"config: {source}, {len(features)} windows (max_length {MAX_LENGTH}, stride {STRIDE}), {real_tokens:,} real tokens "
          f"({1 - real_tokens / padded_tokens:.1%} of a padded-to-{MAX_LENGTH} epoch is padding), batch {args.batch_size}, "
          f"MiniLM, CPU, {torch.get_num_threads()} torch threads, {args.repeats} interleaved repeats", flush=True)

    sides = {"notebook (pad to 512, dropout 0.1)": (True, True), "notebook without dropout": (True, False),
             "fbp batching, dropout 0.1": (False, True), "fbp train's default (fbp batching, no dropout)": (False, False)}
    seconds = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name, (padded, dropout) in sides.items():
            seconds[name].append(one_epoch(features, padded, dropout, args.batch_size, tokenizer))
            print(f"  repeat {repeat + 1}: {name}: {seconds[name][-1]:.1f} s", flush=True)
    baseline = statistics.median(seconds["notebook (pad to 512, dropout 0.1)"])
    print("\n| side | seconds per epoch (median) | real tokens/s | speed-up vs notebook |\n|---|---:|---:|---:|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {real_tokens / median:,.0f} | {baseline / median:.2f}x |")


if __name__ == "__main__":
    main()
