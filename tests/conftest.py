"""Shared fixtures: a demo corpus, its processed dataset, and a tiny random model saved like a hub model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021"


def invoke(*args: str):
    """Run the ``fbp`` CLI in-process; return the click result."""
    from typer.testing import CliRunner

    from fbp.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """60 demo essays in the Kaggle layout."""
    out = tmp_path_factory.mktemp("demo") / "kaggle"
    result = invoke("demo-data", out, "--essays", "60", "--seed", "0")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def processed_demo(tmp_path_factory, demo_corpus) -> Path:
    """The demo corpus preprocessed into 3 folds."""
    out = tmp_path_factory.mktemp("processed") / "data"
    result = invoke("preprocess", demo_corpus, "-o", out, "--folds", "3", "--seed", "0")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A one-layer random BERT token classifier with the MiniLM tokenizer, saved as a local model directory."""
    from tiny_models import minilm_tokenizer, tiny_bert

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = minilm_tokenizer()
    tiny_bert(vocab_size=tokenizer.vocab_size).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
