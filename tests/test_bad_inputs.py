"""Bad input, kept as data: every case is one row (what to run, the exit code, words the message must hold).

Each row runs the real command line (``fbp.cli.main``, the ``fbp`` entry point, in-process for speed) in a
folder of its own, prepared by the row. Besides the exit code and the words, every row checks that no traceback
and no numpy warning is printed, and that nothing is left half-written: after a failure the workspace holds
exactly the files it held before (no new, changed or temporary file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest

TRAIN = ["--wandb", "disabled", "--set", "training.batch_size=16", "--set", "windows.max_length=128",
         "--set", "windows.stride=32", "--set", "training.learning_rate=1e-3"]


# --- The second campaign (issue 18): one row per case tried, grouped by family. --------------------------------------


def _train_into(run_path_of: Callable[[Path], object], *extra: str):
    def prepare(ws, d):
        return ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "--epochs", "1", "-o", run_path_of(d), *TRAIN, *extra]
    return prepare


def _work_is_a_link(ws, d):
    """RUN/.work a link to a scratch disk that holds the user's fold_0/ and fold_1/."""
    run = _copy(ws, "run", d)
    for fold in ("fold_0", "fold_1"):
        (d / "scratch" / fold).mkdir(parents=True)
        (d / "scratch" / fold / "mine.txt").write_text("keep me")
    (run / ".work").symlink_to(d / "scratch")
    return _train_into(lambda _: run)(ws, d)


def _fold_is_a_link(ws, d):
    run = _copy(ws, "run", d)
    shutil.move(run / "fold_1", d / "elsewhere")
    (run / "fold_1").symlink_to(d / "elsewhere")
    return ["evaluate", run, "--tune"]


def _run_is_a_link(ws, d):
    _copy(ws, "run", d, "real")
    (d / "run").symlink_to(d / "real")
    return _train_into(lambda _: d / "run")(ws, d)


def _link_to(target: str, name: str):
    def make(d: Path) -> None:
        (d / target).write_text("mine")
        (d / name).symlink_to(d / target)
    return make


def _in_run(*args_after_run: str):
    def prepare(ws, d):
        run = _copy(ws, "run", d)
        rest = [str(_test_dir(ws)) if a == "ESSAYS" else str(a).replace("RUN", str(run)) for a in args_after_run[1:]]
        return [a if a != "RUN" else run for a in args_after_run[:1]] + [run] + rest
    return prepare


def _infer_over_input_essay(ws, d):
    shutil.copytree(_test_dir(ws), d / "essays")
    essay = sorted((d / "essays").glob("*.txt"))[0]
    return ["infer", ws["root"] / "run", "-i", "essays", "-o", essay]


def _evaluate_json_over_truth(ws, d):
    shutil.copy(ws["root"] / "demo" / "train.csv", d / "truth.csv")
    shutil.copy(ws["root"] / "demo" / "sample_submission.csv", d / "pred.csv")
    return ["evaluate", "pred.csv", "--truth", "truth.csv", "--json", "truth.csv"]


def _quickstart_over_users(name: str):
    def prepare(ws, d):
        (d / "qs").mkdir()
        (d / "qs" / name).write_text("mine") if name.endswith(".csv") else (d / "qs" / name).mkdir()
        return ["quickstart", "qs"]
    return prepare


def _preprocess_to_link(ws, d):
    _copy(ws, "processed", d, "target")
    (d / "link").symlink_to(d / "target")
    return ["preprocess", ws["root"] / "demo", "-o", "link", "--folds", "2"]


def _config(text: str):
    def prepare(ws, d):
        (d / "config.yaml").write_text(text)
        return ["train", "config.yaml", "--data", ws["root"] / "processed", "--model", ws["model"], "-o", "run", "--wandb", "disabled"]
    return prepare


def _set(*settings: str):
    def prepare(ws, d):
        sets = [part for setting in settings for part in ("--set", setting)]
        return ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "-o", "run", "--wandb", "disabled", *sets]
    return prepare


ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)) + "training: {epochs: *i}\n"
UNKNOWN_KEYS = "training:\n" + "".join(f"  unknown_key_{i}: 1\n" for i in range(20000))


def _damaged_run_file(name: str, change: Callable[[Path], None], command: str = "evaluate"):
    def prepare(ws, d):
        run = _copy(ws, "run", d)
        change(run / name)
        if command in ("infer", "infer-learned"):
            return ["infer", run, "-i", _test_dir(ws), "-o", "s.csv", *(["--decoding", "learned"] if command == "infer-learned" else [])]
        if command == "train":  # a resume reads the run's config.yaml
            return ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "--epochs", "1", "-o", run, *TRAIN]
        return ["evaluate", run, *(["--tune"] if command == "tune" else [])]
    return prepare


