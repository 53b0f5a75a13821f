"""Fault injection: kill the process at a named point, as a power cut or ``kill -9`` would.

The crash tests (tests/test_faults.py) set ``FBP_CRASH_AT`` and run a command; the core calls
:func:`crash_point` at the moments where a kill is most likely to leave something behind (mid-epoch,
inside a checkpoint save, between a finished fold and ``run.json``, inside an atomic write). Without the
variable a crash point costs one dictionary lookup.

``FBP_CRASH_AT=POINT[@N][,POINT[@N]...]`` sends SIGKILL to this process the N-th time (default: the first)
it reaches POINT. Points in use:

- ``train_step``: after an optimizer step (``train_step@5``: the fifth step of the process);
- ``checkpoint_save``: inside the Trainer's epoch checkpoint, weights written, ``trainer_state.json`` not yet;
- ``fold_end``: a fold's checkpoint exported, its out-of-fold probabilities and ``run.json`` entry not yet;
- ``write:NAME``: an atomic write of the file or directory NAME is complete but not yet renamed into place
  (``write:oof_word_probs.npz``, ``write:submission.csv``, ``write:processed``);
- ``replace:NAME``: a new directory NAME has been swapped in, the previous one not yet deleted.
"""

from __future__ import annotations

import os
import signal
from typing import Dict

ENV = "FBP_CRASH_AT"
_hits: Dict[str, int] = {}


def _wanted(spec: str, name: str) -> int:
    """The hit number at which ``name`` crashes according to ``spec`` (0: never)."""
    for item in spec.split(","):
        point, separator, count = item.strip().rpartition("@")
        if not separator or not count.isdigit():
            point, count = item.strip(), "1"
        if point == name:
            return max(1, int(count))
    return 0


def crash_point(name: str) -> None:
    """SIGKILL this process here when ``FBP_CRASH_AT`` names this point (at its N-th hit)."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted = _wanted(spec, name)
    if not wanted:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == wanted:
        os.kill(os.getpid(), signal.SIGKILL)
