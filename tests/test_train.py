"""``fbp train`` on the demo corpus with a tiny random model: run directory, best epoch, resume, errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_process

from fbp.config import load_config
from fbp.errors import FbpError, UsageError
from fbp.labels import CLASSES, NUM_LABELS



def tiny_config(processed: Path, model: Path, **overrides):
    settings = {
        "data.processed_dir": str(processed), "model.name": str(model), "training.epochs": 2,
        "training.batch_size": 4, "training.learning_rate": 1e-3, "windows.max_length": 128, "windows.stride": 32,
        "tracking.wandb": "offline",
    }
    settings.update(overrides)
    return load_config(None, settings)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, processed_demo, tiny_model_dir):
    from fbp.training.loop import train_run

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    summary = train_run(tiny_config(processed_demo, tiny_model_dir, **{"data.train_folds": [0, 1]}), run_dir)
    return run_dir, summary


def test_run_directory_holds_the_contract(trained_run, processed_demo):
    from fbp.config import ThresholdConfig
    from fbp.decode import cross_fitted_thresholds, decode_essays
    from fbp.io.checkpoint import read_checkpoint_meta
    from fbp.io.run_dir import checkpoint_decoding
    from fbp.io.processed import load_processed
    from fbp.io.word_probs import load_word_probs
    from fbp.metric import score
    from fbp.infer import resolve_thresholds, resolve_members

    run_dir, summary = trained_run
    assert {"name", "model", "config", "cv_f1", "cv_per_class", "folds"} <= set(summary)
    assert (run_dir / "config.yaml").exists() and (run_dir / "decoding.json").exists()
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert summary["status"] == "partial"  # fold 2 was not trained
    for fold in summary["folds"]:
        epochs = fold["epochs"]
        assert [e["epoch"] for e in epochs] == [1, 2]
        # The best epoch: highest F1, an exact tie broken by the lower validation loss.
        best = max(epochs, key=lambda e: (round(e["f1"], 9), -e["eval_loss"]))
        assert fold["best_epoch"] == best["epoch"] and fold["best_f1"] == pytest.approx(best["f1"])
        assert epochs[0]["saved"] and set(epochs[0]["per_class"]) == set(CLASSES)
        assert epochs[1]["saved"] == (best["epoch"] == 2)
        checkpoint = run_dir / f"fold_{fold['fold']}"
        assert {"config.json", "model.safetensors", "fbp.json", "tokenizer.json"} <= {p.name for p in checkpoint.iterdir()}
        assert not list(checkpoint.glob("*.bin")) and not list(checkpoint.glob("checkpoint-*"))
        meta = json.loads((checkpoint / "fbp.json").read_text())
        assert meta["max_length"] == 128 and meta["stride"] == 32 and meta["best_epoch"] == fold["best_epoch"]
    assert not (run_dir / ".work").exists(), "the Trainer's epoch checkpoints are removed once a fold ends"
    processed = load_processed(processed_demo)
    essays = processed.essays
    validation = essays[essays["fold"].isin([0, 1])]
    oof = load_word_probs(run_dir / "oof_word_probs.npz")
    assert set(oof) == set(validation["id"])
    for essay_id, n_words in zip(validation["id"], validation["n_words"]):
        assert oof[essay_id].shape == (n_words, NUM_LABELS)
        np.testing.assert_allclose(oof[essay_id].sum(axis=1), 1.0, atol=0.02)
    # cv_f1 is the out-of-fold predictions decoded with the configured thresholds; cv_f1_tuned is cross-fitted (each
    # fold decoded with thresholds tuned on the other folds); decoding.json holds the thresholds tuned on all of them.
    truth = processed.spans[processed.spans["id"].isin(set(oof))]
    config = load_config(run_dir / "config.yaml")
    assert summary["cv_f1"] == pytest.approx(score(decode_essays(oof, config.decoding), truth).f1, abs=1e-6)
    fold_of = dict(zip(essays["id"], essays["fold"]))
    tuned, cross_fitted = cross_fitted_thresholds(oof, truth, config.decoding, [fold_of[i] for i in oof])
    assert summary["cv_f1_tuned"] == pytest.approx(score(cross_fitted, truth).f1, abs=1e-6)
    assert set(summary["cv_per_class_tuned"]) == set(CLASSES)
    assert ThresholdConfig.model_validate(json.loads((run_dir / "decoding.json").read_text())) == tuned
    # fbp.json is written once, with the thresholds the fold was scored with; a fold checkpoint decodes with its run's
    # tuned thresholds, also when given alone (fbp infer RUN/fold_0).
    for f in (0, 1):
        assert read_checkpoint_meta(run_dir / f"fold_{f}").decoding == config.decoding
        assert checkpoint_decoding(run_dir / f"fold_{f}") == (tuned, str(run_dir / "decoding.json"))
        assert resolve_thresholds(resolve_members([run_dir / f"fold_{f}"]))[0] == tuned


def test_each_folds_kept_checkpoint_reproduces_its_rows_of_the_out_of_fold_file(trained_run, processed_demo):
    """One best epoch: the checkpoint the Trainer kept is the fold's checkpoint, the epoch run.json names, and the
    source of the fold's out-of-fold rows (recorded with the fold they came from)."""
    from fbp.io.checkpoint import load_checkpoint
    from fbp.io.processed import load_processed
    from fbp.io.word_probs import load_folds, load_word_probs
    from fbp.word_probs import predict_word_probs

    run_dir, summary = trained_run
    oof, folds = load_word_probs(run_dir / "oof_word_probs.npz"), load_folds(run_dir / "oof_word_probs.npz")
    essays = load_processed(processed_demo).essays.set_index("id")
    for fold_record in summary["folds"]:
        fold = fold_record["fold"]
        ids = [essay_id for essay_id in oof if folds[essay_id] == fold]
        assert sorted(ids) == sorted(essays.index[essays["fold"] == fold])
        checkpoint = load_checkpoint(run_dir / f"fold_{fold}", device="cpu")
        assert checkpoint.meta.best_epoch == fold_record["best_epoch"]
        assert [e["epoch"] for e in fold_record["epochs"] if e["saved"]][-1] == fold_record["best_epoch"]
        meta = checkpoint.meta
        predicted = dict(predict_word_probs(checkpoint.model, checkpoint.tokenizer, essays.loc[ids, "text"].tolist(),
                                            meta.max_length, meta.stride, batch_size=8, device="cpu"))
        for index, essay_id in enumerate(ids):
            np.testing.assert_allclose(predicted[index], oof[essay_id], atol=3e-3, err_msg=f"fold {fold}, essay {essay_id}")


