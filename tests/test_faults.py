"""Crash points: ``kill -9`` a command at the moments that can leave something behind, rerun it, and check that it
resumes to exactly what an uninterrupted run writes, with no temporary file left.

Black-box: every command runs as ``python -m fbp ...`` in a subprocess, and ``FBP_CRASH_AT`` (see fbp/faults.py)
makes the process SIGKILL itself at a named point. Everything is tiny (12 demo essays, 2 folds, a one-layer random
BERT, 2 epochs of 2 steps), so the whole file costs a few dozen seconds of CPU.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

# 26 windows of 128 tokens for the 6 training essays of fold 0, 16 per step: 2 optimizer steps per epoch.
TRAIN_SETTINGS = [
    "--epochs", "2", "--fold", "0", "--wandb", "disabled",
    "--set", "training.batch_size=16", "--set", "training.learning_rate=1e-3",
    "--set", "windows.max_length=128", "--set", "windows.stride=32",
]
# Names that only a write in progress (or a process that died during one) leaves behind.
LEFTOVER = re.compile(r"(\.tmp|\.old-|fbp-infer-|\.lock$)")


def fbp(*args, cwd: Path, crash_at: Optional[str] = None) -> subprocess.CompletedProcess:
    """Run ``python -m fbp ARGS`` in ``cwd``; with ``crash_at``, the process kills itself there."""
    from conftest import run_fbp_process

    env = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "WANDB_SILENT": "true", "FBP_CRASH_AT": crash_at}
    return run_fbp_process(*args, env=env, cwd=cwd)


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def assert_killed(done: subprocess.CompletedProcess, point: str) -> None:
    assert done.returncode == -signal.SIGKILL, f"the process did not die at crash point {point} (exit {done.returncode}):\n{output(done)[-3000:]}"


def assert_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, output(done)[-4000:]
    assert "Traceback" not in output(done), output(done)[-4000:]


def leftovers(root: Path) -> List[str]:
    """Temporary files and folders, stale locks and unfinished Trainer checkpoints under ``root``."""
    found = [str(path.relative_to(root)) for path in root.rglob("*") if LEFTOVER.search(path.name)]
    return found + [str(path.relative_to(root)) for path in root.rglob(".work")]


def comparable_summary(run_dir: Path) -> Dict:
    """``run.json`` without what differs between two identical runs: timings and the creation time."""
    summary = json.loads((run_dir / "run.json").read_text())
    for key in ("created", "train_seconds"):
        summary.pop(key, None)
    for fold in summary["folds"]:
        fold.pop("seconds", None)
        for epoch in fold["epochs"]:
            epoch.pop("seconds", None)
    return summary


def assert_same_run(run_dir: Path, reference: Path) -> None:
    from safetensors.numpy import load_file

    assert comparable_summary(run_dir) == comparable_summary(reference)
    with np.load(run_dir / "oof_word_probs.npz") as got, np.load(reference / "oof_word_probs.npz") as want:
        assert sorted(got.files) == sorted(want.files)
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"oof_word_probs.npz: {key}")
    assert json.loads((run_dir / "decoding.json").read_text()) == json.loads((reference / "decoding.json").read_text())
    got, want = load_file(run_dir / "fold_0" / "model.safetensors"), load_file(reference / "fold_0" / "model.safetensors")
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"fold_0 weights: {name}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    """A 12-essay demo corpus, its processed dataset (2 folds) and an uninterrupted reference run of fold 0."""
    root = tmp_path_factory.mktemp("faults")
    assert_ok(fbp("demo-data", "demo", "--essays", "12", "--seed", "0", cwd=root))
    assert_ok(fbp("preprocess", "demo", "-o", "processed", "--folds", "2", "--seed", "0", cwd=root))
    reference = root / "reference"
    reference.mkdir()
    train = ["train", "--data", root / "processed", "--model", tiny_model_dir, "-o", "run", *TRAIN_SETTINGS]
    assert_ok(fbp(*train, cwd=reference))
    assert not leftovers(reference), leftovers(reference)
    return {"root": root, "train": train, "reference": reference / "run"}


# Each point: where the kill lands, and what the rerun must say about what it found.
TRAIN_CRASHES = {
    # The first step of epoch 2 (epoch 1 is checkpointed): the rerun continues from epoch 1's checkpoint.
    "train_step@3": "resuming fold 0 from checkpoint-2",
    # Epoch 2's checkpoint half-written (weights, no trainer_state.json): ignored, epoch 1's is used.
    "checkpoint_save@2": "resuming fold 0 from checkpoint-2",
    # The fold's best checkpoint exported, run.json not yet written: no epoch is trained again.
    "fold_end": "resuming fold 0 from checkpoint-4",
    # Inside the atomic write of the out-of-fold probabilities (a temporary file is left by the kill).
    "write:oof_word_probs.npz": "resuming fold 0 from checkpoint-4",
}


@pytest.mark.parametrize("point", list(TRAIN_CRASHES))
def test_a_training_killed_at_any_point_resumes_to_the_same_run(workspace, tmp_path, point):
    assert_killed(fbp(*workspace["train"], cwd=tmp_path, crash_at=point), point)
    assert not (tmp_path / "run" / "run.json").exists() or json.loads((tmp_path / "run" / "run.json").read_text())
    resumed = fbp(*workspace["train"], cwd=tmp_path)
    assert_ok(resumed)
    assert TRAIN_CRASHES[point] in output(resumed), output(resumed)[-3000:]
    if point in ("fold_end", "write:oof_word_probs.npz"):
        assert not re.search(r"(: |, )saved", output(resumed)), "an epoch was trained again"
    assert_same_run(tmp_path / "run", workspace["reference"])
    assert not leftovers(tmp_path), leftovers(tmp_path)


def test_a_killed_preprocess_leaves_nothing_and_reruns_to_the_same_data(workspace, tmp_path):
    import pandas as pd

    root = workspace["root"]
    command = ["preprocess", root / "demo", "-o", "processed", "--folds", "2", "--seed", "0"]
    assert_killed(fbp(*command, cwd=tmp_path, crash_at="write:processed"), "write:processed")
    assert not (tmp_path / "processed").exists(), "a half-written processed dataset is visible"
    assert_ok(fbp(*command, cwd=tmp_path))
    for name in ("essays.parquet", "spans.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "processed" / name), pd.read_parquet(root / "processed" / name))
    assert json.loads((tmp_path / "processed" / "meta.json").read_text()) == json.loads((root / "processed" / "meta.json").read_text())
    # A kill while an earlier output is being replaced: the swap is one atomic step, so the output is always there.
    assert_killed(fbp(*command, cwd=tmp_path, crash_at="replace:processed"), "replace:processed")
    assert (tmp_path / "processed" / "meta.json").exists(), "the processed dataset vanished during its replacement"
    assert_ok(fbp(*command, cwd=tmp_path))
    assert not leftovers(tmp_path), leftovers(tmp_path)


@pytest.fixture(scope="module")
def infer_command(workspace):
    """``fbp infer`` of the reference run on the demo's unlabeled essays, and its uninterrupted outputs."""
    command = ["infer", workspace["reference"], "-i", workspace["root"] / "demo" / "test", "-o", "out/submission.csv",
               "--save-probs", "out/word_probs.npz"]
    reference = workspace["root"] / "infer-reference"
    reference.mkdir()
    assert_ok(fbp(*command, cwd=reference))
    return command, reference / "out"


# The kill lands with every word probability in the scratch file and a temporary submission written, not renamed.
@pytest.mark.parametrize("point", ["write:submission.csv"])
def test_a_killed_infer_leaves_nothing_and_reruns_to_the_same_submission(infer_command, tmp_path, point):
    command, reference = infer_command
    assert_killed(fbp(*command, cwd=tmp_path, crash_at=point), point)
    assert not (tmp_path / "out" / "submission.csv").exists(), "a half-written submission is visible"
    assert_ok(fbp(*command, cwd=tmp_path))
    assert (tmp_path / "out" / "submission.csv").read_text() == (reference / "submission.csv").read_text()
    with np.load(tmp_path / "out" / "word_probs.npz") as got, np.load(reference / "word_probs.npz") as want:
        for key in want.files:
            np.testing.assert_array_equal(got[key], want[key])
    assert not leftovers(tmp_path), leftovers(tmp_path)
