"""The processed dataset written by ``fbp preprocess``: ``essays.parquet`` (id, text, fold, n_words,
word_labels), ``spans.parquet`` (id, class, predictionstring) and ``meta.json`` (format, folds, seed, counts).

This module is the only one that reads or writes those files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict

from ..atomic import write_dir_atomically
from ..errors import FbpError

FORMAT = "fbp-processed-v1"


@dataclass
class ProcessedData:
    """A processed dataset: essays (id, text, fold, n_words, word_labels), spans (id, class, predictionstring), meta."""

    essays: "pd.DataFrame"  # noqa: F821
    spans: "pd.DataFrame"  # noqa: F821
    meta: dict


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


def load_processed(directory: Path) -> ProcessedData:
    """Load a dataset written by ``fbp preprocess``; FbpError if it is missing or not one."""
    import pandas as pd

    directory = Path(directory)
    if not directory.is_dir():
        raise FbpError(f"{directory}: no processed dataset there (make one with `fbp preprocess DATA_DIR -o {directory}`)")
    if not is_processed_dir(directory):
        raise FbpError(f"{directory}: not an fbp processed dataset (no meta.json with format {FORMAT!r}); run `fbp preprocess`")
    meta = json.loads((directory / "meta.json").read_text())
    try:
        essays = pd.read_parquet(directory / "essays.parquet")
        spans = pd.read_parquet(directory / "spans.parquet")
    except (OSError, ValueError) as error:
        raise FbpError(f"{directory}: unreadable processed dataset ({error}); run `fbp preprocess` again") from error
    return ProcessedData(essays=essays, spans=spans, meta=meta)


def spans_path(directory: Path) -> Path:
    """Where a processed dataset keeps its ground-truth spans."""
    return Path(directory) / "spans.parquet"
