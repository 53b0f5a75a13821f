"""Dynamic int8 variants of one fold's fused ONNX model: how far each is from fp32, and how fast (issue 20).

``fbp export`` quantises with 7-bit int8 weights per output channel and uint8 activations quantised per tensor at run
time (``quantize_dynamic``). This benchmark asks where int8's error comes from, by changing one thing at a time:

- the weights: 8-bit instead of 7 (no saturation risk on CPUs with VNNI), per tensor instead of per channel, uint8;
- the activations' outlier channels: SmoothQuant-style smoothing (Xiao et al., 2022). Each quantised projection's
  input channel j is divided by s_j and the weight's row j multiplied by it (the fp32 model is unchanged), with
  s_j = max|x_j|^alpha / max|W_j|^(1 - alpha) from calibration windows, so one uint8 scale per tensor fits better.

Calibration essays are the last ``--calibration`` essays of ``--input``; the comparison runs on the first ``--essays``
(windows of 512, stride 128, batches of 16 sorted by length, as ``fbp infer``). It prints, per variant, its model time
against fp32 ONNX (side by side in one process) and the per-token largest probability difference from fp32 (mean,
p99, max) with argmax agreement. Competition F1 needs many more essays: ``bench_runtimes.py --quality-only``.

    python bench/bench_int8_variants.py RUN/fold_0 --input ESSAY_DIR [--essays 100] [--calibration 40] [--alphas 0.5,0.75]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def window_batches(tokenizer, texts, batch_size=16):
    """Batches of unpadded windows (``fbp infer``'s windows, sorted by length as it sorts them)."""
    from fbp.windows import make_windows, model_features

    features = sorted(model_features(make_windows(tokenizer, texts, 512, 128)), key=lambda item: len(item["input_ids"]))
    return [features[start : start + batch_size] for start in range(0, len(features), batch_size)]


def real_tokens(batch) -> np.ndarray:
    """``(batch, longest)``: True where a window has a token, False on its padding."""
    lengths = np.array([len(item["input_ids"]) for item in batch])
    return np.arange(lengths.max())[None, :] < lengths[:, None]


def quantised_projections(model):
    """The fused graph's nodes that int8 quantises (attention and projections with constant weights), classifier aside."""
    constants = {item.name for item in model.graph.initializer}
    return [node for node in model.graph.node if node.op_type in ("Attention", "MatMul") and node.input[1] in constants and "classifier" not in node.name]


def channel_maxima(fp32_path: Path, tokenizer, texts):
    """Per input channel, the largest |activation| entering each quantised projection, over the real tokens of ``texts``."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(fp32_path))
    names = sorted({node.input[0] for node in quantised_projections(model)})
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the intermediate tensors
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    maxima = {}
    for batch in window_batches(tokenizer, texts):
        padded, mask = tokenizer.pad(batch, return_tensors="np"), real_tokens(batch)
        feeds = {item.name: np.asarray(padded[item.name], dtype=np.int64) for item in session.get_inputs()}
        for name, value in zip(names, session.run(names, feeds)):
            maxima[name] = np.maximum(maxima.get(name, 0), np.abs(value.reshape(mask.shape + (-1,))[mask]).max(axis=0))
    return maxima


def smoothed_model(fp32_path: Path, maxima, alpha: float, target: Path) -> Path:
    """``fp32_path`` with each quantised projection's input divided by s and its weight rows multiplied by s."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(fp32_path))
    constants = {item.name: item for item in model.graph.initializer}
    for node in quantised_projections(model):
        weight = numpy_helper.to_array(constants[node.input[1]])
        scale = np.maximum(maxima[node.input[0]], 1e-5) ** alpha / np.maximum(np.abs(weight).max(axis=1), 1e-5) ** (1 - alpha)
        scale = np.clip(scale, 1e-2, 1e2).astype(np.float32)
        constants[node.input[1]].CopyFrom(numpy_helper.from_array(weight * scale[:, None], node.input[1]))
        model.graph.initializer.append(numpy_helper.from_array(1 / scale, f"{node.name}_smoothing"))
        smoothed = f"{node.input[0]}_smoothed_for_{node.name}"
        model.graph.node.append(helper.make_node("Mul", [node.input[0], f"{node.name}_smoothing"], [smoothed], name=f"{node.name}_smooth"))
        node.input[0] = smoothed
    ordered, known, pending = [], {item.name for item in model.graph.input} | set(constants) | {f"{node.name}_smoothing" for node in model.graph.node}, list(model.graph.node)
    while pending:  # ONNX wants nodes in topological order: each Mul before its projection
        ready = [node for node in pending if all(name == "" or name in known for name in node.input)]
        if not ready:
            raise SystemExit("smoothing left a graph that cannot be ordered")
        for node in ready:
            ordered.append(node)
            known.update(node.output)
        pending = [node for node in pending if node not in ready]
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    onnx.save(model, str(target))
    return target


def quantised(source: Path, target: Path, **settings) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    keep = [node.name for node in graph.node if node.op_type in ("MatMul", "Gemm") and "classifier" in node.name]
    settings.setdefault("weight_type", QuantType.QInt8)
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(source), str(target), nodes_to_exclude=keep, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **settings)
    return target


