"""Every option is checked before any work: a bad value is refused (exit 2, one message naming the option) before a
file is written or a model is loaded."""

from __future__ import annotations

import pytest
from conftest import run_fbp_process


def _files_under(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("arguments, words", [
    (["quickstart", "{tmp}/qs", "--wandb", "bogus"], ["--wandb", "'bogus' is not a wandb mode", "auto, online, offline, disabled"]),
    (["train", "--wandb", "bogus", "-o", "{tmp}/run"], ["--wandb", "'bogus' is not a wandb mode"]),
    (["ensemble", "{tmp}/a", "{tmp}/b", "-w", "0.7", "--input", "{tmp}/essays", "-o", "{tmp}/out.csv"], ["1 weight for 2 models"]),
    (["ensemble", "{tmp}/a", "{tmp}/b", "-w", "1,0,0", "--input", "{tmp}/essays", "-o", "{tmp}/out.csv"], ["3 weights for 2 models"]),
    (["ensemble", "{tmp}/a", "{tmp}/b", "-w", "0,0", "--input", "{tmp}/essays", "-o", "{tmp}/out.csv"], ["not all zero"]),
])
def test_a_bad_option_is_refused_before_any_file_is_written_or_model_loaded(tmp_path, arguments, words):
    # a and b are empty folders: had fbp loaded them as models, the message would say they are not checkpoints
    for folder in ("a", "b", "essays"):
        (tmp_path / folder).mkdir()
    (tmp_path / "essays" / "e1.txt").write_text("An essay.\n")
    before = _files_under(tmp_path)
    completed = run_fbp_process(*[argument.format(tmp=tmp_path) for argument in arguments], cwd=tmp_path, env={"COLUMNS": "200"})
    assert completed.returncode == 2, completed.stdout + completed.stderr
    message = " ".join(completed.stderr.split())
    for word in words:
        assert word in message, completed.stderr
    assert "Traceback" not in completed.stderr and "checkpoint" not in message.replace("per checkpoint", "")
    assert _files_under(tmp_path) == before, "a file was written before the option was checked"


@pytest.mark.parametrize("arguments, words", [
    (["train", "--set", "training.lr=1e-4"], ["unknown key 'training.lr'; did you mean 'training.learning_rate'?"]),
    (["train", "--set", "training.learnig_rate=1e-4"], ["did you mean 'training.learning_rate'?"]),
    (["train", "--set", "training.bs=8"], ["did you mean 'training.batch_size'?"]),
    (["infer", "{tmp}/a", "--input", "{tmp}/essays/e1.txt"], ["--input", "is a file; --input takes a folder of essays"]),
    (["evaluate", "{tmp}/runs"], ["is a folder of runs (first, second), not a run", "fbp evaluate {tmp}/runs/first", "fbp compare {tmp}/runs"]),
])
def test_a_mistake_gets_the_hint_that_fixes_it(tmp_path, arguments, words):
    from fbp.config import Config
    from fbp.io.run_dir import RunDir

    for folder in ("a", "essays"):
        (tmp_path / folder).mkdir()
    (tmp_path / "essays" / "e1.txt").write_text("An essay.\n")
    for name in ("first", "second"):
        RunDir(tmp_path / "runs" / name).open(Config.model_validate({"name": name}))
    completed = run_fbp_process(*[argument.format(tmp=tmp_path) for argument in arguments], cwd=tmp_path, env={"COLUMNS": "300"})
    assert completed.returncode == 2, completed.stdout + completed.stderr
    message = " ".join(completed.stderr.split())
    for word in words:
        assert word.format(tmp=tmp_path) in message, completed.stderr
    assert "Traceback" not in completed.stderr
