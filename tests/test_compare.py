"""`fbp compare`: reading run.json / trainer_state.json, the differing settings, highlighting, sorting, exports."""

import json

import pytest
from conftest import run_cli, run_fbp_process
from rich.console import Console

from fbp.compare import (
    compare_runs,
    differing_settings,
    find_run_files,
    load_run,
    plot_epoch_f1,
    setting_value,
    write_csv,
    write_json,
)
from fbp.cli.compare import render_table
from fbp.io.run_dir import RunDir
from fbp.io.run_record import EpochRecord, FoldRecord
from fbp.config import Config, default_settings
from fbp.errors import FbpError, UsageError
from fbp.labels import CLASSES


def write_run(run_dir, name, cv_f1, learning_rate=5e-5, max_length=512, claim_f1=0.5, seconds=600.0, folds=((3, 0.6), (2, 0.62))):
    """A run directory's run.json, written by the run directory's owner as `fbp train` writes it."""
    config = Config.model_validate({"name": name, "training": {"learning_rate": learning_rate}, "windows": {"max_length": max_length}})
    per_class = {cls: round(cv_f1 - 0.01 * i, 4) for i, cls in enumerate(CLASSES)}
    per_class["Claim"] = claim_f1
    run = RunDir(run_dir)
    summary = run.open(config)
    for fold, (best_epoch, best_f1) in enumerate(folds):
        epochs = [EpochRecord(epoch=e, loss=1.0 / e, f1=round(best_f1 - 0.05 * abs(best_epoch - e), 4), per_class=per_class,
                              saved=e == best_epoch, seconds=10.0) for e in range(1, 5)]
        summary.with_fold(FoldRecord(fold=fold, best_epoch=best_epoch, best_f1=best_f1, seconds=seconds / 2, epochs=epochs))
    summary.status, summary.cv_f1, summary.cv_per_class, summary.train_seconds = "complete", cv_f1, per_class, seconds
    run.write_record(summary)
    return run.record_path


def write_trainer_state(checkpoint_dir):
    """A Hugging Face Trainer checkpoint's trainer_state.json (3 epochs, F1 logged as eval_f1 and per class)."""
    log_history = []
    for epoch, f1 in [(1, 0.40), (2, 0.55), (3, 0.52)]:
        log_history.append({"epoch": epoch - 0.5, "step": epoch * 10 - 5, "loss": 1.2 / epoch, "learning_rate": 1e-5})
        log_history.append({"epoch": float(epoch), "step": epoch * 10, "eval_loss": 0.9 / epoch, "eval_f1": f1,
                            "eval_f1_Claim": f1 - 0.1, "eval_f1_Counterclaim": f1 - 0.2, "eval_f1_Concluding_Statement": f1 + 0.1})
    log_history.append({"epoch": 3.0, "step": 30, "train_runtime": 125.5, "train_loss": 0.7})
    state = {"best_metric": 0.55, "best_global_step": 20, "best_model_checkpoint": str(checkpoint_dir.parent / "checkpoint-20"),
             "epoch": 3.0, "global_step": 30, "num_train_epochs": 3, "train_batch_size": 16, "log_history": log_history,
             "trial_name": None, "trial_params": None}
    checkpoint_dir.mkdir(parents=True)
    (checkpoint_dir / "trainer_state.json").write_text(json.dumps(state))
    (checkpoint_dir / "config.json").write_text(json.dumps({"architectures": ["DebertaV2ForTokenClassification"], "model_type": "deberta-v2"}))
    return checkpoint_dir / "trainer_state.json"


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "runs" / "base", "base", 0.60, learning_rate=5e-5, claim_f1=0.50, seconds=600)
    write_run(tmp_path / "runs" / "fast-lr", "fast-lr", 0.64, learning_rate=1e-4, claim_f1=0.48, seconds=4000)
    write_run(tmp_path / "runs" / "long", "long", 0.62, learning_rate=5e-5, max_length=1024, claim_f1=0.55, seconds=90)
    return tmp_path / "runs"


