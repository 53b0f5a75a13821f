"""Checkpoints -> word probabilities -> a Kaggle submission; and weighted ensembles of any models.

Members: each path given on the command line is one ensemble member: a fold checkpoint, a run
directory (the equal-weight average of its folds) or a saved word-probabilities file (``.npz`` from
``--save-probs``, so ensembles and re-decoding never re-run a model). Members average at the word
level, so models with different tokenizers mix freely.

Memory stays bounded however many essays there are: essays are read from disk as they are needed,
one model is loaded at a time, and the running weighted sum of word probabilities lives in a
memory-mapped scratch file, not in RAM.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import ThresholdConfig
from .errors import FbpError, UsageError
from .io.checkpoint import check_label_sets, expand_checkpoints
from .io.run_dir import checkpoint_decoding, checkpoint_run
from .io.kaggle import SPAN_COLUMNS, EssayDir
from .labels import NUM_LABELS

DECODE_CHUNK = 1000  # essays decoded at a time when writing the submission
Progress = Callable[[float], None]  # on_progress(essays done since the last call)


@dataclass
class Member:
    """One ensemble member as given on the command line."""

    source: Path
    checkpoints: List[Path] = field(default_factory=list)  # empty for a word-probabilities file
    probs_file: Optional[Path] = None
    run_dir: Optional[Path] = None  # the run its checkpoints come from, whose decoding.json holds tuned thresholds

    @classmethod
    def from_path(cls, path: Path) -> "Member":
        if path.is_file() and path.suffix == ".npz":
            return cls(path, probs_file=path)
        checkpoints = expand_checkpoints([path])
        runs = {checkpoint_run(checkpoint) for checkpoint in checkpoints}
        return cls(path, checkpoints=checkpoints, run_dir=runs.pop() if len(runs) == 1 else None)


def resolve_members(paths: Sequence[Path]) -> List[Member]:
    """Members from paths: checkpoints, run directories (all their folds) or ``.npz`` word probabilities."""
    if not paths:
        raise UsageError("give at least one checkpoint, run directory or word-probabilities file")
    members = [Member.from_path(Path(path)) for path in paths]
    check_label_sets([checkpoint for member in members for checkpoint in member.checkpoints])
    return members


def resolve_thresholds(members: Sequence[Member], decoding_file: Optional[Path] = None) -> Tuple[ThresholdConfig, str]:
    """The decoding thresholds and where they come from: ``decoding_file`` if given, else the first checkpoint's
    (its run's ``decoding.json``, where tuned thresholds land, or its own ``fbp.json``), else fbp's defaults."""
    from .config import read_decoding

    if decoding_file is not None:
        return read_decoding(Path(decoding_file)), str(decoding_file)
    for member in members:
        if member.checkpoints:
            decoding, source = checkpoint_decoding(member.checkpoints[0])
            if decoding is not None:
                return decoding, source
    return ThresholdConfig(), "fbp's defaults"


DECODINGS = ("auto", "learned", "thresholds", "argmax")
ARGMAX = ThresholdConfig(min_words={}, min_confidence={})  # every argmax span, no thresholds


def resolve_decoder(members: Sequence[Member], mode: str = "auto", decoding_file: Optional[Path] = None, ensemble=None):
    """How the spans are decoded: ``(thresholds, learned decoder or None, where it comes from)``.

    ``mode``: ``auto`` uses the learned decoder of a saved ensemble directory, or of the run every member comes from
    when that run chose it (it beat the tuned thresholds out of fold), else thresholds; ``learned`` requires one;
    ``thresholds`` uses ``decoding_file`` or the checkpoints' thresholds (:func:`resolve_thresholds`); ``argmax`` keeps
    every argmax span. A run made before the learned decoder existed decodes with its thresholds, as before.
    """
    from .io.run_dir import RunDir

    if mode not in DECODINGS:
        raise UsageError(f"unknown decoding {mode!r}; choose one of {', '.join(DECODINGS)}, or give a decoding.json")
    if mode == "argmax":
        return ARGMAX, None, "argmax spans, no thresholds"
    decoding, source = resolve_thresholds(members, decoding_file)
    blend_thresholds = ensemble.thresholds() if ensemble is not None and decoding_file is None else None
    if blend_thresholds is not None:
        decoding, source = blend_thresholds, str(ensemble.decoding_path)  # the blend's own, not its first member's
    if mode == "thresholds" or decoding_file is not None:
        return decoding, None, f"thresholds from {source}"
    runs = {member.run_dir for member in members}
    run = RunDir(runs.pop()) if len(runs) == 1 and None not in runs else None
    if ensemble is not None:
        decoder, where, chosen = ensemble.learned_decoder(), ensemble.decoder_path, True
    elif run is not None:
        decoder, where, chosen = run.learned_decoder() if (mode == "learned" or run.uses_learned_decoder()) else None, run.decoder_path, run.uses_learned_decoder()
    else:
        decoder, where, chosen = None, None, False
    if mode == "learned" and decoder is None:
        if ensemble is None and run is None and len(members) > 1:
            raise UsageError("learned decoding was asked for, but a run's learned decoder is not the blend's; fit one on the "
                             "blend with fbp ensemble RUNS --fit-weights --save-dir DIR, then predict with DIR")
        owner = ensemble.path if ensemble is not None else run.path if run is not None else members[0].source
        missing = f" ({Path(where).name} is missing)" if where is not None else ""
        raise UsageError(f"learned decoding was asked for, but {owner} has no learned decoder{missing}; "
                         "fbp train fits one, and fbp evaluate RUN --tune fits one for a run made before")
    if decoder is not None and (chosen or mode == "learned"):
        return decoding, decoder, f"learned decoder {where}"
    return decoding, None, f"thresholds from {source}"


class WordProbSum:
    """The running weighted sum of every essay's word probabilities, memory-mapped in a scratch directory."""

    def __init__(self, n_words: Sequence[int], scratch_dir: Path):
        self.offsets = np.concatenate([[0], np.cumsum(n_words)]).astype(np.int64)
        scratch = scratch_dir / "word_prob_sum.npy"
        self.rows = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=(int(self.offsets[-1]), NUM_LABELS))
        # A memory-mapped file is sparse: a disk that fills while it is written kills the process (SIGBUS). Its
        # blocks are reserved now instead, so a full disk is one message before any prediction.
        from .atomic import reserve_space

        handle = os.open(scratch, os.O_RDWR)
        try:
            reserve_space(handle, os.fstat(handle).st_size, scratch)
        finally:
            os.close(handle)

    def add(self, essay_index: int, word_probs: np.ndarray, weight: float) -> None:
        start, end = self.offsets[essay_index], self.offsets[essay_index + 1]
        if len(word_probs) != end - start:
            raise FbpError(f"essay {essay_index}: {len(word_probs)} word probabilities for {end - start} words")
        self.rows[start:end] += weight * word_probs

    def essay(self, essay_index: int) -> np.ndarray:
        return np.asarray(self.rows[self.offsets[essay_index] : self.offsets[essay_index + 1]])


