"""Times and counts in words, as every screen writes them."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def clock_time(seconds: float) -> str:
    """``3725`` -> ``1:02:05``."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def duration(seconds: float) -> str:
    """A rough length in words: ``40 s``, ``12 min``, ``1 h 05 min``, ``13 h``, ``2.5 days``."""
    if seconds < 60:
        return f"{max(1, int(round(seconds)))} s"
    if seconds < 3600:
        return f"{int(round(seconds / 60))} min"
    if seconds < 10 * 3600:
        hours, minutes = divmod(int(round(seconds / 60)), 60)
        return f"{hours} h {minutes:02d} min"
    if seconds < 48 * 3600:
        return f"{int(round(seconds / 3600))} h"
    return f"{seconds / 86400:.1f} days"


def run_progress_line(estimate) -> str:
    """``5/400 epochs done, 0:01:10 elapsed, about 2 h 03 min left`` for the whole run."""
    left = f"about {duration(estimate.remaining)} left" if estimate.remaining is not None else "time left: after the first steps"
    return f"{estimate.epochs_done}/{estimate.epochs_total} epochs done, {clock_time(estimate.elapsed)} elapsed, {left}"
