"""Inference speed on CPU: fbp's streaming, length-batched prediction vs the naive per-essay loop.

Both sides start from the same essays on disk and the same MiniLM token classifier, use the same
windows (max_length 512, stride 128) and end with the same word probabilities (n_words, 15) per
essay, stitched the same way; they differ only in how windows reach the model:

- naive: one forward pass per essay over its windows, every window padded to max_length (the usual
  notebook loop);
- fbp: ``fbp.word_probs.predict_word_probs``, the core of ``fbp infer``: essays streamed in chunks,
  windows sorted by length and batched, each batch padded only to its longest window,
  ``torch.inference_mode``.

Each side runs in its own fresh process, so its peak resident memory (ru_maxrss) is its own.
Essays: a fixed random sample from ../shared/data when present, else the generated demo corpus.

    python bench/bench_infer.py [--essays 200] [--batch-size 16] [--threads 2]

Quality mode, for a run trained on (a subset of) the shared data: the macro F1 of each fold checkpoint
and of the fold ensemble on shared essays the run never saw (neither trained nor validated on), and the
out-of-fold F1 with fbp's default decoding thresholds vs the run's own (tuned) ``decoding.json``:

    python bench/bench_infer.py --quality runs/NAME [--essays 200]

Decoding cost: ``fbp infer RUN`` as a user runs it, ``--decoding thresholds`` vs ``--decoding learned``, alternated:

    python bench/bench_infer.py --decoding-cost runs/NAME [--essays 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021" / "train"
MAX_LENGTH, STRIDE = 512, 128


def essay_paths(n_essays: int, scratch: Path) -> tuple[list[Path], str]:
    """A fixed sample of essay files: the shared Kaggle data if present, else the demo corpus."""
    if SHARED_TRAIN.is_dir():
        paths = sorted(SHARED_TRAIN.glob("*.txt"))
        return sorted(random.Random(0).sample(paths, min(n_essays, len(paths)))), f"{SHARED_TRAIN} (random sample, seed 0)"
    from fbp.demo import generate_demo_corpus

    generate_demo_corpus(scratch / "demo", n_essays=n_essays, seed=0)
    return sorted((scratch / "demo" / "train").glob("*.txt"))[:n_essays], "fbp demo corpus (seed 0)"


def naive_word_probs(model, tokenizer, texts):
    """The notebook loop: each essay alone, its windows padded to max_length."""
    import torch

    from fbp.windows import make_windows, window_metadata
    from fbp.word_probs import stitch_word_probs

    for text in texts:
        windows = make_windows(tokenizer, [text], MAX_LENGTH, STRIDE)
        batch = tokenizer.pad([{"input_ids": w["input_ids"], "attention_mask": w["attention_mask"]} for w in windows],
                              padding="max_length", max_length=MAX_LENGTH, return_tensors="pt")
        with torch.no_grad():
            probs = torch.softmax(model(**batch).logits, dim=-1).numpy()
        yield stitch_word_probs(list(probs), window_metadata(windows), [len(text.split())])[0]


def run_side(side: str, checkpoint: str, paths: list[str], batch_size: int, threads: int, results) -> None:
    """Runs in a fresh process: load the checkpoint, predict every essay, report time, words and peak RSS."""
    import torch

    from fbp.io.checkpoint import load_checkpoint
    from fbp.word_probs import predict_word_probs

    torch.set_num_threads(threads)
    loaded = load_checkpoint(checkpoint)
    texts = (Path(path).read_text(encoding="utf-8") for path in paths)
    started = time.perf_counter()
    if side == "naive":
        outputs = naive_word_probs(loaded.model, loaded.tokenizer, texts)
    else:
        outputs = (probs for _, probs in predict_word_probs(loaded.model, loaded.tokenizer, texts, MAX_LENGTH, STRIDE, batch_size))
    checksum, words = 0.0, 0
    for word_probs in outputs:
        checksum += float(word_probs[:, 0].sum())
        words += len(word_probs)
    seconds = time.perf_counter() - started
    results.put({"side": side, "seconds": seconds, "words": words, "checksum": checksum, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def quality(run_dir: Path, n_essays: int, batch_size: int) -> None:
    """Held-out F1 of each fold and of the fold ensemble; out-of-fold F1 with default vs the run's thresholds."""
    import pandas as pd

    from fbp.config import ThresholdConfig
    from fbp.infer import predict_directory, resolve_thresholds, resolve_members
    from fbp.metric import score
    from fbp.decode import decode_essays
    from fbp.io.word_probs import load_word_probs
    from fbp.word_probs import average_word_probs

    if not SHARED_TRAIN.is_dir():
        sys.exit(f"quality mode needs the shared data at {SHARED_TRAIN}")
    truth = pd.read_csv(SHARED_TRAIN.parent / "train.csv", dtype=str).rename(columns={"discourse_type": "class"})
    oof = load_word_probs(run_dir / "oof_word_probs.npz")
    unseen = sorted(path for path in SHARED_TRAIN.glob("*.txt") if path.stem not in oof)
    heldout = sorted(random.Random(0).sample(unseen, min(n_essays, len(unseen))))
    (member,) = resolve_members([run_dir])
    decoding, source = resolve_thresholds([member])
    print(f"run {run_dir}: {len(member.checkpoints)} folds, {len(oof):,} out-of-fold essays; thresholds from {source}")
    print(f"held-out: {len(heldout)} shared essays outside the run (random sample, seed 0)")
    heldout_truth = truth[truth["id"].isin({path.stem for path in heldout})]
    with tempfile.TemporaryDirectory() as scratch:
        essays_dir = Path(scratch) / "essays"
        essays_dir.mkdir()
        for path in heldout:
            (essays_dir / path.name).symlink_to(path)
        per_fold = []
        for checkpoint in member.checkpoints:
            probs_file = Path(scratch) / f"{checkpoint.name}.npz"
            predict_directory([checkpoint], essays_dir, None, save_probs=probs_file, batch_size=batch_size)
            per_fold.append(load_word_probs(probs_file))
    rows = [(checkpoint.name, score(decode_essays(probs, decoding), heldout_truth)) for checkpoint, probs in zip(member.checkpoints, per_fold)]
    rows.append(("fold ensemble", score(decode_essays(average_word_probs(per_fold), decoding), heldout_truth)))
    print(f"\n{'held-out macro F1':<20}" + "".join(f"{name[:10]:>11}" for name, _ in rows))
    print(f"{'':<20}" + "".join(f"{result.f1:>11.4f}" for _, result in rows))
    best_fold = max(result.f1 for _, result in rows[:-1])
    print(f"fold ensemble vs best single fold: {rows[-1][1].f1:.4f} vs {best_fold:.4f} ({rows[-1][1].f1 - best_fold:+.4f})")
    oof_truth = truth[truth["id"].isin(set(oof))]
    default_f1 = score(decode_essays(oof, ThresholdConfig()), oof_truth).f1
    run_f1 = score(decode_essays(oof, decoding), oof_truth).f1
    print(f"out-of-fold F1: default thresholds {default_f1:.4f}, run's thresholds {run_f1:.4f} ({run_f1 - default_f1:+.4f})")