def _json_edit(edit: Callable[[dict], None]):
    def change(path: Path) -> None:
        content = json.loads(path.read_text())
        edit(content)
        path.write_text(json.dumps(content))
    return change


def _oof_values(value: float):
    def change(path: Path) -> None:
        import numpy as np

        with np.load(path) as stored:
            arrays = {name: stored[name] for name in stored.files}
        arrays["probs"] = np.full_like(arrays["probs"], value)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
    return change


def _remove_head(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = {name: value for name, value in load_file(path / "model.safetensors").items() if not name.startswith("classifier.")}
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})


def _kaggle_id(essay_id: str):
    def change(data: Path) -> None:
        import pandas as pd

        table = pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)
        table.loc[table["id"] == table["id"][0], "id"] = essay_id
        table.to_csv(data / "train.csv", index=False)
    return change


def _essay_entries(make: Callable[[Path], None]):
    def prepare(ws, d):
        shutil.copytree(_test_dir(ws), d / "essays")
        make(d / "essays")
        return ["infer", ws["root"] / "run", "-i", "essays", "-o", "s.csv"]
    return prepare


def _fifo_essay_in_train(data: Path) -> None:
    essay = sorted((data / "train").glob("*.txt"))[0]
    essay.unlink()
    os.mkfifo(essay)


def _perfect_submission_with_ids(*ids: str):
    def prepare(ws, d):
        import pandas as pd

        table = pd.read_csv(ws["root"] / "demo" / "train.csv", dtype=str, keep_default_na=False)
        for new, old in zip(ids, table["id"].unique()):
            table.loc[table["id"] == old, "id"] = new
        table.to_csv(d / "truth.csv", index=False)
        table.rename(columns={"discourse_type": "class"})[["id", "class", "predictionstring"]].to_csv(d / "pred.csv", index=False)
        return ["evaluate", "pred.csv", "--truth", "truth.csv"]
    return prepare


def _damaged_study(content: bytes):
    def prepare(ws, d):
        (d / "tune").mkdir()
        (d / "tune" / "study.db").write_bytes(content)
        (d / "search.yaml").write_text(f"model: {{name: {ws['model']}}}\nsearch:\n  training.learning_rate: {{low: 0.0001, high: 0.001, log: true}}\n")
        return ["tune", "search.yaml", "--data", ws["root"] / "processed", "-o", "tune", "--trials", "1", "--wandb", "disabled"]
    return prepare


@dataclass
class Result:
    code: int
    output: str


def run_cli(args: Sequence, cwd: Path, env: Optional[Dict[str, str]] = None) -> Result:
    """``fbp ARGS`` from ``cwd``, as the ``fbp`` command runs it: the exit code, and everything printed, numpy's and
    Python's warnings included. An exception that escapes the command is shown as the traceback a user would see."""
    from conftest import run_cli as run_in_process

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run_in_process(*args, cwd=cwd, env=env)
            code, text = result.exit_code, result.output
        except Exception:  # noqa: BLE001 - what `python -m fbp` would print as a traceback
            code, text = 1, traceback.format_exc()
    shown = [f"{w.category.__name__}: {w.message}" for w in caught if issubclass(w.category, (RuntimeWarning, UserWarning))]
    return Result(code, text + "\n".join(shown))


def run_process(args: Sequence, cwd: Path, env: Optional[Dict[str, str]] = None) -> Result:
    """``python -m fbp ARGS`` in a process of its own (what happens at import time shows only there)."""
    from conftest import run_fbp_process

    done = run_fbp_process(*args, env={"HF_HUB_OFFLINE": "1", **(env or {})}, cwd=cwd)
    return Result(done.returncode, done.stdout + done.stderr)


def snapshot(root: Path) -> Dict[str, tuple]:
    """Every path under ``root`` with its size and modification time (a folder's own time is left out: creating and
    removing a lock inside it changes it, and nothing is written)."""
    return {str(path.relative_to(root)): (path.is_dir(), path.lstat().st_size if path.is_file() else 0,
                                          0 if path.is_dir() else path.lstat().st_mtime_ns)
            for path in root.rglob("*")}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir):
    """A 12-essay demo corpus, its processed data (2 folds) and a finished 2-fold run of one epoch."""
    root = tmp_path_factory.mktemp("bad-inputs")
    umask = os.umask(0o022)  # outputs must follow the umask (checked below)
    try:
        trained = _make_workspace(root, tiny_model_dir)
    finally:
        os.umask(umask)
    assert trained.code == 0, trained.output
    return {"root": root, "model": Path(tiny_model_dir)}


