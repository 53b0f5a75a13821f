"""int8 with SmoothQuant-style activation smoothing, and static (calibrated) int8, against plain dynamic int8
(issue 20's search for an int8 that keeps the spans). Not part of `fbp export`: smoothing measured no gain
(bench/RESULTS.md, "Session of 2026-12-05"), and static int8 keeps the spans worse than dynamic int8 ("Session of
2026-12-06").

    python bench/bench_int8_smoothing.py CHECKPOINT|- --processed PROCESSED_DIR [--alphas 0.5,0.8]
        [--static MinMax,Percentile,Entropy]

CHECKPOINT: a fold checkpoint (`-`: the packaged MiniLM with a random 15-label head). Exports it to fused fp32 ONNX
as `fbp export` does, records each int8 projection input's largest value per channel on 32 essays' windows, then for
each alpha puts a per-channel Mul (1/s) before each projection and folds s into its weights (identical in fp32),
quantises as `fbp export`'s first plan does, and compares token probabilities with fp32 on 64 other essays' windows.
`--static` also quantises the fused model statically (QDQ, MatMul with constant weights only, per-channel 7-bit
weights, uint8 activations whose ranges each calibration method sets from the same 32 essays' windows, the classifier
fp32; Entropy with 2,048 histogram bins; the fused Attention nodes' query-key-value projection stays fp32: MatMul only).
Each variant's "model time" is one timed pass over the 64 essays after a warm-up of fp32, not alternated: a hint, not
a speed figure (bench/bench_runtimes.py measures speed).
"""
import argparse, os, sys, time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fbp.export import _export, _optimize, _quantize, INT8_PLANS
from fbp.onnx_runtime import session_options
from fbp.windows import make_windows, model_features

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("checkpoint")
parser.add_argument("--processed", type=Path, required=True, help="fbp preprocess output whose essays are sampled")
parser.add_argument("--alphas", default="0.5,0.8", help="smoothing strengths ('' for none)")
parser.add_argument("--static", default="", help="also static (calibrated) int8, QDQ, with these calibration methods, e.g. MinMax,Percentile,Entropy")
parser.add_argument("--work", type=Path, default=Path("/tmp/fbp-bench/int8-smoothing"))
args = parser.parse_args()
ckpt = None if args.checkpoint == "-" else args.checkpoint
alphas = [float(a) for a in args.alphas.split(",") if a]
static_methods = [m for m in args.static.split(",") if m]
work = args.work / ("checkpoint" if ckpt else "random-head")
work.mkdir(parents=True, exist_ok=True)
print(f"config: {ckpt or 'packaged MiniLM, random head'}; alphas {alphas}; static {static_methods}; windows 512/128, batches of 16; "
      f"load average {', '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
if ckpt:
    from fbp.io.checkpoint import load_checkpoint
    loaded = load_checkpoint(ckpt, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
else:
    from transformers import AutoModelForTokenClassification
    from fbp.model import resolve_model_name, load_tokenizer
    import torch
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(resolve_model_name("minilm"), num_labels=15)
    tokenizer = load_tokenizer("minilm")
model.eval(); model.set_attn_implementation("eager")
fused = work / "model.onnx"
if not fused.exists():
    _export(model, tokenizer, 512, work / "plain.onnx")
    _optimize(work / "plain.onnx", fused, model.config, "bert")

essays = pd.read_parquet(args.processed / "essays.parquet").sort_values("id")
rng = np.random.default_rng(0)
picked = essays.iloc[rng.permutation(len(essays))[:96]]
calib_texts, eval_texts = list(picked.text[:32]), list(picked.text[32:96])


def batches(texts):
    windows = make_windows(tokenizer, texts, 512, 128)
    feats = model_features(windows)
    feats.sort(key=lambda f: len(f["input_ids"]))
    out = []
    for i in range(0, len(feats), 16):
        padded = tokenizer.pad(feats[i:i + 16], return_tensors="np")
        out.append({k: np.asarray(v, dtype=np.int64) for k, v in padded.items()})
    return out


calib, evals = batches(calib_texts), batches(eval_texts)
print(f"calibration {sum(len(b['input_ids']) for b in calib)} windows, eval {sum(len(b['input_ids']) for b in evals)} windows", flush=True)

graph_model = onnx.load(str(fused))
inits = {init.name: init for init in graph_model.graph.initializer}
targets = {}  # input tensor -> [(node, weight name)]
for node in graph_model.graph.node:
    if node.op_type in ("MatMul", "Attention") and len(node.input) > 1 and node.input[1] in inits and "classifier" not in node.name:
        targets.setdefault(node.input[0], []).append((node.name, node.input[1]))
print(f"{sum(len(v) for v in targets.values())} projections on {len(targets)} inputs", flush=True)


def session(path, extra_outputs=()):
    m = onnx.load(str(path))
    for name in extra_outputs:
        m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return ort.InferenceSession(m.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])


sess = session(fused, list(targets))
names = [i.name for i in sess.get_inputs()]
amax = {name: None for name in targets}
for b in calib:
    outs = sess.run(None, {n: b[n] for n in names})
    mask = b["attention_mask"].astype(bool)
    for name, value in zip(targets, outs[1:]):
        channel = np.abs(value[mask]).max(axis=0)
        amax[name] = channel if amax[name] is None else np.maximum(amax[name], channel)
for name in list(targets)[:14]:
    a = amax[name]
    print(f"  {name[:50]:50s} act max {a.max():8.2f} median {np.median(a):6.2f} ratio {a.max() / np.median(a):6.1f}")


def smoothed(alpha, path):
    m = onnx.load(str(fused))
    inits = {init.name: init for init in m.graph.initializer}
    for number, (name, users) in enumerate(targets.items()):
        w_max = np.max([np.abs(numpy_helper.to_array(inits[w])).max(axis=1) for _, w in users], axis=0)
        scale = np.clip(amax[name] ** alpha / np.maximum(w_max, 1e-8) ** (1 - alpha), 1e-3, 1e3).astype(np.float32)
        for _, w in users:
            array = numpy_helper.to_array(inits[w]) * scale[:, None]
            inits[w].CopyFrom(numpy_helper.from_array(array.astype(np.float32), w))
        inv = f"smooth_inv_{number}"
        m.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inv))
        out = f"{name}_smoothed"
        m.graph.node.append(helper.make_node("Mul", [name, inv], [out], name=f"Smooth_{number}"))
        user_names = {u for u, _ in users}
        for node in m.graph.node:
            if node.name in user_names:
                node.input[0] = out
    # topological order: move Mul nodes right after their producer
    nodes = list(m.graph.node)
    muls = {n.output[0]: n for n in nodes if n.name.startswith("Smooth_")}
    ordered = []
    produced = {}
    rest = [n for n in nodes if not n.name.startswith("Smooth_")]
    for n in rest:
        for i in n.input:
            mul = muls.get(i)
            if mul is not None and mul.output[0] not in produced:
                ordered.append(mul); produced[mul.output[0]] = True
        ordered.append(n)
    del m.graph.node[:]
    m.graph.node.extend(ordered)
    onnx.save(m, str(path))


