"""`fbp tune`: the Optuna search with a fake training function (fast), resuming, errors, wandb sweeps;
and one end-to-end search with a tiny model on the demo corpus (marked e2e)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

from fbp.config import load_config
from fbp.errors import FbpError, UsageError
from fbp.labels import CLASSES
from fbp.tune import open_study, run_sweep_trial, tune_study, wandb_sweep_config, write_wandb_sweep

from conftest import run_cli, run_fbp_process, run_process

SEARCH = {
    "search.training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    "search.training.warmup": {"low": 0.0, "high": 0.2},
    "search.windows.max_length": {"choices": [256, 512]},
}


def make_config(**overrides):
    settings = {"training.epochs": 2, "tracking.wandb": "disabled", **SEARCH}
    settings.update(overrides)
    return load_config(None, settings)


def finished(result):
    """Trials that count towards --trials."""
    return result.trial_counts.get("complete", 0) + result.trial_counts.get("pruned", 0)


class FakeTraining:
    """Stands in for fbp.training.loop.train_run: F1 peaks at learning rate 1e-4; reports every epoch; records calls."""

    def __init__(self, interrupt_on_call=None, f1_by_call=None):
        self.calls = []
        self.returned = []  # the cv_f1 each call returned
        self.interrupt_on_call = interrupt_on_call
        self.f1_by_call = f1_by_call

    def __call__(self, config, run_dir, epoch_callback=None, reporter=None):
        self.calls.append((config, Path(run_dir)))
        if len(self.calls) == self.interrupt_on_call:
            raise KeyboardInterrupt
        if self.f1_by_call is not None:
            f1 = self.f1_by_call[len(self.calls) - 1]
        else:
            f1 = 0.7 - 0.1 * abs(math.log10(config.training.learning_rate) + 4)
        folds = config.data.train_folds or [0, 1]
        epochs_done = []
        for fold in folds:
            for epoch in range(1, config.training.epochs + 1):
                epochs_done.append((fold, epoch))
                epoch_callback(fold, epoch, f1 * epoch / config.training.epochs)
        summary = {"name": config.name, "cv_f1": f1, "cv_per_class": {name: f1 - 0.01 * i for i, name in enumerate(CLASSES)},
                   "epochs_done": epochs_done}
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "run.json").write_text(json.dumps(summary))
        self.returned.append(f1)
        return summary


def test_search_runs_n_trials_and_writes_a_best_config_that_validates(tmp_path):
    training = FakeTraining()
    result = tune_study(make_config(), tmp_path / "tune", n_trials=4, trial_folds=[0], train_fn=training)
    assert finished(result) == 4
    assert (tmp_path / "tune" / "study.db").exists()
    assert [run_dir.name for _, run_dir in training.calls] == ["trial_000", "trial_001", "trial_002", "trial_003"]
    trial_config = training.calls[0][0]
    assert trial_config.data.train_folds == [0] and trial_config.search == {} and trial_config.name == "tune-trial000"
    best = load_config(result.best_config_path)  # what `fbp train TUNE_DIR/best.yaml` does first
    assert best.search == {} and best.data.train_folds is None  # trains every fold, not only the tuning fold
    assert best.training.learning_rate == pytest.approx(result.best_params["training.learning_rate"])
    assert best.windows.max_length == result.best_params["windows.max_length"]
    # The best trial is the one whose training returned the highest cv_f1, with that trial's settings.
    best_call = max(range(len(training.returned)), key=training.returned.__getitem__)
    assert result.best_value == pytest.approx(training.returned[best_call])
    assert best.training.learning_rate == pytest.approx(training.calls[best_call][0].training.learning_rate)


def test_ctrl_c_then_rerun_resumes_the_interrupted_trial_and_reaches_n(tmp_path):
    config, tune_dir = make_config(), tmp_path / "tune"
    interrupted = FakeTraining(interrupt_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        tune_study(config, tune_dir, n_trials=4, train_fn=interrupted)
    stopped_config, stopped_dir = interrupted.calls[1]
    assert stopped_dir.name == "trial_001"

    resumed = FakeTraining()
    result = tune_study(config, tune_dir, n_trials=4, train_fn=resumed)
    first_config, first_dir = resumed.calls[0]
    assert first_dir == stopped_dir, "the interrupted trial continues in its own run directory"
    assert first_config.training.learning_rate == stopped_config.training.learning_rate
    assert len(resumed.calls) == 3  # trial 0 was finished before; 1 (again), 2 and 3 now
    assert finished(result) == 4 and result.trial_counts["fail"] == 1

    again = FakeTraining()
    tune_study(config, tune_dir, n_trials=4, train_fn=again)
    assert again.calls == [], "a finished study does not train again"
    more = tune_study(config, tune_dir, n_trials=5, train_fn=again)
    assert len(again.calls) == 1 and finished(more) == 5


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test plays the killed process with study.ask()
def test_a_trial_left_running_by_a_killed_process_is_run_again(tmp_path):
    config, tune_dir = make_config(), tmp_path / "tune"
    tune_dir.mkdir()
    dead = run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    study, _ = open_study(f"sqlite:///{tune_dir / 'study.db'}", "tune", seed=0)
    killed = study.ask()
    learning_rate = killed.suggest_float("training.learning_rate", 1e-5, 1e-3, log=True)
    import socket

    killed.set_user_attr("host", socket.gethostname())
    killed.set_user_attr("pid", int(dead.stdout))  # that process has exited, as if killed mid-trial

    training = FakeTraining()
    result = tune_study(config, tune_dir, n_trials=2, train_fn=training)
    assert training.calls[0][1].name == "trial_000"
    assert training.calls[0][0].training.learning_rate == pytest.approx(learning_rate)
    assert finished(result) == 2 and result.trial_counts["fail"] == 1


def test_trials_behind_the_median_are_pruned_and_stop_training_early(tmp_path):
    training = FakeTraining(f1_by_call=[0.6, 0.62, 0.61, 0.05, 0.63, 0.04])
    result = tune_study(make_config(), tmp_path / "tune", n_trials=6, trial_folds=[0, 1], train_fn=training)
    assert result.trial_counts == {"complete": 4, "pruned": 2}
    pruned_dirs = [run_dir for config, run_dir in training.calls if not (run_dir / "run.json").exists()]
    assert [d.name for d in pruned_dirs] == ["trial_003", "trial_005"]
    assert result.best_value == pytest.approx(0.63)


def test_combinations_the_config_rejects_are_skipped(tmp_path):
    config = make_config(**{"windows.stride": 200, "search.windows.max_length": {"choices": [128, 512]}})
    training = FakeTraining()
    result = tune_study(config, tmp_path / "tune", n_trials=3, train_fn=training)
    assert finished(result) == 3
    assert all(config.windows.max_length == 512 for config, _ in training.calls)  # 128 <= stride 200: invalid


def test_another_base_config_in_the_same_directory_is_refused(tmp_path):
    tune_study(make_config(), tmp_path / "tune", n_trials=1, train_fn=FakeTraining())
    with pytest.raises(UsageError, match="another base config.*training.epochs"):
        tune_study(make_config(**{"training.epochs": 5}), tmp_path / "tune", n_trials=2, train_fn=FakeTraining())
    widened = make_config(**{"search.training.warmup": {"low": 0.0, "high": 0.3}})  # changing only the space is fine
    tune_study(widened, tmp_path / "tune", n_trials=2, train_fn=FakeTraining())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"search.training.scheduler": {"low": 0, "high": 1}}, "training.scheduler is not a number, so it takes `choices"),
        ({"search.windows.max_length": {"low": 128.5, "high": 512}}, "is an integer"),
        ({"search.training.warmup": {"low": 0.0, "high": 1.5}}, r"high 1.5 is not a valid training.warmup: Input should be less than 1"),
        ({"search.training.scheduler": {"choices": ["linear", "sideways"]}}, "choice 'sideways' is not a valid training.scheduler"),
        ({"search.training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}}, "either log: true or a step"),
    ],
)
def test_search_spaces_that_cannot_work_are_refused(tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        tune_study(make_config(**settings), tmp_path / "tune", n_trials=1, train_fn=FakeTraining())


def test_empty_search_space_and_bad_keys_are_clear(tmp_path):
    with pytest.raises(UsageError, match="the search space is empty"):
        tune_study(load_config(None, {}), tmp_path / "tune", n_trials=1, train_fn=FakeTraining())
    with pytest.raises(UsageError, match="search key 'training.lr' is not a config setting"):
        load_config(None, {"search.training.lr": {"low": 1e-5, "high": 1e-3}})
    with pytest.raises(UsageError, match=r"low \(0.001\) is greater than high \(1e-05\)"):
        load_config(None, {"search.training.learning_rate": {"low": 1e-3, "high": 1e-5}})


@pytest.mark.parametrize("url", ["nonsense://nowhere", "sqlite:////no/such/dir/study.db", "postgresql://user@localhost:1/optuna"])
def test_a_storage_that_cannot_be_opened_is_a_clear_error(tmp_path, url):
    with pytest.raises(FbpError, match="cannot open the Optuna storage"):
        tune_study(make_config(), tmp_path / "tune", n_trials=1, storage=url, train_fn=FakeTraining())


def test_cli_errors_exit_non_zero_without_traceback(tmp_path):
    config_file = tmp_path / "empty.yaml"
    config_file.write_text("training:\n  epochs: 1\n")
    empty = run_fbp_process("tune", config_file, "-o", tmp_path / "t", env={"COLUMNS": "300"})
    assert empty.returncode == 2 and "the search space is empty" in empty.stderr and "Traceback" not in empty.stderr
    config_file.write_text(yaml.safe_dump({"search": {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}}))
    storage = run_fbp_process("tune", config_file, "-o", tmp_path / "t", "--storage", "nonsense://x", env={"COLUMNS": "300"})
    assert storage.returncode == 1 and "cannot open the Optuna storage 'nonsense://x'" in storage.stderr


def test_cli_runs_the_search_with_the_training_function(tmp_path, monkeypatch):
    import fbp.training.loop

    training = FakeTraining()
    monkeypatch.setattr(fbp.training.loop, "train_run", training)
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump({"training": {"epochs": 1}, "tracking": {"wandb": "disabled"},
                                           "search": {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}}))
    result = run_cli("tune", config_file, "-o", tmp_path / "t", "--trials", "2", "--fold", "1", "--set", "training.weight_decay=0.05")
    assert result.exit_code == 0, result.output
    assert "best trials" in result.output and (tmp_path / "t" / "best.yaml").exists()
    assert [config.data.train_folds for config, _ in training.calls] == [[1], [1]]
    assert training.calls[0][0].training.weight_decay == 0.05
    resumed = run_cli("tune", "-o", tmp_path / "t", "--trials", "3")  # no config: the study's own base config
    assert resumed.exit_code == 0, resumed.output
    assert len(training.calls) == 3 and training.calls[2][0].data.train_folds == [1], "the study keeps its folds"
    other_folds = run_cli("tune", "-o", tmp_path / "t", "--trials", "4", "--fold", "0")
    assert other_folds.exit_code == UsageError.exit_code and "train folds [1]" in " ".join(other_folds.stderr.split())


def test_wandb_sweep_config_mirrors_the_search_space(tmp_path):
    config = make_config(**{"search.training.epochs": {"low": 2, "high": 6}, "search.windows.stride": {"low": 64, "high": 192, "step": 64},
                            "search.training.adam_beta2": {"low": 0.98, "high": 0.999}})
    sweep_file = tmp_path / "sweep.yaml"
    base_file = write_wandb_sweep(config, sweep_file, tmp_path / "runs", "study")
    sweep = yaml.safe_load(sweep_file.read_text())
    assert sweep == wandb_sweep_config(config, base_file, tmp_path / "runs", "study")
    assert sweep["method"] == "bayes" and sweep["metric"] == {"name": "cv_f1", "goal": "maximize"}
    assert sweep["parameters"] == {
        "training.learning_rate": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-3},
        "training.warmup": {"distribution": "uniform", "min": 0.0, "max": 0.2},
        "windows.max_length": {"values": [256, 512]},
        "training.epochs": {"distribution": "int_uniform", "min": 2, "max": 6},
        "windows.stride": {"values": [64, 128, 192]},
        "training.adam_beta2": {"distribution": "uniform", "min": 0.98, "max": 0.999},
    }
    assert sweep["command"][1:4] == ["fbp", "sweep-trial", str(base_file.resolve())]
    assert load_config(base_file).search == {}  # the runs train the base config


def test_wandb_sweep_flag_writes_the_file_and_trains_nothing(tmp_path, monkeypatch):
    import fbp.training.loop

    training = FakeTraining()
    monkeypatch.setattr(fbp.training.loop, "train_run", training)
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump({"search": {"training.learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}}))
    result = run_cli("tune", config_file, "-o", tmp_path / "t", "--wandb-sweep", tmp_path / "sweep.yaml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sweep.yaml").exists() and training.calls == [] and not (tmp_path / "t" / "study.db").exists()


def test_a_sweep_trial_trains_the_values_the_sweep_chose(tmp_path):
    training = FakeTraining()
    summary = run_sweep_trial(make_config(), {"training.learning_rate": 1e-4, "windows.max_length": 256}, tmp_path / "runs", train_fn=training)
    config, run_dir = training.calls[0]
    assert config.training.learning_rate == 1e-4 and config.windows.max_length == 256
    assert config.tracking.wandb == "disabled" and run_dir.parent == tmp_path / "runs"
    assert summary["cv_f1"] == pytest.approx(0.7)


@pytest.mark.e2e
def test_real_search_on_the_demo_corpus_resumes_and_its_best_config_trains(tmp_path, processed_demo, tiny_model_dir):
    """3 trials of real training (tiny random BERT, 60 demo essays, fold 0), interrupted in trial 1 and resumed."""
    from fbp.training.loop import train_run

    config = load_config(None, {
        "data.processed_dir": str(processed_demo), "model.name": str(tiny_model_dir), "training.epochs": 2,
        "training.batch_size": 8, "windows.max_length": 128, "windows.stride": 32, "tracking.wandb": "offline",
        "search.training.learning_rate": {"low": 1e-4, "high": 3e-3, "log": True},
        "search.training.warmup": {"choices": [0.0, 0.1]},
    })
    tune_dir = tmp_path / "tune"
    calls = []

    def interrupted_in_trial_1(trial_config, run_dir, epoch_callback):
        def stop_after_first_epoch(fold, epoch, f1):
            epoch_callback(fold, epoch, f1)
            if run_dir.name == "trial_001" and epoch == 1:
                raise KeyboardInterrupt

        calls.append(run_dir.name)
        return train_run(trial_config, run_dir, stop_after_first_epoch)

    with pytest.raises(KeyboardInterrupt):
        tune_study(config, tune_dir, n_trials=3, trial_folds=[0], train_fn=interrupted_in_trial_1)
    assert calls == ["trial_000", "trial_001"]
    assert (tune_dir / "trial_001" / ".work").exists(), "the interrupted trial kept its finished epoch"

    result = tune_study(config, tune_dir, n_trials=3, trial_folds=[0], train_fn=train_run)
    assert finished(result) == 3
    trial_1 = json.loads((tune_dir / "trial_001" / "run.json").read_text())
    assert [epoch["epoch"] for epoch in trial_1["folds"][0]["epochs"]] == [1, 2], "trial 1 resumed after its first epoch"
    assert list((tune_dir / "trial_000" / "wandb").glob("offline-run-*")), "each trial is tracked in wandb"

    run_dir = tmp_path / "best-run"
    trained = run_cli("train", result.best_config_path, "--fold", "0", "--epochs", "1", "-o", run_dir, "--wandb", "disabled")
    assert trained.exit_code == 0, trained.output
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["config"]["training"]["learning_rate"] == pytest.approx(result.best_params["training.learning_rate"])
    assert summary["cv_f1"] is not None
