"""``fbp tune``: an Optuna search over the config's ``search`` section, each trial an ``fbp train``.

A trial applies the sampled values to the base config and trains it into ``TUNE_DIR/trial_NNN``; its
objective is the run's competition F1 (``cv_f1``), and every epoch's validation F1 goes to a median pruner
that stops trials falling behind. The study lives in ``TUNE_DIR/study.db`` (or any Optuna database given
with ``--storage``), so a stopped search resumes: a trial that was interrupted (Ctrl-C, or a killed
process) is queued again with the same values and continues its training in the same directory. At the
end the best values are written into ``TUNE_DIR/best.yaml``, a config that ``fbp train`` takes as is.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import yaml

from .config import Config, SearchParam, set_dotted, validate_config
from .errors import FbpError, UsageError
from .atomic import write_atomic
from .io.run_dir import RunDir
from .io.run_settings import config_differences

if TYPE_CHECKING:
    import optuna

TrainFn = Callable[..., Dict[str, Any]]  # train_run(config, run_dir, epoch_callback) -> run.json content

HEARTBEAT_SECONDS = 60  # how often a running trial says it is alive in the study database
GRACE_SECONDS = 300  # a trial silent for this long was lost with its machine and is run again
MAX_INVALID_IN_A_ROW = 20  # sampled combinations that fail validation (e.g. stride >= max_length) before giving up


class InvalidTrialConfig(Exception):
    """The sampled values make an invalid config (a combination the search space allows but the config does not)."""


@dataclass
class TuneResult:
    """How a search ended: the study, the best trial and where its config was written."""

    study_name: str
    storage: str
    best_trial: Optional[int]
    best_value: Optional[float]
    best_params: Dict[str, Any]
    best_config_path: Optional[Path]
    trial_counts: Dict[str, int]
    best_trials: List[Any] = field(default_factory=list)  # optuna FrozenTrials, best first (at most 5)


class TuneReporter:
    """What a search tells whoever watches it. Every method does nothing here; override the ones you need."""

    def study_opened(self, study_name: str, storage_url: str, finished: int, n_trials: int, requeued: List[int]) -> None:
        """The study is open: ``finished`` of ``n_trials`` trials done before; ``requeued``: interrupted trials run again."""

    def trial_end(self, study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        """A trial finished (complete, pruned, or skipped as an invalid config)."""

    def gave_up(self, invalid_in_a_row: int) -> None:
        """The search stopped: that many sampled configs in a row were invalid."""

    def study_end(self, result: TuneResult) -> None:
        """The search ended; ``result.best_config_path`` is None when no trial completed."""

    def training_reporter(self) -> Optional["TrainingReporter"]:  # noqa: F821
        """The reporter each trial's training gets (None: trials train silently)."""
        return None


# --- the search space -----------------------------------------------------------------------------------------

def setting_field(key: str):
    """The pydantic field behind a dotted setting such as ``training.learning_rate``."""
    section, _, name = key.partition(".")
    return Config.model_fields[section].annotation.model_fields[name]


def setting_kind(key: str) -> Optional[type]:
    """``int`` or ``float`` for a numeric setting (Optional unwrapped), else None."""
    from typing import Union, get_args, get_origin

    annotation = setting_field(key).annotation
    if get_origin(annotation) is Union:
        annotation = next((arg for arg in get_args(annotation) if arg is not type(None)), annotation)
    return annotation if annotation in (int, float) else None


def check_search_space(config: Config) -> None:
    """Refuse a search space that cannot work, naming the setting: empty, a range over a non-numeric setting,
    a fractional range for an integer, log with step, or a bound or choice the setting does not allow."""
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError

    if not config.search:
        raise UsageError(
            "the search space is empty: add a `search` section to the config, e.g.\n"
            "  search:\n    training.learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true}\n    windows.max_length: {choices: [256, 512]}"
        )
    for key, param in config.search.items():
        kind = setting_kind(key)
        if param.choices is None:
            if kind is None:
                raise UsageError(f"search.{key}: {key} is not a number, so it takes `choices: [...]`, not low/high")
            if kind is int and not all(float(v).is_integer() for v in (param.low, param.high, param.step or 1)):
                raise UsageError(f"search.{key}: {key} is an integer, so low, high and step must be whole numbers")
            if param.log and param.step is not None:
                raise UsageError(f"search.{key}: give either log: true or a step, not both (Optuna cannot combine them)")
            candidates = [("low", param.low), ("high", param.high)]
        else:
            candidates = [("choice", value) for value in param.choices]
        field = setting_field(key)
        validator = TypeAdapter(Annotated[field.annotation, field])
        for what, value in candidates:
            try:
                validator.validate_python(value)
            except ValidationError as error:
                raise UsageError(f"search.{key}: {what} {value!r} is not a valid {key}: {error.errors()[0]['msg']}") from None


