"""Where a model runs and in which precision (fbp.device): a GPU when there is one, an error (never a silent
fallback) for one asked for that is not there, and precision chosen for the device."""

from __future__ import annotations

import contextlib

import pytest
import torch

from fbp import device as fbp_device
from fbp.errors import UsageError


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with or without a CUDA GPU (and with or without bf16 on it)."""

    def pretend(gpu: bool, bf16: bool = True) -> None:
        monkeypatch.setattr(fbp_device, "GPU_DEVICE_FILES", ("/",))  # a driver's files "exist": torch is asked
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)

    return pretend


@pytest.mark.parametrize("gpu, requested, expected", [
    (True, None, "cuda"), (False, None, "cpu"), (True, "", "cuda"),
    (True, "cpu", "cpu"), (False, "cpu", "cpu"), (True, "cuda:1", "cuda:1"),
])
def test_the_device_is_the_gpu_when_there_is_one_unless_another_is_asked_for(machine, gpu, requested, expected):
    machine(gpu)
    assert fbp_device.resolve_device(requested) == expected


@pytest.mark.parametrize("requested, words", [
    ("cuda", ["no CUDA GPU", "use cpu"]), ("cuda:0", ["cuda:0", "no CUDA GPU"]), ("gpu", ["unknown device", "cuda:N"]), ("cuda:x", ["unknown device"]),
])
def test_a_device_that_is_not_there_is_a_usage_error_not_a_fallback(machine, requested, words):
    machine(False)
    with pytest.raises(UsageError) as raised:
        fbp_device.resolve_device(requested)
    assert all(word in str(raised.value) for word in words), str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("gpu, bf16, requested, device, expected", [
    (False, True, "auto", None, "fp32"),  # a CPU: fp32 is the fastest there
    (True, True, "auto", None, "bf16"),
    (True, False, "auto", None, "fp16"),  # a GPU without bf16
    (True, True, "auto", "cpu", "fp32"),  # a GPU machine asked to run on its CPU
    (True, True, "fp16", "cuda", "fp16"),
    (True, True, "fp32", "cuda", "fp32"),
])
def test_precision_follows_the_device(machine, gpu, bf16, requested, device, expected):
    machine(gpu, bf16)
    assert fbp_device.resolve_precision(requested, device) == expected


@pytest.mark.parametrize("requested, words", [("bf16", ["needs a GPU", "fp32"]), ("fp16", ["needs a GPU"]), ("half", ["unknown precision", "auto, bf16, fp16, fp32"])])
def test_a_precision_the_device_cannot_do_is_a_usage_error(machine, requested, words):
    machine(False)
    with pytest.raises(UsageError) as raised:
        fbp_device.resolve_precision(requested, "cpu")
    assert all(word in str(raised.value) for word in words), str(raised.value)


def test_inference_autocasts_only_below_fp32(machine):
    machine(False)
    assert isinstance(fbp_device.autocast("cpu"), contextlib.nullcontext)  # fp32 on a CPU: no autocast at all
    machine(True, bf16=True)
    cast = fbp_device.autocast("cuda")
    assert isinstance(cast, torch.autocast) and cast.fast_dtype == torch.bfloat16
    machine(True, bf16=False)
    assert fbp_device.autocast("cuda").fast_dtype == torch.float16


def test_without_a_gpu_drivers_files_the_device_is_the_cpu_and_torch_is_not_imported():
    """The ONNX runtimes never load torch; deciding the device must not load it either (start-up and memory)."""
    import subprocess
    import sys

    code = ("import sys; import fbp.device as d; d.GPU_DEVICE_FILES = ('/nonexistent/driver',); "
            "print(d.resolve_device(None), 'torch' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["cpu", "False"] if sys.platform.startswith("linux") else shown[0] in ("cpu", "cuda")


@pytest.mark.parametrize("requested, device, expected", [
    (None, "cpu", fbp_device.PREDICT_BATCH_CPU),  # small batches: as fast on a CPU, in half the memory
    (None, "cuda", fbp_device.PREDICT_BATCH_GPU),
    (None, "cuda:1", fbp_device.PREDICT_BATCH_GPU),
    (None, "mps", fbp_device.PREDICT_BATCH_GPU),
    (32, "cpu", 32),  # asked for: always that
    (1, "cuda", 1),
])
def test_the_prediction_batch_follows_the_device_unless_asked(requested, device, expected):
    assert fbp_device.predict_batch_size(requested, device) == expected
    assert fbp_device.PREDICT_BATCH_CPU < fbp_device.PREDICT_BATCH_GPU


@pytest.mark.parametrize("requested", [0, -4])
def test_a_batch_below_one_is_a_usage_error(requested):
    with pytest.raises(UsageError, match="at least 1"):
        fbp_device.predict_batch_size(requested, "cpu")


def test_infer_without_a_batch_size_uses_the_devices_default(tmp_path, monkeypatch):
    """``fbp infer`` on a CPU with no --batch-size predicts in batches of PREDICT_BATCH_CPU; --batch-size overrides it."""
    import fbp.infer
    from conftest import run_cli
    from tiny_models import minilm_tokenizer, tiny_bert

    from fbp.io.checkpoint import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "fold_0", tiny_bert(), minilm_tokenizer(),
                                 {"max_length": 48, "stride": 12, "label_subtokens": "first", "model": "minilm", "fold": 0})
    essays = tmp_path / "essays"
    essays.mkdir()
    (essays / "A1.txt").write_text("Phones should be allowed in school because students can research. " * 30, encoding="utf-8")
    seen = []
    real = fbp.infer.predict_members
    monkeypatch.setattr(fbp.infer, "predict_members", lambda members, weights, essays, total, batch_size, *rest: seen.append(batch_size) or real(members, weights, essays, total, batch_size, *rest))
    for extra, expected in (([], fbp_device.PREDICT_BATCH_CPU), (["--batch-size", "7"], 7)):
        result = run_cli("infer", checkpoint, "--input", essays, "--device", "cpu", "--runtime", "torch", "-o", tmp_path / f"sub{len(extra)}.csv", *extra)
        assert result.exit_code == 0, result.output
        assert seen[-1] == expected
