"""The run directory: resolved config, ``run.json`` summary, out-of-fold word probabilities, decoding
thresholds, fold checkpoints.

A run directory is the unit of resuming and comparing. Everything in it is written atomically, and a fold
counts as finished only once its checkpoint and out-of-fold probabilities are on disk. ``run.json`` has one
schema (:class:`RunRecord`) and one writer (:meth:`RunDir.write_summary`); everything that reads a run
(evaluate, oof, predict, compare, tracking) asks :class:`RunDir`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .. import __version__
from ..atomic import remove_stale_temporaries, write_atomic
from ..config import Config, ThresholdConfig, default_settings, flatten_config, read_decoding, validate_decoding
from ..errors import FbpError, UsageError
from .decoder import DECODER_FILE

class TruthNotFound(FbpError):
    """A run does not lead to its ground truth (the command line then asks for it explicitly)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# Settings that may change between invocations on the same run directory without making it another run.
RESUMABLE_KEYS = ("name", "data.train_folds", "tracking.", "training.dataloader_workers", "training.eval_batch_size", "training.learned_decoding")


# --- run.json -----------------------------------------------------------------------------------------------
# Lenient on reading (unknown keys are kept, missing ones get defaults, so older or hand-made files still
# load), exact on writing: keys fbp train never set are not written.


def validated(record_type: Any, content: Any, source: Union[str, Path]) -> Any:
    """``record_type`` (a pydantic model) from parsed JSON; FbpError naming ``source``, the bad key and its value."""
    try:
        return record_type.model_validate(content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise FbpError(f"{source}: '{where}' {first['msg'].lower()} (got {first.get('input')!r})") from None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_dict(self) -> Dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class EpochRecord(_Record):
    """One epoch of one fold: mean training loss, validation loss, F1, per-class F1, whether it was kept."""

    epoch: Union[int, float]
    loss: Optional[float] = None
    eval_loss: Optional[float] = None
    f1: Optional[float] = None
    per_class: Dict[str, Optional[float]] = {}
    saved: Optional[bool] = None
    seconds: Optional[float] = None


class FoldRecord(_Record):
    """A finished fold: its best epoch (the one its checkpoint holds) and every epoch's numbers."""

    fold: int
    best_epoch: Optional[Union[int, float]] = None
    best_f1: Optional[float] = None
    seconds: Optional[float] = None
    epochs: List[EpochRecord] = []


class RunRecord(_Record):
    """``run.json``: the run's summary."""

    name: Optional[str] = None
    model: Optional[str] = None
    fbp_version: Optional[str] = None
    created: Optional[str] = None
    status: str = "complete"
    processed_dir: Optional[str] = None  # absolute, so evaluate and ensemble find the truth from anywhere
    processed_fingerprint: Optional[str] = None  # of the processed data trained on: a resume against other data refuses
    config: Dict[str, Any] = {}
    cv_f1: Optional[float] = None  # macro F1 of all out-of-fold predictions, configured thresholds
    cv_per_class: Dict[str, Optional[float]] = {}
    cv_essays: Optional[int] = None
    cv_f1_tuned: Optional[float] = None  # thresholds tuned out of fold, cross-fitted
    cv_per_class_tuned: Dict[str, Optional[float]] = {}
    cv_f1_learned: Optional[float] = None  # the learned span decoder, cross-fitted
    cv_per_class_learned: Dict[str, Optional[float]] = {}
    decoder: Optional[str] = None  # the decoding the run uses: "learned" or "thresholds" (None: thresholds, runs made before)
    train_seconds: Optional[float] = None
    folds: List[FoldRecord] = []

    @classmethod
    def from_content(cls, content: Any, source: Union[str, Path]) -> "RunRecord":
        """Validate parsed ``run.json`` content; FbpError naming ``source`` and the bad key."""
        return validated(cls, content, source)

    @staticmethod
    def looks_like(content: Any) -> bool:
        """Whether parsed JSON is a run.json (it has ``folds`` and ``config``)."""
        return isinstance(content, dict) and "folds" in content and "config" in content

    def with_fold(self, fold: FoldRecord) -> None:
        """Add or replace a fold, keeping folds in order."""
        self.folds = sorted([f for f in self.folds if f.fold != fold.fold] + [fold], key=lambda f: f.fold)


def run_settings(config_tree: Dict[str, Any]) -> Dict[str, Any]:
    """The dotted settings that make a run what it is (those in ``RESUMABLE_KEYS`` left out)."""
    return {
        key: value for key, value in flatten_config(config_tree).items()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)
    }


def config_differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """Dotted keys whose values differ, ignoring settings that do not change what is trained. A key one side
    lacks (a run made before the setting existed) has its default value."""
    defaults = default_settings()
    old_settings, new_settings = run_settings({**defaults, **flatten_config(old)}), run_settings({**defaults, **flatten_config(new)})
    return [
        f"{key}: {old_settings.get(key)!r} -> {new_settings.get(key)!r}"
        for key in sorted(set(old_settings) | set(new_settings))
        if old_settings.get(key) != new_settings.get(key)
    ]


