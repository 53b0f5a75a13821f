"""Decoding quality: default thresholds vs thresholds tuned out-of-fold, scored honestly (cross-fitted).

`fbp evaluate RUN --tune` tunes per-class min_words / min_confidence on a run's out-of-fold word probabilities.
Scoring the tuned thresholds on the same essays they were tuned on flatters them, so this benchmark
cross-fits: the run's out-of-fold essays are split in two halves (seed 0); thresholds tuned on one half decode
the other, and the two halves' predictions are scored together. No model runs: word probabilities only.

    python bench/bench_thresholds.py RUN_DIR [--truth spans.parquet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--truth", type=Path, help="spans.parquet (default: the run's processed data)")
    args = parser.parse_args()

    from fbp.config import ThresholdConfig
    from fbp.labels import CLASSES
    from fbp.metric import score
    from fbp.decode import cross_fitted_thresholds, decode_essays
    from fbp.io.word_probs import load_word_probs

    summary = json.loads((args.run_dir / "run.json").read_text())
    truth = pd.read_parquet(args.truth or Path(summary["processed_dir"]) / "spans.parquet")
    oof = load_word_probs(args.run_dir / "oof_word_probs.npz")
    truth = truth[truth["id"].isin(set(oof))]
    # The thresholds the run was configured with (its epochs were scored with them); decoding.json holds the tuned ones
    # since fbp train tunes at the end of a run.
    default = ThresholdConfig.model_validate(summary["config"]["decoding"])

    oof = dict(sorted(oof.items()))
    tuned_on_all, cross_fitted = cross_fitted_thresholds(oof, truth, default, groups=[0] * len(oof))  # one group: halves
    before = score(decode_essays(oof, default), truth)
    after = score(cross_fitted, truth)
    in_sample = score(decode_essays(oof, tuned_on_all), truth)

    print(f"config: {args.run_dir} ({len(oof)} out-of-fold essays, {len(truth)} true spans), 2-way cross-fitted tuning, seed 0")
    print(f"\n| decoding | macro F1 | {' | '.join(CLASSES)} |\n|---|---:|{'---:|' * len(CLASSES)}")
    for name, result in (("default thresholds", before), ("tuned, cross-fitted", after), ("tuned in-sample (optimistic)", in_sample)):
        per_class = result.class_f1()
        print(f"| {name} | {result.f1:.4f} | {' | '.join(f'{per_class.get(c, 0.0):.3f}' for c in CLASSES)} |")
    print(f"\ngain from tuning (cross-fitted): {after.f1 - before.f1:+.4f} macro F1")


if __name__ == "__main__":
    main()
