"""Fast parsing of predictionstrings (whitespace-separated word indices) straight from Arrow's string buffer.

The competition metric (:mod:`fbp.metric`) parses every prediction and ground-truth span through here. Rows are
parsed with numpy in ~1 MB chunks (each token's digits read as one integer and converted with SWAR arithmetic),
then every span becomes runs of consecutive word indices (one run for the usual contiguous span). Time and memory
are linear in the text.
"""

from __future__ import annotations

from typing import Callable, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import FbpError

def strings_array(values: pd.Series) -> pa.Array:
    """A column as one Arrow string array (zero-copy for pandas' Arrow-backed strings)."""
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return array
    if pa.types.is_null(array.type):
        return array.cast(pa.string())
    # Numbers (e.g. a one-word predictionstring read as an integer) as their text.
    return pa.array([None if pd.isna(value) else str(value) for value in values], type=pa.string())


def first_row(mask) -> int:
    """1-based number of the first data row where ``mask`` is true."""
    return int(np.argmax(np.asarray(mask))) + 1


def _bad_word_list(row: int, strings: pd.Series, essay_ids: pa.Array, where: Callable[[int], str], what: str) -> FbpError:
    value = strings.iloc[row - 1]
    shown = f"predictionstring {value!r}" if isinstance(value, str) else "predictionstring"
    return FbpError(f"{where(row)} (essay {essay_ids[row - 1].as_py()}): {shown} {what}")


def parse_word_lists(strings: pd.Series, essay_ids: pa.Array, where: Callable[[int], str]) -> Tuple[np.ndarray, np.ndarray]:
    """Parse the whitespace-separated word indices of every row straight from the Arrow buffer.

    Returns the words of all rows concatenated and each row's offsets into them.
    """
    array = strings_array(strings)
    if array.null_count:
        raise _bad_word_list(first_row(array.is_null()), strings, essay_ids, where, "is empty")
    if len(array) == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64)
    array = array.cast(pa.large_string())
    _, offsets_buffer, data_buffer = array.buffers()
    row_offsets = np.frombuffer(offsets_buffer, np.int64, count=len(array) + 1, offset=array.offset * 8)
    data = np.frombuffer(data_buffer, np.uint8, count=int(row_offsets[-1] - row_offsets[0]), offset=int(row_offsets[0]))
    row_offsets = row_offsets - row_offsets[0]
    empty_rows = row_offsets[1:] == row_offsets[:-1]
    if empty_rows.any():
        raise _bad_word_list(first_row(empty_rows), strings, essay_ids, where, "is empty")

    # Chunks of whole rows, ~1 MB of text each: the temporaries stay in cache and get reused.
    chunk_rows = np.unique(np.searchsorted(row_offsets, np.arange(0, row_offsets[-1], _CHUNK_BYTES), side="right") - 1)
    chunk_rows = np.append(chunk_rows, len(array))
    words, counts = [], []
    for chunk_first, end_row in zip(chunk_rows[:-1].tolist(), chunk_rows[1:].tolist()):
        offsets = row_offsets[chunk_first : end_row + 1]
        try:
            chunk_words, chunk_counts = _parse_chunk(data[offsets[0] : offsets[-1]], offsets - offsets[0])
        except _BadRow as bad:
            raise _bad_word_list(chunk_first + bad.row + 1, strings, essay_ids, where, bad.what) from None
        words.append(chunk_words)
        counts.append(chunk_counts)
    word_offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts))])
    return np.concatenate(words) if len(words) > 1 else words[0], word_offsets


_CHUNK_BYTES = 1 << 20


class _BadRow(Exception):
    """A row of a chunk that is not a list of word indices (0-based row within the chunk)."""

    def __init__(self, row: int, what: str):
        super().__init__(what)
        self.row, self.what = row, what


