"""Shared fixtures: a demo corpus, its processed dataset, and a tiny random model saved like a hub model."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021"


@dataclass
class CliResult:
    """What a user sees from one ``fbp`` command: the exit code and what it printed."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    returncode = property(lambda self: self.exit_code)  # the name subprocess results use

    def __iter__(self):  # code, output = run_cli(...)
        return iter((self.exit_code, self.output))


def run_cli(*args, cwd: Optional[Path] = None, env: Optional[dict] = None) -> CliResult:
    """Run ``fbp ARGS...`` in this process through the real entry point (its error handler and exit codes),
    optionally from folder ``cwd`` and with extra environment variables ``env`` (both restored afterwards)."""
    from fbp.cli import main

    argv, sys.argv = sys.argv, ["fbp", *map(str, args)]
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as stopped:
                code = stopped.code if isinstance(stopped.code, int) else (0 if stopped.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, out.getvalue(), err.getvalue())


def _environment(env: Optional[dict]) -> dict:
    environment = {**os.environ, "COLUMNS": "200", **(env or {})}
    return {key: value for key, value in environment.items() if value is not None}


def run_process(command: Sequence[object], env: Optional[dict] = None, timeout: float = 600, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """The one subprocess runner of the tests: ``command`` (e.g. torchrun, ``python -c``) to completion, its output
    captured as text. ``env`` adds to (or, with None values, removes from) the environment; ``cwd``: its folder."""
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, env=_environment(env), timeout=timeout, cwd=cwd)


def run_fbp_process(*args, env: Optional[dict] = None, timeout: float = 600, cwd: Optional[Path] = None,
                    python_options: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m fbp ARGS...`` as a separate process, for what needs a fresh interpreter (what it imports,
    torchrun, the quickstart exactly as a user runs it, a kill); ``python_options`` go before ``-m`` (``-X importtime``)."""
    return run_process([sys.executable, *python_options, "-m", "fbp", *args], env=env, timeout=timeout, cwd=cwd)


def start_fbp_process(*args, env: Optional[dict] = None) -> subprocess.Popen:
    """``python -m fbp ARGS...`` started in the background (output, stderr included, on its ``stdout`` pipe), for a
    test that signals it while it runs."""
    return subprocess.Popen([sys.executable, "-m", "fbp", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_environment(env))


@pytest.fixture
def cli():
    """The one way tests run an fbp command in-process: ``cli("train", ...)`` -> :class:`CliResult`."""
    return run_cli


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """60 demo essays in the Kaggle layout."""
    out = tmp_path_factory.mktemp("demo") / "kaggle"
    result = run_cli("demo-data", out, "--essays", "60", "--seed", "0")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def processed_demo(tmp_path_factory, demo_corpus) -> Path:
    """The demo corpus preprocessed into 3 folds."""
    out = tmp_path_factory.mktemp("processed") / "data"
    result = run_cli("preprocess", demo_corpus, "-o", out, "--folds", "3", "--seed", "0")
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
