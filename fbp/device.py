"""The one place that decides where a model runs and in which precision (training, prediction, inference).

- device: a GPU when there is one and none was asked for, else the CPU; asking for a GPU that is not there
  is an error, not a silent fallback.
- precision: ``auto`` is bf16 on GPUs that support it, fp16 on other GPUs, fp32 on the CPU (fastest there).
- prediction batches: 4 windows on a CPU, 16 on a GPU, unless asked (:func:`predict_batch_size`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from typing import Any, Optional

from .errors import UsageError

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
# Windows per forward pass when predicting, unless asked. On a CPU, batches of 4 ran 4-7% faster than 16 with every
# runtime and took half the memory with ONNX Runtime (the attention scores of 16 windows of 512 tokens alone are
# 200 MB, out of cache); a GPU wants larger batches (bench/RESULTS.md, "Session of 2026-12-07").
PREDICT_BATCH_CPU, PREDICT_BATCH_GPU = 4, 16


# Without one of these a Linux machine has no GPU PyTorch could use (NVIDIA's driver, ROCm, WSL's GPU bridge).
GPU_DEVICE_FILES = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def gpu_available() -> bool:
    """Whether PyTorch sees a CUDA GPU. On Linux without a GPU driver's device files the answer is no without
    importing torch: the ONNX runtimes never load it (2 s and 200+ MB of start-up, bench/RESULTS.md)."""
    if sys.platform.startswith("linux") and not any(os.path.exists(path) for path in GPU_DEVICE_FILES):
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(requested: Optional[str] = None) -> str:
    """``cuda`` when a GPU is there and no device was asked for, else ``cpu``; the requested one otherwise."""
    if not requested:
        return "cuda" if gpu_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", requested):
        raise UsageError(f"unknown device {requested!r}: use cpu, cuda, cuda:N (a GPU's index) or mps")
    if requested == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise UsageError("device mps was asked for, but no Apple GPU is available here (use cpu)")
        return requested
    if requested.startswith("cuda") and not gpu_available():
        raise UsageError(f"device {requested} was asked for, but no CUDA GPU is available here (use cpu)")
    return requested


def predict_batch_size(requested: Optional[int], device: str) -> int:
    """``requested`` windows per forward pass, else :data:`PREDICT_BATCH_CPU` on a CPU and :data:`PREDICT_BATCH_GPU` on
    a GPU (``device`` as :func:`resolve_device` gives it)."""
    if requested is not None:
        if requested < 1:
            raise UsageError(f"the batch size must be at least 1, got {requested}")
        return int(requested)
    return PREDICT_BATCH_CPU if str(device).startswith("cpu") else PREDICT_BATCH_GPU


def resolve_precision(requested: str = "auto", device: Optional[str] = None) -> str:
    """``bf16``, ``fp16`` or ``fp32`` for ``device`` (default: the one :func:`resolve_device` picks)."""
    import torch

    device = device or resolve_device()
    on_gpu = str(device).startswith("cuda")
    if requested not in PRECISIONS:
        raise UsageError(f"unknown precision {requested!r}; expected one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        if requested in ("bf16", "fp16") and not on_gpu:
            raise UsageError(f"{requested} precision needs a GPU, and this run is on {device}; use fp32 (or auto) on a CPU")
        return requested
    if not on_gpu:
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: Any, precision: str = "auto") -> Any:
    """The autocast context for inference on ``device`` in ``precision`` (nothing for fp32)."""
    import torch

    resolved = resolve_precision(precision, str(device))
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if resolved == "bf16" else torch.float16)
