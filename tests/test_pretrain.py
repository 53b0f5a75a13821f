"""``fbp pretrain``: bad input as a table, the whole path on a tiny random BERT (pretrain -> ``fbp train --model
DIR``), the record of the essays read and the note ``fbp train`` gives, resuming after a kill."""

from __future__ import annotations

import json
import os
import signal
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from conftest import run_fbp_process

# A tiny run: blocks of 64 tokens, 2 per step.
TINY = ["--wandb", "disabled", "--set", "pretrain.max_length=64", "--set", "pretrain.batch_size=2"]


def snapshot(root: Path) -> Dict[str, tuple]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def ws(tmp_path, processed_demo, tiny_model_dir) -> Path:
    """A workspace: the processed demo essays (a link, not written to), the tiny model, a folder of .txt essays."""
    (tmp_path / "proc").symlink_to(processed_demo)
    (tmp_path / "tiny").symlink_to(tiny_model_dir)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "EXTRA1.txt").write_text("Some people think phones in class distract students, but phones help them learn.\n")
    (texts / "EXTRA2.txt").write_text("In conclusion, summer projects should be designed by the students themselves.\n")
    return tmp_path


@dataclass
class Case:
    id: str
    args: List[str]
    code: int
    words: List[str]
    prepare: Callable[[Path], None] = lambda ws: None


def _empty_folder(ws: Path) -> None:
    (ws / "empty").mkdir()


def _blank_essays(ws: Path) -> None:
    (ws / "blank").mkdir()
    (ws / "blank" / "A.txt").write_text("   \n")


def _foreign_output(ws: Path) -> None:
    (ws / "mine").mkdir()
    (ws / "mine" / "notes.txt").write_text("keep me")


def _file_output(ws: Path) -> None:
    (ws / "model").write_text("a file")


def _other_work(ws: Path) -> None:
    work = ws / "model.pretrain-work"
    work.mkdir()
    (work / "settings.json").write_text(json.dumps({"config": {"pretrain": {"learning_rate": 1.0}}, "essays": 1, "text_digest": "x"}))


def _duplicate_id(ws: Path) -> None:
    (ws / "dup").mkdir()
    (ws / "dup" / "EXTRA1.txt").write_text("Entirely different words under the same essay id.\n")


def _output_link(ws: Path) -> None:
    (ws / "elsewhere").mkdir()
    (ws / "model").symlink_to(ws / "elsewhere")