def predict_members(
    members: Sequence[Member],
    weights: Sequence[float],
    essays: EssayDir,
    total: WordProbSum,
    batch_size: int,
    device: str,
    on_checkpoint: Optional[Callable[[Path, "CheckpointMeta"], Optional[Progress]]] = None,  # noqa: F821
    runtime: str = "auto",
) -> Dict[str, str]:
    """Add every member's word probabilities, times its weight, to ``total``; folds of a member share its weight.

    ``on_checkpoint(path, meta)`` is called as each checkpoint starts predicting; what it returns (if not None)
    is called with the essays done as prediction advances. ``runtime``: torch, onnx, onnx-int8 or auto (see
    :mod:`fbp.onnx_runtime`). Returns each checkpoint's runtime and why it was chosen.
    """
    from .io.checkpoint import load_checkpoint, read_checkpoint_meta
    from .io.word_probs import load_word_probs
    from .onnx_runtime import choose_runtime, onnx_word_probs
    from .tokenizer_json import TokenizerJson
    from .word_probs import predict_word_probs

    # Every checkpoint's runtime is settled before any model runs, so a missing export fails at once.
    choices = {checkpoint: choose_runtime(checkpoint, runtime, device) for member in members for checkpoint in member.checkpoints}
    runtimes = {str(checkpoint): f"{choice.runtime} ({choice.reason})" for checkpoint, choice in choices.items()}
    for member, weight in zip(members, weights):
        if member.probs_file is not None:
            stored = load_word_probs(member.probs_file)
            missing = [essay_id for essay_id in essays.ids if essay_id not in stored]
            if missing:
                raise FbpError(f"{member.probs_file} has no word probabilities for essay {missing[0]} ({len(missing)} missing)")
            for essay_index, essay_id in enumerate(essays.ids):
                total.add(essay_index, stored[essay_id], weight)
            continue
        for checkpoint_dir in member.checkpoints:
            choice = choices[checkpoint_dir]
            if choice.runtime == "torch":
                checkpoint = load_checkpoint(checkpoint_dir, device=device)
                meta = checkpoint.meta
                on_progress = on_checkpoint(checkpoint_dir, meta) if on_checkpoint is not None else None
                predictions = predict_word_probs(
                    checkpoint.model, checkpoint.tokenizer, essays, meta.max_length, meta.stride, batch_size, device, on_progress
                )
            else:
                checkpoint, meta = None, read_checkpoint_meta(checkpoint_dir)
                on_progress = on_checkpoint(checkpoint_dir, meta) if on_checkpoint is not None else None
                tokenizer = TokenizerJson(checkpoint_dir) if choice.tokenizer_json else _checkpoint_tokenizer(checkpoint_dir)
                predictions = onnx_word_probs(choice.model_path, tokenizer, essays, meta.max_length, meta.stride, batch_size, on_progress)
            for essay_index, word_probs in predictions:
                total.add(essay_index, word_probs, weight / len(member.checkpoints))
            del checkpoint, predictions
    return runtimes


