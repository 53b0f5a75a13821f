"""The word-probabilities file: one ``.npz`` per set of essays, holding the concatenated float16 rows, the
essay ids and where each essay's rows start, so 15,000 essays load in one read instead of 15,000 small arrays.

A run's out-of-fold file also records the fold each essay was validated in (``folds``), so whatever refits a
decoder on it cross-fits by those folds without rebuilding them (:mod:`fbp.post_training`). Files written
before that record have no ``folds`` array; :func:`load_folds` returns None for them and the caller says so.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import numpy as np

from ..atomic import atomic_file
from ..errors import FbpError
from ..labels import NUM_LABELS


def save_word_probs(path: Union[str, Path], word_probs: Mapping[str, np.ndarray], folds: Optional[Mapping[str, int]] = None) -> None:
    """Write ``{essay_id: (n_words, 15) array}`` as float16, atomically (complete or not at all); with ``folds``
    (``{essay_id: fold}`` for every essay), also the fold each essay was predicted out of."""
    path = Path(path)
    ids = list(word_probs)
    lengths = np.array([len(word_probs[i]) for i in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.concatenate([np.asarray(word_probs[i], dtype=np.float16) for i in ids]) if ids else np.zeros((0, NUM_LABELS), np.float16)
    arrays = {"ids": np.array(ids, dtype=str), "offsets": offsets, "probs": rows}
    if folds is not None:
        missing = [essay_id for essay_id in ids if essay_id not in folds]
        if missing:
            raise ValueError(f"no fold for {len(missing)} essays (e.g. {missing[0]}) of {path}")
        arrays["folds"] = np.array([int(folds[essay_id]) for essay_id in ids], dtype=np.int64)
    with atomic_file(path, "wb") as file:
        np.savez(file, **arrays)


def load_word_probs(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """Read a file written by :func:`save_word_probs` back into ``{essay_id: float32 array}``."""
    path = Path(path)
    try:
        with np.load(path) as stored:
            ids, offsets, rows = stored["ids"], stored["offsets"], stored["probs"].astype(np.float32)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        problem = "damaged or incomplete (not a complete .npz archive)" if isinstance(error, (zipfile.BadZipFile, EOFError)) else f"not an fbp word-probabilities file ({error})"
        raise FbpError(f"{path} is {problem}") from None
    return {str(essay_id): rows[offsets[i] : offsets[i + 1]] for i, essay_id in enumerate(ids)}


def load_folds(path: Union[str, Path]) -> Optional[Dict[str, int]]:
    """``{essay_id: fold}`` recorded in an out-of-fold file by :func:`save_word_probs`, or None when the file has no
    fold record (written before fbp recorded it, or not a run's out-of-fold file)."""
    path = Path(path)
    try:
        with np.load(path) as stored:
            if "folds" not in stored.files:
                return None
            ids, folds = stored["ids"], stored["folds"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        problem = "damaged or incomplete (not a complete .npz archive)" if isinstance(error, (zipfile.BadZipFile, EOFError)) else f"not an fbp word-probabilities file ({error})"
        raise FbpError(f"{path} is {problem}") from None
    if len(folds) != len(ids):
        raise FbpError(f"{path} is not an fbp word-probabilities file ({len(folds)} folds for {len(ids)} essays)")
    return {str(essay_id): int(fold) for essay_id, fold in zip(ids, folds)}


def probs_path(target: Union[str, Path]) -> Path:
    """Where to save word probabilities: a ``.npz`` file as given, or ``word_probs.npz`` inside a directory."""
    target = Path(target)
    return target if target.suffix == ".npz" else target / "word_probs.npz"
