"""A checkpoint's ONNX exports: the folder ``CHECKPOINT/onnx/`` made by ``fbp export``.

It holds ``model.onnx`` (fp32, with ONNX Runtime's transformer fusions), ``model_quantized.onnx`` (dynamic int8
weights; the names transformers.js and Optimum use, so other tools find them) and ``export.json`` (:class:`ExportRecord`):
the versions that made the files, a SHA-256 of the checkpoint's ``model.safetensors`` they were made from, a SHA-256
of each ONNX file, the model's inputs and outputs, and how closely each variant matched PyTorch.

A record whose weights hash no longer matches the checkpoint (it was retrained or replaced) is stale, and so is an
ONNX file whose hash differs from the record (damaged, or swapped): neither is ever used. The folder is written
whole, atomically, so a crash leaves the previous export or the new one.

This module is the only one that reads or writes that folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import FbpError

ONNX_DIR = "onnx"
RECORD_FILE = "export.json"
FORMAT = "fbp-onnx-v1"
VARIANT_FILES = {"onnx": "model.onnx", "onnx-int8": "model_quantized.onnx"}  # runtime name -> file


OUTSIDE_THE_RUN, VALIDATION_FOLD = "outside the run", "validation fold"  # where a QualityCheck's essays came from


class QualityCheck(BaseModel):
    """A variant's competition F1 against PyTorch fp32's on held-out essays, both decoded the same way."""

    model_config = ConfigDict(extra="forbid")

    essays: int
    # "outside the run" (processed essays no fold trained on) or "validation fold" (the checkpoint's own, when the
    # run used every essay); exports made before this field checked on the validation fold
    essays_from: str = VALIDATION_FOLD
    decoded_with: str = "auto"  # "learned" | "thresholds"; "auto": what fbp infer chose, before this field existed
    torch_f1: float
    f1: float
    torch_per_class: Dict[str, float]
    per_class: Dict[str, float]
    max_word_prob_diff: float
    keeps_spans: bool  # macro F1 within MAX_MACRO_DROP of PyTorch's, every class within MAX_CLASS_DROP

    def moves_beyond_rule(self) -> List[Tuple[str, float]]:
        """What broke the rule: see :func:`moves_beyond_rule`."""
        return moves_beyond_rule(self.torch_f1, self.f1, self.torch_per_class, self.per_class)


class VariantRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    sha256: str
    bytes: int
    max_prob_diff: float  # largest token-probability difference from PyTorch fp32 on the export's check windows
    settings: Dict[str, Any] = {}  # how it was made (fusions, quantisation options, layers kept in fp32)
    quality: Optional[QualityCheck] = None  # None: not checked on essays (auto then never picks an int8 variant)


class ExportRecord(BaseModel):
    """``export.json``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format: str = FORMAT
    weights_sha256: str  # of the checkpoint's model.safetensors the export was made from
    architecture: str  # config.json's model_type
    inputs: List[str]  # ONNX input names, in order: int64 (batch, sequence)
    outputs: List[str]  # ["logits"]: float32 (batch, sequence, 15), id2label order of config.json
    opset: int
    versions: Dict[str, str]  # fbp, torch, transformers, onnx, onnxruntime
    variants: Dict[str, VariantRecord]  # runtime name ("onnx", "onnx-int8") -> its file
    # SHA-256 of the checkpoint's tokenizer.json when export found that it alone (the tokenizers library, no
    # transformers or torch) makes transformers' windows; None: the ONNX runtimes load transformers' tokenizer.
    tokenizer_sha256: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


MAX_MACRO_DROP = 0.005
MAX_CLASS_DROP = 0.01


def moves_beyond_rule(torch_f1: float, f1: float, torch_per_class: Dict[str, float], per_class: Dict[str, float]) -> List[Tuple[str, float]]:
    """The rule a variant keeps the spans by, from both sides' competition F1: ``("macro" or a class, F1 minus PyTorch's)``
    for each move beyond MAX_MACRO_DROP (macro) or MAX_CLASS_DROP (a class), either way, largest first; empty: it keeps
    the spans. A class that moves a lot upwards counts too: the model does not predict what PyTorch predicts."""
    moves = [("macro", f1 - torch_f1, MAX_MACRO_DROP)]
    moves += [(name, per_class.get(name, 0.0) - value, MAX_CLASS_DROP) for name, value in torch_per_class.items()]
    return sorted(((name, gap) for name, gap, limit in moves if abs(gap) > limit), key=lambda move: -abs(move[1]))