def suggest(trial: "optuna.Trial", key: str, param: SearchParam) -> Any:
    """Ask the trial for one value of a search dimension."""
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    if setting_kind(key) is int:
        return trial.suggest_int(key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(key, param.low, param.high, step=param.step, log=param.log)


def apply_params(base: Dict[str, Any], params: Dict[str, Any], **settings: Any) -> Dict[str, Any]:
    """A copy of a config tree with the sampled ``params`` and other dotted ``settings`` applied."""
    tree = copy.deepcopy(base)
    for key, value in {**params, **settings}.items():
        set_dotted(tree, key, value)
    return tree


# --- the study ------------------------------------------------------------------------------------------------

def default_storage(tune_dir: Path) -> str:
    return f"sqlite:///{(Path(tune_dir) / 'study.db').resolve()}"


def open_study(storage_url: str, study_name: str, seed: int) -> Tuple["optuna.Study", "optuna.storages.RDBStorage"]:
    """Create or load the study (maximising F1, median pruning), with heartbeats so lost trials are noticed."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs = {"connect_args": {"timeout": 60}} if storage_url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                storage_url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=_queue_again,
            )
        study = optuna.create_study(
            storage=storage, study_name=study_name, direction="maximize", load_if_exists=True,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        )
    except (SQLAlchemyError, ImportError) as error:
        raise FbpError(f"cannot open the Optuna storage '{storage_url}': {str(error).splitlines()[0]}") from None
    except ValueError as error:  # e.g. an existing study of the same name that minimises
        raise FbpError(f"cannot use study '{study_name}' in '{storage_url}': {error}") from None
    # Seeded by how far the study got, so that a resumed search does not replay the first trials' values.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study, storage


def _queue_again(study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
    """Queue an interrupted trial again: same values, same run directory (its training resumes there)."""
    study.enqueue_trial(trial.params, user_attrs={"run_number": trial.user_attrs.get("run_number", trial.number), "requeued_from": trial.number})


def _process_alive(pid: Optional[int]) -> bool:
    if pid is None:
        return True  # unknown: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted_trials(study: "optuna.Study", storage: "optuna.storages.BaseStorage") -> List[int]:
    """Re-queue trials that were interrupted; return their numbers.

    Interrupted means failed by Ctrl-C, or still RUNNING although the process that ran it on this machine is
    gone (killed). RUNNING trials of other machines are left to the heartbeat, which fails them only once
    they have been silent for the grace period.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    already = {trial.user_attrs.get("requeued_from") for trial in trials}
    host = socket.gethostname()
    recovered = []
    for trial in trials:
        killed = trial.state == TrialState.RUNNING and trial.user_attrs.get("host") == host and not _process_alive(trial.user_attrs.get("pid"))
        if killed:
            trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), trial.number)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        interrupted = killed or (trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted"))
        if interrupted and trial.number not in already:
            _queue_again(study, trial)
            recovered.append(trial.number)
    return recovered


def count_states(study: "optuna.Study") -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def finished_trials(study: "optuna.Study") -> int:
    """Trials that count towards ``--trials``: complete or pruned (failed ones are retried)."""
    counts = count_states(study)
    return counts.get("complete", 0) + counts.get("pruned", 0)


# --- running the search ---------------------------------------------------------------------------------------

def tune_study(
    config: Config,
    tune_dir: Path,
    n_trials: int,
    trial_folds: Optional[List[int]] = None,
    storage: Optional[str] = None,
    study_name: Optional[str] = None,
    train_fn: Optional[TrainFn] = None,
    reporter: Optional[TuneReporter] = None,
) -> TuneResult:
    """Run (or resume) the search until the study has ``n_trials`` finished trials; write ``best.yaml``.

    ``trial_folds`` are the folds each trial trains (all folds when None); ``train_fn`` is
    :func:`fbp.training.loop.train_run` unless a test injects another. ``reporter`` is told how the search goes.
    """
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    reporter = reporter or TuneReporter()
    check_search_space(config)
    if n_trials < 1:
        raise UsageError(f"the number of trials must be at least 1, got {n_trials}")
    tune_dir = Path(tune_dir)
    tune_dir.mkdir(parents=True, exist_ok=True)
    base = config.model_dump(mode="json")
    study_name = study_name or config.name or tune_dir.resolve().name
    storage_url = storage or default_storage(tune_dir)
    if train_fn is None:
        import functools

        from .training.loop import train_run

        train_fn = functools.partial(train_run, reporter=reporter.training_reporter())

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one rich line per trial instead
    study, study_storage = open_study(storage_url, study_name, config.training.seed)
    _remember_base_config(tune_dir, config)
    trial_folds = _same_folds_as_before(study, trial_folds)
    recovered = recover_interrupted_trials(study, study_storage)
    done = finished_trials(study)
    reporter.study_opened(study_name, storage_url, done, n_trials, recovered)
    max_epochs = _max_epochs(config)

    def objective(trial: "optuna.Trial") -> float:
        run_number = trial.user_attrs.get("run_number", trial.number)
        run_dir = tune_dir / f"trial_{run_number:03d}"
        for key, value in {"run_number": run_number, "run_dir": str(run_dir), "host": socket.gethostname(), "pid": os.getpid()}.items():
            trial.set_user_attr(key, value)
        params = {key: suggest(trial, key, param) for key, param in config.search.items()}
        settings = {"name": f"{study_name}-trial{run_number:03d}", "tracking.group": study_name, "search": {}}
        if trial_folds is not None:
            settings["data.train_folds"] = list(trial_folds)
        try:
            trial_config = validate_config(apply_params(base, params, **settings), source=f"trial {trial.number} config")
        except UsageError as error:
            trial.set_user_attr("invalid", str(error))
            raise InvalidTrialConfig(str(error)) from None

        def report_epoch(fold: int, epoch: int, f1: float) -> None:
            # One step per (fold, epoch), so that trials are compared at the same fold and epoch.
            trial.report(f1, fold * max_epochs + epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"fold {fold} epoch {epoch}: F1 {f1:.4f} is below the median of earlier trials")

        try:
            record = train_fn(trial_config, run_dir, report_epoch)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except optuna.TrialPruned:
            shutil.rmtree(RunDir(run_dir).work_path, ignore_errors=True)  # a pruned trial never resumes
            raise
        if record.get("cv_f1") is None:
            raise FbpError(f"trial {trial.number}: the training wrote no cv_f1 into {run_dir / 'run.json'}")
        trial.set_user_attr("cv_per_class", record.get("cv_per_class", {}))
        return float(record["cv_f1"])

    invalid_in_a_row = {"count": 0}

    def after_trial(study: "optuna.Study", trial: "optuna.trial.FrozenTrial") -> None:
        reporter.trial_end(study, trial)
        invalid_in_a_row["count"] = invalid_in_a_row["count"] + 1 if "invalid" in trial.user_attrs else 0
        if invalid_in_a_row["count"] >= MAX_INVALID_IN_A_ROW:
            reporter.gave_up(MAX_INVALID_IN_A_ROW)
            study.stop()

    if done < n_trials:
        study.optimize(
            objective, n_trials=None, catch=(InvalidTrialConfig,),
            callbacks=[MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)), after_trial],
        )
    result = _finish(study, base, tune_dir, storage_url)
    reporter.study_end(result)
    return result


