"""Benchmark: `fbp preprocess` on the shared Kaggle data against a notebook-style pandas implementation.

Both run as child processes on the same data; for each: wall time and peak RSS of that child (os.wait4).
The baseline is the usual Kaggle-notebook way: per essay, read its text, filter the table by id, walk
the rows with iterrows and set "B-"/"I-" string labels word by word, then MultilabelStratifiedKFold on
one-hot classes. It validates nothing. Both outputs are compared label for label.

    python bench/bench_preprocess.py [DATA_DIR] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021"


def notebook_baseline(data_dir: Path, output_dir: Path, n_folds: int = 5, seed: int = 42) -> None:
    """The straightforward pandas version, as in popular competition notebooks (no validation)."""
    import numpy as np
    import pandas as pd
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    from fbp.labels import LABEL2ID

    train = pd.read_csv(data_dir / "train.csv")
    rows = []
    for essay_id in sorted(train["id"].unique()):
        with open(data_dir / "train" / f"{essay_id}.txt", encoding="utf-8") as file:
            text = file.read()
        entities = ["O"] * len(text.split())
        for _, row in train[train["id"] == essay_id].iterrows():
            word_indices = [int(index) for index in row["predictionstring"].split(" ")]
            entities[word_indices[0]] = f"B-{row['discourse_type']}"
            for index in word_indices[1:]:
                entities[index] = f"I-{row['discourse_type']}"
        rows.append({"id": essay_id, "text": text, "word_labels": [LABEL2ID[label] for label in entities]})
    essays = pd.DataFrame(rows)
    classes = pd.get_dummies(train[["id", "discourse_type"]], columns=["discourse_type"]).groupby("id").max()
    classes = classes.loc[essays["id"]]
    essays["fold"] = -1
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, validation) in enumerate(splitter.split(essays, classes.to_numpy(dtype=int))):
        essays.loc[validation, "fold"] = fold
    essays["word_labels"] = essays["word_labels"].apply(lambda labels: np.array(labels, dtype=np.int8))
    output_dir.mkdir(parents=True, exist_ok=True)
    essays.to_parquet(output_dir / "essays.parquet")


def run_child(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit status of one child process."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        sys.stderr.write(child.stderr.read().decode())
    return wall, usage.ru_maxrss / 1024, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--skip-baseline", action="store_true", help="Time only fbp preprocess.")
    parser.add_argument("--baseline-child", nargs=2, type=Path, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        notebook_baseline(*args.baseline_child)
        return
    if not (args.data_dir / "train.csv").is_file():
        sys.exit(f"no Kaggle layout at {args.data_dir}")

    import numpy as np
    import pandas as pd

    from fbp.io.processed import load_processed

    fbp_command = [sys.executable, "-c", "from fbp.cli import main; main()"]
    print(f"data: {args.data_dir}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"pandas {pd.__version__}")
    with tempfile.TemporaryDirectory() as scratch:
        fbp_out, baseline_out = Path(scratch) / "fbp", Path(scratch) / "baseline"
        results = {"fbp preprocess": run_child([*fbp_command, "preprocess", str(args.data_dir), "-o", str(fbp_out)])}
        if not args.skip_baseline:
            results["notebook pandas loop"] = run_child(
                [sys.executable, __file__, "--baseline-child", str(args.data_dir), str(baseline_out)]
            )
        print(f"{'implementation':<22} {'wall s':>8} {'peak RSS MiB':>13} {'exit':>5}")
        for name, (wall, rss, status) in results.items():
            print(f"{name:<22} {wall:>8.1f} {rss:>13.0f} {status:>5}")
        ours = load_processed(fbp_out).essays
        print(f"essays {len(ours):,}, words {int(ours['n_words'].sum()):,}")
        if not args.skip_baseline:
            (fbp_wall, fbp_rss, _), (base_wall, base_rss, _) = results.values()
            print(f"speed-up (baseline wall / fbp wall): {base_wall / fbp_wall:.1f}x; memory ratio (fbp / baseline): {fbp_rss / base_rss:.2f}")
            theirs = pd.read_parquet(baseline_out / "essays.parquet")
            same = (ours["id"].tolist() == theirs["id"].tolist()) and all(
                np.array_equal(left, right) for left, right in zip(ours["word_labels"], theirs["word_labels"])
            )
            print(f"word labels identical to the baseline: {same}")


if __name__ == "__main__":
    main()
