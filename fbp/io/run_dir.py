"""The run directory: resolved config, ``run.json`` record, out-of-fold word probabilities, decoding
thresholds, fold checkpoints.

A run directory is the unit of resuming and comparing. Everything in it is written atomically, and a fold
counts as finished only once its checkpoint and out-of-fold probabilities are on disk. ``run.json`` has one
schema (:class:`RunRecord`) and one writer (:meth:`RunDir.write_record`); everything that reads a run
(evaluate, oof, predict, compare, tracking) asks :class:`RunDir`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from .. import __version__
from ..atomic import remove_stale_temporaries, write_atomic
from ..config import Config, ThresholdConfig, check_complete_decoding, read_decoding, validate_decoding
from ..errors import FbpError, UsageError
from ..labels import CLASSES
from .decoder import DECODER_FILE
from .run_record import EpochRecord, FoldRecord, RunRecord, read_run_json, validated  # noqa: F401  (their home before)
from .run_settings import RESUMABLE_KEYS, config_differences, run_settings  # noqa: F401  (their home before)
from .lock import LOCK_FILE, RunLock, holder_running  # noqa: F401  (the lock and liveness live in fbp.io.lock)

# Settings every fbp version wrote into a run's config.yaml: one missing means the file was damaged. Settings added
# later are absent from older runs and read as their default.
CORE_SETTINGS = ("data.processed_dir", "model.name", "windows.max_length", "windows.stride", "windows.label_subtokens",
                 "training.epochs", "training.learning_rate", "training.batch_size", "training.seed", "decoding.min_words",
                 "decoding.min_confidence")


def check_run_config(tree: Any, source: Union[str, Path]) -> Dict[str, Any]:
    """A run's recorded config tree (its ``config.yaml``, or the copy in its ``run.json``), checked for what fbp
    always writes: every section, the settings every fbp version wrote, both decoding tables, every class's weight.
    One missing means the file was damaged (read as a default, it would be another run). FbpError naming ``source``."""
    if not isinstance(tree, dict) or not all(isinstance(value, (dict, type(None), str)) for value in tree.values()):
        raise FbpError(f"{source}: not a run's config (expected a mapping of sections: data, model, training, ...); the run is damaged")
    missing = [section for section in ("data", "model", "windows", "training", "decoding") if not isinstance(tree.get(section), dict)]
    if missing:
        raise FbpError(f"{source}: the run's config lacks the section(s) {', '.join(missing)}; the run is damaged")
    lacking = [key for key in CORE_SETTINGS if key.split(".")[1] not in tree[key.split(".")[0]]]
    if lacking:  # settings every fbp wrote: one missing is damage, not an old run (newer ones read as their default)
        raise FbpError(f"{source}: the run's config lacks {', '.join(lacking[:3])}; the run is damaged")
    check_complete_decoding(validate_decoding(tree["decoding"], str(source)), str(source))
    weights = tree["training"].get("class_weights")
    unnamed = [name for name in CLASSES if name not in weights] if isinstance(weights, dict) else []
    if unnamed:  # fbp records every class's weight: one missing would silently read as 1
        raise FbpError(f"{source}: the run's class weights lack {', '.join(unnamed)}; fbp records all seven, so the run is "
                       "damaged (a run made before fbp recorded all seven, 2026-12-06, may name only some: add the others with weight 1)")
    return tree


class TruthNotFound(FbpError):
    """A run does not lead to its ground truth (the command line then asks for it explicitly)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class RunDir:
    """One training run on disk: ``config.yaml``, ``run.json``, ``oof_word_probs.npz``, ``decoding.json``, ``fold_K/``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.record_path = self.path / "run.json"
        self.oof_path = self.path / "oof_word_probs.npz"
        self.decoding_path = self.path / "decoding.json"
        self.decoder_path = self.path / DECODER_FILE  # the learned span decoder (fbp.io.decoder), when fitted
        self.work_path = self.path / ".work"  # Trainer checkpoints of unfinished folds (removed when a fold ends)

    def fold_dir(self, fold: int) -> Path:
        return self.path / f"fold_{fold}"

    def fold_work_dir(self, fold: int) -> Path:
        return self.work_path / f"fold_{fold}"

    def is_run(self) -> bool:
        """A directory written by ``fbp train`` (it has ``run.json`` or ``oof_word_probs.npz``)."""
        return self.record_path.exists() or self.oof_path.exists()

    def open(self, config: Config, data_fingerprint: Optional[str] = None) -> RunRecord:
        """Create the run directory, or check that an existing one holds this same run; return its record.

        ``data_fingerprint`` (:func:`fbp.io.processed.fingerprint`) is recorded in ``run.json``; a run that recorded
        another one was trained on other data (``fbp preprocess`` run again into the same folder) and is not resumed.
        """
        resolved = config.model_dump(mode="json")
        if self.config_path.exists():
            previous = self.read_config()
            differences = config_differences(previous, resolved)
            if differences:
                raise UsageError(
                    f"{self.path} holds a different run (its config.yaml differs: {'; '.join(differences[:5])}). "
                    "Use another output directory (-o), or delete that one to start over."
                )
        elif self.path.exists() and any(entry.name != LOCK_FILE for entry in self.path.iterdir()):
            raise UsageError(f"{self.path} exists and is not an fbp run directory (no config.yaml); use another output directory (-o)")
        record = self.read_record()
        if record is not None and data_fingerprint and record.processed_fingerprint not in (None, data_fingerprint):
            raise FbpError(
                f"{self.path} was trained on other data: the processed data in {config.data.processed_dir} has changed since "
                f"(fingerprint {data_fingerprint[:12]}, the run recorded {record.processed_fingerprint[:12]}; was `fbp preprocess` "
                "run again into that folder, with another seed or other files?). Resuming would mix two fold assignments. "
                "Train into another output directory (-o), or preprocess into another folder"
            )
        remove_stale_temporaries(self.path)  # what killed writes left here (.run.json.tmp-*, .fold_0.tmp-*, ...)
        write_atomic(self.config_path, config.to_yaml())
        if record is None:
            record = RunRecord(
                name=config.name or self.path.name,
                model=config.model.name,
                fbp_version=__version__,
                created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                status="running",
                processed_dir=str(Path(config.data.processed_dir).resolve()),
                config=resolved,
                cv_f1=None,
                cv_per_class={},
                train_seconds=0.0,
                folds=[],
            )
        record.config = resolved
        if data_fingerprint:
            record.processed_fingerprint = data_fingerprint
        self.write_record(record)  # the fingerprint is on disk before any fold starts
        return record

    def lock(self, command: str = "fbp train") -> "RunLock":
        """The run directory's lock (a context manager): one writer at a time, a stale lock taken over."""
        from ..atomic import refuse_links_inside

        refuse_links_inside(self.path, "run directory")  # fbp writes and deletes in it: nothing there may lead elsewhere
        return RunLock(self.path, command)

    def resumable_checkpoint(self, fold: int) -> Optional[Path]:
        """The last complete Trainer checkpoint of an unfinished fold, to resume from (None: start the fold afresh).

        A checkpoint is complete once the Trainer wrote ``trainer_state.json`` (its last file) next to the weights
        and fbp's evaluation (:data:`CHECKPOINT_EVAL_FILE`). One that a kill interrupted is deleted: it cannot be
        resumed from, and the Trainer would otherwise pick it as the latest.
        """
        import re
        import shutil

        work = self.fold_work_dir(fold)
        if not work.is_dir():
            return None
        steps = {}
        for path in work.iterdir():
            match = re.fullmatch(r"checkpoint-(\d+)", path.name)
            if match and path.is_dir():
                steps[path] = int(match.group(1))
        complete = [path for path in steps if _complete_trainer_checkpoint(path)]
        for path in set(steps) - set(complete):
            shutil.rmtree(path, ignore_errors=True)
        return max(complete, key=steps.get) if complete else None

    def discard_work(self, fold: int) -> None:
        """Remove a finished fold's Trainer checkpoints (and ``.work`` once it is empty)."""
        import shutil

        shutil.rmtree(self.fold_work_dir(fold), ignore_errors=True)
        if self.work_path.is_dir() and not any(self.work_path.iterdir()):
            self.work_path.rmdir()

    def decoding(self) -> ThresholdConfig:
        """The thresholds in use: ``decoding.json`` (tuned), else the run's configured ones, else fbp's defaults."""
        if self.decoding_path.exists():
            return read_decoding(self.decoding_path)
        if self.config_path.exists():
            return validate_decoding(self.read_config().get("decoding", {}), str(self.config_path))
        return ThresholdConfig()

    def write_decoding(self, decoding: ThresholdConfig) -> Path:
        """Save the thresholds the run's checkpoints decode with (``decoding.json``, atomically)."""
        from ..config import write_decoding

        return write_decoding(self.decoding_path, decoding)

    def uses_learned_decoder(self) -> bool:
        """Whether the run decodes with its learned decoder (``run.json`` says so); runs made before it existed do not."""
        record = self.read_record() if self.record_path.exists() else None
        return record is not None and record.decoder == "learned"

    def learned_decoder(self):
        """The run's learned decoder (:class:`fbp.learned_decoder.LearnedDecoder`), or None when it has none.

        A decoder file that is there but unreadable raises FbpError naming it."""
        from .decoder import load_decoder

        return load_decoder(self.decoder_path) if self.decoder_path.exists() else None

    def write_learned_decoder(self, decoder) -> Path:
        """Save the learned decoder beside the run's thresholds (``learned_decoder.json`` + its LightGBM model)."""
        from .decoder import save_decoder

        return save_decoder(decoder, self.decoder_path)

    def read_config(self) -> Dict[str, Any]:
        """The resolved config tree of ``config.yaml`` (empty when there is none)."""
        if not self.config_path.exists():
            return {}
        from .yamlfile import load_yaml

        try:
            text = self.config_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise FbpError(f"cannot read {self.config_path}: {error}") from None
        try:
            tree = load_yaml(text, self.config_path)
        except UsageError as error:
            raise FbpError(str(error)) from None
        if tree is None:
            return {}
        return check_run_config(tree, self.config_path)

    def read_record(self) -> Optional[RunRecord]:
        """``run.json``, validated; None when the run has none yet."""
        if not self.record_path.exists():
            return None
        return read_run_json(self.record_path)

    def write_record(self, record: RunRecord) -> None:
        """The one writer of ``run.json``."""
        write_atomic(self.record_path, json.dumps(record.to_dict(), indent=2))

    def finished_folds(self, record: RunRecord) -> Dict[int, FoldRecord]:
        """Folds recorded in ``run.json`` whose checkpoint is on disk."""
        from .checkpoint import is_checkpoint

        return {entry.fold: entry for entry in record.folds if is_checkpoint(self.fold_dir(entry.fold))}

    def processed_dir(self) -> Optional[Path]:
        """The processed dataset the run was trained on (``run.json``, else ``config.yaml``), if it says."""
        record = self.read_record() if self.record_path.exists() else None
        processed = record.processed_dir if record is not None else None
        if not processed:
            processed = (self.read_config().get("data") or {}).get("processed_dir")
        return Path(processed) if processed else None

    def truth_path(self) -> Path:
        """``spans.parquet`` of the processed data the run was trained on: its ground truth."""
        from .processed import spans_path

        processed = self.processed_dir()
        if processed is None:
            raise TruthNotFound(f"{self.path} does not say which processed data it was trained on", exit_code=UsageError.exit_code)
        path = spans_path(processed)
        if not path.exists():
            raise TruthNotFound(f"the ground truth of run {self.path} is missing: {path} (its processed_dir)")
        return path

    def processed_meta(self) -> Optional[Dict[str, Any]]:
        """``meta.json`` of the run's processed data (folds, seed, counts; :mod:`fbp.io.processed`), or None when
        the run does not say which data or it has no readable one."""
        from .processed import read_processed_meta

        processed = self.processed_dir() if self.config_path.exists() or self.record_path.exists() else None
        return read_processed_meta(processed) if processed is not None else None

    def last_write(self) -> float:
        """When the run last wrote anything (``run.json``, ``config.yaml``, a Trainer state), as a time stamp (0: never)."""
        times = []
        for path in [self.record_path, self.config_path, *self.work_path.glob("fold_*/checkpoint-*/trainer_state.json")]:
            try:
                times.append(path.stat().st_mtime)
            except OSError:
                pass
        return max(times, default=0.0)

    def training_status(self, recorded: Optional[str] = None) -> str:
        """``complete``; ``running`` (a live fbp command holds the run's lock, or, locked on another host, the run
        wrote something in the last :data:`RECENT_SECONDS`); ``partial`` (finished the folds it was asked for, not
        all of the data's); ``interrupted`` (stopped before the folds it trains were done). ``recorded``: the status
        ``run.json`` says (read from it when not given)."""
        if recorded is None:
            record = self.read_record() if self.record_path.exists() else None
            recorded = record.status if record is not None else None
        if recorded == "complete":
            return "complete"
        holder = lock_holder_state(self.path)
        if holder == "alive" or (holder == "elsewhere" and time.time() - self.last_write() < RECENT_SECONDS):
            return "running"
        return "partial" if recorded == "partial" else "interrupted"


