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
