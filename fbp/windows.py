"""Essays -> token windows: the only tokenizer-specific step between words and a model.

Each essay is split into words (``text.split()``) and handed to the fast tokenizer as pre-split words
(``is_split_into_words=True``), so every token knows its word (``word_ids``) whatever the tokenizer
(WordPiece, byte-level BPE, SentencePiece). Long essays are cut by the tokenizer's own overflow
machinery (``return_overflowing_tokens`` with ``stride``): consecutive windows share ``stride``
tokens and together cover every token, so no word is ever truncated away.

Why overflow windows rather than cutting one long encoding by hand: the tokenizer knows its special
tokens, its maximum length and its stride rules for every model family, and does it in Rust for a
whole batch of essays at once. The one thing it does not say is whether the first token of a window
starts a word or continues one cut at the window edge; the offset mapping answers that (a word's
first sub-token starts at character 0 of the word).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import UsageError
from .labels import ID2LABEL, LABEL2ID

IGNORE_INDEX = -100  # the label id the loss skips (PyTorch's CrossEntropyLoss default)
NO_WORD = -1  # word id of special and padding tokens
MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
META_KEYS = ("essay_index", "word_ids", "word_starts")

# Label id of B-<class> -> label id of I-<class>, for continuation sub-tokens when every sub-token is labelled.
_INSIDE_OF = {i: LABEL2ID["I-" + name[2:]] if name.startswith("B-") else i for i, name in ID2LABEL.items()}


def content_length(tokenizer: Any, max_length: int) -> int:
    """Tokens of text per window: ``max_length`` minus the special tokens the tokenizer adds."""
    return max_length - tokenizer.num_special_tokens_to_add(pair=False)


def check_window_settings(tokenizer: Any, max_length: int, stride: int) -> None:
    """Raise :class:`UsageError` when ``stride``/``max_length`` cannot make progress through an essay."""
    room = content_length(tokenizer, max_length)
    if room < 1:
        raise UsageError(f"max_length {max_length} leaves no room for text next to the tokenizer's special tokens")
    if stride >= room:
        raise UsageError(
            f"stride ({stride}) must be smaller than the text tokens per window ({room} = max_length {max_length} "
            f"minus {max_length - room} special tokens)"
        )


def make_windows(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    stride: int,
    word_labels: Optional[Sequence[Sequence[int]]] = None,
    label_subtokens: str = "first",
) -> List[Dict[str, Any]]:
    """Turn essays into overlapping token windows that together cover every word.

    Returns one dict per window, windows of an essay consecutive and in order, with
    ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model takes them), ``labels``
    when ``word_labels`` (one label id per word of ``text.split()``) are given, and the metadata for
    stitching: ``essay_index`` (position in ``texts``), ``word_ids`` (word index per token, -1 for
    special tokens) and ``word_starts`` (True on the first sub-token of each word).

    ``label_subtokens="first"`` puts a word's label on its first sub-token and -100 on the rest;
    ``"all"`` labels every sub-token, continuation tokens turning ``B-X`` into ``I-X``.
    """
    if label_subtokens not in ("first", "all"):
        raise UsageError(f"label_subtokens must be 'first' or 'all', got '{label_subtokens}'")
    if word_labels is not None and len(word_labels) != len(texts):
        raise UsageError(f"{len(word_labels)} label sequences for {len(texts)} essays")
    check_window_settings(tokenizer, max_length, stride)
    if len(texts) == 0:
        return []
    words_per_essay = [text.split() for text in texts]
    encoding = tokenizer(
        words_per_essay,
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    input_keys = [key for key in MODEL_INPUT_KEYS if key in encoding]
    windows = []
    for window_index, essay_index in enumerate(encoding["overflow_to_sample_mapping"]):
        word_ids = np.array([NO_WORD if w is None else w for w in encoding.word_ids(window_index)], dtype=np.int32)
        char_starts = np.array([start for start, _ in encoding["offset_mapping"][window_index]], dtype=np.int32)
        continues_essay = window_index > 0 and encoding["overflow_to_sample_mapping"][window_index - 1] == essay_index
        word_starts = _first_subtokens(word_ids, char_starts, continues_essay)
        window = {key: encoding[key][window_index] for key in input_keys}
        window.update(essay_index=int(essay_index), word_ids=word_ids, word_starts=word_starts)
        if word_labels is not None:
            window["labels"] = _token_labels(word_labels[essay_index], word_ids, word_starts, label_subtokens, essay_index, len(words_per_essay[essay_index]))
        windows.append(window)
    return windows


def _first_subtokens(word_ids: np.ndarray, char_starts: np.ndarray, continues_essay: bool) -> np.ndarray:
    """True on each token that begins its word.

    Inside a window a word begins where the word id changes. The first text token of a window that
    continues an essay is the exception: the window edge may cut a word, so it begins the word only
    if it starts at the word's first character.
    """
    previous = np.concatenate([[NO_WORD], word_ids[:-1]])
    starts = (word_ids != NO_WORD) & (word_ids != previous)
    first_text_token = np.flatnonzero(word_ids != NO_WORD)[:1]
    if continues_essay and len(first_text_token):
        starts[first_text_token] = char_starts[first_text_token] == 0
    return starts


def _token_labels(
    labels_of_words: Sequence[int], word_ids: np.ndarray, word_starts: np.ndarray, label_subtokens: str, essay_index: int, n_words: int
) -> List[int]:
    if len(labels_of_words) != n_words:
        raise UsageError(f"essay {essay_index}: {len(labels_of_words)} word labels for {n_words} words")
    word_label_array = np.asarray(labels_of_words, dtype=np.int64)
    token_labels = np.full(len(word_ids), IGNORE_INDEX, dtype=np.int64)
    in_words = word_ids != NO_WORD
    if label_subtokens == "first":
        token_labels[word_starts] = word_label_array[word_ids[word_starts]]
    else:
        token_labels[in_words] = word_label_array[word_ids[in_words]]
        continuation = in_words & ~word_starts
        token_labels[continuation] = [_INSIDE_OF[label] for label in token_labels[continuation]]
    return token_labels.tolist()


def model_features(windows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The windows as a torch-Dataset-ready list: model inputs (and labels) only, for ``DataCollatorForTokenClassification``."""
    keep = set(MODEL_INPUT_KEYS) | {"labels"}
    return [{key: value for key, value in window.items() if key in keep} for window in windows]


def window_metadata(windows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """What stitching needs from each window: ``essay_index``, ``word_ids`` and ``word_starts``."""
    return [{key: window[key] for key in META_KEYS} for window in windows]