def test_training_fits_the_learned_decoder_and_records_its_cross_fitted_f1(trained_run):
    from fbp.io.decoder import load_decoder

    run_dir, summary = trained_run
    from fbp.io.word_probs import load_folds, load_word_probs
    from fbp.io.run_dir import RunDir
    from fbp.io.kaggle import read_span_file
    from fbp.post_training import choose_decoding, cross_fit_groups

    # The recorded figure is the cross-fitted F1 of a fit by the recorded folds: refitting reproduces it.
    oof = load_word_probs(run_dir / "oof_word_probs.npz")
    groups = cross_fit_groups(list(oof), load_folds(run_dir / "oof_word_probs.npz"), "unused")
    truth = read_span_file(RunDir(run_dir).truth_path(), "truth")[0]
    refit = choose_decoding(oof, truth[truth["id"].isin(set(oof))], RunDir(run_dir).decoding(), groups, tune=False, learn=True)
    assert groups.are_folds and summary["cv_f1_learned"] == round(refit.learned.result.f1, 6)
    assert set(summary["cv_per_class_learned"]) <= set(CLASSES)
    # The run uses the learned decoder only when it beats the tuned thresholds out of fold.
    assert summary["decoder"] == ("learned" if summary["cv_f1_learned"] > summary["cv_f1_tuned"] else "thresholds")
    assert load_decoder(run_dir / "learned_decoder.json").classes == CLASSES


def test_wandb_offline_files_appear(trained_run):
    run_dir, _ = trained_run
    offline_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2, "one wandb run per fold"
    assert all(list(r.glob("*.wandb")) for r in offline_runs)


def test_the_saved_checkpoint_loads_offline_in_a_pipeline(trained_run):
    from transformers import pipeline

    run_dir, _ = trained_run
    tagger = pipeline("token-classification", model=str(run_dir / "fold_0"))
    assert tagger.model.config.id2label[1].startswith("B-")
    entities = tagger("Some people argue that phones distract students.")
    assert entities and {entity["entity"] for entity in entities} <= set(tagger.model.config.id2label.values())
    assert all(entity["word"] for entity in entities)