def token_probs(path: Path, tokenizer, texts):
    """Probabilities of every real token of ``texts`` (rows in window order) from fbp's ONNX classifier, and the
    seconds it took."""
    from fbp.onnx_runtime import OnnxTokenClassifier

    classifier = OnnxTokenClassifier(path)
    rows, seconds = [], 0.0
    for batch in window_batches(tokenizer, texts):
        started = time.perf_counter()
        probs = classifier.probabilities(batch, tokenizer)
        seconds += time.perf_counter() - started
        rows.append(probs[real_tokens(batch)])
    return np.concatenate(rows), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a fold checkpoint that fbp export has exported")
    parser.add_argument("--input", type=Path, required=True, help="a folder of essays outside the run (*.txt)")
    parser.add_argument("--essays", type=int, default=100)
    parser.add_argument("--calibration", type=int, default=40)
    parser.add_argument("--alphas", default="0.5,0.75")
    args = parser.parse_args()
    from onnxruntime.quantization import QuantType
    from transformers import AutoTokenizer

    from bench_runtimes import cpu_features

    paths = sorted(args.input.glob("*.txt"))
    texts = [path.read_text(encoding="utf-8") for path in paths[: args.essays]]
    calibration = [path.read_text(encoding="utf-8") for path in paths[-args.calibration :]]
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    fp32 = args.checkpoint / "onnx" / "model.onnx"
    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    print(f"checkpoint {args.checkpoint}; {len(texts)} essays compared, {len(calibration)} calibrate; {os.cpu_count()} CPUs ({cpu_features()}); "
          f"load average {' '.join(f'{value:.1f}' for value in os.getloadavg())}")
    reference, reference_seconds = token_probs(fp32, tokenizer, texts)
    print(f"fp32 ONNX: {len(reference)} tokens, model {reference_seconds:.1f}s\n")
    print("| int8 variant | model time vs fp32 | mean / p99 / max largest prob. difference | argmax agreement |\n|---|---:|---|---:|")

    def report(name: str, path: Path) -> None:
        probs, seconds = token_probs(path, tokenizer, texts)
        diff = np.abs(probs - reference).max(axis=1)
        print(f"| {name} | {reference_seconds / seconds:.2f}x | {diff.mean():.4f} / {np.percentile(diff, 99):.3f} / {diff.max():.2f} | "
              f"{np.mean(probs.argmax(axis=1) == reference.argmax(axis=1)):.4f} |", flush=True)

    report("fbp export's (7-bit weights per channel)", quantised(fp32, work / "a.onnx", per_channel=True, reduce_range=True))
    report("8-bit weights per channel", quantised(fp32, work / "b.onnx", per_channel=True, reduce_range=False))
    report("8-bit weights per tensor", quantised(fp32, work / "c.onnx", per_channel=False, reduce_range=False))
    report("uint8 weights per channel", quantised(fp32, work / "d.onnx", per_channel=True, reduce_range=False, weight_type=QuantType.QUInt8))
    maxima = channel_maxima(fp32, tokenizer, calibration)
    ratios = [float(value.max() / max(np.median(value), 1e-6)) for value in maxima.values()]
    print(f"\ninputs of the quantised projections: largest channel maximum / median channel maximum {min(ratios):.1f} to {max(ratios):.1f}")
    for alpha in (float(value) for value in args.alphas.split(",")):
        source = smoothed_model(fp32, maxima, alpha, work / f"smooth-{alpha}.onnx")
        probs, _ = token_probs(source, tokenizer, texts)
        print(f"smoothed fp32 (alpha {alpha}) vs fp32: largest difference {np.abs(probs - reference).max():.1e} (the same model)")
        report(f"smoothed, alpha {alpha}, 7-bit weights per channel", quantised(source, work / f"smooth-{alpha}-int8.onnx", per_channel=True, reduce_range=True))


if __name__ == "__main__":
    main()
