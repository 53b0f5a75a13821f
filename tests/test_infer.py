"""`fbp infer` / `fbp ensemble`: submissions from checkpoints and runs, OOF ensembles, HTML, bad input."""


import numpy as np
import pandas as pd
import pytest
from conftest import run_fbp_process
from tiny_models import minilm_tokenizer, tiny_bert

from fbp.decode import decode_essays
from fbp.errors import FbpError, UsageError
from fbp.ensemble import ensemble_oof
from fbp.cli.infer import parse_weights
from fbp.io.kaggle import EssayDir
from fbp.infer import predict_directory
from fbp.labels import LABEL2ID, NUM_LABELS
from fbp.io.run_dir import RunDir
from fbp.io.run_record import RunRecord
from fbp.config import ThresholdConfig
from fbp.io.checkpoint import save_checkpoint
from fbp.io.word_probs import load_word_probs, save_word_probs
from fbp.word_probs import normalise_weights, predict_word_probs

ESSAYS = {
    "A1": "Phones should be allowed in school. " * 30,
    "B2": "In my opinion driverless cars are safer.\n\nFor example, they never get tired. " * 12,
    "C3": "Summer projects help students learn.",
}
DECODING = {"min_words": {"Claim": 2}, "min_confidence": {"Claim": 0.1}}


def _fbp_meta(fold):
    return {"max_length": 48, "stride": 12, "label_subtokens": "first", "model": "minilm", "fold": fold, "run": "tiny", "decoding": DECODING}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with two tiny fold checkpoints, run.json and decoding.json."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    for fold in (0, 1):
        save_checkpoint(run / f"fold_{fold}", tiny_bert(seed=fold), minilm_tokenizer(), _fbp_meta(fold))
    RunDir(run).write_record(RunRecord(name="tiny", config={}, folds=[]))
    RunDir(run).write_decoding(ThresholdConfig.model_validate(DECODING))
    return run


@pytest.fixture()
def essay_dir(tmp_path):
    directory = tmp_path / "essays"
    directory.mkdir()
    for essay_id, text in ESSAYS.items():
        (directory / f"{essay_id}.txt").write_text(text, encoding="utf-8")
    return directory


def test_run_directory_averages_its_folds_and_writes_a_submission(run_dir, essay_dir, tmp_path):
    result = predict_directory([run_dir], essay_dir, tmp_path / "out" / "submission.csv", save_probs=tmp_path / "probs")
    submission = pd.read_csv(tmp_path / "out" / "submission.csv")
    assert list(submission.columns) == ["id", "class", "predictionstring"]
    assert set(submission["id"]) <= set(ESSAYS) and result.checkpoints == 2 and result.essays == 3
    saved = load_word_probs(tmp_path / "probs" / "word_probs.npz")
    texts = list(ESSAYS.values())
    folds = [dict(predict_word_probs(tiny_bert(seed=fold), minilm_tokenizer(), texts, 48, 12, batch_size=4)) for fold in (0, 1)]
    for index, essay_id in enumerate(ESSAYS):
        assert saved[essay_id].shape == (len(texts[index].split()), NUM_LABELS)
        np.testing.assert_allclose(saved[essay_id], (folds[0][index] + folds[1][index]) / 2, atol=2e-3)  # float16 storage
    assert result.decoding.min_words["Claim"] == 2  # the run's decoding.json
    # The submission is the fold average decoded with those thresholds, row for row.
    average = {essay_id: (folds[0][index] + folds[1][index]) / 2 for index, essay_id in enumerate(ESSAYS)}
    expected = decode_essays(average, result.decoding)
    assert len(expected) > 0 and result.spans.reset_index(drop=True).equals(expected.reset_index(drop=True))
    assert submission.astype(str).equals(expected.reset_index(drop=True).astype(str))


def test_ensemble_of_fold_dirs_as_a_shell_glob_with_weights(run_dir, essay_dir, tmp_path):
    folds = sorted(run_dir.glob("*"))  # what `fbp ensemble runs/tiny/*` passes: fold dirs, run.json, decoding.json
    with pytest.raises(FbpError, match="decoding.json is a file, not a checkpoint"):
        predict_directory(folds, essay_dir, tmp_path / "s.csv")
    fold_dirs = [path for path in folds if path.is_dir()]
    predict_directory(fold_dirs, essay_dir, tmp_path / "s.csv", weights=[1, 0], save_probs=tmp_path / "w.npz")
    only_fold_0 = dict(predict_word_probs(tiny_bert(seed=0), minilm_tokenizer(), list(ESSAYS.values()), 48, 12, batch_size=4))
    np.testing.assert_allclose(load_word_probs(tmp_path / "w.npz")["A1"], only_fold_0[0], atol=2e-3)
    with pytest.raises(UsageError, match="3 weights for 2 models"):
        predict_directory(fold_dirs, essay_dir, tmp_path / "s.csv", weights=[0.5, 0.3, 0.2])


