"""`fbp export` and the runtimes of `fbp infer` / `fbp ensemble`: ONNX fp32 and int8 next to PyTorch.

Tiny random models of every architecture fbp's configs name (BERT/MiniLM, DeBERTa-v2/v3, Longformer), each with its
tokenizer kind, trained one epoch with its shipped config's settings (shrunk), exported, and run with each runtime.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from tiny_models import minilm_tokenizer, save_tiny_model, tiny_bert

from fbp.errors import FbpError
from fbp.export import export_checkpoints
from fbp.io.checkpoint import save_checkpoint
from fbp.io.onnx_export import RECORD_FILE, read_export, weights_sha256
from fbp.io.word_probs import load_word_probs
from fbp.onnx_runtime import choose_runtime
from fbp.infer import predict_directory

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
ESSAYS = {
    "A1": "Phones should be allowed in school because students can research. " * 14,
    "B2": "In my opinion driverless cars are safer.\n\nFor example, they never get tired. " * 6,
    "C3": "Summer projects help students learn.",
}
META = {"max_length": 48, "stride": 12, "label_subtokens": "first", "model": "minilm", "fold": 0}


@pytest.fixture(scope="module")
def essay_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("essays")
    for essay_id, text in ESSAYS.items():
        (directory / f"{essay_id}.txt").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny BERT checkpoint, exported once (fp32 and int8)."""
    checkpoint = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "fold_0", tiny_bert(), minilm_tokenizer(), META)
    [result] = export_checkpoints([checkpoint])
    assert result.status == "exported", result.notes
    return checkpoint


def _copy(checkpoint: Path, target: Path) -> Path:
    shutil.copytree(checkpoint, target)
    return target


def test_export_records_both_models_and_is_idempotent(exported):
    files = {path.name for path in (exported / "onnx").iterdir()}
    assert files == {"model.onnx", "model_quantized.onnx", RECORD_FILE}
    record = read_export(exported)
    assert record.weights_sha256 == weights_sha256(exported)
    assert record.inputs == ["input_ids", "attention_mask", "token_type_ids"] and record.outputs == ["logits"]
    assert {"fbp", "torch", "transformers", "onnx", "onnxruntime"} <= set(record.versions)
    assert record.variants["onnx"].max_prob_diff < 1e-4
    assert record.variants["onnx"].settings["fusions"].get("Attention") == 1  # ONNX Runtime's fusions applied
    assert any("classifier" in name for name in record.variants["onnx-int8"].settings["kept_fp32"])
    assert record.variants["onnx-int8"].quality is None  # not a fold of a run: no held-out essays to check it on
    stamp = (exported / "onnx" / "model.onnx").stat().st_mtime_ns
    [again] = export_checkpoints([exported])
    assert again.status == "current" and (exported / "onnx" / "model.onnx").stat().st_mtime_ns == stamp


def test_every_runtime_meets_the_same_stitching_and_says_which_ran(exported, essay_dir, tmp_path):
    probs = {}
    for runtime in ("torch", "onnx", "onnx-int8", "auto"):
        result = predict_directory([exported], essay_dir, tmp_path / f"{runtime}.csv", save_probs=tmp_path / f"{runtime}.npz", runtime=runtime)
        probs[runtime] = load_word_probs(tmp_path / f"{runtime}.npz")
        [said] = result.runtimes.values()
        assert said.startswith("onnx" if runtime == "auto" else runtime), said
    for essay_id, text in ESSAYS.items():
        assert probs["onnx"][essay_id].shape == (len(text.split()), 15)
        np.testing.assert_allclose(probs["onnx"][essay_id], probs["torch"][essay_id], atol=2e-3)  # float16 storage
        np.testing.assert_allclose(probs["onnx-int8"][essay_id], probs["torch"][essay_id], atol=0.05)
        np.testing.assert_array_equal(probs["auto"][essay_id], probs["onnx"][essay_id])  # int8 unchecked: auto takes fp32


