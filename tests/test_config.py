"""Config loading: the shipped YAML configs validate, defaults match, and overrides (null included) apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fbp.config import Config, load_config, parse_sets
from fbp.errors import UsageError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    import yaml

    from fbp.config import PretrainConfig, flatten_config

    schema = PretrainConfig if path.name == "pretrain.yaml" else Config  # fbp pretrain's own config
    # Every setting the file writes is the value the loaded config holds (nothing dropped or renamed on the way).
    written = flatten_config(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    loaded = flatten_config(load_config(path, schema=schema).model_dump(mode="json"))
    assert written and all(loaded[key] == value for key, value in written.items()), path.name
    if schema is PretrainConfig:
        assert load_config(path, schema=schema) == PretrainConfig()  # spells out the built-in defaults


def test_default_yaml_is_the_built_in_default():
    assert load_config(CONFIGS / "default.yaml") == Config()


def test_a_null_override_sets_none_and_keys_not_given_keep_the_file_value():
    config = load_config(CONFIGS / "default.yaml", parse_sets(["model.hidden_dropout=null", "training.epochs=7"]))
    assert config.model.hidden_dropout is None  # the model's own dropout
    assert config.model.attention_dropout == 0.0 and config.training.epochs == 7


def test_train_cli_passes_null_through_and_ignores_options_not_given(tmp_path, monkeypatch):
    """`fbp train --set model.hidden_dropout=null` reaches the run's config; unset named options do not override."""
    import fbp.training.loop
    from fbp.cli._app import app

    from fbp.io.processed import FORMAT

    seen = {}
    monkeypatch.setattr(fbp.training.loop, "train_run", lambda config, run_dir, **kwargs: seen.update(config=config))
    (tmp_path / "processed").mkdir()  # fbp train checks for processed data before anything else
    (tmp_path / "processed" / "meta.json").write_text(json.dumps({"format": FORMAT}))
    app(["train", str(CONFIGS / "default.yaml"), "--data", str(tmp_path / "processed"), "--set", "model.hidden_dropout=null",
         "-o", str(tmp_path / "run")], standalone_mode=False)
    assert seen["config"].model.hidden_dropout is None and seen["config"].model.attention_dropout == 0.0
    assert seen["config"].training.epochs == Config().training.epochs


def test_null_for_a_required_setting_is_a_clear_error():
    with pytest.raises(UsageError, match="training.epochs"):
        load_config(None, {"training.epochs": None})


def test_the_default_run_directory_names_only_settings_away_from_their_defaults():
    """`fbp train` without -o resumes `runs/<config>-<hash>`: a setting that fbp adds later (at its default) must not
    rename the run, so the default config hashes as no setting at all; any setting away from its default renames it."""
    import hashlib

    from fbp.cli.train import default_run_dir

    plain = default_run_dir(Config(), None)
    assert plain == Path("runs") / f"default-{hashlib.sha1(json.dumps({}).encode()).hexdigest()[:6]}"
    assert default_run_dir(load_config(None, {"training.begin_weight": 1.0}), None) == plain
    assert default_run_dir(load_config(None, {"training.begin_weight": 2.0}), None) != plain
    weighted = default_run_dir(load_config(None, {"training.class_weights.Rebuttal": 4}), None)
    assert weighted != plain
    # the default weights are no setting; a mapping entry left out (Counterclaim 1, not the default 4) is one
    assert default_run_dir(load_config(None, {"training.class_weights.Rebuttal": 8}), None) == plain
    rebuttal_only = default_run_dir(load_config(None, {"training.class_weights": {"Rebuttal": 8}}), None)
    unweighted = default_run_dir(load_config(None, {"training.class_weights": None}), None)
    assert len({plain, rebuttal_only, unweighted, weighted}) == 4


def test_resuming_a_run_made_before_the_default_weights_is_a_difference():
    """A run recorded unweighted (class_weights null) or made before class weights existed (no key) was trained with
    every class at 1: resuming it with today's default weights must be refused as a change, not taken as the same."""
    from fbp.io.run_settings import config_differences

    today = Config().model_dump(mode="json")
    unweighted = Config().model_dump(mode="json")
    unweighted["training"]["class_weights"] = None
    before = Config().model_dump(mode="json")
    del before["training"]["class_weights"]
    for old in (unweighted, before):
        assert config_differences(old, today) == ["training.class_weights.Counterclaim: 1.0 -> 4.0", "training.class_weights.Rebuttal: 1.0 -> 8.0"]
    assert config_differences(unweighted, before) == [] and config_differences(today, Config().model_dump(mode="json")) == []
    # every class at 1 is the same training as null, whichever the run recorded
    ones = Config().model_dump(mode="json")
    ones["training"]["class_weights"] = {name: 1.0 for name in ones["training"]["class_weights"]}
    assert config_differences(unweighted, ones) == [] == config_differences(ones, before)
