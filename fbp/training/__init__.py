"""Training: the fold loop (:mod:`.loop`), the Trainer subclass and per-epoch evaluator (:mod:`.trainer`),
the Trainer callbacks and the best-epoch rule (:mod:`.callbacks`), and wandb tracking (:mod:`.tracking`)."""