def onnx_dir(checkpoint: Union[str, Path]) -> Path:
    return Path(checkpoint) / ONNX_DIR


def file_sha256(path: Union[str, Path]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(checkpoint: Union[str, Path]) -> str:
    """SHA-256 of the checkpoint's weights (``model.safetensors``, or its shards in name order)."""
    checkpoint = Path(checkpoint)
    files = sorted(checkpoint.glob("*.safetensors"))
    if not files:
        raise FbpError(f"{checkpoint} has no model.safetensors to export")
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for path in files:
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def read_export(checkpoint: Union[str, Path]) -> Optional[ExportRecord]:
    """The checkpoint's ``export.json``, validated; None when there is no export. A damaged record is an error."""
    path = onnx_dir(checkpoint) / RECORD_FILE
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FbpError(f"{path}: unreadable export record ({error}); run fbp export {checkpoint} --force") from None
    try:
        record = ExportRecord.model_validate(content)
    except ValidationError as error:
        problem = error.errors()[0]
        raise FbpError(f"{path}: {'.'.join(map(str, problem['loc']))}: {problem['msg']}; run fbp export {checkpoint} --force") from None
    if record.format != FORMAT:
        raise FbpError(f"{path}: format {record.format!r}, expected {FORMAT!r}; run fbp export {checkpoint} --force")
    return record


def export_state(checkpoint: Union[str, Path], weights_hash: Optional[str] = None) -> Tuple[Optional[ExportRecord], str]:
    """``(record, problem)``: the record when the export is current, else None and why ("" when there is none)."""
    record = read_export(checkpoint)
    if record is None:
        return None, ""
    current = weights_hash or weights_sha256(checkpoint)
    if record.weights_sha256 != current:
        return None, f"{onnx_dir(checkpoint)} was made from other weights (the checkpoint changed since); run fbp export again"
    return record, ""


def variant_path(checkpoint: Union[str, Path], record: ExportRecord, runtime: str) -> Path:
    """The ONNX file of ``runtime`` ("onnx" or "onnx-int8"), checked against its recorded size and hash."""
    variant = record.variants.get(runtime)
    if variant is None:
        raise FbpError(f"{onnx_dir(checkpoint)} has no {runtime} model; run fbp export {checkpoint}")
    path = onnx_dir(checkpoint) / variant.file
    if not path.is_file() or path.is_symlink():
        raise FbpError(f"{path} is missing; run fbp export {checkpoint} --force")
    if path.stat().st_size != variant.bytes or file_sha256(path) != variant.sha256:
        raise FbpError(f"{path} is damaged (its size or SHA-256 is not the one export.json records); run fbp export {checkpoint} --force")
    return path


def tokenizer_json_usable(checkpoint: Union[str, Path], record: ExportRecord) -> bool:
    """Whether the ONNX runtimes may tokenise with ``tokenizer.json`` alone: export checked it makes transformers'
    windows, and the file is still the one it checked."""
    from ..tokenizer_json import TOKENIZER_FILE

    path = Path(checkpoint) / TOKENIZER_FILE
    if record.tokenizer_sha256 is None or not path.is_file():
        return False
    return file_sha256(path) == record.tokenizer_sha256


def write_export(checkpoint: Union[str, Path], write_files, record_for) -> ExportRecord:
    """Make ``CHECKPOINT/onnx/`` atomically: ``write_files(staging)`` writes the ONNX files into a temporary folder,
    ``record_for(staging)`` returns the :class:`ExportRecord` (hashes are filled in here), then the folder replaces
    any earlier export in one step."""
    from ..atomic import write_dir_atomically

    made: Dict[str, ExportRecord] = {}

    def write(staging: Path) -> None:
        write_files(staging)
        record = record_for(staging)
        for variant in record.variants.values():
            path = staging / variant.file
            variant.sha256, variant.bytes = file_sha256(path), path.stat().st_size
        (staging / RECORD_FILE).write_text(record.to_json(), encoding="utf-8")
        made["record"] = record

    write_dir_atomically(onnx_dir(checkpoint), write, replaceable=lambda path: (path / RECORD_FILE).exists() or not any(path.iterdir()))
    return made["record"]
