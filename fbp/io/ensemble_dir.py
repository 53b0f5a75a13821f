"""An ensemble directory: fitted weights and the decoder fitted on the blend, which ``fbp ensemble`` and ``fbp infer``
accept like a run.

``ensemble.json`` holds the format name and version, the members (paths as given when it was saved, and resolved
absolute), their weights and the out-of-fold F1 figures; ``learned_decoder.json`` (+ its LightGBM model, see
:mod:`fbp.io.decoder`) is the decoder fitted on the blended out-of-fold probabilities, ``decoding.json`` the
thresholds tuned on them. The directory is written
whole, atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .. import __version__
from ..atomic import write_atomic, write_dir_atomically
from ..errors import FbpError

ENSEMBLE_FILE = "ensemble.json"
DECODING_FILE = "decoding.json"  # the blend's tuned thresholds (ensembles saved before they were stored have none)
FORMAT = "fbp-ensemble"
VERSION = 1


def is_ensemble_dir(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / ENSEMBLE_FILE).is_file()


def save_ensemble_dir(directory: Path, members: Sequence[Path], weights: Sequence[float], decoder=None, info: Optional[Dict[str, Any]] = None,
                      thresholds=None) -> Path:
    """Write ``directory`` (replacing an earlier ensemble directory, never another kind of directory). ``thresholds``:
    the blend's tuned :class:`fbp.config.ThresholdConfig`, saved as ``decoding.json`` (what it decodes with when it
    has no learned decoder, or when thresholds are asked for)."""
    from .decoder import DECODER_FILE, save_decoder

    def write(staging: Path) -> None:
        if decoder is not None:
            save_decoder(decoder, staging / DECODER_FILE)
        if thresholds is not None:
            from ..config import write_decoding

            write_decoding(staging / DECODING_FILE, thresholds)
        stored = {
            "format": FORMAT, "version": VERSION, "fbp_version": __version__,
            "members": [str(Path(member).resolve()) for member in members],
            "weights": [float(weight) for weight in weights],
            "info": info or {},
        }
        write_atomic(staging / ENSEMBLE_FILE, json.dumps(stored, indent=2))

    return write_dir_atomically(Path(directory), write, is_ensemble_dir)


class EnsembleDir:
    """A saved ensemble: its members (run directories, checkpoints or .npz files), weights and decoder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = self.path / ENSEMBLE_FILE
        try:
            stored = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise FbpError(f"{self.file} is not a valid fbp ensemble file ({error.__class__.__name__}: {error})") from None
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            raise FbpError(f"{self.file} is not an fbp ensemble file (format {stored.get('format') if isinstance(stored, dict) else None!r})")
        if not isinstance(stored.get("version"), int) or isinstance(stored.get("version"), bool) or not 1 <= stored["version"] <= VERSION:
            raise FbpError(f"{self.file}: ensemble version {stored.get('version')!r} is newer than this fbp reads ({VERSION})")
        members, weights = stored.get("members"), stored.get("weights")
        if not isinstance(members, list) or not isinstance(weights, list) or len(members) != len(weights) or not members:
            raise FbpError(f"{self.file}: needs as many members as weights (found {str(members)[:80]} and {str(weights)[:80]})")
        import math

        if not all(isinstance(member, str) and member and "\0" not in member for member in members):
            raise FbpError(f"{self.file}: members must be paths (non-empty strings)")
        if not all(isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight) and 0 <= weight <= 1 for weight in weights):
            shown = next(weight for weight in weights if not (isinstance(weight, (int, float)) and not isinstance(weight, bool) and math.isfinite(weight) and 0 <= weight <= 1))
            raise FbpError(f"{self.file}: weights must be numbers from 0 to 1 (fbp stores them normalised), got {str(shown)[:40]!r}")
        if not sum(weights) > 0:
            raise FbpError(f"{self.file}: the weights add up to 0")
        if not isinstance(stored.get("info", {}), (dict, type(None))):
            raise FbpError(f"{self.file}: info must be an object")
        self.members: List[Path] = [Path(member) for member in members]
        self.weights: List[float] = [float(weight) for weight in weights]
        self.info: Dict[str, Any] = stored.get("info") or {}
        missing = [str(member) for member in self.members if not member.exists()]
        if missing:
            raise FbpError(f"{self.file}: member {missing[0]} is not there any more ({len(missing)} missing)")

    @property
    def decoder_path(self) -> Path:
        from .decoder import DECODER_FILE

        return self.path / DECODER_FILE

    @property
    def decoding_path(self) -> Path:
        return self.path / DECODING_FILE

    def thresholds(self):
        """The blend's tuned thresholds (validated), or None for an ensemble saved before they were stored."""
        from ..config import read_decoding

        return read_decoding(self.decoding_path) if self.decoding_path.exists() else None

    def learned_decoder(self):
        """The decoder fitted on the blend, or None when it was saved without one."""
        from .decoder import load_decoder

        return load_decoder(self.decoder_path) if self.decoder_path.exists() else None
