"""Errors that come before any work: before the heavy imports, naming the argument and what is wrong, through the
real ``fbp`` process (exit code 1: a path that is not there is a data error, not a usage one)."""

from __future__ import annotations

import re

from conftest import run_fbp_process

ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "NO_COLOR": "1"}


def test_train_without_data_fails_fast_before_heavy_imports(tmp_path):
    result = run_fbp_process("train", "-o", tmp_path / "run", python_options=["-X", "importtime"], cwd=tmp_path, env=ENV, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "transformers", "accelerate"} & imported, "torch or transformers was imported before the data check"
    message = " ".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    assert "data/processed" in message
    for pointer in ("fbp preprocess", "fbp demo-data", "fbp quickstart"):
        assert pointer in message, message
    assert "run directory" not in result.stdout and not (tmp_path / "run").exists(), "the run directory was announced or created"
    assert "Traceback" not in result.stderr


def test_missing_paths_name_the_argument(tmp_path):
    result = run_fbp_process("infer", tmp_path / "nothing", "--input", tmp_path / "nowhere", env=ENV)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "nothing" in message and re.search(r"CKPT_OR_RUN|checkpoint", message, re.I), message
    (tmp_path / "ckpt").mkdir()
    result = run_fbp_process("infer", tmp_path / "ckpt", "--input", tmp_path / "nowhere", env=ENV)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "nowhere" in message and "--input" in message, message
    result = run_fbp_process("train", "--data", tmp_path / "nowhere", "-o", tmp_path / "run", env=ENV)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "nowhere" in message and "--data" in message, message
