"""End to end: the real ``fbp quickstart`` (demo corpus, preprocess, train with the packaged MiniLM,
evaluate, infer) as a user runs it, shrunk to a minute of CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_fbp_process


@pytest.mark.e2e
def test_quickstart_runs_the_whole_lifecycle_with_the_packaged_minilm(tmp_path):
    directory = tmp_path / "qs"
    completed = run_fbp_process("quickstart", directory, "--essays", "24", "--folds", "2", "--epochs", "1", timeout=1200)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    for command in ("fbp demo-data", "fbp preprocess", "fbp train", "fbp evaluate", "fbp infer"):
        assert f"$ {command}" in completed.stdout
    # each command printed whole, to copy (wrapped with a trailing backslash, never cut)
    from fbp.cli.quickstart import DEMO_TRAIN_SETTINGS

    assert "…" not in completed.stdout
    for setting in DEMO_TRAIN_SETTINGS:
        assert f"--set {setting}" in completed.stdout
    assert "run minilm-demo" in completed.stdout  # the run has a name (not "run run")
    summary = json.loads((directory / "runs" / "minilm-demo" / "run.json").read_text())
    assert summary["status"] == "complete" and summary["model"] == "minilm"
    assert [fold["fold"] for fold in summary["folds"]] == [0, 1]
    # cv_f1 is the macro F1 of every essay's out-of-fold prediction, decoded with the configured thresholds.
    from fbp.config import load_config
    from fbp.decode import decode_essays
    from fbp.io.processed import load_processed
    from fbp.io.word_probs import load_word_probs
    from fbp.metric import score

    oof = load_word_probs(directory / "runs" / "minilm-demo" / "oof_word_probs.npz")
    processed = load_processed(directory / "processed")
    assert set(oof) == set(processed.essays["id"]) and summary["cv_essays"] == len(processed.essays)
    decoding = load_config(directory / "runs" / "minilm-demo" / "config.yaml").decoding
    assert summary["cv_f1"] == pytest.approx(score(decode_essays(oof, decoding), processed.spans).f1, abs=1e-6)
    submission = pd.read_csv(directory / "submission.csv")
    assert list(submission.columns) == ["id", "class", "predictionstring"]
    test_ids = {path.stem for path in (directory / "kaggle" / "test").glob("*.txt")}
    assert set(submission["id"]) <= test_ids
    assert (directory / "html" / "index.html").exists()


def test_quickstart_prints_each_command_whole_and_wrapped():
    from fbp.cli.quickstart import command_lines, quickstart_commands

    for arguments in quickstart_commands(Path("quickstart"), 120, 2, 4, "disabled"):
        lines = command_lines(arguments, width=60)
        assert all(len(line) <= 60 for line in lines), lines
        assert all(line.endswith(" \\") for line in lines[:-1]) and not lines[-1].endswith("\\")
        joined = " ".join(line.rstrip("\\").strip() for line in lines)
        assert joined == "$ fbp " + " ".join(arguments)  # nothing cut, nothing added
        assert not any(line.lstrip().startswith(("training.", "windows.", "model.")) for line in lines[1:])  # --set stays with its value
