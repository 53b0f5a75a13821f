"""The processed dataset written by ``fbp preprocess``: ``essays.parquet`` (id, text, fold, n_words,
word_labels), ``spans.parquet`` (id, class, predictionstring) and ``meta.json`` (format, folds, seed, counts).

This module is the only one that reads or writes those files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..atomic import write_dir_atomically
from ..errors import FbpError

FORMAT = "fbp-processed-v1"


@dataclass
class ProcessedData:
    """A processed dataset: essays (id, text, fold, n_words, word_labels), spans (id, class, predictionstring), meta."""

    essays: "pd.DataFrame"  # noqa: F821
    spans: "pd.DataFrame"  # noqa: F821
    meta: dict

    def fingerprint(self) -> str:
        """A hash of what training reads (ids, texts, folds, word labels, spans): the same data, the same fingerprint.

        A run records it, so that resuming against a processed folder made again with other settings is refused.
        """
        import hashlib

        import numpy as np
        import pandas as pd

        digest = hashlib.sha256()
        columns = [column for column in ("id", "text", "fold", "n_words") if column in self.essays.columns]
        digest.update(pd.util.hash_pandas_object(self.essays[columns], index=False).to_numpy().tobytes())
        if "word_labels" in self.essays.columns and len(self.essays):
            digest.update(np.concatenate([np.asarray(labels, dtype=np.int8) for labels in self.essays["word_labels"]]).tobytes())
        digest.update(pd.util.hash_pandas_object(self.spans.astype(str), index=False).to_numpy().tobytes())
        return digest.hexdigest()


def is_processed_dir(directory: Path) -> bool:
    """True for a directory holding a processed dataset (its ``meta.json`` names this format)."""
    try:
        return json.loads((Path(directory) / "meta.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_processed(directory: Path, essays: "pa.Table", spans: "pd.DataFrame", meta: Dict[str, Any]) -> None:  # noqa: F821
    """Write a processed dataset atomically: a directory that is complete, or the previous one untouched.

    ``meta`` gets the ``format`` key; an existing directory is replaced only if it is a processed dataset.
    """
    import pyarrow.parquet as pq

    meta = {"format": FORMAT, **meta}

    def write(staging: Path) -> None:
        pq.write_table(essays, staging / "essays.parquet")
        spans.to_parquet(staging / "spans.parquet", index=False)
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    write_dir_atomically(Path(directory), write, replaceable=is_processed_dir)


def read_processed_meta(directory: Path) -> Optional[Dict[str, Any]]:
    """``meta.json`` of a processed dataset (folds, seed, counts), or None when there is no readable one."""
    try:
        meta = json.loads((Path(directory) / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def load_processed(directory: Path) -> ProcessedData:
    """Load a dataset written by ``fbp preprocess``; FbpError if it is missing or not one."""
    import pandas as pd

    directory = Path(directory)
    if not directory.is_dir():
        raise FbpError(f"{directory}: no processed dataset there (make one with `fbp preprocess DATA_DIR -o {directory}`)")
    if not is_processed_dir(directory):
        raise FbpError(f"{directory}: not an fbp processed dataset (no meta.json with format {FORMAT!r}); run `fbp preprocess`")
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise FbpError(f"{directory / 'meta.json'}: unreadable ({str(error)[:200]}); run `fbp preprocess` again") from None
    try:
        essays = pd.read_parquet(directory / "essays.parquet")
        spans = pd.read_parquet(directory / "spans.parquet")
    except (OSError, ValueError, ArithmeticError) as error:
        raise FbpError(f"{directory}: unreadable processed dataset ({str(error)[:200]}); run `fbp preprocess` again") from None
    check_processed(directory, essays, spans, meta)
    return ProcessedData(essays=essays, spans=spans, meta=meta)


def check_processed(directory: Path, essays, spans, meta: Dict[str, Any]) -> None:
    """Every column of a processed dataset checked before training reads it (a label out of range would fail
    mid-epoch; a fold out of range would train on nothing): one message naming the file and the essay."""
    import numpy as np

    from ..labels import CLASSES, NUM_LABELS

    essays_file, spans_file, meta_file = directory / "essays.parquet", directory / "spans.parquet", directory / "meta.json"

    def bad(file: Path, what: str) -> FbpError:
        return FbpError(f"{file}: {what}; the processed dataset is damaged (run `fbp preprocess` again)")

    folds = meta.get("folds")
    if not isinstance(folds, int) or isinstance(folds, bool) or not 2 <= folds <= 1000:
        raise bad(meta_file, f"folds must be a whole number from 2, got {str(folds)[:40]!r}")
    missing = [column for column in ("id", "text", "fold", "n_words", "word_labels") if column not in essays.columns]
    if missing:
        raise bad(essays_file, f"missing column(s) {', '.join(missing)}")
    ids = essays["id"]
    if not all(isinstance(value, str) and value for value in ids):
        raise bad(essays_file, "every essay needs a non-empty text id")
    if ids.duplicated().any():
        raise bad(essays_file, f"essay {str(ids[ids.duplicated()].iloc[0])[:60]!r} appears twice")
    if not all(isinstance(value, str) for value in essays["text"]):
        raise bad(essays_file, "every essay needs its text")
    for column, low, high in (("fold", 0, folds - 1), ("n_words", 0, 10_000_000)):
        values = essays[column]
        if values.dtype.kind not in "iu" or (len(values) and (values.min() < low or values.max() > high)):
            raise bad(essays_file, f"{column} must be whole numbers from {low} to {high}")
    for essay_id, n_words, labels in zip(ids, essays["n_words"], essays["word_labels"]):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != n_words or (len(labels) and (labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= NUM_LABELS)):
            raise bad(essays_file, f"essay {essay_id}: word labels must be {n_words} label ids from 0 to {NUM_LABELS - 1}")
    missing = [column for column in ("id", "class", "predictionstring") if column not in spans.columns]
    if missing:
        raise bad(spans_file, f"missing column(s) {', '.join(missing)}")
    unknown = ~spans["class"].isin(CLASSES)
    if unknown.any():
        raise bad(spans_file, f"row {int(np.argmax(unknown.to_numpy())) + 1}: unknown class {str(spans['class'][unknown].iloc[0])[:40]!r}")
    foreign = ~spans["id"].isin(set(ids))
    if foreign.any():
        raise bad(spans_file, f"row {int(np.argmax(foreign.to_numpy())) + 1}: essay {str(spans['id'][foreign].iloc[0])[:60]!r} is not in essays.parquet")


def spans_path(directory: Path) -> Path:
    """Where a processed dataset keeps its ground-truth spans."""
    return Path(directory) / "spans.parquet"