def test_a_stale_or_damaged_export_is_never_used(exported, tmp_path):
    # Retrained: same folder, other weights, the old onnx/ copied back in.
    retrained = save_checkpoint(tmp_path / "retrained", tiny_bert(seed=5), minilm_tokenizer(), META)
    shutil.copytree(exported / "onnx", retrained / "onnx")
    choice = choose_runtime(retrained, "auto", "cpu")
    assert choice.runtime == "torch" and "stale" in choice.reason
    with pytest.raises(FbpError, match="other weights"):
        choose_runtime(retrained, "onnx", "cpu")
    [result] = export_checkpoints([retrained])
    assert result.status == "exported" and choose_runtime(retrained, "auto", "cpu").runtime == "onnx"
    # A damaged ONNX file: refused by name, and the next export makes it again.
    damaged = _copy(exported, tmp_path / "damaged")
    with open(damaged / "onnx" / "model.onnx", "r+b") as file:
        file.seek(1000)
        file.write(b"\0" * 64)
    with pytest.raises(FbpError, match="model.onnx is damaged"):
        choose_runtime(damaged, "onnx", "cpu")
    [repaired] = export_checkpoints([damaged])
    assert repaired.status == "exported" and choose_runtime(damaged, "onnx", "cpu").model_path.exists()


