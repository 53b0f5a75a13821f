"""A checkpoint's fast tokenizer from its ``tokenizer.json`` alone, through the ``tokenizers`` library.

The ONNX runtimes run no PyTorch model, yet loading the tokenizer through transformers imports transformers and
torch: about 2 s of start-up and 200+ MB of memory (bench/RESULTS.md). :class:`TokenizerJson` gives
:func:`fbp.windows.make_windows` and the ONNX sessions what transformers' fast tokenizer gives them, by the same calls
to the same Rust tokenizer: pre-split words through ``encode_batch`` with the overflow truncation and stride that
transformers sets, each encoding's ``overflowing`` windows after it. ``fbp export`` checks that the two make identical
windows on its check texts and records the file's SHA-256 (:mod:`fbp.io.onnx_export`); the ONNX runtimes use this
class only while ``tokenizer.json`` still has that hash, else transformers' tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from .errors import FbpError

TOKENIZER_FILE = "tokenizer.json"
INPUT_KEYS = ("input_ids", "token_type_ids", "attention_mask")


class Encoded(dict):
    """What :func:`fbp.windows.make_windows` reads from a tokenizer call: lists per window, and ``word_ids(k)``."""

    def __init__(self, encodings: List[Any], sample_of_window: List[int]):
        super().__init__(
            input_ids=[encoding.ids for encoding in encodings],
            token_type_ids=[encoding.type_ids for encoding in encodings],
            attention_mask=[encoding.attention_mask for encoding in encodings],
            offset_mapping=[encoding.offsets for encoding in encodings],
            overflow_to_sample_mapping=sample_of_window,
        )
        self._encodings = encodings

    def word_ids(self, window: int) -> List[Any]:
        return self._encodings[window].word_ids


class TokenizerJson:
    """The windowing and padding interface fbp uses of a transformers fast tokenizer, without transformers."""

    def __init__(self, checkpoint: Path):
        from tokenizers import Tokenizer

        path = Path(checkpoint) / TOKENIZER_FILE
        try:
            self.backend = Tokenizer.from_file(str(path))
        except Exception as error:  # the tokenizers library raises its own Exception subclass for a bad file
            raise FbpError(f"cannot load {path}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
        self.pad_token_id = self._pad_token_id(Path(checkpoint))
        self.backend.no_padding()

    def _pad_token_id(self, checkpoint: Path) -> int:
        """The pad token's id as transformers reads it (``tokenizer_config.json``'s ``pad_token``), else 0."""
        try:
            pad_token = json.loads((checkpoint / "tokenizer_config.json").read_text(encoding="utf-8")).get("pad_token")
        except (OSError, ValueError, AttributeError):
            pad_token = None
        if isinstance(pad_token, dict):
            pad_token = pad_token.get("content")
        found = self.backend.token_to_id(pad_token) if isinstance(pad_token, str) else None
        return int(found) if found is not None else 0

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.backend.num_special_tokens_to_add(pair)

    def __call__(self, words_per_essay: Sequence[Sequence[str]], *, max_length: int, stride: int, **_: Any) -> Encoded:
        """Overflow windows of pre-split essays, as transformers' ``tokenizer(words, is_split_into_words=True,
        truncation=True, max_length=..., stride=..., return_overflowing_tokens=True)`` makes them."""
        self.backend.enable_truncation(max_length, stride=stride, strategy="longest_first", direction="right")
        encodings, sample_of_window = [], []
        for sample, encoding in enumerate(self.backend.encode_batch([list(words) for words in words_per_essay], is_pretokenized=True, add_special_tokens=True)):
            windows = [encoding] + list(encoding.overflowing or [])
            encodings.extend(windows)
            sample_of_window.extend([sample] * len(windows))
        return Encoded(encodings, sample_of_window)

    def pad(self, features: Sequence[Dict[str, Any]], return_tensors: str = "np") -> Dict[str, np.ndarray]:
        """Right-pad a batch of windows to its longest (``input_ids`` with the pad id, the rest with 0)."""
        longest = max(len(feature["input_ids"]) for feature in features)
        batch = {}
        for key in INPUT_KEYS:
            if key not in features[0]:
                continue
            fill = self.pad_token_id if key == "input_ids" else 0
            rows = np.full((len(features), longest), fill, dtype=np.int64)
            for row, feature in enumerate(features):
                rows[row, : len(feature[key])] = feature[key]
            batch[key] = rows
        return batch


def same_windows(tokenizer: Any, tokenizer_json: TokenizerJson, texts: Sequence[str], max_length: int, stride: int) -> bool:
    """Whether ``tokenizer_json`` makes exactly the windows (and padded batches) transformers' ``tokenizer`` makes."""
    from .windows import make_windows, model_features

    expected, got = make_windows(tokenizer, texts, max_length, stride), make_windows(tokenizer_json, texts, max_length, stride)
    if len(expected) != len(got):
        return False
    for mine, theirs in zip(got, expected):
        for key in ("input_ids", "attention_mask", "word_ids", "word_starts", "essay_index"):
            if not np.array_equal(np.asarray(mine[key]), np.asarray(theirs[key])):
                return False
    padded, reference = tokenizer_json.pad(model_features(got)), tokenizer.pad(model_features(expected), return_tensors="np")
    return all(np.array_equal(padded[key], np.asarray(reference[key])) for key in reference if key in padded)