def _make_workspace(root: Path, tiny_model_dir: Path) -> Result:
    assert run_cli(["demo-data", "demo", "--essays", "12", "--seed", "0"], root).code == 0
    assert run_cli(["preprocess", "demo", "-o", "processed", "--folds", "2", "--seed", "0"], root).code == 0
    return run_cli(["train", "--data", root / "processed", "--model", tiny_model_dir, "--epochs", "1", "-o", "run", *TRAIN], root)


# ---------------------------------------------------------------------------------------------------
# Row preparations: each gets the row's own folder and the workspace, makes its inputs, returns the arguments.
# ---------------------------------------------------------------------------------------------------


def _copy(ws, name: str, d: Path, as_name: Optional[str] = None) -> Path:
    target = d / (as_name or name)
    (shutil.copytree if (ws["root"] / name).is_dir() else shutil.copy)(ws["root"] / name, target)
    return target


def _test_dir(ws) -> Path:
    return ws["root"] / "demo" / "test"


def _user_site(ws, d):
    site = d / "site"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text("x")
    (site / "thesis.md").write_text("k")
    return ["infer", ws["root"] / "run", "-i", _test_dir(ws), "-o", "s.csv", "--html", "site"]


def _html_is_a_file(ws, d):
    (d / "page.html").write_text("mine")
    return ["infer", ws["root"] / "run", "-i", _test_dir(ws), "-o", "s.csv", "--html", "page.html"]


def _truncated_weights(ws, d):
    run = _copy(ws, "run", d)
    weights = run / "fold_0" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return run


def _pickle_only(path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(path / "model.safetensors"), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()


def _pickle_checkpoint(ws, d):
    run = _copy(ws, "run", d)
    _pickle_only(run / "fold_0")
    return ["infer", run / "fold_0", "-i", _test_dir(ws), "-o", "s.csv"]


def _pickle_model(ws, d):
    shutil.copytree(ws["model"], d / "model")
    _pickle_only(d / "model")
    return ["train", "--data", ws["root"] / "processed", "--model", d / "model", "-o", "run", *TRAIN]


def _fbp_json(content: str):
    def prepare(ws, d):
        run = _copy(ws, "run", d)
        (run / "fold_0" / "fbp.json").write_text(content)
        return ["infer", run, "-i", _test_dir(ws), "-o", "s.csv"]
    return prepare


def _truncated_oof(command: str):
    def prepare(ws, d):
        run = _copy(ws, "run", d)
        oof = run / "oof_word_probs.npz"
        oof.write_bytes(oof.read_bytes()[: oof.stat().st_size // 2])
        return [command, run]
    return prepare


def _broken_run_json(command: str):
    def prepare(ws, d):
        run = _copy(ws, "run", d)
        (run / "run.json").write_text('{"folds": [')
        if command == "train":
            return ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "--epochs", "1", "-o", run, *TRAIN]
        return ["ensemble", run]
    return prepare


def _latin1_yaml(ws, d):
    (d / "config.yaml").write_bytes("training:\n  epochs: 1  # r\xe9sum\xe9\n".encode("latin-1"))
    return ["train", "config.yaml", "--data", ws["root"] / "processed", "--model", ws["model"], "-o", "run", *TRAIN]


def _infer_to(output: str, setup: Callable[[Path], None] = lambda d: None, damaged_model: bool = False):
    def prepare(ws, d):
        setup(d)
        run = _truncated_weights(ws, d) if damaged_model else ws["root"] / "run"
        return ["infer", run, "-i", _test_dir(ws), "-o", output]
    return prepare


def _bad_truth_with_html(ws, d):
    (d / "truth.csv").write_text("id,discourse_type,predictionstring\n3841A54B2F00,Claim,a b\n")
    return ["infer", ws["root"] / "run", "-i", _test_dir(ws), "-o", "s.csv", "--html", "view", "--truth", "truth.csv"]


def _lock(pid: int, host: str, tune: bool = False, **recorded):
    """The run locked by ``fbp train`` (pid on host), then ``fbp train`` into it again, or ``fbp evaluate RUN --tune``."""
    def prepare(ws, d):
        run = _copy(ws, "run", d)
        (run / ".fbp.lock").write_text(json.dumps({"pid": pid, "host": host, "command": "fbp train", **recorded}))
        if tune:
            return ["evaluate", run, "--tune"]
        return ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "--epochs", "1", "-o", run, *TRAIN]
    return prepare


def _reprocessed(ws, d):
    """A run of ``d/processed``, whose data is then made again with another seed (other folds) into the same folder."""
    import yaml

    processed, run = _copy(ws, "processed", d), _copy(ws, "run", d)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["processed_dir"] = str(processed)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = json.loads((run / "run.json").read_text())
    summary["processed_dir"], summary["config"] = str(processed), config
    (run / "run.json").write_text(json.dumps(summary))
    assert run_cli(["preprocess", ws["root"] / "demo", "-o", processed, "--folds", "2", "--seed", "7"], d).code == 0
    return ["train", "--data", processed, "--model", ws["model"], "--epochs", "1", "-o", run, *TRAIN]


def _kaggle_with(change: Callable[[Path], None]):
    def prepare(ws, d):
        data = _copy(ws, "demo", d, "kaggle")
        change(data)
        return ["preprocess", data, "-o", "out"]
    return prepare


def _set_end(value: str, row: int = 0):
    def change(data: Path) -> None:
        lines = (data / "train.csv").read_text().splitlines()
        header = lines[0].split(",")
        cells = _split_csv_line(lines[row + 1])
        cells[header.index("discourse_end")] = value
        lines[row + 1] = ",".join(f'"{c}"' if "," in c else c for c in cells)
        (data / "train.csv").write_text("\n".join(lines) + "\n")
    return change


def _split_csv_line(line: str) -> List[str]:
    import csv

    return next(csv.reader([line]))


def _train_csv_is_a_directory(data: Path) -> None:
    (data / "train.csv").unlink()
    (data / "train.csv").mkdir()


def _brackets_input(ws, d):
    (d / "in" / "[").mkdir(parents=True)
    return ["infer", ws["root"] / "run", "-i", "in/[/x]", "-o", "s.csv"]


def _brackets_evaluate(ws, d):
    (d / "ev").mkdir()
    shutil.copy(ws["root"] / "demo" / "sample_submission.csv", d / "ev" / "[red]x.csv")
    return ["evaluate", "ev/[red]x.csv", "--truth", ws["root"] / "demo" / "train.csv"]


def _brackets_demo(ws, d):
    return ["demo-data", "dm[/x]", "--essays", "3"]


def _unknown_ids(ws, d):
    (d / "pred.csv").write_text("id,class,predictionstring\nNOT_AN_ESSAY,Claim,1 2 3\n")
    return ["evaluate", "pred.csv", "--truth", ws["root"] / "demo" / "train.csv"]


def _half_finished(ws, d):
    run = _copy(ws, "run", d)
    shutil.rmtree(run / "fold_1")
    summary = json.loads((run / "run.json").read_text())
    summary["folds"] = [fold for fold in summary["folds"] if fold["fold"] == 0]
    summary["status"] = "partial"
    (run / "run.json").write_text(json.dumps(summary))
    return ["infer", run, "-i", _test_dir(ws), "-o", "s.csv"]


def _essays(contents: Dict[str, bytes]):
    def prepare(ws, d):
        shutil.copytree(_test_dir(ws), d / "essays")
        for name, data in contents.items():
            (d / "essays" / name).write_bytes(data)
        return ["infer", ws["root"] / "run", "-i", "essays", "-o", "s.csv"]
    return prepare


def _weights(*weights: str, members: int = 1):
    return lambda ws, d: ["ensemble", *[ws["root"] / "run"] * members, "-i", _test_dir(ws), "-o", "s.csv", "-w", *weights]


def _wandb_disabled(ws, d):
    _half_finished(ws, d)  # fold 1 is trained, so the Trainer and its wandb integration are imported
    return ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "--epochs", "1", "-o", "run", *TRAIN]