class RunDir:
    """One training run on disk: ``config.yaml``, ``run.json``, ``oof_word_probs.npz``, ``decoding.json``, ``fold_K/``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.summary_path = self.path / "run.json"
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
        return self.summary_path.exists() or self.oof_path.exists()

    def open(self, config: Config, data_fingerprint: Optional[str] = None) -> RunRecord:
        """Create the run directory, or check that an existing one holds this same run; return its summary.

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
        summary = self.read_summary()
        if summary is not None and data_fingerprint and summary.processed_fingerprint not in (None, data_fingerprint):
            raise FbpError(
                f"{self.path} was trained on other data: the processed data in {config.data.processed_dir} has changed since "
                f"(fingerprint {data_fingerprint[:12]}, the run recorded {summary.processed_fingerprint[:12]}; was `fbp preprocess` "
                "run again into that folder, with another seed or other files?). Resuming would mix two fold assignments. "
                "Train into another output directory (-o), or preprocess into another folder"
            )
        remove_stale_temporaries(self.path)  # what killed writes left here (.run.json.tmp-*, .fold_0.tmp-*, ...)
        write_atomic(self.config_path, config.to_yaml())
        if summary is None:
            summary = RunRecord(
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
        summary.config = resolved
        if data_fingerprint:
            summary.processed_fingerprint = data_fingerprint
        self.write_summary(summary)  # the fingerprint is on disk before any fold starts
        return summary

    def lock(self, command: str = "fbp train") -> "RunLock":
        """The run directory's lock (a context manager): one writer at a time, a stale lock taken over."""
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
        write_atomic(self.decoding_path, json.dumps(decoding.model_dump(mode="json"), indent=2))
        return self.decoding_path

    def uses_learned_decoder(self) -> bool:
        """Whether the run decodes with its learned decoder (``run.json`` says so); runs made before it existed do not."""
        summary = self.read_summary() if self.summary_path.exists() else None
        return summary is not None and summary.decoder == "learned"

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
        return yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}

    def read_summary(self) -> Optional[RunRecord]:
        """``run.json``, validated; None when the run has none yet."""
        if not self.summary_path.exists():
            return None
        return read_run_json(self.summary_path)

    def write_summary(self, summary: RunRecord) -> None:
        """The one writer of ``run.json``."""
        write_atomic(self.summary_path, json.dumps(summary.to_dict(), indent=2))

    def finished_folds(self, summary: RunRecord) -> Dict[int, FoldRecord]:
        """Folds recorded in ``run.json`` whose checkpoint is on disk."""
        from .checkpoint import is_checkpoint

        return {entry.fold: entry for entry in summary.folds if is_checkpoint(self.fold_dir(entry.fold))}

    def processed_dir(self) -> Optional[Path]:
        """The processed dataset the run was trained on (``run.json``, else ``config.yaml``), if it says."""
        summary = self.read_summary() if self.summary_path.exists() else None
        processed = summary.processed_dir if summary is not None else None
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


# fbp's word probabilities of the epoch a Trainer checkpoint was saved at, stored inside that checkpoint (so the
# best epoch's out-of-fold probabilities always come from the best checkpoint, even across kills and resumes).
CHECKPOINT_EVAL_FILE = "fbp_eval.npz"


def _complete_trainer_checkpoint(path: Path) -> bool:
    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (path / CHECKPOINT_EVAL_FILE).is_file() and any(path.glob("*.safetensors"))


LOCK_FILE = ".fbp.lock"


class RunLock:
    """``RUN/.fbp.lock``: one writer at a time in a run directory (``fbp train``, ``fbp evaluate RUN --tune``).

    The lock file holds the owner's pid, host, start time and the process's own start (to tell a pid reused after
    a reboot). A lock whose process is gone (same host, pid not running, or now another process) is stale: it is
    taken over, with a note. A lock held on another host cannot be checked from here;
    the message says how to remove it by hand.
    """

    def __init__(self, run_path: Path, command: str = "fbp train"):
        self.path = Path(run_path) / LOCK_FILE
        self.command = command
        self.mine: Dict[str, Any] = {}
        self.took_over: Optional[Dict[str, Any]] = None  # the stale lock that was replaced, if any

    def holder(self) -> Optional[Dict[str, Any]]:
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            content = {}
        return content if isinstance(content, dict) else {}

    def acquire(self) -> "RunLock":
        import os
        import socket

        from ..atomic import pid_alive, process_start

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FbpError(f"cannot create the run directory {self.path.parent}: {error.strerror or error}") from None
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "process_start": process_start(os.getpid())}
        for _ in range(3):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released in the meantime
                pid, host = holder.get("pid"), holder.get("host")
                if not isinstance(pid, int):
                    age = time.time() - self.path.stat().st_mtime
                    if age < 10:  # being written right now
                        time.sleep(0.2)
                        continue
                elif host != socket.gethostname():
                    raise FbpError(
                        f"{self.path.parent} is locked by {holder.get('command', 'fbp')} (pid {pid} on host {host}, since "
                        f"{holder.get('started', '?')}); this host cannot tell whether it still runs. If it does not, delete {self.path}"
                    )
                elif pid_alive(pid) and holder.get("process_start") in (None, process_start(pid)):  # not a reused pid
                    raise FbpError(
                        f"{self.path.parent} is in use by another {holder.get('command', 'fbp')} (pid {pid}, since "
                        f"{holder.get('started', '?')}); wait for it to finish or stop it, or write into another directory"
                    )
                self.took_over = holder
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(json.dumps(mine))
            self.mine = mine
            return self
        raise FbpError(f"could not lock {self.path.parent}: {self.path} keeps changing (another fbp command starting?)")

    def release(self) -> None:
        holder = self.holder()
        if self.mine and holder is not None and holder.get("pid") == self.mine.get("pid") and holder.get("host") == self.mine.get("host"):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_run_json(path: Union[str, Path]) -> RunRecord:
    """A ``run.json`` file, validated (FbpError when it is unreadable or not one)."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FbpError(f"cannot read {path}: {error}") from None
    return RunRecord.from_content(content, path)