def test_an_interrupted_run_resumes_without_repeating_finished_work(tmp_path, processed_demo, tiny_model_dir):
    from fbp.training.loop import train_run

    config = tiny_config(processed_demo, tiny_model_dir, **{"data.train_folds": [0, 1], "tracking.wandb": "disabled"})
    run_dir = tmp_path / "run"

    def stop_in_fold_1(fold, epoch, f1):
        if fold == 1 and epoch == 2:  # epoch 1 of fold 1 is checkpointed by then, as after a Ctrl-C in epoch 2
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, run_dir, epoch_callback=stop_in_fold_1)
    interrupted = json.loads((run_dir / "run.json").read_text())
    assert [f["fold"] for f in interrupted["folds"]] == [0]
    # the time spent before the interruption is kept: fold 0 and the part of fold 1 that ran
    assert interrupted["train_seconds"] > interrupted["folds"][0]["seconds"] > 0
    fold_0_written = (run_dir / "fold_0" / "model.safetensors").stat().st_mtime_ns
    assert list((run_dir / ".work" / "fold_1").glob("checkpoint-*")), "epoch 1 of fold 1 was checkpointed"

    seen = []
    summary = train_run(config, run_dir, epoch_callback=lambda fold, epoch, f1: seen.append((fold, epoch)))
    assert seen == [(1, 2)], "fold 0 is skipped and fold 1 continues at epoch 2"
    assert (run_dir / "fold_0" / "model.safetensors").stat().st_mtime_ns == fold_0_written
    assert [e["epoch"] for e in summary["folds"][1]["epochs"]] == [1, 2]
    assert summary["cv_f1"] is not None
    # and the resumed invocation's time is added to it, not put in its place (each figure is rounded to 0.1 s)
    assert summary["train_seconds"] >= interrupted["train_seconds"] + summary["folds"][1]["seconds"] - 0.1


def test_bad_requests_are_clear_errors_and_overwrite_nothing(tmp_path, processed_demo, tiny_model_dir, trained_run):
    from fbp.training.loop import train_run

    with pytest.raises(UsageError, match="fold 7 does not exist"):
        train_run(tiny_config(processed_demo, tiny_model_dir, **{"data.train_folds": [7]}), tmp_path / "a")
    with pytest.raises(FbpError):
        train_run(tiny_config(tmp_path / "nowhere", tiny_model_dir), tmp_path / "b")
    with pytest.raises(UsageError, match="max_length 600 is more than"):
        train_run(tiny_config(processed_demo, tiny_model_dir, **{"windows.max_length": 600}), tmp_path / "c")
    with pytest.raises(FbpError, match="cannot load model"):
        train_run(tiny_config(processed_demo, tmp_path / "no-model-here"), tmp_path / "d")
    assert not any((tmp_path / name).exists() for name in "abcd"), "nothing is written for a run that cannot start"
    run_dir, _ = trained_run
    before = (run_dir / "config.yaml").read_text()
    with pytest.raises(UsageError, match="holds a different run"):
        train_run(tiny_config(processed_demo, tiny_model_dir, **{"training.learning_rate": 0.5}), run_dir)
    assert (run_dir / "config.yaml").read_text() == before


def test_cli_rejects_bad_settings_with_exit_code_2_and_no_traceback(processed_demo, tiny_model_dir, tmp_path):
    result = run_cli("train", "--data", processed_demo, "--model", tiny_model_dir, "--set", "windows.stride=600", "-o", tmp_path / "r")
    assert result.returncode == 2 and "stride (600) must be smaller than max_length (512)" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()
    result = run_cli("train", "--data", processed_demo, "--set", "training.learnin_rate=1", "-o", tmp_path / "r")
    assert result.returncode == 2 and "unknown key 'training.learnin_rate'" in result.stderr
    result = run_cli("train", "--data", tmp_path / "missing", "--model", tiny_model_dir, "-o", tmp_path / "r")
    assert result.returncode == 1 and "missing" in result.stderr and "Traceback" not in result.stderr