@dataclass
class Case:
    id: str
    prepare: Callable
    code: int
    words: List[str]
    absent: List[str] = field(default_factory=list)  # words that must not appear
    creates: List[str] = field(default_factory=list)  # paths a successful row may add (relative to its folder)
    env: Dict[str, str] = field(default_factory=dict)
    process: bool = False  # run as a separate `python -m fbp` (what happens at import time shows only there)
    max_output: int = 0  # when set: at most this many characters printed (messages stay short)


CASES = [
    # 1. --html replaces only a folder fbp made.
    Case("html-into-a-users-folder", _user_site, 1, ["site", "refus"]),
    Case("html-onto-a-file", _html_is_a_file, 1, ["page.html"]),
    # 4. Weights must be finite.
    Case("weights-nan", _weights("nan"), 2, ["weights", "nan"]),
    Case("weights-inf", _weights("inf,1", members=2), 2, ["weights", "inf"]),
    # 5. Safetensors only, everywhere.
    Case("pickle-only-checkpoint", _pickle_checkpoint, 1, ["pytorch_model.bin", "safetensors"]),
    Case("pickle-only-model", _pickle_model, 1, ["pytorch_model.bin", "safetensors"]),
    # 6. Brackets are text, not markup.
    Case("brackets-in-input-path", _brackets_input, 1, ["in/[/x]"]),
    Case("brackets-in-evaluated-path", _brackets_evaluate, 0, ["[red]x.csv"]),
    Case("brackets-in-demo-output", _brackets_demo, 0, ["dm[/x]"], creates=["dm[/x]"]),
    # 7. Damaged files, outputs, options: one message naming the file, exit 1.
    Case("truncated-safetensors", lambda ws, d: ["infer", _truncated_weights(ws, d), "-i", _test_dir(ws), "-o", "s.csv"], 1, ["model.safetensors"]),
    Case("fbp-json-a-list", _fbp_json("[]"), 1, ["fbp.json"]),
    Case("fbp-json-empty-object", _fbp_json("{}"), 1, ["fbp.json"]),
    Case("truncated-oof-evaluate", _truncated_oof("evaluate"), 1, ["oof_word_probs.npz"]),
    Case("truncated-oof-ensemble", _truncated_oof("ensemble"), 1, ["oof_word_probs.npz"]),
    Case("corrupt-run-json-train", _broken_run_json("train"), 1, ["run.json"]),
    Case("corrupt-run-json-ensemble", _broken_run_json("ensemble"), 1, ["run.json"]),
    Case("config-not-utf8", _latin1_yaml, 1, ["config.yaml", "UTF-8"]),
    Case("output-unwritable", _infer_to("/proc/fbp-no-such/submission.csv"), 1, ["/proc/fbp-no-such"]),
    Case("output-under-a-file", _infer_to("afile/s.csv", lambda d: (d / "afile").write_text("mine")), 1, ["afile"]),
    # Checked before any model is loaded: the damaged model is never reached.
    Case("output-is-a-directory", _infer_to("adir", lambda d: (d / "adir").mkdir(), damaged_model=True), 1, ["adir", "directory"]),
    Case("device-tpu", lambda ws, d: ["infer", ws["root"] / "run", "-i", _test_dir(ws), "-o", "s.csv", "--device", "tpu"], 2, ["tpu"]),
    Case("bad-truth-with-html", _bad_truth_with_html, 1, ["truth.csv", "predictionstring"]),
    # 8. One training per run directory; a lock left by a dead process does not block.
    Case("run-locked-by-a-live-process", _lock(os.getpid(), socket.gethostname()), 1, ["run", str(os.getpid())]),
    Case("tune-thresholds-of-a-run-in-training", _lock(os.getpid(), socket.gethostname(), tune=True), 1, ["in use by another fbp train", str(os.getpid())]),
    Case("stale-lock-is-taken-over", _lock(2**22 + 12345, socket.gethostname()), 0, ["stale"]),
    # pid 1 runs, but it is not the process that took the lock (it started at another time: a pid reused after a reboot).
    Case("lock-of-a-reused-pid-is-stale", _lock(1, socket.gethostname(), process_start="1"), 0, ["stale"]),
    # 3. A resume against other processed data refuses.
    Case("resume-against-reprocessed-data", _reprocessed, 1, ["processed", "fingerprint"]),
    # 12. Offsets far past the text are errors naming the row; a trailing-whitespace overshoot is clamped.
    Case("end-far-past-the-text", _kaggle_with(_set_end("10000000")), 1, ["row 1", "discourse_end"]),
    # 13. Smaller ones.
    Case("offset-1e300", _kaggle_with(_set_end("1e300")), 1, ["row 1", "1e300"], absent=["-9223372036854775808", "RuntimeWarning"]),
    Case("train-csv-is-a-directory", _kaggle_with(_train_csv_is_a_directory), 1, ["train.csv", "directory"], absent=["not found"]),
    Case("evaluate-ids-absent-from-truth", _unknown_ids, 0, ["warning", "NOT_AN_ESSAY"]),
    Case("set-batch-size-true", lambda ws, d: ["train", "--data", ws["root"] / "processed", "--model", ws["model"], "-o", "run", "--set", "training.batch_size=true"], 2, ["batch_size"]),
    Case("infer-half-finished-run", _half_finished, 0, ["1 of 2 folds"], creates=["s.csv"]),
    Case("empty-essay", _essays({"EMPTY.txt": b" \n"}), 0, ["EMPTY", "empty"], creates=["s.csv"]),
    Case("undecodable-essay", _essays({"LATIN.txt": "r\xe9sum\xe9".encode("latin-1")}), 1, ["LATIN.txt", "UTF-8"]),
    Case("wandb-disabled-stays-quiet", _wandb_disabled, 0, [], absent=["offline mode"], env={"WANDB_MODE": "offline"}, process=True),
    # --- Issue 18, family 1: never write or delete outside what fbp owns, never through a link (refused before any work).
    Case("train-run-work-is-a-link", _work_is_a_link, 1, [".work", "symbolic link"]),
    Case("tune-thresholds-fold-is-a-link", _fold_is_a_link, 1, ["fold_1", "symbolic link"]),
    Case("train-output-is-a-link", _run_is_a_link, 1, ["run", "symbolic link"]),
    Case("infer-output-is-a-link", _infer_to("s.csv", _link_to("mine.csv", "s.csv")), 1, ["s.csv", "symbolic link"]),
    Case("html-is-a-link", lambda ws, d: [*_infer_to("s.csv")(ws, d), "--html", "view"] if (d / "real").mkdir() or (d / "view").symlink_to(d / "real") or True else None, 1, ["view", "symbolic link"]),
    # Family 2: outputs never replace inputs or a run's records.
    Case("evaluate-json-over-run-json", _in_run("evaluate", "--json", "RUN/run.json"), 1, ["run.json", "run"]),
    Case("evaluate-json-into-the-run", _in_run("evaluate", "--json", "RUN/score.json"), 1, ["score.json", "run"]),
    Case("evaluate-json-over-the-truth", _evaluate_json_over_truth, 1, ["truth.csv", "input"]),
    Case("infer-save-probs-over-oof", _in_run("infer", "-i", "ESSAYS", "-o", "s.csv", "--save-probs", "RUN/oof_word_probs.npz"), 1, ["oof_word_probs.npz"]),
    Case("infer-output-over-an-input-essay", _infer_over_input_essay, 1, ["essays", "input"]),
    Case("infer-html-into-the-run", _in_run("infer", "-i", "ESSAYS", "-o", "s.csv", "--html", "RUN/view"), 1, ["view", "run"]),
    Case("ensemble-save-dir-into-a-run", _in_run("ensemble", "--fit-weights", "--save-dir", "RUN/ens"), 1, ["ens", "run"]),
    Case("quickstart-over-a-users-submission", _quickstart_over_users("submission.csv"), 1, ["submission.csv", "quickstart"]),
    Case("quickstart-over-a-users-html", _quickstart_over_users("html"), 1, ["html", "quickstart"]),
    Case("compare-csv-over-run-json", _in_run("compare", "--csv", "RUN/run.json"), 1, ["run.json", "input"]),
    Case("compare-json-into-the-run", _in_run("compare", "--json", "RUN/runs.json"), 1, ["runs.json", "run"]),
    Case("compare-plot-is-a-link", lambda ws, d: [*_in_run("compare")(ws, d), "--plot", "f1.png"] if _link_to("mine.png", "f1.png")(d) or True else None, 1, ["f1.png", "symbolic link"]),
    # Family 3.
    Case("preprocess-output-is-a-link", _preprocess_to_link, 1, ["link", "symbolic link"]),
    # Family 4: no damaged file believed; the config validator, before any run directory is made.
    Case("checkpoint-without-its-head", _damaged_run_file("fold_0", _remove_head, "infer"), 1, ["model.safetensors", "classifier"]),
    Case("fbp-json-max-length-beyond-positions", _damaged_run_file("fold_0/fbp.json", _json_edit(lambda c: c.update(max_length=100000)), "infer"), 1, ["fbp.json", "max_length"]),
    Case("fbp-json-negative-stride", _damaged_run_file("fold_0/fbp.json", _json_edit(lambda c: c.update(stride=-4)), "infer"), 1, ["fbp.json", "stride"]),
    Case("decoding-json-threshold-above-1", _damaged_run_file("decoding.json", _json_edit(lambda c: c["min_confidence"].update(Lead=3.5))), 1, ["decoding.json", "Lead"]),
    Case("decoding-json-nan", _damaged_run_file("decoding.json", lambda p: p.write_text(p.read_text().replace("0.7", "NaN", 1))), 1, ["decoding.json"]),
    Case("decoding-json-negative-min-words", _damaged_run_file("decoding.json", _json_edit(lambda c: c["min_words"].update(Claim=-3))), 1, ["decoding.json", "Claim"]),
    Case("learned-decoder-negative-threshold", _damaged_run_file("learned_decoder.json", _json_edit(lambda c: c["rules"]["Lead"].update(threshold=-1)), "infer-learned"), 1, ["learned_decoder.json", "threshold"]),
    Case("learned-decoder-no-models", _damaged_run_file("learned_decoder.json", _json_edit(lambda c: c.update(models=[])), "infer-learned"), 1, ["learned_decoder.json", "models"]),
    Case("learned-decoder-class-without-rule", _damaged_run_file("learned_decoder.json", _json_edit(lambda c: c["rules"].pop("Claim")), "infer-learned"), 1, ["learned_decoder.json", "Claim"]),
    Case("learned-decoder-level-out-of-range", _damaged_run_file("learned_decoder.json", _json_edit(lambda c: c["settings"].update(levels=[0.1, 1.5])), "infer-learned"), 1, ["learned_decoder.json", "levels"]),
    Case("oof-all-nan-tune-keeps-good-files", _damaged_run_file("oof_word_probs.npz", _oof_values(float("nan")), "tune"), 1, ["oof_word_probs.npz", "NaN"]),
    Case("oof-out-of-range", _damaged_run_file("oof_word_probs.npz", _oof_values(3.0)), 1, ["oof_word_probs.npz", "outside"]),
    Case("run-config-not-yaml", _damaged_run_file("config.yaml", lambda p: p.write_text("training: [unclosed\n"), "train"), 1, ["config.yaml"]),
    Case("run-config-a-list", _damaged_run_file("config.yaml", lambda p: p.write_text("- 1\n- 2\n"), "train"), 1, ["config.yaml", "mapping"]),
    Case("config-learning-rate-inf", _set("training.learning_rate=.inf"), 2, ["learning_rate"]),
    Case("config-learning-rate-negative", _set("training.learning_rate=-0.001"), 2, ["learning_rate"]),
    Case("config-class-weight-inf", _set("training.class_weights={Claim: .inf}"), 2, ["class_weights"]),
    Case("config-epsilon-inf", _set("training.adam_epsilon=.inf"), 2, ["adam_epsilon"]),
    Case("config-decay-nan", _set("training.weight_decay=.nan"), 2, ["weight_decay"]),
    Case("config-seed-minus-one", _set("training.seed=-1"), 2, ["seed"]),
    # Family 5: essay ids are names, not paths.
    Case("essay-id-parent-path", _kaggle_with(_kaggle_id("../outside/secret")), 1, ["row", "../outside/secret", "path"]),
    Case("essay-id-absolute", _kaggle_with(_kaggle_id("/etc/hostname")), 1, ["row", "/etc/hostname"]),
    Case("essay-id-dot-dot", _kaggle_with(_kaggle_id("..")), 1, ["row", "'..'"]),
    Case("essay-id-too-long", _kaggle_with(_kaggle_id("A" * 300)), 1, ["row", "longer than"]),
    Case("essay-id-backslash", _kaggle_with(_kaggle_id("a\\b")), 1, ["row", "separator"]),
    # Family 6: bounded cost and short messages.
    Case("yaml-alias-bomb", _config(ALIAS_BOMB), 2, ["config.yaml", "aliases"], max_output=2000),
    Case("yaml-deeply-nested", _config("training: " + "[" * 20000 + "]" * 20000 + "\n"), 2, ["config.yaml", "nested"], max_output=2000),
    Case("config-20000-unknown-keys", _config(UNKNOWN_KEYS), 2, ["unknown_key_0", "more problems"], max_output=4000),
    # Family 8: input folders.
    Case("fifo-named-like-an-essay", _essay_entries(lambda e: os.mkfifo(e / "pipe.txt")), 0, ["pipe.txt", "skipped"], creates=["s.csv"]),
    Case("directory-named-like-an-essay", _essay_entries(lambda e: (e / "dir.txt").mkdir()), 0, ["dir.txt", "skipped"], creates=["s.csv"]),
    Case("dangling-link-named-like-an-essay", _essay_entries(lambda e: (e / "gone.txt").symlink_to(e / "nowhere")), 0, ["gone.txt", "skipped"], creates=["s.csv"]),
    Case("fifo-in-kaggle-train", _kaggle_with(_fifo_essay_in_train), 1, ["named pipe"]),
    # Family 10.
    Case("ids-na-and-null-are-names", _perfect_submission_with_ids("NA", "null", "None", "nan"), 0, ["1.0000"]),
    Case("damaged-study-database", _damaged_study(b"not a database" * 100), 1, ["study.db", "damaged"]),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clean_message(ws, tmp_path, case):
    args = case.prepare(ws, tmp_path)
    before, workspace_before = snapshot(tmp_path), snapshot(ws["root"])
    result = run_process(args, tmp_path, case.env) if case.process else run_cli(args, tmp_path, case.env)
    text = result.output
    assert result.code == case.code, f"exit {result.code}, expected {case.code}:\n{text[-3000:]}"
    assert "Traceback" not in text and "RuntimeWarning" not in text, text[-3000:]
    flat = " ".join(text.split())  # rich wraps long lines
    for word in case.words:
        assert word.lower() in flat.lower() or word.lower() in text.lower(), f"{word!r} not in the message:\n{text[-3000:]}"
    if case.max_output:
        assert len(text) <= case.max_output, f"{len(text):,} characters printed:\n{text[:2000]}"
    for word in case.absent:
        assert word.lower() not in text.lower(), f"{word!r} printed:\n{text[-3000:]}"
    after = snapshot(tmp_path)
    if case.code != 0:
        assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:10]}"
    else:
        allowed = lambda path: any(path == c or path.startswith(c + os.sep) for c in case.creates)  # noqa: E731
        new = [path for path in set(after) - set(before) if not allowed(path) and not path.startswith("run" + os.sep)]
        assert not [path for path in new if re.search(r"\.tmp|fbp-infer-|\.old-", path)], new
        assert not list(tmp_path.rglob(".fbp.lock")), "a lock was left behind"
    assert snapshot(ws["root"]) == workspace_before, "the shared workspace was modified"


