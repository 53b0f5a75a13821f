"""`fbp pretrain`: its cost, and what it does for `fbp train` (the rare classes above all).

    python bench/bench_pretrain.py cost [--sizes 150 600] [--steps 4]
    python bench/bench_pretrain.py compare BASE_RUN PRETRAINED_RUN [--fold 0] [--heldout 150]

- cost: on the shared essays (processed into --work), for each text size: the time to tokenize and cut the text
  into blocks, and tokens/s of masked-LM steps (`fbp.pretrain.pretrain` with --steps steps, MiniLM, blocks of 512,
  batch 8); then one epoch's cost at each size (tokens / tokens/s). Also the masked-LM head scored on the masked
  tokens only against the stock forward (every token projected onto the vocabulary): steps alternated in one
  process, the same batches.
- compare: two `fbp train` runs on the same essays, folds and seed, one from the packaged MiniLM and one from an
  `fbp pretrain` output (`--model DIR`). On the out-of-fold essays of the folds both trained: each class's signal
  (word-level ROC AUC of its B + I probability), tuned thresholds and the learned decoding, both cross-fitted
  (by fold, or two random halves when one fold is compared). Then `fbp infer` of each run (or of its fold K
  checkpoint) on --heldout shared essays outside both runs and outside the pretraining text, scored with the
  competition metric (fbp.metric.score, what `fbp evaluate` computes).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
SHARED = ROOT.parent / "shared" / "data" / "feedback-prize-2021"
RARE = ("Counterclaim", "Rebuttal")


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def processed_dir(work: Path) -> Path:
    from fbp.preprocess import preprocess

    processed = work / "processed"
    if not (processed / "meta.json").exists():
        if not SHARED.is_dir():
            sys.exit(f"needs the shared data at {SHARED}")
        preprocess(SHARED, processed, n_folds=5, seed=42)
    return processed


def cost(args) -> None:
    import torch
    from transformers import AutoModelForMaskedLM, DataCollatorForLanguageModeling, TrainingArguments

    from fbp.config import PretrainConfig, load_config
    from fbp.model import load_tokenizer, resolve_model_name
    from fbp.pretrain import gather_text, make_blocks, pretrain
    from fbp.pretrain.trainer import masked_lm_trainer

    processed = processed_dir(args.work)
    print(f"config: MiniLM (packaged), blocks of 512 tokens, batch 8, whole-word masking 15%, {args.steps} steps per size; "
          f"torch threads {torch.get_num_threads()}; load average at start: {load()}")
    tokenizer = load_tokenizer("minilm")
    rows = []
    for size in args.sizes if args.steps else []:
        config = load_config(None, {"data.processed_dir": str(processed), "data.max_essays": size, "tracking.wandb": "disabled",
                                    "pretrain.max_steps": args.steps, "pretrain.eval_fraction": 0.0, "pretrain.save_steps": 10_000},
                             schema=PretrainConfig)
        text = gather_text(config)
        started = time.perf_counter()
        blocks, tokens = make_blocks(tokenizer, text.texts, 512)
        tokenize_seconds = time.perf_counter() - started
        with tempfile.TemporaryDirectory(dir=args.work) as scratch:
            meta = pretrain(config, Path(scratch) / "model")
        rows.append((size, sum(len(t.split()) for t in text.texts), tokens, len(blocks), tokenize_seconds, meta.tokens_per_second))
        print(f"  {size} essays done (load average {load()})", flush=True)
    for size in args.sizes if not args.steps else []:  # tokenizing only
        config = load_config(None, {"data.processed_dir": str(processed), "data.max_essays": size}, schema=PretrainConfig)
        text = gather_text(config)
        started = time.perf_counter()
        blocks, tokens = make_blocks(tokenizer, text.texts, 512)
        rows.append((size, sum(len(t.split()) for t in text.texts), tokens, len(blocks), time.perf_counter() - started, args.tokens_per_second))
    print("\n| essays | words | tokens | blocks of 512 | tokenize s | tokens/s (steps) | one epoch, estimated |\n|---:|---:|---:|---:|---:|---:|---:|")
    for size, words, tokens, blocks, tokenize_seconds, speed in rows:
        print(f"| {size:,} | {words:,} | {tokens:,} | {blocks:,} | {tokenize_seconds:.1f} | {speed:,.0f} | {(f'{tokens / speed / 60:.1f} min' if speed else '-')} |")
    per_token = [tokenize_seconds / tokens for _, _, tokens, _, tokenize_seconds, _ in rows]
    print(f"tokenizing: {1e6 * per_token[0]:.1f} vs {1e6 * per_token[-1]:.1f} us per token; steps: {rows[0][-1]:,.0f} vs {rows[-1][-1]:,.0f} tokens/s "
          "(a step's cost does not depend on the text size: an epoch grows linearly with the tokens)")

    # Masked-LM head on the masked tokens only vs the stock forward, alternated on the same batches.
    model = AutoModelForMaskedLM.from_pretrained(resolve_model_name("minilm"))
    model.train()
    collator = DataCollatorForLanguageModeling(tokenizer, whole_word_mask=True, mask_replace_prob=1.0, random_replace_prob=0.0, seed=0)
    blocks, _ = make_blocks(tokenizer, gather_text(load_config(None, {"data.processed_dir": str(processed), "data.max_essays": 60},
                                                                schema=PretrainConfig)).texts, 512)
    size = args.head_batch
    batches = [collator(blocks[i : i + size]) for i in range(0, size * args.head_steps, size)]
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        trainer = masked_lm_trainer()(model=model, args=TrainingArguments(output_dir=scratch, use_cpu=True, report_to=[]))
    times = {"stock forward": [], "masked tokens only": []}
    for batch in batches:
        for name in times:
            started = time.perf_counter()
            loss = model(**batch).loss if name == "stock forward" else trainer.compute_loss(model, dict(batch))
            loss.backward()
            model.zero_grad()
            times[name].append(time.perf_counter() - started)
    stock, masked = (float(np.median(v)) for v in times.values())
    print(f"\nmasked-LM step (forward + backward, batch {size} x 512), median of {len(batches)} alternated: stock {stock:.2f} s, "
          f"masked tokens only {masked:.2f} s: x{stock / masked:.2f}; load average at end: {load()}")


def compare(args) -> None:
    import pandas as pd

    from decoding_diagnostics import class_signal
    from fbp.config import ThresholdConfig
    from fbp.decode import cross_fitted_thresholds
    from fbp.io.pretrained import read_pretrained_meta
    from fbp.io.word_probs import load_word_probs
    from fbp.labels import CLASSES
    from fbp.learned_decoder import fit_learned_decoder
    from fbp.metric import score
    from bench_decoding import run_folds

    runs = [args.base, args.pretrained]
    summaries = [json.loads((run / "run.json").read_text()) for run in runs]
    for run, summary in zip(runs, summaries):
        config = summary["config"]
        print(f"{run}: model {summary['model']}, {config['data']['max_essays'] or 'all'} essays, {config['data']['folds']} folds, "
              f"{config['training']['epochs']} epochs, lr {config['training']['learning_rate']}, seed {config['training']['seed']}; "
              f"folds trained {[f['fold'] for f in summary['folds']]} (best epochs {[f['best_epoch'] for f in summary['folds']]}); "
              f"train {summary.get('train_seconds', 0) / 60:.1f} min")
    meta = read_pretrained_meta(Path(summaries[1]["model"]))
    if meta is not None:
        print(f"pretraining: {len(meta.essays)} essays, {meta.tokens:,} tokens, {meta.steps} steps in {meta.seconds / 60:.1f} min "
              f"({meta.tokens_per_second:,.0f} tokens/s), held-out masked-LM loss {meta.eval_loss} (perplexity {meta.eval_perplexity}), "
              f"settings {meta.settings['pretrain']}")
    print(f"load average at start: {load()}")

    truth_all = pd.read_parquet(Path(summaries[0]["processed_dir"]) / "spans.parquet")
    probs = [load_word_probs(run / "oof_word_probs.npz") for run in runs]
    folds_of = [dict(zip(p, run_folds(run, list(p)))) for run, p in zip(runs, probs)]
    common = sorted(set(probs[0]) & set(probs[1]))
    if args.fold is not None:
        common = [i for i in common if folds_of[0][i] in args.fold]
    assert all(folds_of[0][i] == folds_of[1][i] for i in common), "the runs' folds differ"
    groups = np.array([folds_of[0][i] for i in common])
    if len(np.unique(groups)) < 2:
        groups = np.random.default_rng(0).permutation(len(common)) % 2
        how = "two random halves (seed 0)"
    else:
        how = "the runs' folds"
    truth = truth_all[truth_all["id"].isin(set(common))].reset_index(drop=True)
    print(f"\nout of fold: {len(common)} essays both runs validated ({len(truth)} true spans), cross-fitted by {how}")
    header = f"| run | AUC Counterclaim | AUC Rebuttal | tuned macro F1 | learned macro F1 | {' | '.join(CLASSES)} (learned) |"
    print(header + "\n|---|" + "---:|" * (4 + len(CLASSES)))
    default = ThresholdConfig()
    names = [f"from {summary['model']}" for summary in summaries]
    for name, run_probs in zip(names, probs):
        oof = {i: run_probs[i] for i in common}
        signal = class_signal(oof, truth)
        _, tuned_frame = cross_fitted_thresholds(oof, truth, default, groups)
        tuned = score(tuned_frame, truth)
        learned = [fit_learned_decoder(oof, truth, groups).result]
        per_class = learned[0].class_f1()
        print(f"| {name} | {signal['Counterclaim']:.3f} | {signal['Rebuttal']:.3f} | {tuned.f1:.4f} | {learned[0].f1:.4f} | "
              f"{' | '.join(f'{per_class.get(c, 0):.3f}' for c in CLASSES)} |", flush=True)

    if not args.heldout:
        return
    from fbp.config import load_config
    from fbp.training.loop import select_essays

    # Every essay of either run (trained on or validated), and the pretraining text.
    seen = set().union(*(set(select_essays(load_config(run / "config.yaml"))[0]["id"]) for run in runs))
    seen |= set(meta.essays) if meta is not None else set()
    unseen = sorted(path for path in (SHARED / "train").glob("*.txt") if path.stem not in seen)
    heldout = sorted(random.Random(0).sample(unseen, min(args.heldout, len(unseen))))
    truth = pd.read_csv(SHARED / "train.csv", dtype=str).rename(columns={"discourse_type": "class"})
    truth = truth[truth["id"].isin({path.stem for path in heldout})]
    target = (lambda run: run / f"fold_{args.fold[0]}") if args.fold and len(args.fold) == 1 else (lambda run: run)
    print(f"\nheld out: {len(heldout)} shared essays outside both runs and the pretraining text (random sample, seed 0), "
          f"{len(truth)} true spans; `fbp infer {target(Path('RUN'))}` (the decoding the run chose), load average {load()}")
    print(f"| run | macro F1 | {' | '.join(CLASSES)} | infer s |\n|---|---:|{'---:|' * len(CLASSES)}---:|")
    with tempfile.TemporaryDirectory() as scratch:
        essays_dir = Path(scratch) / "essays"
        essays_dir.mkdir()
        for path in heldout:
            (essays_dir / path.name).symlink_to(path)
        for name, run in zip(names, runs):
            output = Path(scratch) / f"{run.name}.csv"
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fbp", "infer", str(target(run)), "-i", str(essays_dir), "-o", str(output)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            if done.returncode:
                sys.exit(f"fbp infer failed ({done.returncode}):\n{done.stdout}{done.stderr}")
            seconds = time.perf_counter() - started
            result = score(pd.read_csv(output, dtype=str), truth)
            per_class = result.class_f1()
            print(f"| {name} | {result.f1:.4f} | {' | '.join(f'{per_class.get(c, 0):.3f}' for c in CLASSES)} | {seconds:.0f} |", flush=True)
    print(f"load average at end: {load()}")


def compare_probs(args) -> None:
    """Two word-probability files of the same essays (e.g. one epoch of each run's fold, from its Trainer checkpoint's
    fbp_eval.npz): each class's signal and both decodings, cross-fitted by two random halves."""
    import pandas as pd

    from decoding_diagnostics import class_signal
    from fbp.config import ThresholdConfig
    from fbp.decode import cross_fitted_thresholds
    from fbp.io.word_probs import load_word_probs
    from fbp.labels import CLASSES
    from fbp.learned_decoder import fit_learned_decoder
    from fbp.metric import score

    probs = [load_word_probs(path) for path in args.files]
    common = sorted(set(probs[0]) & set(probs[1]))
    truth = pd.read_parquet(args.truth)
    truth = truth[truth["id"].isin(set(common))].reset_index(drop=True)
    groups = np.random.default_rng(0).permutation(len(common)) % 2
    print(f"{len(common)} essays in both files ({len(truth)} true spans), cross-fitted by two random halves (seed 0); load average {load()}")
    print(f"| probabilities | {' | '.join(f'AUC {c}' for c in CLASSES)} | tuned macro F1 | learned macro F1 | learned Counterclaim | learned Rebuttal |"
          f"\n|---|{'---:|' * (len(CLASSES) + 4)}")
    for path, file_probs in zip(args.files, probs):
        oof = {i: file_probs[i] for i in common}
        signal, nan = class_signal(oof, truth), float("nan")
        tuned = score(cross_fitted_thresholds(oof, truth, ThresholdConfig(), groups)[1], truth)
        learned = fit_learned_decoder(oof, truth, groups).result
        print(f"| {path} | {' | '.join(f'{signal.get(c, nan):.3f}' for c in CLASSES)} | {tuned.f1:.4f} | {learned.f1:.4f} | "
              f"{learned.class_f1().get('Counterclaim', 0):.3f} | {learned.class_f1().get('Rebuttal', 0):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cost_parser = commands.add_parser("cost")
    cost_parser.add_argument("--sizes", type=int, nargs="+", default=[150, 600])
    cost_parser.add_argument("--steps", type=int, default=4)
    cost_parser.add_argument("--head-steps", type=int, default=3)
    cost_parser.add_argument("--head-batch", type=int, default=8)
    cost_parser.add_argument("--tokens-per-second", type=float, default=0.0, help="with --steps 0: the tokens/s to estimate an epoch with (e.g. a run's fbp-pretrained.json)")
    cost_parser.add_argument("--work", type=Path, default=Path("/tmp/fbp-bench"))
    compare_parser = commands.add_parser("compare")
    compare_parser.add_argument("base", type=Path)
    compare_parser.add_argument("pretrained", type=Path)
    compare_parser.add_argument("--fold", type=int, action="append", help="compare only these folds (repeatable)")
    compare_parser.add_argument("--heldout", type=int, default=150)
    probs_parser = commands.add_parser("compare-probs")
    probs_parser.add_argument("files", type=Path, nargs=2)
    probs_parser.add_argument("--truth", type=Path, required=True, help="spans.parquet of the processed data")
    args = parser.parse_args()
    {"cost": cost, "compare": compare, "compare-probs": compare_probs}[args.command](args)


if __name__ == "__main__":
    main()
