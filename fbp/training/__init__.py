"""Training: the fold loop (:mod:`.loop`), the Trainer subclass and per-epoch evaluator (:mod:`.trainer`),
the Trainer callbacks (:mod:`.callbacks`), the best-epoch rule (:mod:`.best_epoch`), and wandb tracking
(:mod:`.tracking`)."""

from typing import Callable

EpochCallback = Callable[[int, int, float], None]  # (fold, epoch, f1), after every epoch's evaluation (fbp tune prunes with it)