# ---------------------------------------------------------------------------------------------------
# Cases that need more than an exit code and words.
# ---------------------------------------------------------------------------------------------------


def test_html_pages_have_safe_unique_names(ws, tmp_path):
    from html.parser import HTMLParser
    from urllib.parse import unquote

    names = ["javascript:alert(4)", "a#b", "c?d", "index", "plain"]
    essays = tmp_path / "essays"
    essays.mkdir()
    text = (next(_test_dir(ws).glob("*.txt"))).read_text()
    for name in names:
        (essays / f"{name}.txt").write_text(text)
    result = run_cli(["infer", ws["root"] / "run", "-i", essays, "-o", "s.csv", "--html", "view"], tmp_path)
    assert result.code == 0, result.output

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.hrefs = []

        def handle_starttag(self, tag, attrs):
            self.hrefs += [value for key, value in attrs if tag == "a" and key == "href"]

    index = (tmp_path / "view" / "index.html").read_text()
    assert "Predictions" in index, "index.html is not the index page"
    parser = Links()
    parser.feed(index)
    assert len(parser.hrefs) == len(names) and len(set(parser.hrefs)) == len(names), parser.hrefs
    for href in parser.hrefs:
        assert re.fullmatch(r"[A-Za-z0-9._-]+\.html", href) and href != "index.html", href
        page = tmp_path / "view" / unquote(href)
        assert page.is_file(), href
    pages = {(tmp_path / "view" / href).read_text() for href in parser.hrefs}
    for name in names:
        assert sum(f"<h1>{name.replace('&', '&amp;')}</h1>" in page for page in pages) == 1, name


