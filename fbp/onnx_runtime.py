"""Choosing a runtime for a checkpoint, and running its ONNX export with ONNX Runtime.

Runtimes: ``torch`` (the checkpoint's PyTorch model), ``onnx`` (its fp32 ONNX export, with ONNX Runtime's transformer
fusions), ``onnx-int8`` (dynamic int8 weights). ``auto`` picks, on a CPU, the int8 export when ``fbp export`` checked
that it keeps the spans (competition F1 on held-out essays, outside the run or else of the checkpoint's fold, within
0.005 macro and 0.01 per class of PyTorch's), else the fp32 export, else PyTorch; on a GPU, PyTorch. ``auto`` never exports by itself: an
export takes a while, writes into the checkpoint (which may be read-only, e.g. a Kaggle dataset) and checks int8 on
essays, which the user should choose to spend; fbp says when an export would help.

Every runtime returns token probabilities to the same windowing and stitching (:func:`fbp.word_probs.stream_word_probs`),
so decoding, ensembles and the HTML view do not know which one ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .errors import FbpError, UsageError

RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")
ONNX_RUNTIMES = ("onnx", "onnx-int8")


@dataclass
class RuntimeChoice:
    """The runtime a checkpoint will run with, and why (shown to the user)."""

    runtime: str  # torch | onnx | onnx-int8
    reason: str
    model_path: Optional[Path] = None  # the ONNX file, for the onnx runtimes
    tokenizer_json: bool = False  # the onnx runtimes tokenise with tokenizer.json alone (checked at export): no transformers, no torch


def choose_runtime(checkpoint: Path, requested: str, device: str) -> RuntimeChoice:
    """Which runtime runs ``checkpoint`` (see the module docstring); an asked-for ONNX runtime without its export
    is an error naming the command that makes it."""
    from .io.onnx_export import export_state, tokenizer_json_usable, variant_path

    if requested not in RUNTIMES:
        raise UsageError(f"unknown runtime {requested!r}; choose one of {', '.join(RUNTIMES)}")
    if requested == "torch":
        return RuntimeChoice("torch", "asked for")
    on_gpu = not str(device).startswith("cpu")
    if requested in ONNX_RUNTIMES and on_gpu:
        raise UsageError(f"--runtime {requested} runs on the CPU (fbp ships onnxruntime's CPU build); give --device cpu, or --runtime torch on the GPU")
    if requested == "auto" and on_gpu:
        return RuntimeChoice("torch", f"auto: PyTorch on {device}")
    record, stale = export_state(checkpoint)
    if record is None:
        if requested == "auto":
            why = "the ONNX export is stale: it was made from other weights" if stale else "no ONNX export"
            return RuntimeChoice("torch", f"auto: {why}; fbp export CKPT_OR_RUN once makes CPU inference faster" if not stale else f"auto: {why}")
        raise FbpError(stale or f"{checkpoint} has no ONNX export; run fbp export {checkpoint} first (or --runtime torch)")
    tokenizer_json = tokenizer_json_usable(checkpoint, record)
    if requested in ONNX_RUNTIMES:
        return RuntimeChoice(requested, "asked for", variant_path(checkpoint, record, requested), tokenizer_json)
    int8 = record.variants.get("onnx-int8")
    if int8 is not None and int8.quality is not None and int8.quality.keeps_spans:
        return RuntimeChoice("onnx-int8", "auto: int8 kept the spans on held-out essays (onnx/export.json)",
                             variant_path(checkpoint, record, "onnx-int8"), tokenizer_json)
    if "onnx" in record.variants:
        why = "int8 not checked on essays" if int8 is not None and int8.quality is None else "int8 did not keep the spans in the export's check" if int8 is not None else "no int8 export"
        return RuntimeChoice("onnx", f"auto: fp32 ONNX ({why})", variant_path(checkpoint, record, "onnx"), tokenizer_json)
    return RuntimeChoice("torch", "auto: the export holds no usable model")


def session_options(threads: Optional[int] = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initialisers are noise to a user
    return options


class OnnxTokenClassifier:
    """An ONNX token-classification model in an ONNX Runtime CPU session: windows in, token probabilities out."""

    def __init__(self, model_path: Path, threads: Optional[int] = None):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(str(model_path), session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for a bad file
            raise FbpError(f"cannot load {model_path}: {str(error).splitlines()[0]}") from None
        self.input_names = [item.name for item in self.session.get_inputs()]

    def probabilities(self, features: List[Dict[str, Any]], tokenizer: Any) -> np.ndarray:
        """Token probabilities ``(batch, longest, 15)`` of a batch of unpadded windows (padded as PyTorch's are)."""
        batch = tokenizer.pad(features, return_tensors="np")
        longest = batch["input_ids"].shape[1]
        feeds = {name: np.asarray(batch[name], dtype=np.int64) if name in batch else np.zeros((len(features), longest), dtype=np.int64)
                 for name in self.input_names}
        logits = self.session.run(None, feeds)[0]
        logits = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(logits, dtype=np.float32)
        return probs / probs.sum(axis=-1, keepdims=True)


def onnx_word_probs(
    model_path: Path, tokenizer: Any, texts: Iterable[str], max_length: int, stride: int, batch_size: int,
    on_progress=None, threads: Optional[int] = None,
) -> Iterator[Tuple[int, np.ndarray]]:
    """Like :func:`fbp.word_probs.predict_word_probs`, with the ONNX model at ``model_path``."""
    from .word_probs import stream_word_probs

    classifier = OnnxTokenClassifier(model_path, threads)
    yield from stream_word_probs(lambda features: classifier.probabilities(features, tokenizer), tokenizer, texts, max_length, stride, batch_size, on_progress)
