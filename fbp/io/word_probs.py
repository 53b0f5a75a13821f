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
    """Read a file written by :func:`save_word_probs` back into ``{essay_id: float32 array}``.

    Checked in full before use: ids unique non-empty strings, offsets starting at 0 and never decreasing up to
    the number of rows, rows of 15 probabilities, each finite and within [0, 1]. Anything else is one message naming
    the file and what is wrong, never a silently different prediction.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as stored:
            ids, offsets, rows = stored["ids"], stored["offsets"], stored["probs"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
        problem = "damaged or incomplete (not a complete .npz archive)" if isinstance(error, (zipfile.BadZipFile, EOFError)) else f"not an fbp word-probabilities file ({str(error)[:200]})"
        raise FbpError(f"{path} is {problem}") from None
    _check(path, ids, offsets, rows)
    rows = rows.astype(np.float32)
    return {str(essay_id): rows[offsets[i] : offsets[i + 1]] for i, essay_id in enumerate(ids)}


def _check(path: Path, ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> None:
    def bad(what: str) -> FbpError:
        return FbpError(f"{path}: {what}; the word-probabilities file is damaged (write it again)")

    if ids.ndim != 1 or ids.dtype.kind != "U":
        raise bad(f"ids must be a list of strings, found {ids.dtype} of shape {ids.shape}")
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) != len(ids) + 1:
        raise bad(f"offsets must be {len(ids) + 1} integers (one more than the ids), found {offsets.dtype} of shape {offsets.shape}")
    if rows.ndim != 2 or rows.shape[1] != NUM_LABELS or rows.dtype.kind != "f":
        raise bad(f"probs must be rows of {NUM_LABELS} probabilities, found {rows.dtype} of shape {rows.shape}")
    if offsets[0] != 0 or offsets[-1] != len(rows) or (np.diff(offsets) < 0).any():
        raise bad(f"offsets must start at 0, never decrease and end at the {len(rows):,} rows")
    if len(ids):
        empty = np.char.str_len(ids) == 0
        if empty.any():
            raise bad(f"essay {int(np.argmax(empty))} has an empty id")
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise bad(f"essay id {str(unique[np.argmax(counts > 1)])[:60]!r} appears {int(counts.max())} times")
    for start in range(0, len(rows), 1 << 20):  # in chunks: a float32 copy of all rows at once is 4x the file
        chunk = rows[start : start + (1 << 20)]
        if not np.isfinite(chunk).all():
            raise bad(f"row {start + int(np.argmax(~np.isfinite(chunk).all(axis=1)))} holds NaN or infinite probabilities")
        if (chunk < 0).any() or (chunk > 1.001).any():  # float16 rounding may pass 1 by a hair
            raise bad(f"row {start + int(np.argmax(((chunk < 0) | (chunk > 1.001)).any(axis=1)))} holds probabilities outside [0, 1]")


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
    if len(folds) != len(ids) or folds.ndim != 1 or folds.dtype.kind not in "iu" or (len(folds) and not 0 <= folds.min() <= folds.max() <= 1000):
        raise FbpError(f"{path}: folds must be {len(ids)} fold numbers (0 to 1000), one per essay; the file is damaged")
    return {str(essay_id): int(fold) for essay_id, fold in zip(ids, folds)}


def probs_path(target: Union[str, Path]) -> Path:
    """Where to save word probabilities: a ``.npz`` file as given, or ``word_probs.npz`` inside a directory."""
    target = Path(target)
    return target if target.suffix == ".npz" else target / "word_probs.npz"