def test_outputs_follow_the_umask(ws, tmp_path):
    run = ws["root"] / "run"
    for path in (run / "run.json", run / "config.yaml", run / "oof_word_probs.npz", run / "decoding.json",
                 run / "fold_0" / "model.safetensors", run / "fold_0" / "fbp.json", ws["root"] / "processed" / "meta.json"):
        assert path.stat().st_mode & 0o777 == 0o644, f"{path}: {oct(path.stat().st_mode & 0o777)} under umask 022"
    for path in (run / "fold_0", ws["root"] / "processed"):
        assert path.stat().st_mode & 0o777 == 0o755, f"{path}: {oct(path.stat().st_mode & 0o777)} under umask 022"
    for umask, file_mode, dir_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)):
        out = tmp_path / f"u{umask:o}"
        out.mkdir()
        previous = os.umask(umask)
        try:
            result = run_cli(["infer", run, "-i", _test_dir(ws), "-o", "s.csv", "--save-probs", "p.npz", "--html", "view"], out)
        finally:
            os.umask(previous)
        assert result.code == 0, result.output
        for name in ("s.csv", "p.npz", "view/index.html"):
            assert (out / name).stat().st_mode & 0o777 == file_mode, f"{name}: {oct((out / name).stat().st_mode & 0o777)} under umask {umask:o}"
        assert (out / "view").stat().st_mode & 0o777 == dir_mode