def test_only_settings_that_differ_become_columns(runs):
    comparison = compare_runs(sorted(runs.glob("*/run.json")))
    assert comparison.differing_settings == ["windows.max_length", "training.learning_rate"]
    assert list(comparison.table["run"]) == ["base", "fast-lr", "long"]
    assert list(comparison.table["training.learning_rate"]) == [5e-5, 1e-4, 5e-5]
    assert list(comparison.table["cv_f1"]) == [0.60, 0.64, 0.62]
    assert list(comparison.table["best_epochs"]) == ["3 2"] * 3


def test_differences_flatten_nested_settings_and_ignore_the_name(tmp_path):
    first = load_run(write_run(tmp_path / "a", "a", 0.5))
    second = load_run(write_run(tmp_path / "b", "b", 0.5))
    second.settings["decoding.min_words.Lead"] = 20
    assert differing_settings([first, second]) == ["decoding.min_words.Lead"]


def test_a_setting_only_one_run_sets_differs_from_the_others_default(tmp_path):
    """A key that a run of an older fbp lacks counts as its default, so the default itself is no difference, but a
    newer run away from it is. A class weight a run does not record is 1: a run weighting Rebuttal only (or none,
    class_weights null) differs from the default weights in Counterclaim too, and a run made before class weights
    existed (no key at all) was unweighted, not at today's default weights."""
    base = load_run(write_run(tmp_path / "a", "base", 0.5))
    assert base.settings["training.class_weights.Counterclaim"] == 4.0 and base.settings["training.class_weights.Rebuttal"] == 8.0
    older = load_run(write_run(tmp_path / "c", "older", 0.5))
    older.settings.pop("training.seed")  # at its default, so no difference
    assert differing_settings([base, older]) == []
    older.settings["training.seed"] = 7
    assert differing_settings([base, older]) == ["training.seed"]

    rebuttal_only = load_run(write_run(tmp_path / "b", "rebuttal only", 0.5))
    rebuttal_only.settings.pop("training.class_weights.Counterclaim")
    assert differing_settings([base, rebuttal_only]) == ["training.class_weights.Counterclaim"]
    defaults = default_settings()
    assert [setting_value(run, "training.class_weights.Counterclaim", defaults) for run in (base, rebuttal_only)] == [4.0, 1.0]

    for run in (unweighted := load_run(write_run(tmp_path / "d", "unweighted", 0.5)), before := load_run(write_run(tmp_path / "e", "before", 0.5))):
        for key in [key for key in run.settings if key.startswith("training.class_weights")]:
            run.settings.pop(key)
    unweighted.settings["training.class_weights"] = None
    weights = ["training.class_weights.Counterclaim", "training.class_weights.Rebuttal"]
    assert set(differing_settings([base, unweighted])) == set(weights)
    assert set(differing_settings([base, before])) == set(weights)
    assert differing_settings([unweighted, before]) == []


def test_runs_of_one_name_are_told_apart_by_their_directories(tmp_path):
    write_run(tmp_path / "runs" / "lr-small", "same", 0.5)
    write_run(tmp_path / "runs" / "lr-large", "same", 0.6, learning_rate=1e-3)
    write_run(tmp_path / "runs" / "other", "other", 0.4)
    write_run(tmp_path / "elsewhere" / "other", "other", 0.4)
    comparison = compare_runs([tmp_path / "runs", tmp_path / "elsewhere"])
    names = list(comparison.table["run"])
    assert names[:2] == ["lr-large", "lr-small"]
    assert sorted(names[2:]) == sorted(str(path / "other" / "run.json") for path in (tmp_path / "elsewhere", tmp_path / "runs"))


def test_table_highlights_the_best_score_of_each_column(runs):
    console = Console(record=True, width=250, color_system="truecolor")
    console.print(render_table(compare_runs(sorted(runs.glob("*/run.json")))))
    text = console.export_text(styles=True)
    rows = {name: line for line in text.splitlines() for name in ("base", "fast-lr", "long") if name in line}
    bold_green = "\x1b[1;32m"
    assert f"{bold_green}0.6400" in rows["fast-lr"]  # best CV F1
    assert f"{bold_green}0.550" in rows["long"]  # best Claim F1
    assert f"{bold_green}0.6000" not in rows["base"]  # not the best CV F1
    assert "1h06m" in rows["fast-lr"] and "1m30s" in rows["long"]