def _parse_chunk(data: np.ndarray, row_offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Words of consecutive rows (``data[row_offsets[i]:row_offsets[i + 1]]``, none empty) and each row's word count."""
    is_digit = (data - np.uint8(48)) < 10  # bytes below "0" wrap around, so one comparison
    n_digits = int(np.count_nonzero(is_digit))
    if n_digits + int(np.count_nonzero(data == 32)) != len(data):
        # Something other than digits and spaces: other whitespace is fine, anything else is an error.
        is_space = np.isin(data, np.frombuffer(b" \t\r\n\x0b\x0c", np.uint8))
        bad = ~(is_digit | is_space)
        if bad.any():
            raise _BadRow(int(np.searchsorted(row_offsets, np.argmax(bad), side="right")) - 1, "is not a list of word indices")
        data = np.where(is_space, np.uint8(32), data)

    # A token ends at a digit followed by a non-digit or by the end of its row.
    row_lasts = row_offsets[1:] - 1
    ends_mask = np.empty(len(data), bool)
    ends_mask[-1] = is_digit[-1]
    np.greater(is_digit[:-1], is_digit[1:], out=ends_mask[:-1])
    ends_mask[row_lasts] = is_digit[row_lasts]
    token_ends = np.flatnonzero(ends_mask)
    word_offsets = np.searchsorted(token_ends, row_offsets)
    counts = np.diff(word_offsets)
    if not counts.all():
        raise _BadRow(int(np.argmin(counts)), "is empty")

    words, longest = _digits_to_int(data, is_digit, token_ends, row_offsets, word_offsets, width=4)
    if longest > 4:
        words, longest = _digits_to_int(data, is_digit, token_ends, row_offsets, word_offsets, width=8)
        if longest > 8:
            raise _BadRow(int(np.searchsorted(word_offsets, np.argmax(words < 0), side="right")) - 1, "has a word index of more than 8 digits")
    return words, counts


def _digits_to_int(data, is_digit, token_ends, row_offsets, word_offsets, width: int) -> Tuple[np.ndarray, int]:
    """Decimal value of every token, reading the ``width`` bytes that end with it as one integer (SWAR).

    Returns the values (-1 for a token longer than ``width``) and the longest token length seen
    (``width + 1`` meaning "longer than width").
    """
    dtype = np.dtype(f"<u{width}")
    lanes = int.from_bytes(b"\x01" * width, "little")  # 0x0101...: one bit per byte lane
    if len(data) < width:  # too short for one window: put spaces in front
        pad = width - len(data)
        data, is_digit = np.concatenate([np.full(pad, 32, np.uint8), data]), np.concatenate([np.zeros(pad, bool), is_digit])
        token_ends, row_offsets = token_ends + pad, row_offsets + pad
    # An unaligned view whose element i is the `width` bytes starting at data byte i: one gather reads
    # a whole token, its last digit in the most significant byte.
    byte_windows = np.ndarray(shape=(len(data) - width + 1,), dtype=dtype, buffer=data, strides=(1,))
    window_starts = token_ends - (width - 1)
    value = byte_windows[np.maximum(window_starts, 0)]
    # The first tokens of the buffer may end before byte width - 1: move their bytes up into place.
    early = np.flatnonzero(window_starts[: width - 1] < 0)
    value[early] <<= (-window_starts[early] * 8).astype(dtype)
    # The first token of a row must not see the end of the previous row: clear those bytes.
    first_tokens = word_offsets[:-1]
    foreign_bytes = np.maximum(0, row_offsets[:-1] - token_ends[first_tokens] + width - 1).astype(dtype)
    value[first_tokens] &= (np.iinfo(dtype).max << (foreign_bytes * dtype.type(8))).astype(dtype)
    # Digits (0x30-0x39) have bit 4 set, spaces (0x20) and cleared bytes do not. Keep the lanes of the
    # unbroken run of digits that ends in the top lane: AND each lane with all lanes above it.
    keep = value >> dtype.type(4)
    keep &= dtype.type(lanes)
    shifted = np.empty_like(keep)
    shift = 8
    while shift < 8 * width:
        np.right_shift(keep, dtype.type(shift), out=shifted)
        shifted |= dtype.type(lanes & ~((1 << (8 * width - shift)) - 1))
        keep &= shifted
        shift *= 2
    full = keep == lanes
    longest = width
    if full.any():  # some token fills the window: is it longer?
        full_tokens = np.flatnonzero(full)
        before = token_ends[full_tokens] - width
        row_starts = row_offsets[np.searchsorted(word_offsets, full_tokens, side="right") - 1]
        longer = (before >= row_starts) & is_digit[np.maximum(before, 0)]
        if longer.any():
            longest = width + 1
    else:
        longest = width - 1
    keep *= dtype.type(0x0F)
    value &= keep  # ASCII digit -> 0..9, everything else -> 0
    # Combine neighbouring lanes: 1-digit -> 2-digit -> 4-digit (-> 8-digit) numbers.
    multiplier, shift = 10, 8
    while shift < 8 * width:
        value *= dtype.type((multiplier << shift) + 1)
        value >>= dtype.type(shift)
        value &= dtype.type(int.from_bytes((b"\xff" * (shift // 8) + b"\x00" * (shift // 8)) * (width * 8 // (2 * shift)), "little"))
        multiplier, shift = multiplier * multiplier, shift * 2
    words = value.view(np.int32 if width == 4 else np.int64)
    if longest > width:
        words = words.copy()
        words[full_tokens[longer]] = -1
    return words, longest


def word_runs(words: np.ndarray, word_offsets: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of consecutive word indices of each row: (sizes, run_offsets, run_starts, run_ends)."""
    n_rows = len(word_offsets) - 1
    steps = np.diff(words)
    row_breaks = word_offsets[1:-1] - 1  # step positions that cross from one row to the next
    not_next = np.ones(len(steps), bool) if len(steps) else np.zeros(0, bool)
    np.not_equal(steps, 1, out=not_next)
    not_next[row_breaks] = False
    if not not_next.any():  # fast path: every row is already a contiguous ascending range
        starts = words[word_offsets[:-1]]
        ends = words[word_offsets[1:] - 1] + 1
        return ends - starts, np.arange(n_rows + 1), starts, ends
    in_row = np.ones(len(steps), bool)
    in_row[row_breaks] = False
    if (steps[in_row] <= 0).any():  # unsorted or repeated indices: a span is a set of words
        row_of_word = np.repeat(np.arange(n_rows), np.diff(word_offsets))
        order = np.lexsort((words, row_of_word))
        words, row_of_word = words[order], row_of_word[order]
        keep = np.ones(len(words), bool)
        keep[1:] = (words[1:] != words[:-1]) | (row_of_word[1:] != row_of_word[:-1])
        words, row_of_word = words[keep], row_of_word[keep]
        word_offsets = np.searchsorted(row_of_word, np.arange(n_rows + 1))
        steps = np.diff(words)
    run_begins = np.ones(len(words), bool)
    run_begins[1:] = steps != 1
    run_begins[word_offsets[:-1]] = True
    first_word = np.flatnonzero(run_begins)
    last_word = np.append(first_word[1:], len(words)) - 1
    run_offsets = np.searchsorted(first_word, word_offsets)
    return np.diff(word_offsets), run_offsets, words[first_word], words[last_word] + 1