def _same_folds_as_before(study: "optuna.Study", trial_folds: Optional[List[int]]) -> Optional[List[int]]:
    """The folds every trial of the study trains: recorded by the first invocation, kept by later ones."""
    if "trial_folds" not in study.user_attrs:
        study.set_user_attr("trial_folds", list(trial_folds) if trial_folds is not None else None)
        return trial_folds
    recorded = study.user_attrs["trial_folds"]
    if trial_folds is None:
        return recorded
    if list(trial_folds) != recorded:
        raise UsageError(f"the trials of study '{study.study_name}' train folds {recorded if recorded is not None else 'all'}; "
                         "resume it with the same --fold (or none)")
    return trial_folds


def _max_epochs(config: Config) -> int:
    """The most epochs a trial can train (the search may vary ``training.epochs``)."""
    searched = config.search.get("training.epochs")
    candidates = [config.training.epochs]
    if searched is not None:
        candidates += [searched.high] if searched.high is not None else list(searched.choices or [])
    return int(max(candidates))


def _remember_base_config(tune_dir: Path, config: Config) -> None:
    """Keep the base config in ``TUNE_DIR/config.yaml``; refuse to mix trials of different base configs.

    Only the search space may change between invocations (Optuna handles a widened or narrowed space).
    """
    path = tune_dir / "config.yaml"
    resolved = config.model_dump(mode="json")
    if path.exists():
        previous = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        differences = config_differences({**previous, "search": {}}, {**resolved, "search": {}})
        if differences:
            raise UsageError(f"{tune_dir} holds a search over another base config ({'; '.join(differences[:5])}); "
                             "use another tuning directory (-o) or the same config")
    write_atomic(path, config.to_yaml())