def test_sort_by_score_puts_the_best_first_and_by_setting_ascending(runs):
    files = sorted(runs.glob("*/run.json"))
    assert list(compare_runs(files, sort="cv_f1").table["run"]) == ["fast-lr", "long", "base"]
    assert list(compare_runs(files, sort="claim").table["run"]) == ["long", "base", "fast-lr"]
    assert list(compare_runs(files, sort="time").table["run"]) == ["long", "base", "fast-lr"]
    assert list(compare_runs(files, sort="training.learning_rate").table["run"]) == ["base", "long", "fast-lr"]
    with pytest.raises(UsageError, match="no column 'nonsense'"):
        compare_runs(files, sort="nonsense")


def test_directories_expand_to_their_runs(runs):
    assert find_run_files([runs / "base"]) == [runs / "base" / "run.json"]
    assert find_run_files([runs]) == sorted(runs.glob("*/run.json"))  # a folder of runs (or a tuning directory)


def test_trainer_state_gives_best_f1_epochs_and_runtime(tmp_path):
    write_trainer_state(tmp_path / "hf-out" / "checkpoint-10")
    state_file = write_trainer_state(tmp_path / "hf-out" / "checkpoint-30")
    assert find_run_files([tmp_path / "hf-out"]) == [state_file]  # the last checkpoint holds the whole history
    run = load_run(state_file)
    assert run.name == "hf-out/checkpoint-30"
    assert run.model == "deberta-v2"
    assert run.cv_f1 == 0.55 and run.folds[0].best_epoch == 2.0
    assert run.per_class["Claim"] == pytest.approx(0.45)
    assert run.per_class["Counterclaim"] == pytest.approx(0.35)  # "Claim" did not swallow "Counterclaim"
    assert run.per_class["Concluding Statement"] == pytest.approx(0.65)
    assert run.per_class["Lead"] is None
    assert run.folds[0].epoch_f1 == [(1.0, 0.40), (2.0, 0.55), (3.0, 0.52)]
    assert run.train_seconds == 125.5
    assert run.settings == {"training.epochs": 3, "training.batch_size": 16}


def test_runs_and_trainer_states_mix_in_one_table(runs, tmp_path):
    state_file = write_trainer_state(tmp_path / "hf" / "checkpoint-30")
    comparison = compare_runs([runs / "base", state_file])
    assert comparison.differing_settings == ["training.batch_size"]  # both trained 3 epochs; default batch vs 16
    assert list(comparison.table["training.batch_size"]) == [Config().training.batch_size, 16]
    assert list(comparison.table["cv_f1"]) == [0.60, 0.55]


def test_csv_and_json_exports(runs, tmp_path):
    comparison = compare_runs(sorted(runs.glob("*/run.json")), sort="cv_f1")
    write_csv(comparison, tmp_path / "out" / "runs.csv")
    write_json(comparison, tmp_path / "out" / "runs.json")
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert list(table["run"]) == ["fast-lr", "long", "base"]
    assert {"windows.max_length", "training.learning_rate", "cv_f1", "Claim", "train_seconds", "source"} <= set(table.columns)
    exported = json.loads((tmp_path / "out" / "runs.json").read_text())
    assert exported["differing_settings"] == ["windows.max_length", "training.learning_rate"]
    assert exported["runs"][0]["name"] == "fast-lr"
    assert exported["runs"][0]["settings"] == {"windows.max_length": 512, "training.learning_rate": 1e-4}
    assert exported["runs"][0]["folds"][0]["epochs"][2] == {"epoch": 3.0, "f1": 0.6}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["runs.csv", "runs.json"]  # no temporary files left