def test_saved_probabilities_are_ensemble_members_without_rerunning(run_dir, essay_dir, tmp_path):
    predict_directory([run_dir / "fold_0"], essay_dir, None, save_probs=tmp_path / "fold0.npz")
    mixed = predict_directory([tmp_path / "fold0.npz", run_dir / "fold_1"], essay_dir, tmp_path / "mixed.csv", save_probs=tmp_path / "mixed.npz")
    both = predict_directory([run_dir], essay_dir, tmp_path / "both.csv", save_probs=tmp_path / "both.npz")
    np.testing.assert_allclose(load_word_probs(tmp_path / "mixed.npz")["B2"], load_word_probs(tmp_path / "both.npz")["B2"], atol=2e-3)
    assert mixed.checkpoints == 1 and both.checkpoints == 2


def test_html_view_has_a_page_per_essay_with_legend_and_truth(run_dir, essay_dir, tmp_path):
    truth = tmp_path / "truth.csv"
    pd.DataFrame({"id": ["A1"], "discourse_type": ["Claim"], "predictionstring": ["0 1 2 3 4 5"]}).to_csv(truth, index=False)
    predict_directory([run_dir], essay_dir, tmp_path / "s.csv", html_dir=tmp_path / "view", truth=truth)
    pages = sorted(path.name for path in (tmp_path / "view").iterdir())
    assert pages == [".fbp-html-report", "A1.html", "B2.html", "C3.html", "index.html"]  # the mark: fbp wrote this folder
    page = (tmp_path / "view" / "A1.html").read_text()
    assert "Concluding Statement" in page and "Truth (1 spans)" in page and 'title="Claim"' in page
    assert "F1" in (tmp_path / "view" / "index.html").read_text()


