"""A checkpoint directory: a standard Hugging Face token-classification directory (``config.json`` with the
15 BIO labels, ``model.safetensors``, tokenizer files) plus ``fbp.json`` (:class:`CheckpointMeta`: window
length, stride, label placement, base model, fold, run, best epoch, fbp version and the decoding thresholds
the fold was scored with). Anything that reads Hugging Face directories (``from_pretrained``, ``pipeline``)
loads it offline.

``fbp.json`` is written once, when the checkpoint is saved. Thresholds tuned later (at the end of
``fbp train``, or by ``fbp evaluate RUN --tune``) go to the run's ``decoding.json``;
:func:`fbp.io.run_dir.checkpoint_decoding` gives a checkpoint inside a run those, so ``fbp infer RUN/fold_0`` decodes with
the tuned thresholds without ``fbp.json`` being rewritten.

This module is the only one that reads or writes ``fbp.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import SafetensorError

from .. import __version__
from ..atomic import write_dir_atomically
from ..config import ThresholdConfig
from ..errors import FbpError, UsageError
from ..labels import LABELS, NUM_LABELS

FBP_META_FILE = "fbp.json"


class CheckpointMeta(BaseModel):
    """``fbp.json``: what fbp needs besides the Hugging Face files to use a checkpoint."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    max_length: int
    stride: int
    label_subtokens: str = "first"
    model: Optional[str] = None  # the base model it was trained from
    fold: Optional[int] = None
    run: Optional[str] = None
    fbp_version: str = __version__
    decoding: Optional[ThresholdConfig] = None  # the thresholds the fold was scored with
    best_epoch: Optional[int] = None
    best_f1: Optional[float] = None
    # Not stored in fbp.json: the labels of config.json's id2label, in id order.
    labels: List[str] = []

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude={"labels"}, exclude_none=True), indent=2) + "\n"


@dataclass
class Checkpoint:
    """A loaded fbp checkpoint: the model (eval mode), its tokenizer and its ``fbp.json`` metadata."""

    path: Path
    model: Any
    tokenizer: Any
    meta: CheckpointMeta


def save_checkpoint(directory: Union[str, Path], model: Any, tokenizer: Any, meta: CheckpointMeta) -> Path:
    """Write model (safetensors), tokenizer and ``fbp.json`` to ``directory``, atomically.

    Everything goes to a temporary sibling directory first, which then replaces ``directory``, so a
    crash leaves either the previous checkpoint or the new one, never half of one.
    """
    from ..quiet import quiet_transformers

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    meta = meta if isinstance(meta, CheckpointMeta) else CheckpointMeta.model_validate(meta)

    def write(staging: Path) -> None:
        with quiet_transformers():
            model.save_pretrained(staging)  # safetensors is the only format transformers 5 writes
            tokenizer.save_pretrained(staging)
        (staging / FBP_META_FILE).write_text(meta.to_json(), encoding="utf-8")
        if any(staging.glob("*.bin")):
            raise FbpError(f"refusing to save {directory}: weights were not written as safetensors")

    write_dir_atomically(directory, write, replaceable=is_checkpoint)
    return directory


def is_checkpoint(path: Union[str, Path]) -> bool:
    """True for a directory holding an fbp checkpoint (``fbp.json`` next to a model ``config.json``)."""
    path = Path(path)
    return (path / FBP_META_FILE).is_file() and (path / "config.json").is_file()


def read_checkpoint_meta(directory: Union[str, Path]) -> CheckpointMeta:
    """``fbp.json`` of a checkpoint, validated, with ``labels`` (its id2label in id order) from ``config.json``."""
    directory = Path(directory)
    if not is_checkpoint(directory):
        raise FbpError(f"{directory} is not an fbp checkpoint (no {FBP_META_FILE} and config.json)")
    try:
        stored = json.loads((directory / FBP_META_FILE).read_text(encoding="utf-8"))
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FbpError(f"{directory}: unreadable checkpoint metadata ({error})") from None
    if not isinstance(stored, dict):
        raise FbpError(f"{directory / FBP_META_FILE}: expected a JSON object (window length, stride, ...), found a {type(stored).__name__}")
    if not isinstance(config, dict) or not isinstance(config.get("id2label") or {}, dict):
        raise FbpError(f"{directory / 'config.json'}: not a model config (expected a JSON object with id2label)")
    id2label = config.get("id2label") or {}
    try:
        return CheckpointMeta.model_validate({**stored, "labels": [id2label[key] for key in sorted(id2label, key=int)]})
    except ValidationError as error:
        problem = error.errors()[0]
        raise FbpError(f"{directory / FBP_META_FILE}: {'.'.join(map(str, problem['loc']))}: {problem['msg']}") from None


