"""A checkpoint's tokenizer.json alone (the tokenizers library) makes transformers' windows, so the ONNX runtimes
start without transformers or torch; export checks it and records the file's hash, and a changed file falls back."""

import re
import shutil

import numpy as np
import pytest
from conftest import run_fbp_process
from tiny_models import ARCHITECTURES, minilm_tokenizer, tiny_bert

from fbp.errors import FbpError
from fbp.export import export_checkpoints
from fbp.io.checkpoint import save_checkpoint
from fbp.io.onnx_export import read_export
from fbp.onnx_runtime import choose_runtime
from fbp.tokenizer_json import TokenizerJson, same_windows
from fbp.windows import make_windows, model_features

TEXTS = [
    "Phones should be allowed in school because students can research. " * 80,
    "Café naïve résumé — “quoted” 😀 x\u200by\ttab\u00a0nbsp\u2028line 日本語 ﬁ " * 12,
    "",
    "one",
    "  spaces\n\nand   newlines  ",
]


@pytest.mark.parametrize("kind", sorted(ARCHITECTURES))
@pytest.mark.parametrize("max_length, stride", [(512, 128), (32, 8), (12, 3)])
def test_each_tokenizer_kind_makes_transformers_windows_from_its_file_alone(tmp_path, kind, max_length, stride):
    tokenizer = ARCHITECTURES[kind][1]()
    tokenizer.save_pretrained(tmp_path)
    alone = TokenizerJson(tmp_path)
    assert alone.num_special_tokens_to_add() == tokenizer.num_special_tokens_to_add(pair=False)
    assert alone.pad_token_id == tokenizer.pad_token_id
    assert same_windows(tokenizer, alone, TEXTS, max_length, stride)
    windows = make_windows(alone, TEXTS, max_length, stride)
    assert max(len(window["input_ids"]) for window in windows) == max_length  # long essays overflow into windows
    features = model_features(windows)
    padded = alone.pad(features)
    for row, feature in enumerate(features):  # each window right-padded with the pad id, masked out
        length = len(feature["input_ids"])
        assert padded["input_ids"][row, :length].tolist() == list(feature["input_ids"])
        assert set(padded["input_ids"][row, length:].tolist()) <= {tokenizer.pad_token_id}
        assert padded["attention_mask"][row].tolist() == [1] * length + [0] * (padded["input_ids"].shape[1] - length)


def test_a_damaged_tokenizer_file_is_one_message(tmp_path):
    minilm_tokenizer().save_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(FbpError, match="cannot load .*tokenizer.json"):
        TokenizerJson(tmp_path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    meta = {"max_length": 48, "stride": 12, "label_subtokens": "first", "model": "minilm", "fold": 0}
    checkpoint = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "fold_0", tiny_bert(), minilm_tokenizer(), meta)
    [result] = export_checkpoints([checkpoint], check_essays=0)
    assert result.status == "exported", result.notes
    return checkpoint


def test_export_records_the_checked_tokenizer_and_a_changed_one_falls_back(exported, tmp_path):
    record = read_export(exported)
    assert record.tokenizer_sha256 is not None
    assert choose_runtime(exported, "onnx", "cpu").tokenizer_json
    changed = shutil.copytree(exported, tmp_path / "fold_0")
    text = (changed / "tokenizer.json").read_text(encoding="utf-8")
    (changed / "tokenizer.json").write_text(text.replace('"lowercase": true', '"lowercase": false'), encoding="utf-8")
    assert not choose_runtime(changed, "onnx", "cpu").tokenizer_json  # not the file export checked: transformers' tokenizer


@pytest.mark.parametrize("runtime", ["onnx", "onnx-int8"])
def test_the_onnx_runtimes_import_neither_torch_nor_transformers(exported, tmp_path, runtime):
    essays = tmp_path / "essays"
    essays.mkdir()
    (essays / "A1.txt").write_text(TEXTS[0], encoding="utf-8")
    done = run_fbp_process("infer", exported, "--input", essays, "-o", tmp_path / "out.csv", "--runtime", runtime, "--device", "cpu",
                           python_options=("-X", "importtime"))
    assert done.returncode == 0, done.stdout + done.stderr
    imported = set(re.findall(r"\|\s+([\w.]+)\s*$", done.stderr, re.M))
    assert "onnxruntime" in imported
    assert not {"torch", "transformers"} & imported, sorted(name for name in imported if name.startswith(("torch", "transformers")))[:5]
