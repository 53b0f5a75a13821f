"""`fbp evaluate` as a user runs it: submission files, run directories, --json, --tune, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import run_cli, run_process
from fbp.config import Config, ThresholdConfig
from fbp.metric import score
from fbp.decode import decode_essays
from fbp.io.checkpoint import read_checkpoint_meta
from fbp.io.run_dir import checkpoint_decoding
from fbp.io.word_probs import save_word_probs
from test_decode import synthetic_oof

TRUTH_CSV = "id,discourse_id,discourse_type,predictionstring\na,1,Claim,0 1 2 3\na,2,Lead,10 11 12\nb,3,Claim,5 6 7\n"


@pytest.fixture
def truth_csv(tmp_path) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(TRUTH_CSV)
    return path


def write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_scores_a_submission_and_writes_json(tmp_path, truth_csv):
    # a/Claim matched (3 of 4 words), a/Lead missed, b/Claim matched, one extra Claim in essay c.
    submission = write(tmp_path, "submission.csv", "id,class,predictionstring\na,Claim,1 2 3\nb,Claim,5 6 7\nc,Claim,1 2\n")
    code, output = run_cli("evaluate", submission, "--truth", truth_csv, "--json", tmp_path / "out" / "score.json")
    assert code == 0, output
    assert "macro" in output and "Claim" in output and "0.4000" in output  # (0.8 + 0.0) / 2
    numbers = json.loads((tmp_path / "out" / "score.json").read_text())
    assert numbers["f1"] == pytest.approx(0.4)
    assert numbers["per_class"]["Claim"] == {"tp": 2, "fp": 1, "fn": 0, "precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8)}
    assert numbers["per_class"]["Lead"]["fn"] == 1


def test_header_only_submission_scores_zero(tmp_path, truth_csv):
    submission = write(tmp_path, "submission.csv", "id,class,predictionstring\n")
    code, output = run_cli("evaluate", submission, "--truth", truth_csv, "--json", tmp_path / "s.json")
    assert code == 0, output
    assert json.loads((tmp_path / "s.json").read_text())["f1"] == 0.0


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "is empty"),
        ("id,predictionstring\na,1 2\n", "missing column(s) class"),
        ("id,class,predictionstring\na,Claim,1 2\nb,Claim,one two\n", "line 3 (essay b): predictionstring 'one two' is not a list of word indices"),
        ("id,class,predictionstring\na,Argument,1 2\n", "line 2: unknown class 'Argument'"),
        ("id,class,predictionstring\na,Claim,\n", "line 2 (essay a): predictionstring is empty"),
    ],
)
def test_bad_submission_is_one_clear_message(tmp_path, truth_csv, content, message):
    submission = write(tmp_path, "bad.csv", content)
    code, output = run_cli("evaluate", submission, "--truth", truth_csv)
    assert code == 1
    assert str(submission) in output and message in " ".join(output.split())
    assert "Traceback" not in output


def test_missing_files_and_usage_errors(tmp_path, truth_csv):
    code, output = run_cli("evaluate", tmp_path / "nope.csv", "--truth", truth_csv)
    assert code == 1 and "nope.csv" in output and "not found" in output
    submission = write(tmp_path, "submission.csv", "id,class,predictionstring\na,Claim,1 2\n")
    code, output = run_cli("evaluate", submission, "--truth", tmp_path / "missing_truth.csv")
    assert code == 1 and "missing_truth.csv" in output
    code, output = run_cli("evaluate", submission)
    assert code == 2 and "--truth" in output
    code, output = run_cli("evaluate", submission, "--truth", truth_csv, "--tune")
    assert code == 2 and "run directory" in output


def test_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "stuff").mkdir()
    code, output = run_cli("evaluate", tmp_path / "stuff")
    assert code == 1 and "not an fbp run" in output


# ------------------------------------------------------------------------------------------------
# Run directories, written by the same owners `fbp train` writes them with

START = ThresholdConfig(min_words={"Claim": 2}, min_confidence={"Claim": 0.5})


@pytest.fixture
def run_dir(tmp_path) -> Path:
    from tiny_models import minilm_tokenizer, tiny_bert

    from fbp.io.checkpoint import CheckpointMeta, save_checkpoint
    from fbp.io.run_dir import RunDir

    word_probs, truth = synthetic_oof(n_essays=20)
    processed = tmp_path / "processed"
    processed.mkdir()
    truth.to_parquet(processed / "spans.parquet", index=False)
    config = Config.model_validate({"data": {"processed_dir": str(processed)}, "decoding": START.model_dump()})
    run = RunDir(tmp_path / "run")
    summary = run.open(config)
    save_word_probs(run.oof_path, word_probs)
    run.write_decoding(START)
    for fold in (0, 1):
        save_checkpoint(run.fold_dir(fold), tiny_bert(seed=fold), minilm_tokenizer(),
                        CheckpointMeta(max_length=512, stride=128, fold=fold, decoding=START))
    summary.status = "complete"
    run.write_record(summary)
    return run.path


def test_run_directory_is_scored_on_its_out_of_fold_predictions(run_dir, tmp_path):
    word_probs, truth = synthetic_oof(n_essays=20)
    expected = score(decode_essays(word_probs, START), truth).f1
    code, output = run_cli("evaluate", run_dir, "--json", tmp_path / "oof.json")
    assert code == 0, output
    assert json.loads((tmp_path / "oof.json").read_text())["f1"] == pytest.approx(expected)
    assert expected < 1.0  # the noise spans pass the starting thresholds


def test_run_directory_with_explicit_truth_csv(run_dir, tmp_path):
    _, truth = synthetic_oof(n_essays=20)
    truth_csv = tmp_path / "truth.csv"
    truth.iloc[:40].to_csv(truth_csv, index=False)  # 10 of the 20 essays: the rest count as having no truth
    code, output = run_cli("evaluate", run_dir, "--truth", truth_csv, "--json", tmp_path / "o.json")
    assert code == 0, output
    assert json.loads((tmp_path / "o.json").read_text())["true_spans"] == 40


def test_tune_saves_thresholds_for_infer_and_ensemble(run_dir, tmp_path):
    code, output = run_cli("evaluate", run_dir, "--tune", "--json", tmp_path / "tuned.json")
    assert code == 0, output
    assert "F1 before" in output and "F1 after" in output
    tuned = json.loads((run_dir / "decoding.json").read_text())
    assert tuned["min_words"]["Claim"] >= 4 or tuned["min_confidence"]["Claim"] > 0.6
    for fold in (0, 1):
        # Each fold checkpoint, even given alone, decodes with the run's tuned thresholds; its fbp.json is not rewritten.
        decoding, source = checkpoint_decoding(run_dir / f"fold_{fold}")
        assert decoding.model_dump() == tuned and source == str(run_dir / "decoding.json")
        assert read_checkpoint_meta(run_dir / f"fold_{fold}").decoding == START
    numbers = json.loads((tmp_path / "tuned.json").read_text())
    assert numbers["f1"] == 1.0 and numbers["tuning"]["f1_before"] < 1.0
    assert not list(run_dir.glob("**/*.tmp"))
    # Evaluating again uses the saved thresholds.
    code, output = run_cli("evaluate", run_dir, "--json", tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["f1"] == 1.0


def test_run_without_oof_or_truth_is_explained(run_dir):
    (run_dir / "oof_word_probs.npz").unlink()
    code, output = run_cli("evaluate", run_dir)
    assert code == 1 and "no out-of-fold predictions" in output
    save_word_probs(run_dir / "oof_word_probs.npz", synthetic_oof(n_essays=2)[0])
    processed = Path(json.loads((run_dir / "run.json").read_text())["processed_dir"])
    (processed / "spans.parquet").unlink()
    code, output = run_cli("evaluate", run_dir)
    assert code == 1 and "spans.parquet" in output and "--truth" in output


def test_evaluate_process_does_not_import_torch(tmp_path, truth_csv):
    submission = write(tmp_path, "submission.csv", "id,class,predictionstring\na,Claim,0 1 2 3\n")
    script = (
        "import sys\nfrom fbp.cli import app\n"
        f"app(['evaluate', {str(submission)!r}, '--truth', {str(truth_csv)!r}], standalone_mode=False)\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    done = run_process([sys.executable, "-c", script], timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no torch")


def test_rows_without_a_span_are_skipped_like_kaggles_sample_submission(tmp_path, truth_csv):
    # Kaggle's sample_submission.csv lists essays with no span as "id,," rows.
    submission = write(tmp_path, "submission.csv", "id,class,predictionstring\nx,,\na,Claim,0 1 2 3\ny,,\nb,Claim,5 6 7\n")
    code, output = run_cli("evaluate", submission, "--truth", truth_csv, "--json", tmp_path / "s.json")
    assert code == 0, output
    numbers = json.loads((tmp_path / "s.json").read_text())
    assert numbers["predicted_spans"] == 2 and numbers["per_class"]["Claim"]["tp"] == 2
    # Line numbers in errors still count the skipped rows.
    bad = write(tmp_path, "bad.csv", "id,class,predictionstring\nx,,\nb,Claim,five\n")
    code, output = run_cli("evaluate", bad, "--truth", truth_csv)
    assert code == 1 and "line 3 (essay b)" in output
