"""Decoding quality and cost on a run's out-of-fold word probabilities: argmax + default thresholds, tuned
thresholds, and the learned decoding (fbp.learned_decoder), all cross-fitted by the run's folds.

- default: argmax spans filtered by the run's configured thresholds (what its epochs were scored with);
- tuned: thresholds tuned on the other folds' essays (fbp.decode.cross_fitted_thresholds);
- learned: candidate spans scored by LightGBM models fitted on the other folds, selected with rules tuned on
  the other folds' cross-fitted scores (fbp.learned_decoder.fit_learned_decoder).

Also: each class's signal (word-level ROC AUC of its B + I probability against the truth), each class's
candidate recall (the share of true spans some candidate matches: the ceiling of the learned selection), the
time to fit and to apply, optional setting variants (each cross-fitted the same way, to choose settings out of
fold), and the fit time on N essays synthesized by resampling the run's essays (--scale). No model runs.

    python bench/bench_decoding.py RUN_DIR [--truth spans.parquet] [--variants] [--scale 14000] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Settings compared with --variants (each against the defaults, all cross-fitted by the run's folds).
VARIANTS = {
    "per-class models": dict(per_class_models=True),
    "suppress only > 50% overlap": dict(nms_overlap=0.5),
    "levels 0.15..0.6 (4)": dict(levels=(0.15, 0.3, 0.45, 0.6)),
    "levels 0.05..0.6 (6)": dict(levels=(0.05, 0.1, 0.2, 0.3, 0.45, 0.6)),
    "unsplit runs too": dict(unsplit_runs=True),
    "max 24 candidates": dict(max_candidates=24),
    "levels 0.2, 0.4 (2)": dict(levels=(0.2, 0.4)),
    "max 12 candidates": dict(max_candidates=12),
    "2 negatives per positive (the former default)": dict(negatives_per_positive=2.0),
    "10 negatives per positive": dict(negatives_per_positive=10.0),
    "200 rounds, lr 0.05": dict(rounds=200, learning_rate=0.05),
    "400 rounds, lr 0.025": dict(rounds=400, learning_rate=0.025),
    "15 leaves": dict(num_leaves=15),
}

# The stronger second stage (issue 19), compared with --second-stage: each alone, then together, each cross-fitted
# by fold and averaged over --seeds LightGBM seeds.
SECOND_STAGE = {
    "rare classes: levels 0.02, 0.05 too": dict(rare_levels=(0.02, 0.05)),
    "sub-span candidates (65%)": dict(sub_span=0.65),
    "short Counterclaim/Rebuttal stretched by 2 words": dict(stretch=2),
    "neighbourhood and essay-order features": dict(context_features=True),
    "all four": dict(rare_levels=(0.02, 0.05), sub_span=0.65, stretch=2, context_features=True),
}


def run_folds(run_dir: Path, essay_ids) -> np.ndarray:
    """The fold each out-of-fold essay was validated in, as the run's training selected them."""
    try:
        from fbp.training.loop import select_essays
    except ImportError:  # before the package layout of issue 10
        from fbp.train import select_essays
    from fbp.config import load_config

    config = load_config(run_dir / "config.yaml")
    essays, _ = select_essays(config)
    fold_of = dict(zip(essays["id"].astype(str), essays["fold"].astype(int)))
    return np.array([fold_of[essay_id] for essay_id in essay_ids])


def load_word_probs(path: Path):
    try:
        from fbp.io.word_probs import load_word_probs as load
    except ImportError:
        from fbp.word_probs import load_word_probs as load
    return load(path)


def fit_and_apply(word_probs, truth, groups, settings):
    """The learned decoder fitted (cross-fitted by ``groups``) and applied to the same essays: (fit, fit s, apply s)."""
    from fbp.learned_decoder import fit_learned_decoder

    started = time.perf_counter()
    fit = fit_learned_decoder(word_probs, truth, groups, settings)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fit.decoder.decode(word_probs)
    return fit, fit_seconds, time.perf_counter() - started


def table_row(name: str, result, classes) -> str:
    per_class = result.class_f1()
    return f"| {name} | {result.f1:.4f} | {' | '.join(f'{per_class.get(c, 0.0):.3f}' for c in classes)} |"


