"""The word-probabilities file: one ``.npz`` per set of essays, holding the concatenated float16 rows, the
essay ids and where each essay's rows start, so 15,000 essays load in one read instead of 15,000 small arrays.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, Mapping, Union

import numpy as np

from ..atomic import atomic_file
from ..errors import FbpError
from ..labels import NUM_LABELS


def save_word_probs(path: Union[str, Path], word_probs: Mapping[str, np.ndarray]) -> None:
    """Write ``{essay_id: (n_words, 15) array}`` as float16, atomically (complete or not at all)."""
    path = Path(path)
    ids = list(word_probs)
    lengths = np.array([len(word_probs[i]) for i in ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    rows = np.concatenate([np.asarray(word_probs[i], dtype=np.float16) for i in ids]) if ids else np.zeros((0, NUM_LABELS), np.float16)
    with atomic_file(path, "wb") as file:
        np.savez(file, ids=np.array(ids, dtype=str), offsets=offsets, probs=rows)


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


def probs_path(target: Union[str, Path]) -> Path:
    """Where to save word probabilities: a ``.npz`` file as given, or ``word_probs.npz`` inside a directory."""
    target = Path(target)
    return target if target.suffix == ".npz" else target / "word_probs.npz"