def test_plot_draws_one_curve_per_run_and_fold(runs, tmp_path):
    curves = plot_epoch_f1(compare_runs(sorted(runs.glob("*/run.json"))), tmp_path / "f1.png")
    assert curves == 6
    assert (tmp_path / "f1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UsageError, match="unsupported image type"):
        plot_epoch_f1(compare_runs([runs / "base"]), tmp_path / "f1.docx")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ('{"columns": [1, 2]}', "neither an fbp run.json"),
        ("[1, 2, 3]", "neither an fbp run.json"),
        ('{"config": {}, "folds": [{"fold": "zero"}]}', "'folds.0.fold'"),
        ('{"log_history": "nope"}', "'log_history'"),
    ],
)
def test_broken_or_foreign_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "odd.json"
    path.write_text(content)
    with pytest.raises(FbpError, match=message) as error:
        load_run(path)
    assert str(path) in str(error.value)


def test_directory_without_runs_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FbpError, match="no run.json or trainer_state.json"):
        find_run_files([tmp_path / "empty"])
    with pytest.raises(FbpError, match="no such file"):
        find_run_files([tmp_path / "missing.json"])


def test_cli_compares_globbed_runs_and_exits_1_on_a_broken_file(runs, tmp_path, monkeypatch):
    from fbp.cli import _app

    monkeypatch.setattr(_app.console, "width", 250)
    files = [str(path) for path in sorted(runs.glob("*/run.json"))]  # as the shell expands runs/*/run.json
    result = run_cli("compare", *files, "--sort", "cv_f1", "--csv", tmp_path / "t.csv", "--plot", tmp_path / "f1.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.csv").exists() and (tmp_path / "f1.png").exists()
    alias = run_cli("compare-runs", *sorted(runs.iterdir()))
    assert alias.exit_code == 0, alias.output

    (tmp_path / "broken.json").write_text("{")
            
    completed = run_fbp_process("compare", files[0], tmp_path / "broken.json", env={"COLUMNS": "300"})
    assert completed.returncode == 1
    assert "broken.json is not valid JSON" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_a_run_in_training_shows_its_time_so_far_and_an_interrupted_one_its_recorded_time(tmp_path):
    import os
    import time

    from fbp.io.run_dir import RunLock

    path = write_run(tmp_path / "run", "run", 0.5, seconds=100.0)
    summary = RunDir(tmp_path / "run").read_record()
    summary.status = "running"
    RunDir(tmp_path / "run").write_record(summary)
    written = time.time() - 50  # run.json was last written (a fold ended) 50 s ago
    os.utime(path, (written, written))
    with RunLock(tmp_path / "run"):  # a live fbp train holds the run
        running = load_run(path)
    assert running.status == "running"
    assert 149 <= running.train_seconds <= 160  # the recorded 100 s and the 50 s since
    stopped = load_run(path)  # the lock is gone: interrupted, with the time recorded when it stopped
    assert stopped.status == "interrupted" and stopped.train_seconds == 100.0


def test_a_run_made_before_the_head_learning_rate_trained_its_head_at_learning_rate(tmp_path):
    """``training.head_learning_rate`` came with a default (6e-3) that older runs did not train with: a run that lacks
    it reads as null (the head at learning_rate) in compare, and when its config.yaml is resumed, not as 6e-3."""
    import yaml

    new = load_run(write_run(tmp_path / "new", "new", 0.5))
    assert new.settings["training.head_learning_rate"] == 6e-3
    older_path = write_run(tmp_path / "older", "older", 0.5)
    content = json.loads(older_path.read_text())
    del content["config"]["training"]["head_learning_rate"]
    older_path.write_text(json.dumps(content))
    config_yaml = tmp_path / "older" / "config.yaml"
    tree = yaml.safe_load(config_yaml.read_text())
    del tree["training"]["head_learning_rate"]
    config_yaml.write_text(yaml.safe_dump(tree))
    older = load_run(older_path)
    assert setting_value(older, "training.head_learning_rate", default_settings()) is None
    assert differing_settings([new, older]) == ["training.head_learning_rate"]
    # Resuming it with today's config: another run (its head trained at learning_rate), so it is refused.
    from fbp.io.run_settings import config_differences

    current = Config.model_validate({"name": "older", "training": {"learning_rate": 5e-5}}).model_dump(mode="json")  # as write_run made it
    assert config_differences(RunDir(tmp_path / "older").read_config(), current) == ["training.head_learning_rate: None -> 0.006"]