@pytest.mark.parametrize("case, args, code, words", [
    ("missing path", lambda d: ["export", d / "nope"], 1, ["nope", "no such"]),
    ("damaged weights", lambda d: ["export", d / "broken"], 1, ["broken", "damaged"]),
    ("not a checkpoint", lambda d: ["export", d / "plain"], 1, ["plain", "neither an fbp checkpoint"]),
    ("bad export.json", lambda d: ["infer", d / "badrecord", "--input", d / "essays", "-o", d / "out.csv"], 1, ["export.json", "fbp export"]),
    ("onnx without export", lambda d: ["infer", d / "bare", "--input", d / "essays", "-o", d / "out.csv", "--runtime", "onnx"], 1, ["no ONNX export", "fbp export"]),
    ("unknown runtime", lambda d: ["infer", d / "bare", "--input", d / "essays", "-o", d / "out.csv", "--runtime", "tensorrt"], 2, ["tensorrt", "onnx-int8"]),
    ("onnx on a GPU", lambda d: ["infer", d / "bare", "--input", d / "essays", "-o", d / "out.csv", "--runtime", "onnx", "--device", "cuda"], 2, ["CPU"]),
])
def test_bad_inputs_are_refused_cleanly(exported, essay_dir, tmp_path, case, args, code, words):
    bare = save_checkpoint(tmp_path / "bare", tiny_bert(), minilm_tokenizer(), META)
    broken = _copy(bare, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes((bare / "model.safetensors").read_bytes()[:500])
    (tmp_path / "plain").mkdir()
    badrecord = _copy(exported, tmp_path / "badrecord")
    (badrecord / "onnx" / RECORD_FILE).write_text(json.dumps({"format": "fbp-onnx-v1"}))
    shutil.copytree(essay_dir, tmp_path / "essays")
    if case == "onnx on a GPU":
        import fbp.device

        if not fbp.device.gpu_available():
            args = lambda d: ["infer", d / "bare", "--input", d / "essays", "-o", d / "out.csv", "--runtime", "onnx", "--device", "cpu"]  # noqa: E731
            code, words = 1, ["no ONNX export"]
    result = run_cli(*args(tmp_path))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output
    assert not (broken / "onnx").exists() and not (tmp_path / "out.csv").exists()
    assert not [path for path in broken.iterdir() if path.name.startswith(".onnx")]  # no staging folder left


# --- every architecture fbp's configs name -------------------------------------------------------------------------

SHRINK = ["--epochs", "1", "--fold", "0", "--wandb", "disabled", "--set", "windows.max_length=64", "--set", "windows.stride=16",
          "--set", "training.batch_size=8", "--set", "training.gradient_accumulation=1", "--set", "training.eval_batch_size=16",
          "--set", "training.learning_rate=1e-3", "--set", "training.learned_decoding=false", "--set", "training.tune_thresholds=false",
          "--max-essays", "30"]
SHIPPED = [("default.yaml", "bert"), ("deberta-v3-large.yaml", "deberta-v2"), ("longformer-large.yaml", "longformer")]


@pytest.mark.parametrize("config, model_type", SHIPPED, ids=[model_type for _, model_type in SHIPPED])
def test_each_architecture_trains_exports_and_infers_with_each_runtime(tmp_path, processed_demo, demo_corpus, config, model_type):
    model = save_tiny_model(model_type, tmp_path / f"tiny-{model_type}")
    run = tmp_path / "run"
    trained = run_cli("train", CONFIGS / config, "--data", processed_demo, "--model", model, "-o", run, *SHRINK)
    assert trained.exit_code == 0, trained.output
    exported = run_cli("export", run, "--check-essays", "4")
    essays = tmp_path / "essays"
    essays.mkdir()
    for path in sorted((demo_corpus / "train").glob("*.txt"))[:4]:
        shutil.copy(path, essays / path.name)
    if model_type == "longformer":  # PyTorch only, said plainly; infer falls back to PyTorch with a message
        assert exported.exit_code == 1 and "runs on PyTorch only" in exported.output, exported.output
        result = run_cli("infer", run, "--input", essays, "-o", tmp_path / "auto.csv")
        assert result.exit_code == 0 and "runtime: torch (auto: no ONNX export" in " ".join(result.output.split()), result.output
        refused = run_cli("infer", run, "--input", essays, "-o", tmp_path / "x.csv", "--runtime", "onnx")
        assert refused.exit_code == 1 and "no ONNX export" in refused.output
        return
    assert exported.exit_code == 0, exported.output
    record = read_export(run / "fold_0")
    assert record.architecture == model_type
    quality = record.variants["onnx-int8"].quality
    assert quality is not None and quality.essays == 4 and quality.essays_from == "outside the run"  # 30 of the 60 essays trained
    probs = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        result = run_cli("infer", run, "--input", essays, "-o", tmp_path / f"{runtime}.csv", "--save-probs", tmp_path / f"{runtime}.npz", "--runtime", runtime)
        assert result.exit_code == 0 and f"runtime: {runtime}" in result.output, result.output
        probs[runtime] = load_word_probs(tmp_path / f"{runtime}.npz")
    largest = max(float(np.abs(probs["onnx"][i] - probs["torch"][i]).max()) for i in probs["torch"])
    assert largest < 2e-3
    largest_int8 = max(float(np.abs(probs["onnx-int8"][i] - probs["torch"][i]).max()) for i in probs["torch"])
    assert largest_int8 < 0.1
    ensemble = run_cli("ensemble", run / "fold_0", run / "fold_0", "--input", essays, "-o", tmp_path / "ens.csv", "--runtime", "onnx")
    assert ensemble.exit_code == 0 and "runtime: onnx (asked for)" in ensemble.output, ensemble.output


def test_int8_check_reads_essays_outside_the_run_else_the_fold_decoded_with_thresholds(tmp_path, processed_demo, monkeypatch):
    """The run's learned decoder was fitted on its validation essays' PyTorch probabilities: checking int8 there with it
    would favour PyTorch. Essays outside the run come first, decoded as fbp infer decodes; a run that used every
    essay is checked on its fold, decoded with its thresholds."""
    import fbp.infer
    from fbp.config import validate_config
    from fbp.export import _held_out_essays
    from fbp.io.checkpoint import read_checkpoint_meta
    from fbp.io.run_dir import RunDir
    from fbp.training.loop import select_essays

    modes = []
    real_resolve = fbp.infer.resolve_decoder

    def recording_resolve(members, mode="auto", *args, **kwargs):
        modes.append(mode)
        return real_resolve(members, mode, *args, **kwargs)

    monkeypatch.setattr(fbp.infer, "resolve_decoder", recording_resolve)
    model = save_tiny_model("bert", tmp_path / "tiny-bert")
    shrink = SHRINK[:SHRINK.index("--max-essays")]
    for name, subset, source, mode in (("subset", ["--max-essays", "30"], "outside the run", "auto"), ("every-essay", [], "validation fold", "thresholds")):
        run = tmp_path / name
        trained = run_cli("train", CONFIGS / "default.yaml", "--data", processed_demo, "--model", model, "-o", run, *shrink, *subset)
        assert trained.exit_code == 0, trained.output
        run_essays, _ = select_essays(validate_config(RunDir(run).read_config(), "config"))
        held_out, why = _held_out_essays(run / "fold_0", read_checkpoint_meta(run / "fold_0"), 5)
        assert why == "" and held_out[3] == source and len(held_out[0]) == 5
        inside = set(run_essays["id"])
        fold_essays = set(run_essays.loc[run_essays["fold"] == 0, "id"])
        assert (set(held_out[0]).isdisjoint(inside) if source == "outside the run" else set(held_out[0]) <= fold_essays)
        assert set(held_out[2]["id"]) == set(held_out[0])  # the true spans of exactly those essays
        [result] = export_checkpoints([run / "fold_0"], check_essays=5)
        quality = result.record.variants["onnx-int8"].quality
        assert quality.essays == 5 and quality.essays_from == source and modes[-1] == mode
        assert quality.decoded_with == "thresholds"  # this run fitted no learned decoder (SHRINK turns it off)
        assert read_export(run / "fold_0").variants["onnx-int8"].quality == quality  # recorded in export.json


@pytest.mark.parametrize("macro, classes, expected", [
    (0.004, {"Lead": 0.009, "Rebuttal": -0.0099}, []),  # within the rule on every count: keeps the spans
    (-0.006, {"Lead": 0.0}, [("macro", -0.006)]),
    (0.0, {"Lead": 0.02, "Claim": -0.03, "Rebuttal": 0.005}, [("Claim", -0.03), ("Lead", 0.02)]),  # upwards counts too; largest first
    (0.001, {"Counterclaim": 0.052}, [("Counterclaim", 0.052)]),  # int8 scoring higher still moved a class beyond the rule
])
def test_int8_keeps_the_spans_only_within_the_rule_either_way(macro, classes, expected):
    from fbp.io.onnx_export import QualityCheck, moves_beyond_rule

    torch_per_class = {name: 0.5 for name in ("Lead", "Claim", "Counterclaim", "Rebuttal")}
    per_class = {name: 0.5 + classes.get(name, 0.0) for name in torch_per_class}
    moves = moves_beyond_rule(0.45, 0.45 + macro, torch_per_class, per_class)
    assert [(name, round(gap, 6)) for name, gap in moves] == expected
    check = QualityCheck(essays=100, torch_f1=0.45, f1=0.45 + macro, torch_per_class=torch_per_class, per_class=per_class,
                         max_word_prob_diff=0.3, keeps_spans=not moves)
    assert check.moves_beyond_rule() == moves


def test_a_rejected_int8_says_what_moved_and_what_the_user_can_do(tmp_path, monkeypatch):
    """When no plan keeps the spans, the note names the moves beyond the rule, that auto uses fp32, and the two ways
    on (run int8 anyway, check on more essays)."""
    import fbp.export
    from fbp.io.onnx_export import QualityCheck

    checkpoint = save_checkpoint(tmp_path / "run" / "fold_0", tiny_bert(), minilm_tokenizer(), META)
    torch_per_class = {"Lead": 0.6, "Counterclaim": 0.2}
    rejected = QualityCheck(essays=100, essays_from="outside the run", torch_f1=0.4477, f1=0.4529, torch_per_class=torch_per_class,
                            per_class={"Lead": 0.6, "Counterclaim": 0.252}, max_word_prob_diff=0.34, keeps_spans=False)
    monkeypatch.setattr(fbp.export, "_held_out_essays", lambda *args: ((["x"], ["text"], None, "outside the run"), ""))
    monkeypatch.setattr(fbp.export, "_quality_check", lambda *args: rejected)
    monkeypatch.setattr("fbp.word_probs.predict_word_probs", lambda *args, **kwargs: iter([(0, np.zeros((1, 15)))]))
    [result] = export_checkpoints([checkpoint])
    [note] = [note for note in result.notes if "int8" in note]
    assert "did not keep the spans on 100 held-out essays (outside the run)" in note
    assert "F1 0.4529 vs PyTorch 0.4477" in note and "Counterclaim +0.052" in note and "macro" not in note.split("):")[1].split(".")[0]
    assert "auto uses fp32 ONNX" in note and "--runtime onnx-int8" in note and "--check-essays" in note
    assert result.record.variants["onnx-int8"].settings["plans_tried"] == [plan.name for plan in fbp.export.INT8_PLANS]
    assert choose_runtime(checkpoint, "auto", "cpu").runtime == "onnx"