CASES = [
    Case("text folder missing", ["--no-data", "--text", "nowhere", "-m", "tiny", "-o", "model"], 1, ["nowhere", "does not exist"]),
    Case("text folder without essays", ["--no-data", "--text", "empty", "-m", "tiny", "-o", "model"], 1, ["empty", "no *.txt essays"], _empty_folder),
    Case("only blank essays", ["--no-data", "--text", "blank", "-m", "tiny", "-o", "model"], 1, ["every essay", "empty"], _blank_essays),
    Case("no text at all", ["--no-data", "-m", "tiny", "-o", "model"], 2, ["no text to pretrain on", "--text"]),
    Case("--no-data with --data", ["--no-data", "--data", "proc", "-m", "tiny", "-o", "model"], 2, ["--no-data", "--data"]),
    Case("processed data missing", ["--data", "noproc", "-m", "tiny", "-o", "model"], 1, ["noproc", "fbp preprocess"]),
    Case("bad setting", ["--data", "proc", "-m", "tiny", "-o", "model", "--set", "pretrain.mlm_probability=2"], 2, ["pretrain.mlm_probability", "less than 1"]),
    Case("bad dropout", ["--data", "proc", "-m", "tiny", "-o", "model", "--set", "pretrain.hidden_dropout=1.5"], 2, ["pretrain.hidden_dropout", "less than 1"]),
    Case("unknown key", ["--data", "proc", "-m", "tiny", "-o", "model", "--set", "pretrain.learning_rat=1e-4"], 2, ["unknown key", "pretrain.learning_rat", "learning_rate"]),
    Case("training key in a pretrain config", ["--data", "proc", "-m", "tiny", "-o", "model", "--set", "training.epochs=2"], 2, ["unknown key", "training"]),
    Case("config file missing", ["nothere.yaml", "--data", "proc", "-m", "tiny", "-o", "model"], 2, ["config file not found", "nothere.yaml"]),
    Case("output is the text folder", ["--data", "proc", "--text", "texts", "-m", "tiny", "-o", "texts"], 2, ["overlaps", "text folder"]),
    Case("output inside the processed data", ["--data", "proc", "-m", "tiny", "-o", "proc/model"], 2, ["overlaps", "processed data"]),
    Case("output over the base model", ["--data", "proc", "-m", "tiny", "-o", "tiny"], 2, ["overlaps", "base model"]),
    Case("output a folder fbp did not write", ["--data", "proc", "-m", "tiny", "-o", "mine"], 2, ["mine", "not written by `fbp pretrain`"], _foreign_output),
    Case("output a file", ["--data", "proc", "-m", "tiny", "-o", "model"], 2, ["model", "is a file"], _file_output),
    Case("output a symlink", ["--data", "proc", "-m", "tiny", "-o", "model"], 2, ["symlink"], _output_link),
    Case("unfinished pretraining with other settings", ["--data", "proc", "-m", "tiny", "-o", "model"], 2,
         ["model.pretrain-work", "other settings", "pretrain.batch_size", "delete that folder"], _other_work),
    Case("one essay id, two texts", ["--no-data", "--text", "texts", "--text", "dup", "-m", "tiny", "-o", "model"], 1,
         ["EXTRA1", "different text"], _duplicate_id),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_clean_message(ws, case, cli):
    case.prepare(ws)
    before = snapshot(ws)
    result = cli("pretrain", *case.args, *TINY, cwd=ws)
    assert result.exit_code == case.code, result.output
    for word in case.words:
        assert word.lower() in result.output.lower(), (word, result.output)
    assert "Traceback" not in result.output
    assert snapshot(ws) == before, "a failed pretrain left or changed files"


def test_pretrain_then_train_from_it(ws, cli):
    """The whole path on a tiny random BERT: pretrain a few steps on the processed essays and a text folder, load
    the directory as a token classifier, and `fbp train --model DIR` from it, which notes the validation essays
    the pretraining read."""
    result = cli("pretrain", "--data", "proc", "--text", "texts", "-m", "tiny", "-o", "model", "--max-steps", "3",
                 "--set", "pretrain.hidden_dropout=0", *TINY, cwd=ws)
    assert result.exit_code == 0, result.output
    assert "ships without a masked-LM head" in result.output  # the tiny model is a token classifier: a new head
    assert "fbp train --model model" in result.output
    model = ws / "model"
    assert (model / "model.safetensors").is_file() and not list(model.glob("*.bin"))
    assert json.loads((model / "config.json").read_text())["hidden_dropout_prob"] == 0.1  # pretrained without, saved with its own
    assert not (ws / "model.pretrain-work").exists()

    from fbp.io.pretrained import read_pretrained_meta, text_hash
    from fbp.io.processed import load_processed

    meta = read_pretrained_meta(model)
    essays = load_processed(ws / "proc").essays
    assert meta.steps == 3 and meta.mlm_head_initialised and meta.tokens > 0 and meta.eval_loss is not None
    assert set(meta.essays) == set(essays["id"]) | {"EXTRA1", "EXTRA2"}
    assert meta.essays[essays["id"][0]] == text_hash(essays["text"][0])

    from transformers import AutoModelForTokenClassification

    assert AutoModelForTokenClassification.from_pretrained(model, num_labels=15).config.model_type == "bert"

    result = cli("train", "--data", "proc", "--model", "model", "--fold", "0", "--epochs", "1", "-o", "run", "--wandb", "disabled",
                 "--set", "windows.max_length=128", "--set", "windows.stride=32", "--set", "training.learned_decoding=false", cwd=ws)
    assert result.exit_code == 0, result.output
    note = [line for line in result.output.splitlines() if "pretrained on text that includes validation essays" in line]
    assert len(note) == 1 and "fold 0 20/20" in note[0], result.output
    assert json.loads((ws / "run" / "run.json").read_text())["model"] == "model"

    # Pretrained on other essays only: no note.
    result = cli("pretrain", "--no-data", "--text", "texts", "-m", "tiny", "-o", "model2", "--max-steps", "1", *TINY, cwd=ws)
    assert result.exit_code == 0, result.output
    from fbp.training.loop import pretraining_overlap

    assert pretraining_overlap(str(ws / "model2"), essays, [0, 1, 2]) is None
    assert pretraining_overlap(str(ws / "model"), essays, [1]).count("fold 1 20/20") == 1
    assert pretraining_overlap("minilm", essays, [0]) is None  # not an fbp pretrain output

    # The same output again: an earlier fbp pretrain output is replaced.
    result = cli("pretrain", "--no-data", "--text", "texts", "-m", "tiny", "-o", "model2", "--max-steps", "1", *TINY, cwd=ws)
    assert result.exit_code == 0, result.output


def test_a_corrupt_record_is_one_message(ws, cli, tmp_path):
    from fbp.errors import FbpError
    from fbp.io.pretrained import PRETRAINED_META_FILE, read_pretrained_meta

    folder = tmp_path / "m"
    folder.mkdir()
    for content, words in (("{", "unreadable"), (json.dumps({"format": "other"}), "not an fbp-pretrained"),
                           (json.dumps({"format": "fbp-pretrained", "version": 99}), "newer"),
                           (json.dumps({"format": "fbp-pretrained", "version": 1, "base_model": "x"}), "invalid")):
        (folder / PRETRAINED_META_FILE).write_text(content)
        with pytest.raises(FbpError, match=words):
            read_pretrained_meta(folder)


def test_resumes_after_a_kill(ws):
    """Killed after its third step (a checkpoint every 2): the same command resumes from step 2 and finishes."""
    command = ["pretrain", "--data", "proc", "-m", "tiny", "-o", "model", "--max-steps", "4", "--set", "pretrain.save_steps=2", *TINY]
    env = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    killed = run_fbp_process(*command, cwd=ws, env={**env, "FBP_CRASH_AT": "pretrain_step@3"})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert (ws / "model.pretrain-work" / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (ws / "model").exists()
    done = run_fbp_process(*command, cwd=ws, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming from checkpoint-2" in done.stdout
    from fbp.io.pretrained import read_pretrained_meta

    assert read_pretrained_meta(ws / "model").steps == 4
    assert not (ws / "model.pretrain-work").exists()


def test_a_failure_after_the_lock_leaves_no_work_folder(ws, cli, tmp_path):
    """A model that cannot be loaded as a masked-LM (pickle weights only) fails once the work folder is locked:
    the folder it created is removed, nothing else is written."""
    import torch

    bad = tmp_path / "pickled"
    shutil.copytree(ws / "tiny", bad)
    weights = bad / "model.safetensors"
    from safetensors.torch import load_file

    torch.save(load_file(weights), bad / "pytorch_model.bin")
    weights.unlink()
    before = snapshot(ws)
    result = cli("pretrain", "--data", "proc", "-m", str(bad), "-o", "model", "--max-steps", "1", *TINY, cwd=ws)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert not (ws / "model.pretrain-work").exists() and snapshot(ws) == before


def test_a_second_pretrain_into_the_same_output_is_refused_while_one_runs(ws, cli):
    from fbp.io.run_dir import RunLock

    lock = RunLock(ws / "model.pretrain-work", command="fbp pretrain").acquire()  # held by a live process (this one)
    try:
        result = cli("pretrain", "--data", "proc", "-m", "tiny", "-o", "model", "--max-steps", "1", *TINY, cwd=ws)
    finally:
        lock.release()
    assert result.exit_code == 1, result.output
    assert "in use by another fbp pretrain" in result.output and "Traceback" not in result.output
    assert not (ws / "model").exists()