def probs_of(path):
    s = session(path)
    res = []
    for b in evals:
        logits = s.run(None, {n: b[n] for n in names})[0]
        p = np.exp(logits - logits.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
        res.append(p)
    return res


probs_of(fused)  # warm-up
started = time.perf_counter()
reference = probs_of(fused)
reference_seconds = time.perf_counter() - started


def compare(label, path):
    started = time.perf_counter()
    probs = probs_of(path)
    seconds = time.perf_counter() - started
    diffs, agree, total = [], 0, 0
    for b, p, r in zip(evals, probs, reference):
        mask = b["attention_mask"].astype(bool)
        d = np.abs(p - r)[mask]
        diffs.append(d.max(axis=1))
        agree += int((p.argmax(-1) == r.argmax(-1))[mask].sum()); total += int(mask.sum())
    d = np.concatenate(diffs)
    print(f"{label:40s} max {d.max():.3f} p99 {np.quantile(d, 0.99):.3f} mean {d.mean():.4f} argmax agree {agree / total:.4f} "
          f"({total:,} tokens); model time {reference_seconds / seconds:.2f}x fp32", flush=True)


def static_int8(method, path):
    """Static int8 (QDQ): activation ranges calibrated on the calibration essays' windows, weights as fbp export's
    dynamic int8 (per channel, 7-bit), the classifier fp32."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        """One window at a time, padded to 512: the histogram methods (Percentile, Entropy) stack every batch's
        outputs into one array, so every batch must have the same shape."""
        def __init__(self):
            self.items = iter([{n: np.pad(b[n][row:row + 1], ((0, 0), (0, 512 - b[n].shape[1]))) for n in names}
                               for b in calib for row in range(len(b["input_ids"]))])

        def get_next(self):
            return next(self.items, None)

    # The fused graph's contrib ops (Attention, SkipLayerNormalization, BiasGelu) defeat ONNX's own shape inference,
    # and quantize_static skips every activation whose type it cannot infer (weights-only, slower than fp32): give it
    # the types from ONNX Runtime's symbolic shape inference, which knows those ops.
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    typed = work / "model-typed.onnx"
    if not typed.exists():
        onnx.save(SymbolicShapeInference.infer_shapes(onnx.load(str(fused)), auto_merge=True), str(typed))
    exclude = [n.name for n in onnx.load(str(typed), load_external_data=False).graph.node if "classifier" in n.name]
    reader, cache = Reader(), None
    if method == "Entropy":
        # quantize_static cannot pass Entropy its bin counts, and its defaults (128 bins, 128 quantised bins) leave the
        # KL search a single candidate: the full range, i.e. MinMax (measured: byte-identical models). Calibrate here
        # with 2,048 bins, TensorRT's setting, and hand quantize_static the ranges as its calibration cache.
        import tempfile
        from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
        with tempfile.TemporaryDirectory() as tmp:
            calibrator = create_calibrator(typed, ["MatMul"], augmented_model_path=f"{tmp}/augmented.onnx",
                                           calibrate_method=CalibrationMethod.Entropy,
                                           extra_options={"num_bins": 2048, "num_quantized_bins": 128})
            calibrator.collect_data(reader)
            cache, reader = work / "entropy-2048.json", None
            save_tensors_data(calibrator.compute_data(), cache)
    quantize_static(str(typed), str(path), reader, calibration_cache_path=cache, quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                    per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=getattr(CalibrationMethod, method),
                    extra_options={"MatMulConstBOnly": True})


plan = INT8_PLANS[0]
_quantize(fused, work / "int8.onnx", plan)
compare("int8 (all projections)", work / "int8.onnx")
for alpha in alphas:
    smoothed(alpha, work / f"smooth{alpha}.onnx")
    compare(f"smoothed fp32 alpha {alpha}", work / f"smooth{alpha}.onnx")
    _quantize(work / f"smooth{alpha}.onnx", work / f"smooth{alpha}-int8.onnx", plan)
    compare(f"smoothed int8 alpha {alpha}", work / f"smooth{alpha}-int8.onnx")
for method in static_methods:
    static_int8(method, work / f"static-{method}.onnx")
    compare(f"static int8 ({method})", work / f"static-{method}.onnx")
