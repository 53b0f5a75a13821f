"""Everything the command line shows while the core works, one module per command:

- :mod:`.training`: ``fbp train``'s reporter (a rule per fold, one table row per epoch with a save verdict);
- :mod:`.live`: its live display (the epoch's steps, evaluation, the whole run with the time left);
- :mod:`.run_summary`: the end of a training, naming the F1 figure to quote;
- :mod:`.prediction`: ``fbp infer`` / ``fbp ensemble``'s progress;
- :mod:`.tune`: ``fbp tune``'s trials and best trials;
- :mod:`.words`: durations and counts in words.

The core takes these as plain objects and callbacks (:class:`fbp.training.loop.TrainingReporter`, the
``on_progress`` of :func:`fbp.word_probs.predict_word_probs`); only the main process reports.
"""

from .prediction import PredictionProgress
from .run_summary import print_run_summary
from .training import ConsoleTrainingReporter
from .tune import ConsoleTuneReporter

__all__ = ["ConsoleTrainingReporter", "ConsoleTuneReporter", "PredictionProgress", "print_run_summary"]
