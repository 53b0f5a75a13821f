"""Word probabilities: one ``(n_words, 15)`` array per essay, the meeting point of every model.

Stitching token windows into word probabilities, predicting them with a model, and averaging several
models' sets. Their file format (``.npz``) is :mod:`fbp.io.word_probs`.
"""

from __future__ import annotations

import math
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import FbpError, UsageError
from .labels import NUM_LABELS

if TYPE_CHECKING:
    import torch


def stitch_word_probs(
    window_token_probs: Sequence[np.ndarray], windows_meta: Sequence[Mapping], n_words: Sequence[int]
) -> List[np.ndarray]:
    """Combine per-token probabilities of overlapping windows into one ``(n_words, 15)`` array per essay.

    ``window_token_probs[k]`` holds the probabilities of window ``k``'s tokens (rows beyond its
    ``word_ids`` are padding and ignored); ``windows_meta[k]`` is its metadata from
    :func:`fbp.windows.window_metadata`; ``n_words[e]`` is the word count of essay ``e``.

    A word takes the probabilities of its first sub-token (the token it was trained on). Where
    windows overlap, the word is read from the window in which that token sits furthest from a
    window edge that cuts the essay (BERT's "max context" rule for SQuAD): a token near a cut sees
    only one side of its sentence, and averaging would mix that weaker prediction back in. With
    stride S every word then has at least S/2 tokens of context on both sides.

    A word that yields no token at all (e.g. only characters the tokenizer drops) copies the
    previous word's row (the first word of an essay copies the next), so every word gets a row.
    """
    stitched = [np.zeros((count, NUM_LABELS), dtype=np.float32) for count in n_words]
    best_context = [np.full(count, -1, dtype=np.int64) for count in n_words]
    for index, (token_probs, meta) in enumerate(zip(window_token_probs, windows_meta)):
        essay = meta["essay_index"]
        word_ids = np.asarray(meta["word_ids"])
        text_positions = np.flatnonzero(word_ids >= 0)
        if len(text_positions) == 0:
            continue
        cuts_left = index > 0 and windows_meta[index - 1]["essay_index"] == essay
        cuts_right = index + 1 < len(windows_meta) and windows_meta[index + 1]["essay_index"] == essay
        unbounded = len(word_ids)  # more context than any cut window can offer
        left_context = text_positions - text_positions[0] if cuts_left else np.full(len(text_positions), unbounded)
        right_context = text_positions[-1] - text_positions if cuts_right else np.full(len(text_positions), unbounded)
        context = np.minimum(left_context, right_context)
        is_start = np.asarray(meta["word_starts"])[text_positions]
        words = word_ids[text_positions][is_start]
        context = context[is_start]
        better = context > best_context[essay][words]
        stitched[essay][words[better]] = np.asarray(token_probs, dtype=np.float32)[text_positions[is_start][better]]
        best_context[essay][words[better]] = context[better]
    for essay_probs, context in zip(stitched, best_context):
        _fill_untokenized_words(essay_probs, context >= 0)
    return stitched


def _fill_untokenized_words(essay_probs: np.ndarray, covered: np.ndarray) -> None:
    if covered.all() or not covered.any():
        if not covered.any() and len(covered):
            essay_probs[:] = np.eye(NUM_LABELS, dtype=np.float32)[0]  # nothing readable: all "O"
        return
    covered_positions = np.flatnonzero(covered)
    for word in np.flatnonzero(~covered):
        before = covered_positions[covered_positions < word]
        source = before[-1] if len(before) else covered_positions[0]
        essay_probs[word] = essay_probs[source]


def predict_word_probs(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    max_length: int,
    stride: int,
    batch_size: int,
    device: Optional[Union[str, "torch.device"]] = None,
    on_progress: Optional[Callable[[float], None]] = None,
    chunk_essays: int = 256,
) -> Iterator[Tuple[int, np.ndarray]]:
    """Stream ``(essay_index, word_probs)`` for every essay of ``texts``, in order, with a PyTorch model.

    Runs under ``torch.inference_mode`` with fp16/bf16 autocast on a GPU; the model is put in eval mode and given
    back in the mode it came in. The windowing, batching and stitching are :func:`stream_word_probs`'s, shared
    with the ONNX Runtime sessions (:mod:`fbp.onnx_runtime`), so every runtime meets the same decoding.
    """
    import torch

    from .device import autocast as device_autocast

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model_device = next(model.parameters()).device
    if model_device != device:
        model.to(device)
    autocast = device_autocast(device)
    was_training = model.training
    model.eval()

    def forward(features: List[Dict[str, Any]]) -> np.ndarray:
        batch = tokenizer.pad(features, return_tensors="pt")
        batch = {key: value.to(device) for key, value in batch.items()}
        with torch.inference_mode(), autocast:
            logits = model(**batch).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    try:
        yield from stream_word_probs(forward, tokenizer, texts, max_length, stride, batch_size, on_progress, chunk_essays)
    finally:
        model.train(was_training)
        if model_device != device:
            model.to(model_device)


