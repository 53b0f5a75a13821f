"""Quiet transformers: its weight-loading bars and reports are noise on fbp's screens (a leaf module, so the model
loader and the checkpoint owner can both use it without importing each other)."""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading bars and reports (e.g. "classifier.weight MISSING" for a new head)."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


class _NotTheUsersBusiness:
    """A logging filter for transformers' Trainer remarks about its own bookkeeping, which would break through fbp's
    live display: two epochs of a small model can finish within a second, and the Trainer then says the filesystem's
    mtime "may not be reliable" while sorting its checkpoints (it falls back to their numbers, which is right)."""

    NOISE = ("mtime may not be reliable",)

    def filter(self, record) -> bool:
        return not any(noise in record.getMessage() for noise in self.NOISE)


def quiet_trainer_bookkeeping() -> None:
    """Install :class:`_NotTheUsersBusiness` on transformers' trainer-utility logger (once)."""
    import logging

    logger = logging.getLogger("transformers.trainer_utils")
    if not any(isinstance(existing, _NotTheUsersBusiness) for existing in logger.filters):
        logger.addFilter(_NotTheUsersBusiness())
