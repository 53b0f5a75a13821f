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


def test_a_training_with_its_own_head_learning_rate_resumes_to_the_same_run(workspace, tmp_path):
    """The head's optimizer groups are rebuilt the same way on resume, so the saved optimizer state fits them."""
    train = [*workspace["train"], "--set", "training.head_learning_rate=2e-2"]
    reference = tmp_path / "reference"
    reference.mkdir()
    assert_ok(fbp(*train, cwd=reference))
    assert comparable_summary(reference / "run") != comparable_summary(workspace["reference"])  # the rate is used
    killed = tmp_path / "killed"
    killed.mkdir()
    assert_killed(fbp(*train, cwd=killed, crash_at="train_step@3"), "train_step@3")
    resumed = fbp(*train, cwd=killed)
    assert_ok(resumed)
    assert "resuming fold 0 from checkpoint-2" in output(resumed), output(resumed)[-3000:]
    assert_same_run(killed / "run", reference / "run")


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


# ---------------------------------------------------------------------------------------------------------------
# Issue 18, families 7, 9 and 10: a full or read-only disk, outputs committed together, SIGTERM, the decoder pair.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """Mount a tmpfs of a given size (root on Linux only; skipped cleanly elsewhere); unmounted afterwards."""
    import os
    import shutil

    mounted: List[Path] = []

    def mount(size_kb: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a small disk needs root")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def assert_one_message(done: subprocess.CompletedProcess, *words: str) -> None:
    text = output(done)
    assert done.returncode == 1, f"exit {done.returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text and "Bus error" not in text, text[-3000:]
    for word in words:
        assert word.lower() in " ".join(text.split()).lower(), f"{word!r} not in:\n{text[-3000:]}"


# Sizes that fill the disk at each step of fbp infer: the memory-mapped scratch (reserved up front), the submission,
# the probabilities, the HTML view. Each: one message naming the disk full, exit 1, earlier outputs untouched.
@pytest.mark.parametrize("size_kb", [4, 64, 160, 240])
def test_infer_on_a_full_disk_is_one_message_and_replaces_nothing(infer_command, small_disk, size_kb):
    command, reference = infer_command
    disk = small_disk(size_kb)
    (disk / "out").mkdir()
    old = "id,class,predictionstring\nearlier,Claim,1 2 3\n"
    (disk / "out" / "submission.csv").write_text(old)
    done = fbp(*command, "--html", "out/view", cwd=disk)
    if done.returncode == 0:  # everything fitted: then it is the same submission
        assert (disk / "out" / "submission.csv").read_text() == (reference / "submission.csv").read_text()
    else:
        assert_one_message(done, "disk is full")
        assert (disk / "out" / "submission.csv").read_text() == old, "a failing command replaced an output"
        assert not (disk / "out" / "word_probs.npz").exists()
    assert not leftovers(disk), leftovers(disk)


def test_training_on_a_full_disk_is_one_message(workspace, small_disk):
    disk = small_disk(1024)  # the run's config and record fit; the first checkpoint does not
    done = fbp(*workspace["train"], cwd=disk)
    assert_one_message(done, "full")
    assert not list(disk.rglob(".fbp.lock")), "the lock was left behind"


def test_a_run_on_a_read_only_disk_cannot_be_locked_one_message(workspace, small_disk):
    import shutil

    disk = small_disk(8192)
    shutil.copytree(workspace["reference"], disk / "run")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    done = fbp("evaluate", disk / "run", "--tune", cwd=workspace["root"])
    assert_one_message(done, "read-only", ".fbp.lock")


def test_a_failing_infer_replaces_none_of_its_outputs(infer_command, tmp_path):
    """Killed while its last output (the HTML view) is written: the submission and probabilities already computed are
    not in place either (outputs are committed together, at the end)."""
    command, _ = infer_command
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "submission.csv").write_text("earlier\n")
    assert_killed(fbp(*command, "--html", "out/view", cwd=tmp_path, crash_at="write:view"), "write:view")
    assert (tmp_path / "out" / "submission.csv").read_text() == "earlier\n"
    assert not (tmp_path / "out" / "word_probs.npz").exists() and not (tmp_path / "out" / "view").exists()


def test_sigterm_stops_like_ctrl_c_and_releases_the_lock(workspace, tmp_path):
    import os
    import sys
    import time

    from conftest import run_fbp_process  # noqa: F401  (the same environment as every other process here)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "COLUMNS": "200"}
    process = subprocess.Popen([sys.executable, "-m", "fbp", *map(str, workspace["train"])], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = tmp_path / "run" / ".fbp.lock"
    deadline = time.monotonic() + 300
    while not lock.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the training never took its lock"
    process.send_signal(signal.SIGTERM)
    text, _ = process.communicate(timeout=120)
    assert process.returncode == 143, f"exit {process.returncode}:\n{text[-3000:]}"
    assert "Traceback" not in text and ("stopped" in text or "terminated" in text), text[-3000:]
    assert not lock.exists(), "SIGTERM left the lock behind"


def test_the_learned_decoder_pair_is_read_as_one_while_rewritten(workspace, tmp_path):
    """A writer alternates two different fits; readers in another thread never see the JSON of one with the model of
    the other, and never fail (before: 10 failed loads in 4,597)."""
    import shutil
    import threading

    import lightgbm

    from fbp.io.decoder import load_decoder, save_decoder

    shutil.copytree(workspace["reference"], tmp_path / "run")
    path = tmp_path / "run" / "learned_decoder.json"
    first = load_decoder(path)
    codes, booster = first.models[0]
    smaller = lightgbm.Booster(model_str=booster.model_to_string(num_iteration=max(1, booster.current_iteration() // 2)))
    second = type(first)(first.settings, [(codes, smaller)], first.rules, first.feature_names, first.classes, {"fit": "second"})
    expected = {booster.model_to_string(): "first", smaller.model_to_string(): "second"}
    errors: List[str] = []
    loads = [0]
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                decoder = load_decoder(path)
                kind = expected[decoder.models[0][1].model_to_string()]
                assert (decoder.info.get("fit") == "second") == (kind == "second"), "JSON of one fit, model of the other"
                loads[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure counts
                errors.append(f"{type(error).__name__}: {error}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(60):
            save_decoder(second if round_ % 2 == 0 else first, path)
    finally:
        stop.set()
        reader.join()
    assert not errors, f"{len(errors)} failed loads of {loads[0] + len(errors)}: {errors[:3]}"
    assert loads[0] > 0
    assert len(list(path.parent.glob("learned_decoder*lgb.txt"))) == 1, "model files of earlier fits were left behind"