# fbp's word probabilities of the epoch a Trainer checkpoint was saved at, stored inside that checkpoint (so the
# best epoch's out-of-fold probabilities always come from the best checkpoint, even across kills and resumes).
CHECKPOINT_EVAL_FILE = "fbp_eval.npz"


def checkpoint_run(checkpoint: Union[str, Path]) -> Optional[Path]:
    """The run directory a fold checkpoint sits in (its parent, when that holds a ``run.json``), else None."""
    parent = Path(checkpoint).parent
    return parent if RunDir(parent).record_path.exists() else None


def checkpoint_decoding(checkpoint: Union[str, Path]) -> Tuple[Optional[ThresholdConfig], str]:
    """The thresholds to decode a checkpoint's predictions with, and where they come from.

    A checkpoint inside a run directory takes the run's (``decoding.json``: tuned after training or by
    ``fbp evaluate --tune``); a checkpoint on its own takes the thresholds in its ``fbp.json``.
    None when neither says anything.
    """
    from .checkpoint import FBP_META_FILE, read_checkpoint_meta

    run_path = checkpoint_run(checkpoint)
    if run_path is not None and RunDir(run_path).decoding_path.exists():
        run = RunDir(run_path)
        return run.decoding(), str(run.decoding_path)
    meta = read_checkpoint_meta(checkpoint)
    return meta.decoding, str(Path(checkpoint) / FBP_META_FILE)


def _complete_trainer_checkpoint(path: Path) -> bool:
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (path / CHECKPOINT_EVAL_FILE).is_file() and any(path.glob("*.safetensors"))


# How long after its last write a run locked on another host (whose process cannot be checked) counts as running.
RECENT_SECONDS = 30 * 60


def lock_holder_state(run_path: Path) -> Optional[str]:
    """Who holds ``RUN/.fbp.lock``: None (nobody), ``alive`` (a running process on this host), ``dead`` (a process
    gone, or a pid now reused), ``elsewhere`` (another host: cannot be checked from here). Asks :mod:`fbp.io.lock`."""
    holder = RunLock(run_path).holder()
    if holder is None:
        return None
    import socket

    if holder.get("host") != socket.gethostname():
        return "elsewhere"
    return "alive" if holder_running(holder) else "dead"
