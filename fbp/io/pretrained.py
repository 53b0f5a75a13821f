"""A model directory written by ``fbp pretrain``: a standard Hugging Face masked-LM directory (``config.json``,
``model.safetensors``, tokenizer files) plus ``fbp-pretrained.json`` (:class:`PretrainedMeta`): the base model,
the settings, the figures of the run, and which essays the text came from (id and a hash of each essay's text),
so that ``fbp train --model DIR`` can say when a fold's validation essays were in the pretraining text.

``AutoModelForTokenClassification.from_pretrained(DIR)`` takes the encoder and draws a new head, which is what
``fbp train --model DIR`` does. This module is the only one that reads or writes ``fbp-pretrained.json``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import __version__
from ..atomic import write_dir_atomically
from ..errors import FbpError

PRETRAINED_META_FILE = "fbp-pretrained.json"
FORMAT = "fbp-pretrained"
VERSION = 1


def text_hash(text: str) -> str:
    """A short hash of an essay's words (whitespace-insensitive: the same essay from a .txt or a processed dataset)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


class PretrainedMeta(BaseModel):
    """``fbp-pretrained.json``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format: str = FORMAT
    version: int = VERSION
    fbp_version: str = __version__
    base_model: str
    created: str
    settings: Dict[str, Any]
    sources: List[str]  # the processed dataset and the text folders read
    essays: Dict[str, str]  # essay id -> text_hash of its text
    tokens: int  # tokens of text per epoch
    steps: int
    seconds: float
    tokens_per_second: float
    train_loss: Optional[float] = None
    eval_loss: Optional[float] = None
    eval_perplexity: Optional[float] = None
    mlm_head_initialised: bool = False  # the base model had no masked-LM head: a new one was drawn (tied to the embeddings)

    def essays_digest(self) -> str:
        """One hash of every essay read (ids and texts)."""
        return hashlib.sha256(json.dumps(sorted(self.essays.items())).encode()).hexdigest()[:16]


def is_pretrained_dir(path: Union[str, Path]) -> bool:
    """True for a directory written by ``fbp pretrain`` (its metadata next to a model ``config.json``)."""
    path = Path(path)
    return (path / PRETRAINED_META_FILE).is_file() and (path / "config.json").is_file()


def read_pretrained_meta(directory: Union[str, Path]) -> Optional[PretrainedMeta]:
    """The metadata of a pretrained model directory; None for any other model; FbpError when it is unreadable."""
    path = Path(directory) / PRETRAINED_META_FILE
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FbpError(f"{path}: unreadable ({error}); pretrain again or remove the file") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise FbpError(f"{path}: not an fbp-pretrained file (format {content.get('format') if isinstance(content, dict) else None!r})")
    if isinstance(content.get("version"), int) and content["version"] > VERSION:
        raise FbpError(f"{path}: version {content['version']} is newer than this fbp reads ({VERSION}); upgrade fbp")
    try:
        return PretrainedMeta.model_validate(content)
    except ValidationError as error:
        first = error.errors()[0]
        raise FbpError(f"{path}: invalid {'.'.join(map(str, first['loc']))} ({first['msg']})") from None


def save_pretrained_dir(directory: Union[str, Path], model: Any, tokenizer: Any, meta: PretrainedMeta) -> Path:
    """Write the model (safetensors), tokenizer and ``fbp-pretrained.json`` to ``directory``, atomically: a crash
    leaves the previous directory or the new one. Only an earlier ``fbp pretrain`` output (or an empty
    directory) is replaced."""
    from ..model import quiet_transformers

    directory = Path(directory)

    def write(staging: Path) -> None:
        with quiet_transformers():
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
        if any(staging.glob("*.bin")):
            raise FbpError(f"refusing to save {directory}: weights were not written as safetensors")
        (staging / PRETRAINED_META_FILE).write_text(meta.model_dump_json(indent=1) + "\n", encoding="utf-8")

    return write_dir_atomically(directory, write, replaceable=is_pretrained_dir)


def validation_overlap(meta: PretrainedMeta, essays: Iterable[Tuple[str, str, int]]) -> Dict[int, int]:
    """Per fold, how many of its essays ``(id, text, fold)`` were in the pretraining text (same id and same text)."""
    counts: Dict[int, int] = {}
    for essay_id, text, fold in essays:
        stored = meta.essays.get(str(essay_id))
        if stored is not None and stored == text_hash(text):
            counts[int(fold)] = counts.get(int(fold), 0) + 1
    return counts