def test_training_under_torchrun_with_two_processes(tmp_path, processed_demo, tiny_model_dir):
    """DDP through the Trainer: 2 CPU processes (gloo) train one fold together."""
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "-m", "fbp", "train",
        "--data", str(processed_demo), "--model", str(tiny_model_dir), "--fold", "0", "--epochs", "1", "--wandb", "disabled",
        "--set", "windows.max_length=128", "--set", "windows.stride=32", "--set", "training.batch_size=4",
        "--set", "training.class_weights=null",  # unweighted: an untrained model's loss is then about log(labels)
        "-o", str(run_dir),
    ]
    completed = run_process(command, timeout=600, env={"OMP_NUM_THREADS": "1", "COLUMNS": os.environ.get("COLUMNS")})
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    summary = json.loads((run_dir / "run.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0] and (run_dir / "fold_0" / "model.safetensors").exists()
    # The logged loss is the mean over both processes' tokens, not multiplied by the number of processes (it was 2x).
    assert summary["folds"][0]["epochs"][0]["loss"] < 1.3 * np.log(NUM_LABELS)


def test_best_epoch_is_the_highest_f1_and_ties_go_to_the_lower_loss():
    import numpy as np

    from fbp.training.callbacks import epoch_records
    from fbp.training.best_epoch import selection_score
    from fbp.training.trainer import validation_loss

    probs = np.full((1, 3, 15), 0.5 / 14, dtype=np.float32)
    probs[0, :, 0] = 0.5
    labels = np.array([[0, 0, -100]])
    assert validation_loss(probs, labels) == pytest.approx(-np.log(0.5))
    history = [
        {"loss": 2.0}, {"eval_f1": 0.0, "eval_selection": selection_score(0.0, 1.8), "epoch": 1.0},
        {"loss": 1.5}, {"eval_f1": 0.0, "eval_selection": selection_score(0.0, 1.4), "epoch": 2.0},  # tie, lower loss
        {"loss": 1.2}, {"eval_f1": 0.31, "eval_selection": selection_score(0.31, 1.6), "epoch": 3.0},
        {"loss": 1.1}, {"eval_f1": 0.30, "eval_selection": selection_score(0.30, 0.9), "epoch": 4.0},  # loss never beats F1
    ]
    assert [record.saved for record in epoch_records(history)] == [True, True, True, False]


def test_an_epochs_loss_is_the_mean_over_its_steps_whatever_the_logging_interval():
    """Each logged loss is the mean since the previous log: the epoch's is their mean weighted by steps."""
    from fbp.training.callbacks import epoch_records

    history = [{"loss": 1.0, "step": 3}, {"loss": 3.0, "step": 4}, {"eval_f1": 0.2, "epoch": 1.0},
               {"loss": 2.0, "step": 6}, {"eval_f1": 0.3, "epoch": 2.0}]
    assert [record.loss for record in epoch_records(history)] == [pytest.approx(1.5), pytest.approx(2.0)]


def test_gradient_accumulation_gives_the_same_loss_and_weights_as_one_big_batch(tmp_path, processed_demo, tiny_model_dir):
    """Batches of 8 and batches of 4 accumulated twice are the same optimizer steps: same logged loss, same weights
    (with the default class weights: the loss is normalised by the token count, which accumulation preserves).

    The stock token classifiers make the Trainer skip its loss scaling (they declare ``**kwargs``), which logged and
    backpropagated the loss times the accumulation steps (and times the processes under DDP); fbp's own loss does not.
    """
    from safetensors.numpy import load_file

    from fbp.training.loop import train_run

    losses, weights = [], []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        run_dir = tmp_path / f"b{batch_size}x{accumulation}"
        config = tiny_config(processed_demo, tiny_model_dir, **{
            "data.train_folds": [0], "training.epochs": 1, "training.batch_size": batch_size,
            "training.gradient_accumulation": accumulation, "tracking.wandb": "disabled", "training.tune_thresholds": False,
            "training.group_by_length": False})  # random order: the same windows per optimizer step either way
        summary = train_run(config, run_dir)
        losses.append(summary["folds"][0]["epochs"][0]["loss"])
        weights.append(load_file(str(run_dir / "fold_0" / "model.safetensors")))
    # (2x before the fix; and 2.6% apart with class weights until the epoch's last steps were logged before its
    # evaluation: the epoch loss had left them out)
    assert losses[1] == pytest.approx(losses[0], rel=1e-5), losses
    for name, value in weights[0].items():
        np.testing.assert_allclose(weights[1][name], value, atol=1e-4, err_msg=name)


def test_length_grouped_batches_come_in_random_order_with_the_longest_first():
    """Same batches as the Trainer's length grouping (same padding), but not sorted long-to-short within each group."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from fbp.training.trainer import ShuffledLengthGroupedSampler

    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 512, size=400).tolist()
    batch_size = 4
    torch.manual_seed(1)
    stock = get_length_grouped_indices(lengths, batch_size)
    torch.manual_seed(1)
    ours = list(ShuffledLengthGroupedSampler(batch_size, lengths=lengths))

    def batches(indices):
        return [tuple(sorted(indices[k : k + batch_size])) for k in range(0, len(indices), batch_size)]

    assert sorted(ours) == list(range(len(lengths)))
    assert sorted(batches(ours)) == sorted(batches(stock))  # same groups, so the same padding
    assert max(lengths[i] for i in ours[:batch_size]) == max(lengths)
    # The stock order runs long-to-short within each mega-batch; ours has no such trend.
    longest_per_batch = [max(lengths[i] for i in batch) for batch in batches(ours)]
    descending_steps = np.mean(np.diff(longest_per_batch) < 0)
    stock_descending = np.mean(np.diff([max(lengths[i] for i in batch) for batch in batches(stock)]) < 0)
    assert stock_descending > 0.9 and 0.3 < descending_steps < 0.7


def test_a_fold_trains_the_same_whatever_ran_before_it_in_the_process(tmp_path, processed_demo):
    """The new classification head is drawn after seeding, so the global RNG's history does not leak into a run."""
    import torch
    from safetensors.numpy import load_file
    from tiny_models import minilm_tokenizer
    from transformers import BertConfig, BertModel

    from fbp.training.loop import train_run

    body_dir = tmp_path / "tiny-body"  # a pretrained body without a token-classification head, like MiniLM
    tokenizer = minilm_tokenizer()
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(body_dir)
    tokenizer.save_pretrained(body_dir)
    weights = []
    for earlier_seed in (1, 2):
        torch.manual_seed(earlier_seed)  # whatever a notebook or an earlier run drew before
        config = tiny_config(processed_demo, body_dir, **{
            "data.train_folds": [1], "training.epochs": 1, "tracking.wandb": "disabled", "training.tune_thresholds": False})
        train_run(config, tmp_path / f"after_seed_{earlier_seed}")
        weights.append(load_file(str(tmp_path / f"after_seed_{earlier_seed}" / "fold_1" / "model.safetensors")))
    for name, value in weights[0].items():
        np.testing.assert_array_equal(weights[1][name], value, err_msg=name)


def test_early_stopping_ends_a_fold_after_patience_epochs_without_a_better_score(tmp_path, processed_demo, tiny_model_dir):
    from fbp.training.loop import train_run

    # A learning rate too small to change anything (the head's too): every epoch scores the same, so none after the first is better.
    config = tiny_config(processed_demo, tiny_model_dir, **{
        "data.train_folds": [0], "data.max_essays": 16, "training.epochs": 6, "training.learning_rate": 1e-30, "training.head_learning_rate": None,
        "training.early_stopping_patience": 2, "windows.max_length": 64, "windows.stride": 16, "tracking.wandb": "disabled"})
    fold = train_run(config, tmp_path / "run")["folds"][0]
    assert [epoch["epoch"] for epoch in fold["epochs"]] == [1, 2, 3]  # the best, then 2 epochs of patience
    assert fold["best_epoch"] == 1 and [epoch["saved"] for epoch in fold["epochs"]] == [True, False, False]


def test_the_head_learns_at_its_own_rate_and_the_encoder_at_the_base_rate(tmp_path):
    """``training.head_learning_rate``: the random head gets its own optimizer groups (decay and no decay kept apart),
    the scheduler scales both rates, and no parameter is lost or counted twice."""
    from transformers import TrainingArguments
    from tiny_models import tiny_bert

    from fbp.training.trainer import WordLevelTrainer

    model = tiny_bert()
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.01, warmup_steps=0,
                             lr_scheduler_type="linear", use_cpu=True, report_to=[])
    for head_rate, rates in ((None, {1e-4}), (3e-3, {1e-4, 3e-3})):
        trainer = WordLevelTrainer(model=model, args=args, head_learning_rate=head_rate)
        trainer.create_optimizer_and_scheduler(num_training_steps=10)
        groups = trainer.optimizer.param_groups
        params = [id(parameter) for group in groups for parameter in group["params"]]
        assert len(params) == len(set(params)) == len(list(model.parameters()))
        assert set(trainer.lr_scheduler.get_last_lr()) == rates
        names = {id(parameter): name for name, parameter in model.named_parameters()}
        if head_rate:  # each group all head or all encoder; the head's weight decays, its bias does not, as in the encoder
            for group in groups:
                in_head = {names[id(parameter)].startswith("classifier.") for parameter in group["params"]}
                assert len(in_head) == 1 and group["lr"] == (head_rate if in_head == {True} else 1e-4)
            head_groups = {names[id(group["params"][0])]: group["weight_decay"] for group in groups if group["lr"] == head_rate}
            assert head_groups == {"classifier.weight": 0.01, "classifier.bias": 0.0}
        for _ in range(5):
            trainer.optimizer.step()  # no gradients: changes nothing, but keeps the order torch expects
            trainer.lr_scheduler.step()
        assert sorted(trainer.lr_scheduler.get_last_lr()) == sorted(rate / 2 for rate in [group["initial_lr"] for group in groups])
