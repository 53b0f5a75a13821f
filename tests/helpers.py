"""Small helpers shared by the tests (BIO labels <-> spans for building and checking fixtures)."""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import numpy as np

from fbp.labels import CLASSES, NUM_LABELS, begin_id, inside_id


def word_labels_from_spans(spans: Iterable[Tuple[str, int, int]], n_words: int) -> np.ndarray:
    """BIO label ids (one per word) for spans ``(class_name, start, end_exclusive)``; other words are ``O``."""
    labels = np.zeros(n_words, dtype=np.int8)
    for class_name, start, end in spans:
        labels[start:end] = inside_id(CLASSES.index(class_name))
        labels[start] = begin_id(CLASSES.index(class_name))
    return labels


def spans_from_word_labels(word_labels: Sequence[int]) -> List[Tuple[str, int, int]]:
    """The spans fbp's decoder reads from a BIO label sequence (each word certain of its label, no thresholds)."""
    from fbp.config import ThresholdConfig
    from fbp.decode import decode_spans

    one_hot = np.eye(NUM_LABELS, dtype=np.float32)[np.asarray(word_labels, dtype=np.int64)]
    return decode_spans(one_hot, ThresholdConfig(min_words={}, min_confidence={}))


def predictionstring(start: int, end: int) -> str:
    """The Kaggle ``predictionstring`` of the word range ``[start, end)``."""
    return " ".join(map(str, range(start, end)))
