"""``fbp compare``: training runs side by side, from ``run.json`` files, run directories or Hugging Face
``trainer_state.json`` files.

- :mod:`.reading`: finds the runs among the command-line inputs and reads each into a :class:`RunSummary`;
- :mod:`.live`: what a run still training (or interrupted) adds: its status, unfinished folds, time so far;
- :mod:`.table`: the comparison (a DataFrame of the settings that differ, the CV F1 figures, per class, each
  fold's kept epoch and the training time), exported as CSV or JSON;
- :mod:`.plot`: every fold's validation F1 per epoch, drawn into an image.

The command line shows the table (``fbp.cli.compare``).
"""

from .plot import plot_epoch_f1
from .reading import find_run_files, load_run
from .summary import FoldCurve, RunSummary
from .table import SCORE_COLUMNS, Comparison, compare_runs, differing_settings, setting_value, write_csv, write_json

__all__ = ["FoldCurve", "RunSummary", "Comparison", "SCORE_COLUMNS", "find_run_files", "load_run", "compare_runs",
           "differing_settings", "setting_value", "write_csv", "write_json", "plot_epoch_f1"]
