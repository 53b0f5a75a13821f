"""What ``fbp pretrain`` reports while it works: the plan, the progress, the end (the command line shows them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..io.pretrained import PretrainedMeta


@dataclass(frozen=True)
class PretrainPlan:
    """What this invocation does: the text, its blocks, the steps, where it resumes from."""

    output: Path
    work_dir: Path
    essays: int
    words: int
    tokens: int
    train_blocks: int
    eval_blocks: int
    total_steps: int
    device: str
    resumed_from: Optional[str]


@dataclass(frozen=True)
class PretrainProgress:
    """Where the pretraining stands: steps done of all, the latest training loss, seconds so far and left (None: not timed yet)."""

    step: int
    total_steps: int
    loss: Optional[float]
    elapsed: float
    remaining: Optional[float]
    tokens_per_second: Optional[float]


class PretrainReporter:
    """What pretraining tells whoever watches it; every method does nothing here."""

    def begin(self, plan: PretrainPlan) -> None:
        """The text is tokenized and the Trainer is about to start."""

    def progress(self, progress: PretrainProgress) -> None:
        """After an optimizer step (and after each logged loss)."""

    def evaluating(self, blocks: int) -> None:
        """Training is done; the held-out blocks are being scored."""

    def end(self, meta: PretrainedMeta, output: Path) -> None:
        """The model directory is written."""

    def note(self, message: str) -> None:
        """A remark worth showing (a new masked-LM head, wandb, a stale lock taken over)."""