def second_stage(oof, truth, folds, settings, seeds: int) -> None:
    """Each SECOND_STAGE variant against the defaults, cross-fitted by fold, mean of ``seeds`` LightGBM seeds."""
    from fbp.labels import CLASSES
    from fbp.learned_decoder import fit_learned_decoder

    print(f"\n| variant (cross-fitted by fold, mean of {seeds} seeds) | macro F1 | vs defaults | seeds | fit s | {' | '.join(CLASSES)} |"
          f"\n|---|---:|---:|---|---:|{'---:|' * len(CLASSES)}")
    baseline = None
    for name, change in {"defaults": {}, **SECOND_STAGE}.items():
        results, started = [], time.perf_counter()
        for seed in range(seeds):
            results.append(fit_learned_decoder(oof, truth, folds, replace(settings, seed=seed, **change)).result)
        seconds = (time.perf_counter() - started) / seeds
        f1 = float(np.mean([r.f1 for r in results]))
        baseline = f1 if baseline is None else baseline
        per_class = {c: np.mean([r.class_f1().get(c, 0.0) for r in results]) for c in CLASSES}
        print(f"| {name} | {f1:.4f} | {'' if name == 'defaults' else f'{f1 - baseline:+.4f}'} | {', '.join(f'{r.f1:.4f}' for r in results)} | "
              f"{seconds:.1f} | {' | '.join(f'{per_class[c]:.3f}' for c in CLASSES)} |", flush=True)
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--truth", type=Path, help="spans.parquet (default: the run's processed data)")
    parser.add_argument("--variants", action="store_true", help="also cross-fit each setting variant in VARIANTS")
    parser.add_argument("--scale", type=int, default=0, help="fit time on this many essays resampled from the run's (0: skip)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="decoder settings (e.g. rounds=100)")
    parser.add_argument("--second-stage", action="store_true", help="only the SECOND_STAGE variants against the defaults (mean of --seeds seeds each), then stop")
    parser.add_argument("--seeds", type=int, default=1, help="also fit the learned decoder with seeds 1..N-1 and report the mean and spread (its run-to-run noise)")
    args = parser.parse_args()

    from fbp.config import ThresholdConfig
    from fbp.decode import cross_fitted_thresholds, decode_essays
    from fbp.labels import CLASSES
    from decoding_diagnostics import candidate_recall, class_signal
    from fbp.learned_decoder import DecoderSettings, fit_learned_decoder
    from fbp.metric import score

    summary = json.loads((args.run_dir / "run.json").read_text())
    truth = pd.read_parquet(args.truth or Path(summary["processed_dir"]) / "spans.parquet")
    oof = dict(sorted(load_word_probs(args.run_dir / "oof_word_probs.npz").items()))
    truth = truth[truth["id"].isin(set(oof))].reset_index(drop=True)
    folds = run_folds(args.run_dir, list(oof))
    default = ThresholdConfig.model_validate(summary["config"]["decoding"])
    settings = DecoderSettings()
    for item in args.set:
        key, value = item.split("=", 1)
        current = getattr(settings, key)
        settings = replace(settings, **{key: tuple(float(v) for v in value.split(",")) if isinstance(current, tuple) else type(current)(value == "true" if isinstance(current, bool) else value)})

    n_words = sum(len(p) for p in oof.values())
    print(f"config: {args.run_dir} ({len(oof)} out-of-fold essays, {n_words:,} words, {len(truth)} true spans), "
          f"cross-fitted by the run's {len(np.unique(folds))} folds; python {platform.python_version()}, {os.cpu_count()} cores")
    print(f"decoder settings: {settings.to_dict()}")
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")

    if args.second_stage:
        second_stage(oof, truth, folds, settings, max(1, args.seeds))
        return

    signal = class_signal(oof, truth)
    print("\nclass signal: word-level ROC AUC of the class's B + I probability against the truth")
    print(f"| | {' | '.join(CLASSES)} |\n|---|{'---:|' * len(CLASSES)}")
    auc_cells = " | ".join(f"{signal[c]:.3f}" if c in signal else "-" for c in CLASSES)
    print(f"| AUC | {auc_cells} |")

    started = time.perf_counter()
    default_result = score(decode_essays(oof, default), truth)
    default_seconds = time.perf_counter() - started
    started = time.perf_counter()
    _, tuned_frame = cross_fitted_thresholds(oof, truth, default, folds)
    tuned_seconds = time.perf_counter() - started
    tuned_result = score(tuned_frame, truth)
    fit, fit_seconds, apply_seconds = fit_and_apply(oof, truth, folds, settings)

    print(f"\n| decoding (cross-fitted by fold) | macro F1 | {' | '.join(CLASSES)} |\n|---|---:|{'---:|' * len(CLASSES)}")
    print(table_row("argmax, default thresholds", default_result, CLASSES))
    print(table_row("argmax, tuned thresholds", tuned_result, CLASSES))
    print(table_row("learned", fit.result, CLASSES))
    print(f"\nlearned - tuned: {fit.result.f1 - tuned_result.f1:+.4f} macro F1; learned - default: {fit.result.f1 - default_result.f1:+.4f}")
    if args.seeds > 1:
        results = [fit.result] + [fit_learned_decoder(oof, truth, folds, replace(settings, seed=seed)).result for seed in range(1, args.seeds)]
        f1s = np.array([result.f1 for result in results])
        per_class = {c: np.mean([result.class_f1().get(c, 0.0) for result in results]) for c in CLASSES}
        print(f"learned over {args.seeds} seeds: macro F1 {', '.join(f'{f1:.4f}' for f1 in f1s)}; mean {f1s.mean():.4f} (min {f1s.min():.4f}, max {f1s.max():.4f}); "
              f"mean - tuned {f1s.mean() - tuned_result.f1:+.4f}")
        print(f"| learned, mean of {args.seeds} seeds | {f1s.mean():.4f} | {' | '.join(f'{per_class[c]:.3f}' for c in CLASSES)} |")
    recall = candidate_recall(fit, truth)
    print(f"candidate recall (true spans some candidate matches): {', '.join(f'{c} {recall.get(c, 0):.3f}' for c in CLASSES)}")
    print(f"candidates: {len(fit.candidates):,} ({len(fit.candidates) / len(oof):.0f} per essay), positives {fit.labels.mean():.3f}")
    rules = {name: (None if rule.threshold == float('inf') else rule.threshold, rule.max_per_essay) for name, rule in fit.decoder.rules.items()}
    print(f"rules tuned on all essays (threshold, max per essay): {rules}")
    print(f"\ntimes: default decode {default_seconds:.2f}s; tuned thresholds cross-fitted {tuned_seconds:.1f}s; "
          f"learned fit {fit_seconds:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in fit.seconds.items())}); "
          f"learned apply {apply_seconds:.2f}s ({1000 * apply_seconds / len(oof):.1f} ms/essay)")

    if args.variants:
        print(f"\n| variant (cross-fitted by fold) | macro F1 | vs defaults | fit s | {' | '.join(CLASSES)} |\n|---|---:|---:|---:|{'---:|' * len(CLASSES)}")
        print(f"| defaults | {fit.result.f1:.4f} | | {fit_seconds:.1f} | {' | '.join(f'{fit.result.class_f1().get(c, 0):.3f}' for c in CLASSES)} |")
        for name, change in VARIANTS.items():
            started = time.perf_counter()
            variant = fit_learned_decoder(oof, truth, folds, replace(settings, **change))
            seconds = time.perf_counter() - started
            per_class = variant.result.class_f1()
            print(f"| {name} | {variant.result.f1:.4f} | {variant.result.f1 - fit.result.f1:+.4f} | {seconds:.1f} | {' | '.join(f'{per_class.get(c, 0):.3f}' for c in CLASSES)} |", flush=True)

    if args.scale:
        rng = np.random.default_rng(0)
        ids = list(oof)
        picks = rng.choice(len(ids), args.scale, replace=True)
        big = {f"{ids[p]}-r{k}": oof[ids[p]] for k, p in enumerate(picks)}
        by_id = {essay_id: group for essay_id, group in truth.groupby("id")}
        big_truth = pd.concat([by_id[ids[p]].assign(id=f"{ids[p]}-r{k}") for k, p in enumerate(picks) if ids[p] in by_id], ignore_index=True)
        big_groups = np.arange(args.scale) % 2
        words = sum(len(p) for p in big.values())
        print(f"\nscale: {args.scale} essays resampled from the run's ({words:,} words), 2 cross-fitting groups; "
              f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        big_fit, seconds, apply_seconds = fit_and_apply(big, big_truth, big_groups, settings)
        print(f"fit (cross-fitted + final): {seconds:.1f}s ({', '.join(f'{k} {v:.1f}s' for k, v in big_fit.seconds.items())}), "
              f"{len(big_fit.candidates):,} candidates; apply {apply_seconds:.1f}s ({1000 * apply_seconds / args.scale:.1f} ms/essay)")
    print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
