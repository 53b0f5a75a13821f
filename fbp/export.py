"""``fbp export``: ONNX models of fold checkpoints, fp32 and dynamic int8, for ``--runtime`` and for use outside fbp.

For each checkpoint:
1. the PyTorch model is traced to ONNX (``torch.onnx.export``, the TorchScript exporter: the torch.export-based one
   needs onnxscript, one more dependency) with eager attention, whose pattern ONNX Runtime's fusions recognise;
   batch and sequence axes are dynamic;
2. ONNX Runtime's transformer optimizer fuses attention, embedding + layer norm, skip layer norm and bias GELU
   where it recognises them (kept only if the fused model still matches PyTorch);
3. ``quantize_dynamic`` makes int8 weights per output channel, with 7-bit range (no saturation on CPUs without
   VNNI), keeping the classifier in fp32;
4. both files are checked against PyTorch on windows of two other lengths and batch sizes (a trace that does not
   generalise, e.g. a length baked in, is refused, and that architecture runs on PyTorch only);
5. the int8 model is checked on held-out essays (competition F1 against PyTorch fp32's): processed essays outside
   the run, else the checkpoint's own validation fold; only when it keeps the spans does ``--runtime auto`` choose it.
The folder format is :mod:`fbp.io.onnx_export`'s.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import FbpError
from .labels import LABELS

OPSET = 17
FP32_TOLERANCE = 1e-3  # largest token-probability difference from PyTorch an fp32 export may show
INT8_SANITY = 0.5  # an int8 export further than this from PyTorch on random windows is broken, not merely lossy
ARCHITECTURES = {"bert": "bert", "deberta-v2": "bert"}  # model_type -> the optimizer's model type (its BERT fusions)
PYTORCH_ONLY = {  # architectures fbp's configs name that do not export, and why
    "longformer": "Longformer pads and chunks each sequence for its sliding-window attention with Python arithmetic on the length, "
                  "which the ONNX trace bakes in (the graph fails on other lengths)",
}


@dataclass
class ExportResult:
    checkpoint: Path
    status: str  # "exported" | "current" (already up to date) | "unsupported" (PyTorch only)
    record: Any = None  # the ExportRecord
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0


Step = Callable[[str], None]  # on_step(what is being done now), for the CLI's progress lines


def export_checkpoints(
    paths: Sequence[Path], force: bool = False, check_essays: int = 100, int8: bool = True,
    on_checkpoint: Optional[Callable[[Path], Optional[Step]]] = None,
) -> List[ExportResult]:
    """Export every checkpoint of ``paths`` (checkpoints, run directories, a saved ensemble directory's members).

    An export that is current (same weights, files intact) is kept unless ``force``. ``check_essays``: how many
    held-out essays check int8 (outside the run, else each fold's own) (0: none; auto then does not choose int8). ``on_checkpoint(path)``
    is called as each checkpoint starts; what it returns (if not None) is called with each step's name.
    """
    from .io.checkpoint import expand_checkpoints
    from .infer import expand_ensemble_dir

    paths, _, _ = expand_ensemble_dir([Path(path) for path in paths], None)
    checkpoints = expand_checkpoints([path for path in paths if not (Path(path).is_file() and Path(path).suffix == ".npz")])
    results = []
    for checkpoint in checkpoints:
        on_step = on_checkpoint(checkpoint) if on_checkpoint is not None else None
        results.append(export_checkpoint(checkpoint, force, check_essays, int8, on_step))
    return results


def export_checkpoint(checkpoint: Path, force: bool = False, check_essays: int = 100, int8: bool = True, on_step: Optional[Step] = None) -> ExportResult:
    """Export one checkpoint (see :func:`export_checkpoints`)."""
    import time

    from .io.checkpoint import check_safetensors, read_checkpoint_meta
    from .io.onnx_export import export_state, variant_path, weights_sha256

    started = time.monotonic()
    step = on_step or (lambda what: None)
    checkpoint = Path(checkpoint)
    meta = read_checkpoint_meta(checkpoint)
    if tuple(meta.labels) != LABELS:
        raise FbpError(f"{checkpoint}: its labels {meta.labels} are not fbp's {list(LABELS)}")
    check_safetensors(checkpoint)
    weights_hash = weights_sha256(checkpoint)
    record, _ = export_state(checkpoint, weights_hash)
    if record is not None and not force and (record.variants.get("onnx-int8") is not None or not int8):
        try:
            for runtime in record.variants:
                variant_path(checkpoint, record, runtime)
            return ExportResult(checkpoint, "current", record, ["already exported from these weights (--force makes it again)"])
        except FbpError:
            pass  # a damaged file: export again
    model_type = _model_type(checkpoint)
    if model_type in PYTORCH_ONLY:
        return ExportResult(checkpoint, "unsupported", None, [f"{model_type} runs on PyTorch only: {PYTORCH_ONLY[model_type]}"])
    if model_type not in ARCHITECTURES:
        return ExportResult(checkpoint, "unsupported", None, [f"{model_type} is not one of the architectures fbp exports ({', '.join(ARCHITECTURES)}): it runs on PyTorch only"])
    step("loading")
    from .io.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    model.set_attn_implementation("eager")  # the attention pattern ONNX Runtime fuses; the same numbers as sdpa
    notes: List[str] = []
    made: Dict[str, Any] = {}

    def write_files(staging: Path) -> None:
        plain = staging / "plain.onnx"
        step("exporting to ONNX")
        input_names = _export(model, tokenizer, meta.max_length, plain)
        made["inputs"] = input_names
        checks = _check_windows(model, tokenizer, meta.max_length)
        try:
            plain_diff = _max_diff(plain, checks)
        except Exception as error:  # onnxruntime's own error types: the traced graph cannot run other shapes
            raise _Unsupported(f"its ONNX trace fails on other window lengths ({str(error).splitlines()[0][:200]}): {model_type} runs on PyTorch only") from None
        if not plain_diff <= FP32_TOLERANCE:
            plain.unlink()
            raise _Unsupported(f"its ONNX trace does not match PyTorch on other window lengths (largest probability difference {plain_diff:.3g}): {model_type} runs on PyTorch only")
        step("fusing (ONNX Runtime transformer optimizer)")
        fused, fusions = staging / "model.onnx", {}
        try:
            fusions = _optimize(plain, fused, model.config, ARCHITECTURES[model_type])
            fused_diff = _max_diff(fused, checks)
        except Exception as error:  # the optimizer's failures are many and internal: keep the plain graph
            fused_diff, fusions = float("inf"), {"failed": str(error).splitlines()[0] if str(error) else type(error).__name__}
        if fused_diff <= FP32_TOLERANCE:
            plain.unlink()
            made["onnx"] = (fused_diff, {"fusions": fusions}, None)
        else:
            notes.append(f"transformer fusions changed the outputs ({fused_diff:.3g}); kept the plain graph")
            fused.unlink(missing_ok=True)
            plain.rename(fused)
            made["onnx"] = (plain_diff, {"fusions": {}}, None)
        if int8:
            made["onnx-int8"] = _int8_variant(fused, staging / "model_quantized.onnx", checks, checkpoint, meta, model, tokenizer, check_essays, step, notes)

    def record_for(staging: Path):
        from .io.onnx_export import ExportRecord, VariantRecord

        variants = {}
        for runtime, file in (("onnx", "model.onnx"), ("onnx-int8", "model_quantized.onnx")):
            if runtime in made:
                diff, settings, quality = made[runtime]  # quality: int8's check on held-out essays, None for fp32
                variants[runtime] = VariantRecord(file=file, sha256="", bytes=0, max_prob_diff=float(diff), settings=settings, quality=quality)
        step("checking tokenizer.json alone makes transformers' windows")
        tokenizer_hash = _tokenizer_json_check(checkpoint, tokenizer, meta)
        if tokenizer_hash is None:
            notes.append("tokenizer.json alone does not make transformers' windows: the ONNX runtimes load transformers' tokenizer (slower start)")
        return ExportRecord(weights_sha256=weights_hash, architecture=model_type, inputs=made["inputs"], outputs=["logits"],
                            opset=OPSET, versions=_versions(), variants=variants, tokenizer_sha256=tokenizer_hash)

    from .io.onnx_export import write_export

    try:
        record = write_export(checkpoint, write_files, record_for)
    except _Unsupported as error:
        return ExportResult(checkpoint, "unsupported", None, [str(error)], time.monotonic() - started)
    return ExportResult(checkpoint, "exported", record, notes, time.monotonic() - started)


class _Unsupported(Exception):
    pass


def _model_type(checkpoint: Path) -> str:
    import json

    try:
        return str(json.loads((checkpoint / "config.json").read_text(encoding="utf-8")).get("model_type"))
    except (OSError, ValueError, AttributeError) as error:
        raise FbpError(f"{checkpoint / 'config.json'}: unreadable ({error})") from None


def _versions() -> Dict[str, str]:
    import onnx
    import onnxruntime
    import torch
    import transformers

    from . import __version__

    return {"fbp": __version__, "torch": torch.__version__, "transformers": transformers.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}


def _vocabulary_words(tokenizer: Any, plain: bool) -> np.ndarray:
    """The tokenizer's vocabulary as distinct words, sorted: its tokens without the word-piece marks (``##``, ``▁``,
    ``Ġ``); ``plain`` keeps the words of ASCII letters only, else every non-empty one."""
    words = {token.strip("#▁Ġ") for token in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))}
    keep = (lambda word: word.isalpha() and word.isascii()) if plain else bool
    return np.array(sorted(filter(keep, words)))


def _sample_batch(tokenizer: Any, length: int, batch: int, seed: int) -> Dict[str, np.ndarray]:
    """Windows of random words from the tokenizer's vocabulary, made as fbp makes them (:func:`fbp.windows.make_windows`):
    ``batch`` windows of ``length`` tokens, the last one shorter when there are several (padding)."""
    from .windows import make_windows, model_features

    rng = np.random.default_rng(seed)
    words = _vocabulary_words(tokenizer, plain=True)
    texts = [" ".join(rng.choice(words, length * 2)) for _ in range(batch)]
    windows = [make_windows(tokenizer, [text], length, min(8, length // 4))[0] for text in texts]
    if batch > 1:
        windows[-1] = make_windows(tokenizer, [texts[-1]], max(4, length - length // 3), min(8, length // 4))[0]
    padded = tokenizer.pad(model_features(windows), return_tensors="np")
    return {key: np.asarray(value, dtype=np.int64) for key, value in padded.items()}


def _tokenizer_json_check(checkpoint: Path, tokenizer: Any, meta: Any) -> Optional[str]:
    """``tokenizer.json``'s SHA-256 when it alone (:class:`fbp.tokenizer_json.TokenizerJson`) makes the windows
    transformers' tokenizer makes, on long texts of the vocabulary's words and on text with accents, emoji,
    unusual spaces and control characters; else None."""
    from .io.onnx_export import file_sha256
    from .tokenizer_json import TOKENIZER_FILE, TokenizerJson, same_windows

    path = checkpoint / TOKENIZER_FILE
    if not path.is_file():
        return None
    rng = np.random.default_rng(3)
    words = _vocabulary_words(tokenizer, plain=False)
    texts = [" ".join(rng.choice(words, meta.max_length * 3)) for _ in range(4)]
    texts += ["Café naïve résumé — “quoted” 😀 x\u200by\ttab\u00a0nbsp\u2028line ẞ ǅ ﬁ 日本語 " * 40, "", "one"]
    try:
        same = same_windows(tokenizer, TokenizerJson(checkpoint), texts, meta.max_length, meta.stride)
    except FbpError:
        return None
    return file_sha256(path) if same else None


def _export(model: Any, tokenizer: Any, max_length: int, path: Path) -> List[str]:
    import warnings

    import torch

    sample = _sample_batch(tokenizer, min(max_length, 64), 2, seed=0)
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in names + ["logits"]}

    class Logits(torch.nn.Module):  # positional inputs in `names` order -> logits only
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            return self.inner(**dict(zip(names, inputs))).logits

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings are about the trace, checked below
        wrapper = Logits(model).eval()  # export restores the wrapper's mode afterwards, recursively: eval keeps the model in eval
        torch.onnx.export(wrapper, tuple(torch.from_numpy(sample[name]) for name in names), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return names


def _check_windows(model: Any, tokenizer: Any, max_length: int):
    """Two batches unlike the trace's (other lengths and sizes), with PyTorch's probabilities."""
    import torch

    checks = []
    for length, batch, seed in ((max_length, 3, 1), (max(8, max_length // 2 + 5), 1, 2)):
        feeds = _sample_batch(tokenizer, length, batch, seed)
        with torch.inference_mode():
            logits = model(**{key: torch.from_numpy(value) for key, value in feeds.items()}).logits
        checks.append((feeds, torch.softmax(logits.float(), -1).numpy()))
    return checks


def _max_diff(path: Path, checks) -> float:
    from .onnx_runtime import session_options

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    worst = 0.0
    for feeds, expected in checks:
        logits = session.run(None, {name: feeds[name] for name in names})[0]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        mask = feeds["attention_mask"].astype(bool)
        worst = max(worst, float(np.abs(probs - expected)[mask].max()) if probs.shape == expected.shape else float("inf"))
    return worst


def _optimize(source: Path, target: Path, config: Any, optimizer_type: str) -> Dict[str, int]:
    import logging

    from onnxruntime.transformers import optimizer

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # "failed to fuse" notes are expected for some models
    optimized = optimizer.optimize_model(str(source), model_type=optimizer_type, num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                                         hidden_size=int(getattr(config, "hidden_size", 0) or 0), opt_level=None)
    optimized.save_model_to_file(str(target))
    return {name: count for name, count in optimized.get_fused_operator_statistics().items() if count}


@dataclass(frozen=True)
class Int8Plan:
    """Which projections stay fp32 when the rest get dynamic int8 weights (matched on ONNX node names)."""

    name: str
    keep_fp32: Tuple[str, ...]  # a node stays fp32 when its name contains one of these
    skip_fp32: Tuple[str, ...] = ()  # ... unless it also contains one of these

    def keeps(self, node_name: str) -> bool:
        return any(part in node_name for part in self.keep_fp32) and not any(part in node_name for part in self.skip_fp32)


# Tried in order, fastest first: the first that keeps the spans on the held-out essays becomes the int8 model.
# The feed-forward output projection reads GELU outputs, whose outliers one dynamic uint8 scale per tensor resolves
# worst; the attention output projection is the next most sensitive (bench/RESULTS.md, "int8 that keeps the spans").
INT8_PLANS = (
    Int8Plan("all projections", ("classifier",)),
    Int8Plan("feed-forward outputs fp32", ("classifier", "/output/dense/"), ("/attention/",)),
    Int8Plan("output projections fp32", ("classifier", "/output/dense/")),
)


def _quantize(source: Path, target: Path, plan: Int8Plan = INT8_PLANS[0]) -> Dict[str, Any]:
    """Dynamic int8 weights per output channel, 7-bit range (no saturation on CPUs without VNNI); the projections
    ``plan`` names (always the classifier, the last projection to the 15 labels) stay fp32."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep_fp32 = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and plan.keeps(node.name)]
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice is about static quantisation
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         nodes_to_exclude=keep_fp32, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    return {"weights": "int8 per channel, 7-bit range", "activations": "uint8, dynamic", "plan": plan.name, "kept_fp32": keep_fp32}


def _int8_variant(fused: Path, target: Path, checks, checkpoint: Path, meta: Any, model: Any, tokenizer: Any, check_essays: int,
                  step: Step, notes: List[str]):
    """``(largest difference on the check windows, settings, quality)`` of the int8 model written to ``target``: the
    first of :data:`INT8_PLANS` that keeps the spans on held-out essays (:func:`_held_out_essays`); when none does, the
    fastest (an option for ``--runtime onnx-int8``, never ``auto``'s choice); without held-out essays, the fastest,
    unchecked."""
    held_out, why = _held_out_essays(checkpoint, meta, check_essays) if check_essays > 0 else (None, "")
    if why:
        notes.append(why)
    reference = None
    if held_out is not None:
        from .device import predict_batch_size
        from .word_probs import predict_word_probs

        step(f"PyTorch fp32 on {len(held_out[0])} held-out essays ({held_out[3]}), for the int8 check")
        reference = dict(predict_word_probs(model, tokenizer, held_out[1], meta.max_length, meta.stride, predict_batch_size(None, "cpu"), "cpu"))
    tried = []
    for number, plan in enumerate(INT8_PLANS):
        step(f"quantising to int8 ({plan.name})")
        candidate = target.with_name(f"int8-{number}.onnx")
        settings = _quantize(fused, candidate, plan)
        diff = _max_diff(candidate, checks)
        if not diff <= INT8_SANITY:
            candidate.unlink()
            notes.append(f"int8 with {plan.name} is far from PyTorch (largest probability difference {diff:.3g}): not kept")
            continue
        quality = None
        if held_out is not None:
            step(f"checking int8 ({plan.name}) against PyTorch on {len(held_out[0])} held-out essays ({held_out[3]})")
            quality = _quality_check(checkpoint, held_out, reference, candidate, tokenizer, meta)
        tried.append((candidate, diff, settings, quality))
        if quality is None or quality.keeps_spans:
            break
    if not tried:
        raise FbpError(f"{checkpoint}: every int8 model is far from PyTorch; export with --no-int8")
    kept = next((item for item in tried if item[3] is not None and item[3].keeps_spans), tried[0])
    for candidate, *_ in tried:
        if candidate != kept[0]:
            candidate.unlink()
    kept[0].rename(target)
    kept[2]["plans_tried"] = [item[2]["plan"] for item in tried]
    if kept[3] is not None and not kept[3].keeps_spans:
        from .io.onnx_export import MAX_CLASS_DROP, MAX_MACRO_DROP

        moves = ", ".join(f"{name} {gap:+.3f}" for name, gap in kept[3].moves_beyond_rule()[:3])
        notes.append(f"int8 did not keep the spans on {kept[3].essays} held-out essays ({kept[3].essays_from}) with any plan tried; the fastest: "
                     f"F1 {kept[3].f1:.4f} vs PyTorch {kept[3].torch_f1:.4f}, beyond the rule (macro within {MAX_MACRO_DROP}, each class within "
                     f"{MAX_CLASS_DROP}): {moves}. auto uses fp32 ONNX; --runtime onnx-int8 still runs int8; --check-essays N checks on more essays")
    return kept[1], kept[2], kept[3]


def _held_out_essays(checkpoint: Path, meta: Any, limit: int):
    """Up to ``limit`` essays to check int8 on, as ``(ids, texts, true spans, where they come from)``, or None and why.

    Processed essays outside the run come first: no fold trained on them and the run's learned decoder was not fitted
    on them, so they judge int8 as ``fbp infer`` will meet it. When the run used every processed essay, the essays
    of the checkpoint's own validation fold stand in (sorted by id); the learned decoder was fitted on their PyTorch
    probabilities, so :func:`_quality_check` decodes those with the run's thresholds instead."""
    from .config import validate_config
    from .io.onnx_export import OUTSIDE_THE_RUN, VALIDATION_FOLD
    from .io.processed import load_processed
    from .io.run_dir import RunDir, checkpoint_run
    from .training.loop import select_essays

    run_path = checkpoint_run(checkpoint)
    if run_path is None or meta.fold is None:
        return None, "int8 not checked on essays: the checkpoint is not a fold of a run (auto uses fp32 ONNX; --runtime onnx-int8 still works)"
    run = RunDir(run_path)
    processed_dir = run.processed_dir()
    if processed_dir is None or not processed_dir.exists():
        return None, f"int8 not checked on essays: the processed data of run {run_path} is not there (auto uses fp32 ONNX)"
    processed = load_processed(processed_dir)
    essays, _ = select_essays(validate_config(run.read_config(), str(run.config_path)), processed)
    outside = processed.essays[~processed.essays["id"].isin(set(essays["id"]))]
    if not outside.empty:
        chosen, source = outside.sort_values("id").head(limit), OUTSIDE_THE_RUN
    else:
        chosen, source = essays[essays["fold"] == meta.fold].sort_values("id").head(limit), VALIDATION_FOLD
    if chosen.empty:
        return None, f"int8 not checked on essays: fold {meta.fold} of run {run_path} has no essays"
    truth = processed.spans[processed.spans["id"].isin(set(chosen["id"]))]
    return (list(chosen["id"]), list(chosen["text"]), truth, source), ""


def _quality_check(checkpoint: Path, held_out, reference: Dict[int, np.ndarray], int8_path: Path, tokenizer: Any, meta: Any):
    """The int8 model's competition F1 on the held-out essays against PyTorch fp32's (``reference``), both decoded
    the same way (see :func:`_held_out_essays`); whether it keeps the spans is :func:`fbp.io.onnx_export.moves_beyond_rule`'s rule."""
    from .decode import decode_essays
    from .device import predict_batch_size
    from .infer import Member, resolve_decoder
    from .io.onnx_export import OUTSIDE_THE_RUN, QualityCheck, moves_beyond_rule
    from .metric import score
    from .onnx_runtime import onnx_word_probs

    ids, texts, truth, source = held_out
    # Outside the run: decoded as fbp infer CHECKPOINT decodes. On the validation fold the learned decoder would judge
    # PyTorch on the very probabilities it was fitted to (biased against int8), so the run's thresholds decode there.
    mode = "auto" if source == OUTSIDE_THE_RUN else "thresholds"
    decoding, decoder, _ = resolve_decoder([Member.from_path(checkpoint)], mode)

    def decoded(word_probs: Dict[int, np.ndarray]):
        by_id = {ids[i]: word_probs[i] for i in range(len(ids))}
        return decoder.decode(by_id) if decoder is not None else decode_essays(by_id, decoding)

    candidate = dict(onnx_word_probs(int8_path, tokenizer, texts, meta.max_length, meta.stride, predict_batch_size(None, "cpu")))
    torch_result, int8_result = score(decoded(reference), truth), score(decoded(candidate), truth)
    torch_classes, int8_classes = torch_result.class_f1(), int8_result.class_f1()
    keeps = not moves_beyond_rule(torch_result.f1, int8_result.f1, torch_classes, int8_classes)
    largest = max(float(np.abs(reference[i] - candidate[i]).max()) if len(reference[i]) else 0.0 for i in range(len(ids)))
    return QualityCheck(essays=len(ids), essays_from=source, decoded_with="learned" if decoder is not None else "thresholds", torch_f1=torch_result.f1, f1=int8_result.f1, torch_per_class=torch_classes,
                        per_class=int8_classes, max_word_prob_diff=largest, keeps_spans=keeps)