def test_bad_essays_and_directories_are_named(tmp_path, run_dir):
    with pytest.raises(FbpError, match="does not exist"):
        EssayDir.scan(tmp_path / "missing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FbpError, match="has no \\*.txt essays"):
        EssayDir.scan(tmp_path / "empty_dir")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "good.txt").write_text("fine words")
    (tmp_path / "bad" / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(FbpError, match="essay latin1.txt is not valid UTF-8"):
        EssayDir.scan(tmp_path / "bad")
    (tmp_path / "bad" / "latin1.txt").write_text("  \n ")  # an empty essay is valid input with no elements
    assert EssayDir.scan(tmp_path / "bad").empty == ["latin1"]
    with pytest.raises(FbpError, match="neither an fbp checkpoint"):
        predict_directory([tmp_path / "bad"], tmp_path / "bad")


def test_checkpoints_with_different_label_sets_are_refused(run_dir, essay_dir, tmp_path):
    model = tiny_bert()
    model.config.id2label = {i: f"TAG{i}" for i in range(NUM_LABELS)}
    foreign = save_checkpoint(tmp_path / "foreign", model, minilm_tokenizer(), _fbp_meta(0))
    with pytest.raises(FbpError, match="different label set"):
        predict_directory([run_dir, foreign], essay_dir, tmp_path / "s.csv")


def test_weights_parsing():
    assert parse_weights(["0.6,0.2", "0.2"]) == pytest.approx([0.6, 0.2, 0.2])
    assert parse_weights(None) is None and normalise_weights(None, 4) == [0.25] * 4
    assert normalise_weights([3, 1], 2) == [0.75, 0.25]
    with pytest.raises(UsageError, match="must be numbers"):
        parse_weights(["a,b"])
    with pytest.raises(UsageError, match="non-negative"):
        normalise_weights([1, -1], 2)


def _oof_run(root, name, word_probs):
    run = root / name
    run.mkdir()
    save_word_probs(RunDir(run).oof_path, word_probs)
    RunDir(run).write_record(RunRecord(name=name, config={}, folds=[]))
    return run


def test_oof_ensemble_scores_members_and_fits_weights(tmp_path):
    rng = np.random.default_rng(0)
    truth_rows, good, noisy = [], {}, {}
    for essay in range(12):
        labels = np.zeros(40, dtype=int)
        labels[5], labels[6:15] = LABEL2ID["B-Claim"], LABEL2ID["I-Claim"]
        labels[20], labels[21:35] = LABEL2ID["B-Evidence"], LABEL2ID["I-Evidence"]
        truth_rows += [(f"e{essay}", "Claim", " ".join(map(str, range(5, 15)))), (f"e{essay}", "Evidence", " ".join(map(str, range(20, 35))))]
        exact = np.eye(NUM_LABELS)[labels] * 0.9 + 0.1 / NUM_LABELS
        good[f"e{essay}"] = exact
        noisy[f"e{essay}"] = rng.dirichlet(np.ones(NUM_LABELS), size=40) if essay % 2 else exact
    truth = tmp_path / "train.csv"
    pd.DataFrame(truth_rows, columns=["id", "discourse_type", "predictionstring"]).to_csv(truth, index=False)
    runs = [_oof_run(tmp_path, "good", good), _oof_run(tmp_path, "noisy", noisy)]
    report = ensemble_oof(runs, weights=[0.2, 0.8], fit_weights=True, truth=truth)
    good_f1, noisy_f1 = (result.f1 for result in report.member_results)
    assert good_f1 == pytest.approx(1.0) and noisy_f1 < 0.9
    assert report.fitted_result.f1 >= report.ensemble_result.f1
    assert report.fitted_weights[0] > report.fitted_weights[1]
    with pytest.raises(UsageError, match="no out-of-fold word probabilities"):
        ensemble_oof([tmp_path], truth=truth)


@pytest.mark.e2e
def test_cli_infer_offline_and_bad_input_exit_codes(run_dir, essay_dir, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = ["infer", run_dir, "--input", essay_dir, "-o", tmp_path / "sub.csv"]
    done = run_fbp_process(*command, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "sub.csv").read_text().startswith("id,class,predictionstring")
    (tmp_path / "none").mkdir()
    bad = run_fbp_process(*command[:2], "--input", tmp_path / "none", env=env)
    assert bad.returncode == 1 and "has no *.txt essays" in " ".join(bad.stderr.split()) and "Traceback" not in bad.stderr
    weights = run_fbp_process("ensemble", run_dir, "-i", essay_dir, "-w", "1,2", env=env)
    assert weights.returncode == 2 and "2 weights for 1 model" in " ".join(weights.stderr.split())


def test_models_with_different_tokenizers_ensemble_at_the_word_level(run_dir, essay_dir, tmp_path):
    """A RoBERTa-style checkpoint (byte-level BPE, add_prefix_space) and a BERT one average word by word."""
    import torch
    from tiny_models import byte_level_bpe_tokenizer
    from transformers import RobertaConfig, RobertaForTokenClassification

    from fbp.labels import ID2LABEL
    from fbp.model import load_tokenizer

    base = tmp_path / "tiny-roberta"
    config = RobertaConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=66, num_labels=NUM_LABELS, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID))
    config.save_pretrained(base)
    byte_level_bpe_tokenizer().save_pretrained(base)
    torch.manual_seed(0)
    roberta = save_checkpoint(tmp_path / "roberta", RobertaForTokenClassification(config).eval(), load_tokenizer(str(base)), {**_fbp_meta(0), "max_length": 64})
    predict_directory([roberta], essay_dir, None, save_probs=tmp_path / "roberta.npz")
    predict_directory([run_dir / "fold_0"], essay_dir, None, save_probs=tmp_path / "bert.npz")
    predict_directory([roberta, run_dir / "fold_0"], essay_dir, tmp_path / "mixed.csv", weights=[0.25, 0.75], save_probs=tmp_path / "mixed.npz")
    alone = [load_word_probs(tmp_path / name) for name in ("roberta.npz", "bert.npz")]
    mixed = load_word_probs(tmp_path / "mixed.npz")
    for essay_id, text in ESSAYS.items():
        assert alone[0][essay_id].shape == alone[1][essay_id].shape == (len(text.split()), NUM_LABELS)
        np.testing.assert_allclose(mixed[essay_id], 0.25 * alone[0][essay_id] + 0.75 * alone[1][essay_id], atol=3e-3)


def test_infer_names_its_decoding_and_outputs_on_whole_lines(run_dir, essay_dir, tmp_path, cli):
    """The decoding's file and the outputs' paths are never wrapped inside a path (a table caption was wrapped to
    the table's width: '.../runs/minilm-demo/le' / 'arned_decoder.json')."""
    output = tmp_path / ("a-long-folder-name-" * 4) / "submission.csv"
    result = cli("infer", run_dir, "-i", essay_dir, "-o", output, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("decoding:") and str(run_dir / "decoding.json") in line for line in lines), result.stdout
    assert f"submission: {output}" in lines, result.stdout