def load_checkpoint(directory: Union[str, Path], device: Optional[str] = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (offline; the model in eval mode)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from ..quiet import quiet_transformers

    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    if tuple(meta.labels) != LABELS:
        raise FbpError(f"{directory}: its labels {meta.labels} are not fbp's {list(LABELS)}")
    check_safetensors(directory)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(directory)
            model = AutoModelForTokenClassification.from_pretrained(directory, use_safetensors=True)
    except (OSError, ValueError, SafetensorError) as error:
        raise FbpError(f"cannot load checkpoint {directory}: {_load_problem(error)}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise FbpError(f"{directory}: the tokenizer is not a fast tokenizer")
    if device is not None:
        model.to(device)
    model.eval()
    return Checkpoint(path=directory, model=model, tokenizer=tokenizer, meta=meta)


def check_safetensors(directory: Union[str, Path]) -> None:
    """Refuse a model directory whose weights are only a pickle (``pytorch_model.bin``): loading a pickle can run
    code, so fbp loads safetensors only."""
    directory = Path(directory)
    if not directory.is_dir() or any(directory.glob("*.safetensors")) or (directory / "model.safetensors.index.json").exists():
        return
    pickles = sorted(path.name for path in directory.glob("*.bin")) + sorted(path.name for path in directory.glob("*.pt"))
    if pickles:
        raise FbpError(
            f"{directory} holds its weights only as a pickle ({', '.join(pickles[:3])}); fbp loads safetensors only, since "
            "loading a pickle can run code. Convert it from a trusted copy (model.save_pretrained(dir) writes model.safetensors)"
        )


def _load_problem(error: Exception) -> str:
    """One line for a failed load; a damaged weights file says so."""
    if isinstance(error, SafetensorError) or "safetensors" in type(error).__module__:
        return f"model.safetensors is damaged or incomplete ({str(error).splitlines()[0]})"
    return str(error).splitlines()[0]


def run_checkpoints(run_directory: Union[str, Path]) -> List[Path]:
    """The fold checkpoints (``fold_0``, ``fold_1``, ...) of a run directory, in fold order."""
    folds = [path for path in Path(run_directory).glob("fold_*") if is_checkpoint(path)]
    return sorted(folds, key=lambda path: (len(path.name), path.name))


def expand_checkpoints(paths: Iterable[Union[str, Path]]) -> List[Path]:
    """Checkpoint directories from a mix of checkpoints and run directories (a run means all its folds)."""
    checkpoints: List[Path] = []
    for raw in paths:
        path = Path(raw)
        if is_checkpoint(path):
            found = [path]
        elif path.is_dir() and run_checkpoints(path):
            found = run_checkpoints(path)
        elif not path.exists():
            raise FbpError(f"{path} does not exist")
        elif path.is_file():
            raise FbpError(f"{path} is a file, not a checkpoint or run directory")
        else:
            raise FbpError(f"{path} is neither an fbp checkpoint (no {FBP_META_FILE}) nor a run directory with fold_* checkpoints")
        checkpoints.extend(candidate for candidate in found if candidate not in checkpoints)
    if not checkpoints:
        raise UsageError("no checkpoints given")
    return checkpoints


def check_label_sets(checkpoints: Sequence[Path]) -> None:
    """Every checkpoint must predict fbp's 15 labels in the same order, or their probabilities cannot be averaged."""
    for checkpoint in checkpoints:
        labels = read_checkpoint_meta(checkpoint).labels
        if tuple(labels) != LABELS:
            extra = sorted(set(labels) - set(LABELS)) or labels
            raise FbpError(f"checkpoint {checkpoint} has a different label set ({len(labels)} labels, e.g. {extra[:3]}) than fbp's {NUM_LABELS}; they cannot be combined")