def _finish(study: "optuna.Study", base: Dict[str, Any], tune_dir: Path, storage_url: str) -> TuneResult:
    """Write the best config (``best.yaml``); the result holds the best trials."""
    from optuna.trial import TrialState

    counts = count_states(study)
    complete = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.value, reverse=True)
    if not complete:
        return TuneResult(study.study_name, storage_url, None, None, {}, None, counts, [])
    best = complete[0]
    best_tree = apply_params(base, best.params, name=f"{study.study_name}-best", search={})
    validate_config(best_tree, source="best config")
    best_path = tune_dir / "best.yaml"
    header = f"# best of study {study.study_name}: trial {best.number}, CV F1 {best.value:.4f}\n# train it: fbp train {best_path}\n"
    write_atomic(best_path, header + yaml.safe_dump(best_tree, sort_keys=False))
    return TuneResult(study.study_name, storage_url, best.number, best.value, dict(best.params), best_path, counts, complete[:5])


# --- wandb sweeps ---------------------------------------------------------------------------------------------

def wandb_sweep_config(config: Config, base_config_path: Path, runs_dir: Path, study_name: str) -> Dict[str, Any]:
    """The wandb sweep equivalent to this search: Bayesian, maximising cv_f1, one distribution per setting.

    Each agent run executes ``fbp sweep-trial BASE_CONFIG key=value...``, which trains the base config with
    the values the sweep chose and reports ``cv_f1`` to the sweep.
    """
    check_search_space(config)
    parameters = {}
    for key, param in config.search.items():
        kind = setting_kind(key)
        if param.choices is not None:
            parameters[key] = {"values": list(param.choices)}
        elif kind is int and param.step not in (None, 1):
            parameters[key] = {"values": list(range(int(param.low), int(param.high) + 1, int(param.step)))}
        elif kind is int:
            parameters[key] = ({"distribution": "q_log_uniform_values", "min": int(param.low), "max": int(param.high), "q": 1}
                               if param.log else {"distribution": "int_uniform", "min": int(param.low), "max": int(param.high)})
        elif param.log:
            parameters[key] = {"distribution": "log_uniform_values", "min": param.low, "max": param.high}
        elif param.step is not None:
            parameters[key] = {"distribution": "q_uniform", "min": param.low, "max": param.high, "q": param.step}
        else:
            parameters[key] = {"distribution": "uniform", "min": param.low, "max": param.high}
    return {
        "name": study_name,
        "method": "bayes",
        "metric": {"name": "cv_f1", "goal": "maximize"},
        "parameters": parameters,
        "command": ["${env}", "fbp", "sweep-trial", str(Path(base_config_path).resolve()), "-o", str(Path(runs_dir).resolve()), "${args_no_hyphens}"],
    }


def write_wandb_sweep(config: Config, sweep_path: Path, runs_dir: Path, study_name: str) -> Path:
    """Write the sweep YAML and, next to it, the base config its runs train (``<sweep>.base.yaml``)."""
    sweep_path = Path(sweep_path)
    base_path = sweep_path.with_name(f"{sweep_path.stem}.base.yaml")
    sweep = wandb_sweep_config(config, base_path, runs_dir, study_name)
    write_atomic(base_path, yaml.safe_dump(apply_params(config.model_dump(mode="json"), {}, search={}), sort_keys=False))
    write_atomic(sweep_path, yaml.safe_dump(sweep, sort_keys=False))
    return base_path


def run_sweep_trial(config: Config, params: Dict[str, Any], runs_dir: Path, train_fn: Optional[TrainFn] = None) -> Dict[str, Any]:
    """One wandb sweep run: train ``config`` with ``params`` and report per-epoch F1 and ``cv_f1`` to that run.

    The sweep's run (started by ``wandb agent``) does the tracking, so the training's own per-fold wandb
    runs are turned off.
    """
    import wandb

    if train_fn is None:
        from .training.loop import train_run as train_fn
    from .training.tracking import resolve_wandb_mode

    Path(runs_dir).mkdir(parents=True, exist_ok=True)
    # Under `wandb agent` the sweep decides project and entity; standalone, the config does.
    where = {} if os.environ.get("WANDB_SWEEP_ID") else {"project": config.tracking.project, "entity": config.tracking.entity}
    run = wandb.init(config=params, mode=resolve_wandb_mode(config.tracking.wandb), dir=str(runs_dir), **where)
    run_dir = Path(runs_dir) / f"sweep-{run.id}"
    trial_config = validate_config(apply_params(config.model_dump(mode="json"), params, **{"name": f"sweep-{run.id}", "tracking.wandb": "disabled", "search": {}}),
                                   source="sweep trial config")
    try:
        record = train_fn(trial_config, run_dir, lambda fold, epoch, f1: run.log({"fold": fold, "epoch": epoch, "f1": f1}))
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.summary.update({"cv_f1": record.get("cv_f1"), **{f"cv_f1_{name}": f1 for name, f1 in record.get("cv_per_class", {}).items()}})
    run.finish()
    return record
