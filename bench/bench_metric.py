"""Benchmark: fbp's competition metric against a straightforward pandas merge-and-apply scorer.

Side by side in one run, on the shared ``train.csv`` (all ~130k ground-truth spans) against a
perturbed prediction set of ~140k spans (boundaries shifted, spans dropped, added and re-classed):

1. ``fbp.metric.score`` in-process (best of a few repeats, parsing of both DataFrames included);
2. the same rules written the usual notebook way (per class: merge on essay id, ``apply`` a Python
   overlap function row by row, sort and ``groupby().first()``): the two F1s must agree exactly;
3. the scorer copied around Kaggle notebooks (outer join), to show its NaN quirk (docs/metric.md);
4. ``fbp evaluate`` as a whole process against just reading the two CSVs with pandas.

Run: ``python bench/bench_metric.py [--data DIR] [--seed 0] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fbp.labels import CLASSES
from fbp.metric import parse_spans, score

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021"


def perturbed_predictions(truth: pd.DataFrame, seed: int) -> pd.DataFrame:
    """~140k predictions from ~130k ground truths: drop 8%, re-class 5%, shift both ends by up to
    +-30% of the length (so some matches fail), and add 18% random spans."""
    rng = np.random.default_rng(seed)
    words = truth["predictionstring"].str.split()
    starts = words.str[0].astype(int).to_numpy()
    ends = words.str[-1].astype(int).to_numpy() + 1
    lengths = ends - starts
    max_shift = np.maximum(1, (0.3 * lengths).astype(int))
    new_starts = np.maximum(0, starts + rng.integers(-max_shift, max_shift + 1))
    new_ends = np.maximum(new_starts + 1, ends + rng.integers(-max_shift, max_shift + 1))
    classes = truth["discourse_type"].to_numpy(dtype=object).copy()
    reclass = rng.random(len(truth)) < 0.05
    classes[reclass] = rng.choice(CLASSES, reclass.sum())
    kept = rng.random(len(truth)) >= 0.08
    n_added = int(0.18 * len(truth))
    essay_ids = truth["id"].unique()
    added_starts = rng.integers(0, 600, n_added)
    frame = pd.DataFrame(
        {
            "id": np.concatenate([truth["id"].to_numpy(dtype=object)[kept], rng.choice(essay_ids, n_added)]),
            "class": np.concatenate([classes[kept], rng.choice(CLASSES, n_added)]),
            "start": np.concatenate([new_starts[kept], added_starts]),
            "end": np.concatenate([new_ends[kept], added_starts + rng.integers(2, 60, n_added)]),
        }
    )
    frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame["predictionstring"] = [" ".join(map(str, range(start, end))) for start, end in zip(frame["start"], frame["end"])]
    return frame[["id", "class", "predictionstring"]]


def pandas_score(predictions: pd.DataFrame, truth: pd.DataFrame) -> float:
    """The same rules as fbp.metric, the way a notebook writes them (merge, row-wise apply, groupby)."""
    truth = truth.rename(columns={"discourse_type": "class"})[["id", "class", "predictionstring"]].copy()
    truth["word_set"] = truth["predictionstring"].apply(lambda text: " ".join(map(str, sorted(set(map(int, text.split()))))))
    truth = truth.drop_duplicates(["id", "class", "word_set"])
    class_f1 = []
    for cls in CLASSES:
        gt = truth[truth["class"] == cls].reset_index(drop=True)
        if gt.empty:
            continue
        gt["gt_id"] = gt.index
        pred = predictions[predictions["class"] == cls].reset_index(drop=True)
        pred["pred_id"] = pred.index
        joined = pred.merge(gt, on="id", suffixes=("_pred", "_gt"))

        def overlaps(row: pd.Series) -> tuple:
            pred_words = set(map(int, row.predictionstring_pred.split()))
            gt_words = set(map(int, row.predictionstring_gt.split()))
            shared = len(pred_words & gt_words)
            return shared / len(gt_words), shared / len(pred_words)

        joined[["of_gt", "of_pred"]] = joined.apply(overlaps, axis=1, result_type="expand")
        matches = joined[(joined["of_gt"] >= 0.5) & (joined["of_pred"] >= 0.5)].copy()
        matches["max_overlap"] = matches[["of_gt", "of_pred"]].max(axis=1)
        kept = matches.sort_values(["max_overlap", "pred_id"], ascending=[False, True]).groupby("gt_id").first()["pred_id"]
        tp = len(kept)
        fp = len(pred) - kept.nunique()
        fn = len(gt) - tp
        class_f1.append(tp / (tp + 0.5 * (fp + fn)))
    return float(np.mean(class_f1))


def kaggle_notebook_score(predictions: pd.DataFrame, truth: pd.DataFrame) -> float:
    """The scorer copied around Kaggle notebooks (outer join; NaN ids count as an extra FP and FN)."""

    def calc_overlap(row: pd.Series) -> list:
        set_pred = set(row.predictionstring_pred.split(" "))
        set_gt = set(row.predictionstring_gt.split(" "))
        inter = len(set_gt.intersection(set_pred))
        return [inter / len(set_gt), inter / len(set_pred)]

    def score_feedback_comp_micro(pred_df: pd.DataFrame, gt_df: pd.DataFrame) -> float:
        gt_df = gt_df[["id", "discourse_type", "predictionstring"]].reset_index(drop=True).copy()
        pred_df = pred_df[["id", "class", "predictionstring"]].reset_index(drop=True).copy()
        pred_df["pred_id"] = pred_df.index
        gt_df["gt_id"] = gt_df.index
        joined = pred_df.merge(gt_df, left_on=["id", "class"], right_on=["id", "discourse_type"], how="outer", suffixes=("_pred", "_gt"))
        joined["predictionstring_gt"] = joined["predictionstring_gt"].fillna(" ")
        joined["predictionstring_pred"] = joined["predictionstring_pred"].fillna(" ")
        joined["overlaps"] = joined.apply(calc_overlap, axis=1)
        joined["overlap1"] = joined["overlaps"].apply(lambda x: eval(str(x))[0])
        joined["overlap2"] = joined["overlaps"].apply(lambda x: eval(str(x))[1])
        joined["potential_TP"] = (joined["overlap1"] >= 0.5) & (joined["overlap2"] >= 0.5)
        joined["max_overlap"] = joined[["overlap1", "overlap2"]].max(axis=1)
        tp_pred_ids = joined.query("potential_TP").sort_values("max_overlap", ascending=False).groupby(["id", "predictionstring_gt"]).first()["pred_id"].values
        fp_pred_ids = [p for p in joined["pred_id"].unique() if p not in tp_pred_ids]
        matched_gt_ids = joined.query("potential_TP")["gt_id"].unique()
        unmatched_gt_ids = [c for c in joined["gt_id"].unique() if c not in matched_gt_ids]
        tp, fp, fn = len(tp_pred_ids), len(fp_pred_ids), len(unmatched_gt_ids)
        return tp / (tp + 0.5 * (fp + fn))

    class_scores = []
    for cls in truth["discourse_type"].unique():
        class_scores.append(score_feedback_comp_micro(predictions.loc[predictions["class"] == cls], truth.loc[truth["discourse_type"] == cls]))
    return float(np.mean(class_scores))


def timed(function, repeats: int):
    """(best seconds, last result) of ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        began = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - began)
    return best, result