def decoding_cost(run_dir: Path, n_essays: int, repeats: int) -> None:
    """``fbp infer RUN`` as a user runs it (a fresh process each time), with ``--decoding thresholds`` and with
    ``--decoding learned``, alternated ``repeats`` times on the same held-out essays: the learned decoding's
    share of the whole command's wall time (imports, model loading, prediction, decoding, writing), and the
    macro F1 of both submissions on those essays, which the run never saw."""
    import os
    import subprocess

    import pandas as pd

    from fbp.io.word_probs import load_word_probs
    from fbp.labels import CLASSES
    from fbp.metric import score

    if not SHARED_TRAIN.is_dir():
        sys.exit(f"--decoding-cost needs the shared data at {SHARED_TRAIN}")
    oof = load_word_probs(run_dir / "oof_word_probs.npz")
    unseen = sorted(path for path in SHARED_TRAIN.glob("*.txt") if path.stem not in oof)
    heldout = sorted(random.Random(0).sample(unseen, min(n_essays, len(unseen))))
    print(f"run {run_dir}; {len(heldout)} held-out shared essays (outside the run, random sample, seed 0); "
          f"{repeats} alternated repeats; python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    seconds = {"thresholds": [], "learned": []}
    with tempfile.TemporaryDirectory() as scratch:
        essays_dir = Path(scratch) / "essays"
        essays_dir.mkdir()
        for path in heldout:
            (essays_dir / path.name).symlink_to(path)
        outputs = {}
        for _ in range(repeats):
            for mode in ("thresholds", "learned"):
                output = Path(scratch) / f"{mode}.csv"
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "fbp", "infer", str(run_dir), "-i", str(essays_dir), "-o", str(output),
                                       "--decoding", mode], capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"fbp infer --decoding {mode} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
                seconds[mode].append(time.perf_counter() - started)
                outputs[mode] = pd.read_csv(output, dtype=str)
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| fbp infer --decoding | wall seconds (each repeat) | median | spans written |\n|---|---|---:|---:|")
    for mode, values in seconds.items():
        print(f"| {mode} | {', '.join(f'{v:.1f}' for v in values)} | {sorted(values)[len(values) // 2]:.1f} | {len(outputs[mode])} |")
    # The same submissions scored on essays the run never saw: the decoders judged where users meet them.
    truth = pd.read_csv(SHARED_TRAIN.parent / "train.csv", dtype=str).rename(columns={"discourse_type": "class"})
    truth = truth[truth["id"].isin({path.stem for path in heldout})]
    print(f"\nheld-out macro F1 ({len(heldout)} essays, {len(truth)} true spans; the fold ensemble's submission):")
    print(f"| decoding | macro F1 | {' | '.join(CLASSES)} |\n|---|---:|{'---:|' * len(CLASSES)}")
    for mode, frame in outputs.items():
        result = score(frame, truth)
        print(f"| {mode} | {result.f1:.4f} | {' | '.join(f'{result.class_f1().get(c, 0.0):.3f}' for c in CLASSES)} |")
    thresholds, learned = (sorted(v)[len(v) // 2] for v in seconds.values())
    print(f"\nlearned decoding adds {100 * (learned / thresholds - 1):+.1f}% to fbp infer's wall time (medians; target under 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--essays", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", type=Path, default=None, metavar="RUN_DIR", help="held-out F1 of each fold vs the fold ensemble")
    parser.add_argument("--decoding-cost", type=Path, default=None, metavar="RUN_DIR", help="fbp infer's wall time with the learned decoding vs thresholds")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats of each side (--decoding-cost)")
    args = parser.parse_args()
    if args.decoding_cost is not None:
        decoding_cost(args.decoding_cost, args.essays, args.repeats)
        return
    if args.quality is not None:
        quality(args.quality, args.essays, args.batch_size)
        return

    from fbp.config import ModelConfig
    from fbp.io.checkpoint import save_checkpoint
    from fbp.model import load_model_for_training, load_tokenizer
    from fbp.windows import make_windows

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        paths, source = essay_paths(args.essays, scratch)
        tokenizer = load_tokenizer("minilm")
        checkpoint = save_checkpoint(scratch / "minilm", load_model_for_training("minilm", ModelConfig()), tokenizer,
                                     {"max_length": MAX_LENGTH, "stride": STRIDE, "label_subtokens": "first", "model": "minilm"})
        texts = [path.read_text(encoding="utf-8") for path in paths]
        windows = make_windows(tokenizer, texts, MAX_LENGTH, STRIDE)
        real_tokens = sum(len(w["input_ids"]) for w in windows)
        print(f"essays: {len(paths)} from {source}; {sum(len(t.split()) for t in texts):,} words, {len(windows)} windows, "
              f"{real_tokens:,} real tokens ({len(windows) * MAX_LENGTH:,} when padded to {MAX_LENGTH})")
        print(f"model: packaged MiniLM (6 layers, 384 hidden) + token-classification head; CPU, torch threads {args.threads}; "
              f"windows {MAX_LENGTH}/stride {STRIDE}; fbp batch size {args.batch_size}; python {sys.version.split()[0]}")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        measured = {}
        for side in ("naive", "fbp"):
            process = context.Process(target=run_side, args=(side, str(checkpoint), [str(p) for p in paths], args.batch_size, args.threads, results))
            process.start()
            measured[side] = results.get()
            process.join()
    naive, fbp = measured["naive"], measured["fbp"]
    print(f"\n{'':8}{'seconds':>10}{'essays/s':>10}{'peak RSS MB':>13}")
    for side in ("naive", "fbp"):
        row = measured[side]
        print(f"{side:8}{row['seconds']:>10.1f}{len(paths) / row['seconds']:>10.2f}{row['peak_rss_mb']:>13.0f}")
    print(f"\nspeed-up fbp / naive: {naive['seconds'] / fbp['seconds']:.2f}x "
          f"(same word probabilities: checksums {naive['checksum']:.3f} vs {fbp['checksum']:.3f}, {naive['words']:,} words each)")


if __name__ == "__main__":
    main()