def stream_word_probs(
    forward: Callable[[List[Dict[str, Any]]], np.ndarray],
    tokenizer: Any,
    texts: Iterable[str],
    max_length: int,
    stride: int,
    batch_size: int,
    on_progress: Optional[Callable[[float], None]] = None,
    chunk_essays: int = 256,
) -> Iterator[Tuple[int, np.ndarray]]:
    """Stream ``(essay_index, word_probs)`` for every essay of ``texts``, in order, whatever runs the model.

    ``forward(features)`` takes a batch of windows (dicts of model inputs, unpadded) and returns their token
    probabilities, ``(batch, longest window, 15)``. Essays are read ``chunk_essays`` at a time, so memory stays
    bounded however many there are. Within a chunk the windows are sorted by length and each batch is padded only
    to its longest window. ``texts`` may be any iterable (a generator reading files works). ``on_progress(essays)``
    is called as work advances, with the (fractional) number of essays just done.
    """
    from .windows import check_window_settings, make_windows, model_features, window_metadata

    check_window_settings(tokenizer, max_length, stride)
    texts_iterator = iter(texts)
    first_index = 0
    while True:
        chunk = list(itertools.islice(texts_iterator, chunk_essays))
        if not chunk:
            break
        windows = make_windows(tokenizer, chunk, max_length, stride)
        features, meta = model_features(windows), window_metadata(windows)
        token_probs: List[Optional[np.ndarray]] = [None] * len(windows)
        by_length = sorted(range(len(windows)), key=lambda k: len(features[k]["input_ids"]))
        for start in range(0, len(by_length), batch_size):
            batch_indices = by_length[start : start + batch_size]
            probs = forward([features[k] for k in batch_indices])
            for row, k in enumerate(batch_indices):
                token_probs[k] = probs[row, : len(features[k]["input_ids"])]
            if on_progress is not None:
                on_progress(len(chunk) * len(batch_indices) / len(windows))  # smooth progress within a chunk
        n_words = [len(text.split()) for text in chunk]
        for offset, essay_probs in enumerate(stitch_word_probs(token_probs, meta, n_words)):
            yield first_index + offset, essay_probs
        first_index += len(chunk)


def normalise_weights(weights: Optional[Sequence[float]], n_members: int) -> List[float]:
    """One weight per ensemble member, summing to 1 (default: equal); UsageError when they cannot be."""
    if weights is None or len(weights) == 0:
        return [1.0 / n_members] * n_members
    weights = [float(weight) for weight in weights]
    if len(weights) != n_members:
        raise UsageError(f"{len(weights)} weight{'s' if len(weights) != 1 else ''} for {n_members} model{'s' if n_members != 1 else ''}; "
                         "give one weight per checkpoint, run or probabilities file")
    if not all(math.isfinite(weight) for weight in weights):
        raise UsageError(f"weights must be finite numbers, got {', '.join(f'{weight:g}' for weight in weights)}")
    if any(weight < 0 for weight in weights) or sum(weights) <= 0:
        raise UsageError(f"weights must be non-negative and not all zero, got {weights}")
    return [weight / sum(weights) for weight in weights]


def average_word_probs(members: Sequence[Mapping[str, np.ndarray]], weights: Optional[Sequence[float]] = None) -> Dict[str, np.ndarray]:
    """Weighted average of several ``{essay_id: (n_words, 15)}`` sets (weights are normalised to sum 1).

    Every member must cover the same essays with the same word counts; the models behind them may
    use entirely different tokenizers, since all of them meet at the word level.
    """
    if not members:
        raise UsageError("nothing to average: no word probabilities given")
    weights = normalise_weights(weights, len(members))
    essay_ids = list(members[0])
    for number, member in enumerate(members[1:], start=2):
        missing = set(essay_ids) ^ set(member)
        if missing:
            raise FbpError(f"model {number} has word probabilities for different essays than model 1 (e.g. '{sorted(missing)[0]}')")
    averaged = {}
    for essay_id in essay_ids:
        shapes = {member[essay_id].shape for member in members}
        if len(shapes) > 1:
            raise FbpError(f"essay '{essay_id}': models disagree on its shape {sorted(shapes)} (different texts?)")
        averaged[essay_id] = sum(weight * np.asarray(member[essay_id], dtype=np.float32) for weight, member in zip(weights, members))
    return averaged
