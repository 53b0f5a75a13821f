"""The Kaggle submission: ``id,class,predictionstring``, one row per predicted span (an essay with no span has no row).

Reading one back (to score it) is :func:`fbp.io.kaggle.read_span_file`, the one reader of span files.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_file
from .kaggle import SPAN_COLUMNS

SUBMISSION_COLUMNS = SPAN_COLUMNS


def write_submission(path: Path, spans: "pd.DataFrame") -> None:  # noqa: F821
    """Write ``id,class,predictionstring`` atomically."""
    with atomic_file(Path(path), newline="") as file:
        spans[SUBMISSION_COLUMNS].to_csv(file, index=False, quoting=csv.QUOTE_MINIMAL)