def _checkpoint_tokenizer(checkpoint_dir: Path):
    """A checkpoint's fast tokenizer alone (the ONNX runtimes need no PyTorch model)."""
    from transformers import AutoTokenizer

    from .model import quiet_transformers

    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
    except (OSError, ValueError) as error:
        raise FbpError(f"cannot load the tokenizer of {checkpoint_dir}: {str(error).splitlines()[0]}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise FbpError(f"{checkpoint_dir}: the tokenizer is not a fast tokenizer")
    return tokenizer


def decode_all(essays: EssayDir, total: WordProbSum, decoding: ThresholdConfig, decoder=None) -> "pd.DataFrame":  # noqa: F821
    """Spans of every essay, decoded a chunk of essays at a time (with ``decoder``, a learned decoder, when given)."""
    import pandas as pd

    from .decode import decode_essays

    frames = []
    for start in range(0, len(essays.ids), DECODE_CHUNK):
        chunk = {essays.ids[i]: total.essay(i) for i in range(start, min(start + DECODE_CHUNK, len(essays.ids)))}
        frames.append(decoder.decode(chunk) if decoder is not None else decode_essays(chunk, decoding))
    spans = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SPAN_COLUMNS)
    return spans[SPAN_COLUMNS]


@dataclass
class PredictionResult:
    """What an ``infer``/``ensemble`` run produced, for the CLI's record."""

    essays: int
    spans: "pd.DataFrame"  # noqa: F821
    output: Optional[Path]
    probs_file: Optional[Path]
    html_dir: Optional[Path]
    decoding: ThresholdConfig
    decoding_source: str
    checkpoints: int
    warnings: List[str] = field(default_factory=list)  # things the user should know (empty essays, unfinished runs)
    learned: bool = False  # decoded by a learned decoder (decoding_source names it), not by the thresholds
    runtimes: Dict[str, str] = field(default_factory=dict)  # checkpoint -> the runtime that predicted it, and why


