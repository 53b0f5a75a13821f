"""Following a run from another terminal, black-box through the real ``fbp`` process: ``fbp compare`` while it trains,
after Ctrl-C and once the same command finished it; the whole-run ETA in the training output; the figure to quote."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_fbp_process, start_fbp_process

ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "NO_COLOR": "1"}


def fbp(*args, timeout=300) -> subprocess.CompletedProcess:
    return run_fbp_process(*args, env=ENV, timeout=timeout)


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
    command = ["train", "--data", str(processed_demo), "--model", str(tiny_model_dir), "--max-essays", "16",
               "--folds", "2", "--epochs", "3", "--set", "windows.max_length=64", "--set", "windows.stride=16", "--wandb", "disabled",
               "-o", str(run_dir)]
    views = {}
    process = start_fbp_process(*command, env=ENV)
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
    finished = fbp(*command, timeout=600)
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