def process_seconds(command: list, repeats: int) -> float:
    """Best wall time of running ``command`` as a fresh process."""
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - began)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Kaggle layout directory with train.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the fast measurements (best is reported)")
    parser.add_argument("--skip-kaggle", action="store_true", help="skip the (slow) Kaggle notebook scorer")
    args = parser.parse_args()
    train_csv = args.data / "train.csv"
    if not train_csv.exists():
        sys.exit(f"{train_csv} not found (pass --data)")

    truth = pd.read_csv(train_csv, usecols=["id", "discourse_type", "predictionstring"])
    predictions = perturbed_predictions(truth, args.seed)
    print(f"config: python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), seed {args.seed}")
    print(f"truth: {len(truth):,} spans of {truth['id'].nunique():,} essays ({train_csv}); predictions: {len(predictions):,} spans")

    fbp_seconds, fbp_result = timed(lambda: score(predictions, truth), args.repeats)
    parsed_truth = parse_spans(truth)
    reused_seconds, _ = timed(lambda: score(predictions, parsed_truth), args.repeats)
    pandas_seconds, pandas_f1 = timed(lambda: pandas_score(predictions, truth), 1)
    print(f"fbp.metric.score      {fbp_seconds:8.3f} s  F1 {fbp_result.f1:.6f}  (best of {args.repeats}, both DataFrames parsed)")
    print(f"  with truth pre-parsed {reused_seconds:7.3f} s  (as in a training loop: parse_spans(truth) once)")
    print(f"pandas merge+apply    {pandas_seconds:8.3f} s  F1 {pandas_f1:.6f}")
    print(f"speed-up              {pandas_seconds / fbp_seconds:8.1f} x   F1s agree: {abs(fbp_result.f1 - pandas_f1) < 1e-12}")
    if not args.skip_kaggle:
        # On one validation fold's worth of essays (the size the difference is usually seen at).
        fold_ids = set(truth["id"].unique()[: len(truth["id"].unique()) // 5])
        fold_truth, fold_predictions = truth[truth["id"].isin(fold_ids)], predictions[predictions["id"].isin(fold_ids)]
        kaggle_seconds, kaggle_f1 = timed(lambda: kaggle_notebook_score(fold_predictions, fold_truth), 1)
        fold_f1 = score(fold_predictions, fold_truth).f1
        print(f"Kaggle notebook scorer on 1/5 of the essays ({len(fold_ids):,}): {kaggle_seconds:.3f} s, F1 {kaggle_f1:.6f} vs fbp {fold_f1:.6f} "
              f"(difference {kaggle_f1 - fold_f1:+.6f}: NaN ids of its outer join, see docs/metric.md)")

    with tempfile.TemporaryDirectory() as scratch:
        prediction_csv = Path(scratch) / "predictions.csv"
        predictions.to_csv(prediction_csv, index=False)
        read_only = [sys.executable, "-c", f"import pandas as pd; pd.read_csv({str(prediction_csv)!r}); pd.read_csv({str(train_csv)!r}, usecols=['id', 'discourse_type', 'predictionstring'])"]
        fbp_script = shutil.which("fbp")
        entry = [fbp_script] if fbp_script else [sys.executable, "-c", "from fbp.cli import main; main()"]
        evaluate = [*entry, "evaluate", str(prediction_csv), "--truth", str(train_csv)]
        read_seconds = process_seconds(read_only, 3)
        evaluate_seconds = process_seconds(evaluate, 3)
        print(f"process: python + pandas reading both CSVs   {read_seconds:6.3f} s")
        print(f"process: fbp evaluate PRED --truth train.csv {evaluate_seconds:6.3f} s  ({evaluate_seconds - read_seconds:+.3f} s for CLI imports, validation, scoring and the table)")

if __name__ == "__main__":
    main()
