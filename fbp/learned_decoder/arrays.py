"""Array helpers over many concatenated essays: running sums, per-range reductions, ranks within groups."""

from __future__ import annotations

import numpy as np


def cumulative(rows: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``(k, n + 1)`` running sums along each row of a class-major ``(k, n)`` array, with a leading 0."""
    cumulative = np.zeros((rows.shape[0], rows.shape[1] + 1), dtype)
    np.cumsum(rows, axis=1, dtype=dtype, out=cumulative[:, 1:])
    return cumulative


def range_sum(cumulative: np.ndarray, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return cumulative[rows, ends] - cumulative[rows, starts]


def range_reduce(ufunc, padded: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``ufunc`` over ``padded[starts[k]:ends[k]]`` for every k (each range non-empty) with one reduceat;
    ``padded`` has one spare element at its end (ends may reach the last real element's end)."""
    if not len(starts):
        return np.zeros(0, padded.dtype)
    order = np.argsort(starts, kind="stable")
    indices = np.empty(2 * len(starts), np.int64)
    indices[0::2], indices[1::2] = starts[order], ends[order]
    reduced = ufunc.reduceat(padded, indices)[0::2]
    result = np.empty(len(starts), padded.dtype)
    result[order] = reduced
    return result


def rank_in_groups(sorted_groups: np.ndarray) -> np.ndarray:
    """0, 1, 2... within each run of equal values of an already sorted array."""
    if not len(sorted_groups):
        return np.zeros(0, np.int64)
    new = np.ones(len(sorted_groups), bool)
    new[1:] = sorted_groups[1:] != sorted_groups[:-1]
    first_of_run = np.maximum.accumulate(np.where(new, np.arange(len(sorted_groups)), 0))
    return np.arange(len(sorted_groups)) - first_of_run