def predict_directory(
    paths: Sequence[Path],
    input_dir: Path,
    output: Optional[Path] = Path("submission.csv"),
    weights: Optional[Sequence[float]] = None,
    save_probs: Optional[Path] = None,
    html_dir: Optional[Path] = None,
    truth: Optional[Path] = None,
    batch_size: Optional[int] = None,
    device: str = "cpu",
    decoding_file: Optional[Path] = None,
    on_checkpoint: Optional[Callable[[Path, "CheckpointMeta"], Optional[Progress]]] = None,  # noqa: F821
    decoding_mode: str = "auto",
    blend_decoder=None,
    runtime: str = "auto",
) -> PredictionResult:
    """Predict every ``input_dir/*.txt`` with the weighted average of the members, decode, write the outputs.

    ``weights``: one per member (default: equal). ``device``: where the models run (see :mod:`fbp.device`).
    ``on_checkpoint``: see :func:`predict_members`. ``decoding_mode``: see :func:`resolve_decoder`. A saved
    ensemble directory (``fbp ensemble --fit-weights --save-dir``), given alone, brings its members, weights
    and decoder. ``blend_decoder``: a learned decoder just fitted on these members' blend (``fbp ensemble
    --fit-weights`` without ``--save-dir``), used unless ``decoding_mode`` asks for thresholds or argmax.
    ``runtime``: what runs the checkpoints (torch, onnx, onnx-int8, auto; :mod:`fbp.onnx_runtime`). ``batch_size``:
    windows per forward pass (None: the device's default, :func:`fbp.device.predict_batch_size`).
    """
    from .atomic import guard_output, outputs_together, remove_stale_temporaries, temporary_prefix
    from .html import check_report_dir
    from .io.kaggle import read_span_file
    from .io.submission import write_submission
    from .io.word_probs import probs_path, save_word_probs
    from .device import predict_batch_size
    from .word_probs import normalise_weights

    batch_size = predict_batch_size(batch_size, device)
    # Every output is checked before any work, so a bad one is not found after minutes of prediction.
    # One rule for all of them (fbp.atomic.guard_output): never a link, an input, or inside a run directory.
    inputs = [*paths, input_dir, truth, decoding_file]
    if output is not None:
        guard_output(output, "submission", inputs)
    if save_probs is not None:
        guard_output(probs_path(save_probs), "word probabilities", inputs)
    if html_dir is not None:
        guard_output(html_dir, "HTML report", inputs, directory=True)
        check_report_dir(html_dir)
    from .onnx_runtime import RUNTIMES

    if runtime not in RUNTIMES:
        raise UsageError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    paths, weights, ensemble = expand_ensemble_dir(paths, weights)
    members = resolve_members(paths)
    member_weights = normalise_weights(weights, len(members))
    decoding, decoder, decoding_source = resolve_decoder(members, decoding_mode, decoding_file, ensemble)
    if blend_decoder is not None and decoding_mode in ("auto", "learned") and decoding_file is None:
        decoder, decoding_source = blend_decoder, "learned decoder fitted on the blend's out-of-fold probabilities just now"
    essays = EssayDir.scan(input_dir)
    truth_spans = read_span_file(truth, "truth")[0] if truth is not None else None
    warnings = [warning for member in members for warning in _unfinished_run_warnings(member)]
    if essays.skipped:
        shown = ", ".join(essays.skipped[:5]) + (", ..." if len(essays.skipped) > 5 else "")
        warnings.append(f"skipped {len(essays.skipped)} *.txt name(s) in {input_dir} that are not regular files ({shown}): folders, named pipes or dangling links")
    if essays.empty:
        shown = ", ".join(f"{essay_id}.txt" for essay_id in essays.empty[:5]) + (", ..." if len(essays.empty) > 5 else "")
        warnings.append(f"{len(essays.empty)} empty essay(s) ({shown}): no words, so no spans predicted for them")
    # The scratch file goes beside the output (same disk). Scratch folders of killed runs (.fbp-infer.tmp-HOST-PID-*)
    # are removed here; folders made for the output are removed again if the work fails.
    scratch_parent = Path(output).parent if output is not None else None
    created = _make_folders(scratch_parent) if scratch_parent is not None else []
    try:
        if scratch_parent is not None:
            remove_stale_temporaries(scratch_parent, "fbp-infer")
        # All outputs are written to temporaries and put in place together at the end: a command that fails
        # (the HTML view, a full disk) replaces none of them.
        with outputs_together(), tempfile.TemporaryDirectory(prefix=temporary_prefix("fbp-infer"), dir=scratch_parent) as scratch:
            total = WordProbSum(essays.n_words, Path(scratch))
            runtimes = predict_members(members, member_weights, essays, total, batch_size, device, on_checkpoint, runtime)
            spans = decode_all(essays, total, decoding, decoder)
            if output is not None:
                write_submission(output, spans)
            saved = None
            if save_probs is not None:
                saved = probs_path(save_probs)
                save_word_probs(saved, {essay_id: total.essay(i) for i, essay_id in enumerate(essays.ids)})
            if html_dir is not None:
                from .html import write_html_report

                write_html_report(html_dir, zip(essays.ids, essays.texts()), spans, truth_spans)
    except BaseException:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                break  # not empty: something was written there after all
        raise
    n_checkpoints = sum(len(member.checkpoints) for member in members)
    return PredictionResult(len(essays.ids), spans, output, saved, html_dir, decoding, decoding_source, n_checkpoints, warnings, decoder is not None, runtimes)


def expand_ensemble_dir(paths: Sequence[Path], weights: Optional[Sequence[float]]):
    """A saved ensemble directory given alone -> (its members, its weights, the EnsembleDir); other paths unchanged."""
    from .io.ensemble_dir import EnsembleDir, is_ensemble_dir

    if not any(is_ensemble_dir(Path(path)) for path in paths):
        return list(paths), weights, None
    if len(paths) > 1:
        raise UsageError("an ensemble directory brings its own members and weights: give it alone")
    if weights is not None:
        raise UsageError(f"{paths[0]} holds fitted weights; other weights cannot be combined with it")
    ensemble = EnsembleDir(Path(paths[0]))
    return ensemble.members, ensemble.weights, ensemble


def _make_folders(folder: Path) -> List[Path]:
    """Create ``folder`` and its missing parents; return the ones created (outermost first)."""
    missing = []
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as error:
            raise FbpError(f"cannot create {path}: {error.strerror or error}") from None
    return list(reversed(missing))


def _unfinished_run_warnings(member: Member) -> List[str]:
    """A run directory whose training did not finish: say how many of its folds are used."""
    from .io.processed import read_processed_meta
    from .io.run_dir import RunDir

    if member.run_dir is None or not member.checkpoints:
        return []
    run = RunDir(member.run_dir)
    record = run.read_record()
    if record is None or record.status == "complete":
        return []
    data = run.read_config().get("data") or {}
    total = data.get("folds")
    if total is None and run.processed_dir() is not None:
        total = (read_processed_meta(run.processed_dir()) or {}).get("folds")
    used = len(member.checkpoints)
    of = f"{used} of {total} folds" if total else f"{used} fold(s)"
    return [f"run {member.run_dir} is not finished (status {record.status}): using {of}"]
