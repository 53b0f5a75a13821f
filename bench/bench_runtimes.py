"""`fbp infer` with each runtime (PyTorch fp32, ONNX fp32, ONNX int8) against a plain PyTorch loop, as whole processes.

Every side is a fresh process started the way a user starts it, timed from start to exit (imports, loading, reading
essays, prediction, decoding, writing the CSV), with its own peak resident memory (``wait4``'s ru_maxrss). Sides run
alternated (the order rotates each repeat), and the load average is printed with every run: on a shared machine only
the ratios, taken side by side, mean anything.

- plain: a loop written for this benchmark, the same checkpoint in PyTorch fp32: windows of 512 tokens with stride 128
  (the tokenizer's overflow), batches of 16 windows in essay order, padded to each batch's longest, each word's
  probabilities the mean over its first sub-tokens, argmax spans;
- torch / onnx / onnx-int8: ``python -m fbp infer CKPT --input DIR --runtime R`` (``fbp export`` made the ONNX files),
  with fbp's defaults (batches of 4 windows on a CPU; ``--fbp-batch 16`` runs them at the plain loop's 16).

Quality, on the same essays (none of them in the run's training data): the competition F1 (macro and per class) of
each runtime's submission, the gaps to PyTorch fp32, and the largest word-probability difference from PyTorch's
(read from ``--save-probs``, stored as float16: differences under ~1e-3 do not show).

Ensemble: ``fbp infer`` over a directory of 5 fold checkpoints (copies of the one checkpoint, exports included), each
runtime, seconds per essay.

    python bench/bench_runtimes.py RUN/fold_0 --input ESSAY_DIR --truth train.csv [--repeats 2] [--ensemble-essays 40]

``--quality-only`` skips the timings, the plain loop and the ensemble: each ONNX runtime runs once, and each gap to
ONNX fp32 (which matches PyTorch fp32 to ~1e-3 in probability) gets a 95% interval from a paired bootstrap over essays
(both sides resampled with the same essays). On a few hundred essays one rare-class span decides 0.01 of that class's
F1, so whether int8 "keeps the spans" (macro within 0.005, each class within 0.01) needs many essays and the interval:

    python bench/bench_runtimes.py RUN/fold_0 --input ESSAY_DIR --truth train.csv --quality-only [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNTIMES = ("torch", "onnx", "onnx-int8")
MAX_LENGTH, STRIDE, BATCH = 512, 128, 16  # the plain loop's


def plain_loop(checkpoint: str, input_dir: str, output: str) -> None:
    """The baseline: the plain PyTorch loop described in the module docstring (runs as its own process)."""
    import numpy as np
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForTokenClassification.from_pretrained(checkpoint).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    rows = ["id,class,predictionstring"]
    paths = sorted(Path(input_dir).glob("*.txt"))
    windows = []  # (essay index, input ids, word index of each token's first sub-token or -1)
    essays = []
    for index, path in enumerate(paths):
        words = path.read_text(encoding="utf-8").split()
        essays.append((path.stem, len(words)))
        encoding = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_LENGTH, stride=STRIDE, return_overflowing_tokens=True, return_offsets_mapping=True)
        for window in range(len(encoding["input_ids"])):
            word_ids = encoding.word_ids(window)
            first = [-1] * len(word_ids)
            for position, word in enumerate(word_ids):
                if word is not None and encoding["offset_mapping"][window][position][0] == 0:
                    first[position] = word  # a word's first sub-token starts at its first character
            windows.append((index, encoding["input_ids"][window], first))
    sums = [np.zeros((count, len(labels)), dtype=np.float32) for _, count in essays]
    counts = [np.zeros(count, dtype=np.float32) for _, count in essays]
    with torch.inference_mode():
        for start in range(0, len(windows), BATCH):
            batch = windows[start : start + BATCH]
            longest = max(len(ids) for _, ids, _ in batch)
            input_ids = torch.full((len(batch), longest), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, (_, ids, _) in enumerate(batch):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            probs = torch.softmax(model(input_ids=input_ids, attention_mask=mask).logits, dim=-1).numpy()
            for row, (essay, _, first) in enumerate(batch):
                for position, word in enumerate(first):
                    if word >= 0:
                        sums[essay][word] += probs[row, position]
                        counts[essay][word] += 1
    for (essay_id, _), total, count in zip(essays, sums, counts):
        predicted = [labels[i] for i in (total / np.maximum(count, 1)[:, None]).argmax(axis=1)]
        start, current = None, None
        for word, label in enumerate(predicted + ["O"]):
            kind = label[2:] if label != "O" else None
            if current is not None and (kind != current or label.startswith("B-")):
                rows.append(f"{essay_id},{current},{' '.join(map(str, range(start, word)))}")
                current = None
            if kind is not None and current is None:
                start, current = word, kind
    Path(output).write_text("\n".join(rows) + "\n", encoding="utf-8")


def timed(command: list, log: Path) -> tuple[float, float]:
    """Run a whole process; its wall seconds and peak RSS (MiB)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "120"})
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed; see {log}:\n{log.read_text()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def side_command(side: str, checkpoint: Path, input_dir: Path, work: Path, fbp_batch=None) -> list:
    """The process for one side; fbp's sides run with fbp's default batch unless ``fbp_batch``."""
    if side == "plain":
        return [sys.executable, __file__, "--plain-loop", str(checkpoint), str(input_dir), str(work / "plain.csv")]
    return [sys.executable, "-m", "fbp", "infer", str(checkpoint), "--input", str(input_dir), "-o", str(work / f"{side}.csv"),
            "--runtime", side, "--save-probs", str(work / f"{side}.npz"),
            *(["--batch-size", str(fbp_batch)] if fbp_batch else [])]


def resampled(frame, draw):
    """``frame``'s rows for the essays of one bootstrap draw (ids, with repeats): the k-th copy of an essay becomes
    ``id#k``, so the metric sees it as another essay."""
    import pandas as pd

    copies = pd.Series(draw).value_counts()
    rows = frame[frame["id"].isin(copies.index)]
    rows = rows.loc[rows.index.repeat(rows["id"].map(copies).to_numpy())].copy()
    rows["id"] = rows["id"] + "#" + rows.groupby(level=0).cumcount().astype(str)
    return rows


def bootstrap_gaps(reference, candidate, truth, ids, repeats: int, seed: int = 0):
    """95% intervals of ``candidate``'s F1 minus ``reference``'s (macro, then each class), resampling essays."""
    import numpy as np

    from fbp.labels import CLASSES
    from fbp.metric import score

    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(repeats):
        draw = rng.choice(ids, size=len(ids))
        sample_truth = resampled(truth, draw)
        ref, cand = score(resampled(reference, draw), sample_truth), score(resampled(candidate, draw), sample_truth)
        ref_classes, cand_classes = ref.class_f1(), cand.class_f1()
        gaps.append([cand.f1 - ref.f1] + [cand_classes.get(name, 0) - ref_classes.get(name, 0) for name in CLASSES])
    low, high = np.percentile(np.array(gaps), [2.5, 97.5], axis=0)
    return list(zip(["macro", *CLASSES], low, high))


def quality_only(args, work: Path, essays: list) -> None:
    """Each ONNX runtime once; gaps to ONNX fp32 with paired-bootstrap intervals (see the module docstring)."""
    import numpy as np

    from fbp.io.kaggle import read_span_file
    from fbp.io.word_probs import load_word_probs
    from fbp.labels import CLASSES
    from fbp.metric import score

    sides = ["onnx", "onnx-int8"]
    for side in sides:
        before = load()
        seconds, peak = timed(side_command(side, args.checkpoint, args.input, work, args.fbp_batch), work / f"{side}.log")
        print(f"  {side:10s} {seconds:7.1f}s  peak {peak:6.0f} MiB  (load before {before}, after {load()})", flush=True)
    truth = read_span_file(args.truth, "truth")[0]
    ids = sorted(path.stem for path in essays)
    truth = truth[truth["id"].isin(set(ids))].reset_index(drop=True)
    predicted = {side: read_span_file(work / f"{side}.csv", "submission")[0].reset_index(drop=True) for side in sides}
    results = {side: score(predicted[side], truth) for side in sides}
    counts = truth["class"].value_counts()
    print(f"\n{len(ids)} essays, {len(truth)} true spans ({', '.join(f'{name} {counts.get(name, 0)}' for name in CLASSES)})")
    print(f"| side | macro | {' | '.join(CLASSES)} |\n|---|---:|{'---:|' * len(CLASSES)}")
    for side in sides:
        per_class = results[side].class_f1()
        print(f"| {side} | {results[side].f1:.4f} | {' | '.join(f'{per_class.get(name, 0):.4f}' for name in CLASSES)} |")
    reference, int8 = load_word_probs(work / "onnx.npz"), load_word_probs(work / "onnx-int8.npz")
    diffs = np.concatenate([np.abs(reference[i] - int8[i]).max(axis=1) for i in reference if len(reference[i])])
    agree = np.mean(np.concatenate([reference[i].argmax(1) == int8[i].argmax(1) for i in reference if len(reference[i])]))
    print(f"int8 vs fp32, per word: argmax agreement {agree:.4f}; largest probability difference mean {diffs.mean():.4f}, "
          f"p99 {np.percentile(diffs, 99):.4f}, max {diffs.max():.4f}")
    print(f"\nint8 minus fp32, paired bootstrap over essays ({args.bootstrap} draws): gap [95% interval]; "
          f"the rule: macro within 0.005, each class within 0.01")
    fp32_classes, int8_classes = results["onnx"].class_f1(), results["onnx-int8"].class_f1()
    point = {"macro": results["onnx-int8"].f1 - results["onnx"].f1,
             **{name: int8_classes.get(name, 0) - fp32_classes.get(name, 0) for name in CLASSES}}
    for name, low, high in bootstrap_gaps(predicted["onnx"], predicted["onnx-int8"], truth, ids, args.bootstrap):
        print(f"  {name:22s} {point[name]:+.4f}  [{low:+.4f}, {high:+.4f}]", flush=True)


def cpu_features() -> str:
    """The CPU's model and the instruction sets that decide fp32 / int8 / bf16 speed (figures differ across hosts)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return f"{model}; {' '.join(flag for flag in wanted if flag in flags) or 'no AVX2'}"


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True, help="train.csv (or spans) covering the input essays")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ensemble-essays", type=int, default=40)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--quality-only", action="store_true", help="ONNX fp32 vs int8 quality with bootstrap intervals, no timings")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws for --quality-only")
    parser.add_argument("--fbp-batch", type=int, default=None, help="--batch-size for fbp's sides (default: fbp's own)")
    args = parser.parse_args()
    import numpy as np
    import onnxruntime
    import torch

    from fbp.io.kaggle import read_span_file
    from fbp.io.onnx_export import read_export
    from fbp.io.word_probs import load_word_probs
    from fbp.labels import CLASSES
    from fbp.metric import score

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-runtimes-"))
    work.mkdir(parents=True, exist_ok=True)
    essays = sorted(args.input.glob("*.txt"))
    record = read_export(args.checkpoint)
    if record is None:
        raise SystemExit(f"{args.checkpoint} has no ONNX export: run fbp export {args.checkpoint} first")
    print(f"checkpoint {args.checkpoint} ({record.architecture}); {len(essays)} essays from {args.input}; windows {MAX_LENGTH}/{STRIDE}; plain loop batches of {BATCH}, fbp's {args.fbp_batch or 'default (4 on a CPU)'}")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}, {os.cpu_count()} CPUs ({cpu_features()}); int8 settings: {record.variants['onnx-int8'].settings}")
    if args.quality_only:
        return quality_only(args, work, essays)
    sides = ["plain", *RUNTIMES]
    times = {side: [] for side in sides}
    memory = {side: 0.0 for side in sides}
    for repeat in range(args.repeats):
        order = sides[repeat % len(sides):] + sides[: repeat % len(sides)]
        for side in order:
            before = load()
            seconds, peak = timed(side_command(side, args.checkpoint, args.input, work, args.fbp_batch), work / f"{side}.log")
            times[side].append(seconds)
            memory[side] = max(memory[side], peak)
            print(f"  repeat {repeat + 1} {side:10s} {seconds:7.1f}s  peak {peak:6.0f} MiB  (load before {before}, after {load()})", flush=True)
    print("\nwhole-process time (median), speed-up over the plain loop, peak RSS")
    plain = float(np.median(times["plain"]))
    for side in sides:
        median = float(np.median(times[side]))
        print(f"  {side:10s} {median:7.1f}s  {plain / median:5.2f}x plain  {median / len(essays):.3f} s/essay  peak {memory[side]:.0f} MiB")
    truth = read_span_file(args.truth, "truth")[0]
    ids = {path.stem for path in essays}
    truth = truth[truth["id"].isin(ids)]
    results = {}
    for side in sides:
        predicted = read_span_file(work / f"{side}.csv", "submission")[0]
        results[side] = score(predicted, truth)
    reference = load_word_probs(work / "torch.npz")
    print("\nquality on the same essays (competition F1; gaps to torch fp32)")
    print("  " + f"{'side':10s} {'macro':>7s} " + " ".join(f"{name[:6]:>7s}" for name in CLASSES) + "  max word-prob diff")
    for side in sides:
        per_class = results[side].class_f1()
        diff = "-"
        if side in RUNTIMES:
            probs = load_word_probs(work / f"{side}.npz")
            diff = f"{max(float(np.abs(probs[i] - reference[i]).max()) for i in reference if len(reference[i])):.4f}"
        print(f"  {side:10s} {results[side].f1:7.4f} " + " ".join(f"{per_class.get(name, 0):7.4f}" for name in CLASSES) + f"  {diff}")
        if side != "torch":
            gaps = {name: per_class.get(name, 0) - results["torch"].class_f1().get(name, 0) for name in CLASSES}
            print(f"  {'':10s} {results[side].f1 - results['torch'].f1:+7.4f} " + " ".join(f"{gaps[name]:+7.4f}" for name in CLASSES))
    # auto's choice on this checkpoint
    from fbp.onnx_runtime import choose_runtime

    print(f"\nauto on a CPU: {choose_runtime(args.checkpoint, 'auto', 'cpu').runtime}")
    # 5-fold ensemble: copies of the checkpoint (exports included) as fold_0..fold_4
    ensemble = work / "ensemble"
    if not ensemble.exists():
        for fold in range(5):
            shutil.copytree(args.checkpoint, ensemble / f"fold_{fold}")
    subset = work / "ensemble-essays"
    if not subset.exists():
        subset.mkdir()
        for path in essays[: args.ensemble_essays]:
            shutil.copy(path, subset / path.name)
    print(f"\n5-fold ensemble (5 copies of the checkpoint) on {args.ensemble_essays} essays: seconds per essay")
    for side in RUNTIMES:
        before = load()
        seconds, peak = timed([sys.executable, "-m", "fbp", "infer", str(ensemble), "--input", str(subset), "-o", str(work / f"ens-{side}.csv"), "--runtime", side], work / f"ens-{side}.log")
        print(f"  {side:10s} {seconds:7.1f}s  {seconds / args.ensemble_essays:.3f} s/essay  peak {peak:.0f} MiB  (load before {before}, after {load()})", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--plain-loop":
        plain_loop(*sys.argv[2:])
    else:
        main()
