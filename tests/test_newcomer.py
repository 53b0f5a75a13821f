"""A newcomer's first hour, black-box through the real ``fbp`` process: following a run from another terminal with
``fbp compare`` while it trains, after it is interrupted and once it is complete; the whole-run ETA in the training
output; errors that come before the heavy imports and name what is wrong."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "NO_COLOR": "1", "COLUMNS": "200"}


def fbp(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fbp", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=ENV)


def compared(*paths, tmp_path: Path) -> dict:
    """`fbp compare PATHS --json FILE`: the printed table and the runs as JSON."""
    out = tmp_path / f"compare-{time.monotonic_ns()}.json"
    result = fbp("compare", *paths, "--json", out)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"text": result.stdout, "runs": json.loads(out.read_text())["runs"]}


def wait_for(predicate, timeout: float, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training ended before {what}: {process.stdout.read() if process.stdout else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def followed_run(tmp_path_factory, processed_demo, tiny_model_dir):
    """A 2-fold run looked at with `fbp compare` while fold 1 trains (the process paused, so what it shows is known),
    after Ctrl-C (SIGINT), and after the same command ran again to the end."""
    root = tmp_path_factory.mktemp("follow")
    runs = root / "runs"
    run_dir = runs / "demo"
    command = [sys.executable, "-m", "fbp", "train", "--data", str(processed_demo), "--model", str(tiny_model_dir), "--max-essays", "16",
               "--folds", "2", "--epochs", "3", "--set", "windows.max_length=64", "--set", "windows.stride=16", "--wandb", "disabled",
               "-o", str(run_dir)]
    views = {}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    try:
        wait_for(lambda: any(run_dir.glob(".work/fold_1/checkpoint-*/trainer_state.json")), 600, process, "fold 1's first epoch")
        os.kill(process.pid, signal.SIGSTOP)  # hold it mid-fold: fold 0 finished, fold 1 has epochs on disk
        time.sleep(0.5)  # let a checkpoint being written finish its files (the process is stopped; nothing changes after)
        views["running"] = compared(run_dir, tmp_path=root)
        views["folder"] = compared(runs, tmp_path=root)
        views["twice"] = compared(run_dir, run_dir, runs, tmp_path=root)
        os.kill(process.pid, signal.SIGINT)
        os.kill(process.pid, signal.SIGCONT)
        views["interrupted_output"] = process.communicate(timeout=300)[0]
        views["interrupted_code"] = process.returncode
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()
    views["interrupted"] = compared(run_dir, tmp_path=root)
    finished = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    views["finished_output"] = finished.stdout
    views["complete"] = compared(run_dir, tmp_path=root)
    return views


def _only_run(view: dict) -> dict:
    assert len(view["runs"]) == 1, [run["name"] for run in view["runs"]]
    return view["runs"][0]


def test_compare_shows_a_running_run_with_its_finished_fold_and_epochs(followed_run):
    run = _only_run(followed_run["running"])
    assert run["status"] == "running"
    folds = {fold["fold"]: fold for fold in run["folds"]}
    assert folds[0]["best_epoch"] is not None and len(folds[0]["epochs"]) == 3  # finished fold: every epoch
    assert 1 in folds and len(folds[1]["epochs"]) >= 1  # the fold in training: its finished epochs so far
    assert all(epoch["f1"] is not None for epoch in folds[1]["epochs"])
    assert "running" in followed_run["running"]["text"]


def test_compare_of_a_folder_lists_the_unfinished_run(followed_run):
    run = _only_run(followed_run["folder"])
    assert run["status"] == "running" and run["folds"]


def test_a_run_passed_twice_appears_once(followed_run):
    _only_run(followed_run["twice"])


def test_ctrl_c_stops_resumably_and_compare_says_interrupted(followed_run):
    assert followed_run["interrupted_code"] == 130, followed_run["interrupted_output"]
    assert "run the same command again to resume" in " ".join(followed_run["interrupted_output"].split())
    run = _only_run(followed_run["interrupted"])
    assert run["status"] == "interrupted"
    folds = {fold["fold"]: fold for fold in run["folds"]}
    assert folds[0]["best_epoch"] is not None and folds.get(1, {}).get("epochs")
    assert "interrupted" in followed_run["interrupted"]["text"]


def test_the_same_command_finishes_the_run_and_compare_says_complete(followed_run):
    run = _only_run(followed_run["complete"])
    assert run["status"] == "complete" and run["cv_f1"] is not None
    assert sorted(fold["fold"] for fold in run["folds"]) == [0, 1]
    assert all(fold["best_epoch"] is not None for fold in run["folds"])


def test_training_output_shows_elapsed_time_and_an_eta_for_the_whole_run(followed_run):
    # Plain (piped) output has no live progress bars, so the whole-run progress is printed after each epoch:
    # how many of all the run's epochs (folds x epochs) are done, the time so far and the time left.
    output = followed_run["interrupted_output"]
    lines = [line for line in output.splitlines() if re.search(r"\belapsed\b", line) and re.search(r"\bleft\b", line)]
    assert lines, output
    assert any(re.search(r"\b[1-5]/6\b", line) for line in lines), lines  # 2 folds x 3 epochs


def test_the_end_of_training_names_the_figure_to_quote(followed_run):
    output = followed_run["finished_output"]
    assert re.search(r"quote", output, re.I), output
    for line in output.splitlines():
        if re.search(r"\bF1\b", line) and re.search(r"\d\.\d{3}", line) and not re.match(r"\s*(\d+\s|epoch\s|[│┃┏┡└])", line):
            # every printed F1 says what it is: thresholds used and how it was estimated
            assert re.search(r"configured|tuned|out[- ]of[- ]fold|cross-fitted|in-sample|validation", line, re.I), line


def test_train_without_data_fails_fast_before_heavy_imports(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "fbp", "train", "-o", tmp_path / "run"],
                            capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=120)
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
    result = fbp("infer", tmp_path / "nothing", "--input", tmp_path / "nowhere")
    assert result.returncode in (1, 2)
    message = " ".join(result.stderr.split())
    assert "nothing" in message and re.search(r"CKPT_OR_RUN|checkpoint", message, re.I), message
    (tmp_path / "ckpt").mkdir()
    result = fbp("infer", tmp_path / "ckpt", "--input", tmp_path / "nowhere")
    assert result.returncode in (1, 2)
    message = " ".join(result.stderr.split())
    assert "nowhere" in message and "--input" in message, message
    result = fbp("train", "--data", tmp_path / "nowhere", "-o", tmp_path / "run")
    assert result.returncode in (1, 2)
    message = " ".join(result.stderr.split())
    assert "nowhere" in message and "--data" in message, message


def test_compare_table_reads_well(followed_run):
    text = followed_run["complete"]["text"]
    lines = text.splitlines()
    assert lines[0].strip() == "1 run", lines[0]  # not "1 runs"
    header = lines[lines.index(next(line for line in lines if line.startswith("┏"))) + 1]
    assert re.search(r"\brun\b", header) and "CV F1" in header, "the header starts with a blank line:\n" + "\n".join(lines[:4])
    # the F1 columns say what they are
    assert "configured thresholds" in " ".join(text.split()) and "cross-fitted" in " ".join(text.split())


def test_evaluate_on_a_run_says_what_its_f1_is(followed_run, tmp_path):
    run_dir = Path(followed_run["complete"]["runs"][0]["source"]).parent
    result = fbp("evaluate", run_dir)
    assert result.returncode == 0, result.stderr
    output = " ".join(result.stdout.split())
    # whichever decoding the run chose (the tiny run's learned decoder may beat its thresholds, or not)
    assert re.search(r"macro F1 \d\.\d{4}: out-of-fold predictions, the run's ((configured|tuned) thresholds|learned decoder)", output), output
    tuned = fbp("evaluate", run_dir, "--tune")
    assert tuned.returncode == 0, tuned.stderr
    output = " ".join(tuned.stdout.split())
    assert re.search(r"macro F1 \d\.\d{4}: out-of-fold predictions, (thresholds tuned just now on these same essays|the run's learned decoder, "
                     r"fitted on these same essays) \(in-sample", output), output
    assert re.search(r"the figure to quote for this run is cv_f1_\w+ = \d\.\d{4}", output), output


def test_preprocess_output_starts_with_its_summary(demo_corpus, tmp_path):
    result = fbp("preprocess", demo_corpus, "-o", tmp_path / "processed", "--folds", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote "), repr(result.stdout[:80])


def test_quickstart_prints_each_command_whole_and_wrapped():
    from fbp.cli.quickstart import command_lines, quickstart_commands

    for arguments in quickstart_commands(Path("quickstart"), 120, 2, 4, "disabled"):
        lines = command_lines(arguments, width=60)
        assert all(len(line) <= 60 for line in lines), lines
        assert all(line.endswith(" \\") for line in lines[:-1]) and not lines[-1].endswith("\\")
        joined = " ".join(line.rstrip("\\").strip() for line in lines)
        assert joined == "$ fbp " + " ".join(arguments)  # nothing cut, nothing added
        assert not any(line.lstrip().startswith(("training.", "windows.", "model.")) for line in lines[1:])  # --set stays with its value


def test_whole_run_estimate_counts_every_fold_and_epoch_with_evaluation():
    from fbp.training.eta import RunClock

    now = [0.0]
    clock = RunClock(folds=[0, 1, 2], epochs=2, finished_folds=[0], now=lambda: now[0])
    assert clock.epochs_total == 6 and clock.epochs_done == 2  # a finished fold counts as done
    clock.fold_begin(1, steps_per_epoch=10, eval_batches=4, windows_per_step=4, windows_per_eval_batch=12)
    assert clock.estimate().remaining is None  # nothing timed yet
    for _ in range(11):
        now[0] += 1.0
        clock.step()
    # 1 s a step; an evaluation batch guessed at a third of a step per window (12 windows vs 4): 1 s
    remaining = clock.estimate().remaining
    assert remaining == pytest.approx(4 + 3 * (10 + 4))  # this epoch's evaluation, then 3 more epochs
    clock.evaluation_begin()
    now[0] += 8.0  # evaluation measured: 2 s a batch
    clock.evaluation_end()
    clock.epoch_end()
    assert clock.estimate().epochs_done == 3
    assert clock.estimate().remaining == pytest.approx(3 * (10 + 8))
    assert clock.estimate().elapsed == pytest.approx(19.0)


def test_train_help_defaults_are_the_configs():
    from typer.testing import CliRunner

    from fbp.cli import app
    from fbp.config import Config

    text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"}).output.split())
    defaults = Config()
    for flag, value in (("--epochs", defaults.training.epochs), ("--model", defaults.model.name),
                        ("--data", defaults.data.processed_dir), ("--wandb", defaults.tracking.wandb)):
        row = text.split("Options", 1)[1].split(f"│ {flag} ", 1)[1].split("│", 1)[0]
        assert f"[default: {value}]" in row, (flag, row)


def test_a_very_long_run_on_a_cpu_says_so_once_with_the_way_out():
    import io

    from rich.console import Console

    from fbp.cli.reporting import ConsoleTrainingReporter
    from fbp.training.eta import RunClock
    from fbp.training.loop import RunPlan

    out = io.StringIO()
    reporter = ConsoleTrainingReporter(Console(file=out, width=200))
    reporter.run_begin(Path("runs/big"), RunPlan(folds=[0, 1, 2, 3, 4], epochs=20, finished=[], device="cpu"))
    assert "run directory: runs/big" in out.getvalue()
    now = [0.0]
    reporter.clock = RunClock([0, 1, 2, 3, 4], 20, now=lambda: now[0])
    reporter.clock.fold_begin(0, steps_per_epoch=2000, eval_batches=100)
    for _ in range(4):
        now[0] += 2.0  # 2 s a step: 5 folds x 20 epochs x 2000 steps is days
        reporter.clock.step()
        reporter.steps_timed()
    note = " ".join(out.getvalue().split())
    assert note.count("note:") == 1 and "on this CPU" in note
    for way_out in ("--max-essays", "--fold 0", "--epochs", "GPU"):
        assert way_out in note, note
    assert re.search(r"about [\d.]+ days", note), note
