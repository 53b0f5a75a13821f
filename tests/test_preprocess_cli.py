"""`fbp preprocess` and `fbp demo-data` as a user runs them: exit codes, summary, nothing written on bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from conftest import run_cli, run_fbp_process

from fbp.io.processed import load_processed


def test_demo_data_then_preprocess(tmp_path):
    made = run_cli("demo-data", tmp_path / "demo", "--essays", "24", "--seed", "3")
    assert made.returncode == 0, made.stderr
    assert "24 labeled essays" in made.stdout
    done = run_cli("preprocess", tmp_path / "demo", "-o", tmp_path / "processed", "--folds", "3", "--seed", "1")
    assert done.returncode == 0, done.stderr
    summary = " ".join(done.stdout.split())  # independent of where the terminal wraps lines
    assert "24 essays" in summary and "3 folds (seed 1)" in summary
    for line in ("Lead", "Rebuttal", "Concluding Statement", "fold 2", "essays"):
        assert line in summary
    data = load_processed(tmp_path / "processed")
    assert data.meta["folds"] == 3 and data.meta["seed"] == 1 and len(data.essays) == 24


def test_bad_input_exits_1_with_one_message_and_writes_nothing(tmp_path, demo_corpus):
    broken = Path(shutil.copytree(demo_corpus, tmp_path / "kaggle"))
    table = pd.read_csv(broken / "train.csv")
    table.loc[4, "discourse_type"] = "Thesis"
    table.to_csv(broken / "train.csv", index=False)
    result = run_cli("preprocess", broken, "-o", tmp_path / "processed")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "error:" in message and "unknown discourse_type" in message and "'Thesis' in 1 rows" in message
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["kaggle"]


def test_bad_usage_exits_2(tmp_path, demo_corpus):
    result = run_cli("preprocess", demo_corpus, "-o", tmp_path / "processed", "--folds", "1")
    assert result.returncode == 2
    assert not (tmp_path / "processed").exists()


def test_preprocess_output_starts_with_what_it_wrote(demo_corpus, tmp_path):
    result = run_fbp_process("preprocess", demo_corpus, "-o", tmp_path / "processed", "--folds", "2", env={"NO_COLOR": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote "), repr(result.stdout[:80])