def test_a_trailing_whitespace_overshoot_is_clamped_and_labels_follow_the_predictionstring(ws, tmp_path):
    import csv

    import pandas as pd

    data = _copy(ws, "demo", tmp_path, "kaggle")
    table = pd.read_csv(data / "train.csv", dtype=str)
    # The span that ends last in its essay: the text gets 3 trailing spaces, and the span's end goes 2 characters
    # past the text (as in the real train.csv, whose texts lost some trailing whitespace).
    ends = table.assign(end=table["discourse_end"].astype(float))
    row = int(ends.sort_values("end").groupby("id").tail(1).index[0])
    essay = data / "train" / f"{table.at[row, 'id']}.txt"
    text = essay.read_bytes().decode().rstrip() + "   "
    essay.write_bytes(text.encode())
    table.at[row, "discourse_end"] = str(len(text) + 2)
    table.to_csv(data / "train.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    result = run_cli(["preprocess", data, "-o", "out", "--folds", "2"], tmp_path)
    assert result.code == 0, result.output
    assert "clamped" in result.output, result.output
    essays = pd.read_parquet(tmp_path / "out" / "essays.parquet").set_index("id")
    spans = pd.read_parquet(tmp_path / "out" / "spans.parquet")
    for essay_id, group in spans.groupby("id"):
        labelled = sum(len(words.split()) for words in group["predictionstring"])
        assert (essays.loc[essay_id, "word_labels"] > 0).sum() == labelled, essay_id
