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

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .config import DecodingConfig
from .errors import FbpError, UsageError
from .io.checkpoint import check_label_sets, checkpoint_decoding, checkpoint_run, expand_checkpoints
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


def resolve_decoding(members: Sequence[Member], decoding_file: Optional[Path] = None) -> Tuple[DecodingConfig, str]:
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
    return DecodingConfig(), "fbp's defaults"


class WordProbSum:
    """The running weighted sum of every essay's word probabilities, memory-mapped in a scratch directory."""

    def __init__(self, n_words: Sequence[int], scratch_dir: Path):
        self.offsets = np.concatenate([[0], np.cumsum(n_words)]).astype(np.int64)
        self.rows = np.lib.format.open_memmap(scratch_dir / "word_prob_sum.npy", mode="w+", dtype=np.float32, shape=(int(self.offsets[-1]), NUM_LABELS))

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
) -> None:
    """Add every member's word probabilities, times its weight, to ``total``; folds of a member share its weight.

    ``on_checkpoint(path, meta)`` is called as each checkpoint starts predicting; what it returns (if not None)
    is called with the essays done as prediction advances.
    """
    from .io.checkpoint import load_checkpoint
    from .io.word_probs import load_word_probs
    from .word_probs import predict_word_probs

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
            checkpoint = load_checkpoint(checkpoint_dir, device=device)
            meta = checkpoint.meta
            on_progress = on_checkpoint(checkpoint_dir, meta) if on_checkpoint is not None else None
            predictions = predict_word_probs(
                checkpoint.model, checkpoint.tokenizer, essays, meta.max_length, meta.stride, batch_size, device, on_progress
            )
            for essay_index, word_probs in predictions:
                total.add(essay_index, word_probs, weight / len(member.checkpoints))
            del checkpoint


def decode_all(essays: EssayDir, total: WordProbSum, decoding: DecodingConfig) -> "pd.DataFrame":  # noqa: F821
    """Spans of every essay, decoded a chunk of essays at a time."""
    import pandas as pd

    from .decode import decode_essays

    frames = []
    for start in range(0, len(essays.ids), DECODE_CHUNK):
        chunk = {essays.ids[i]: total.essay(i) for i in range(start, min(start + DECODE_CHUNK, len(essays.ids)))}
        frames.append(decode_essays(chunk, decoding))
    spans = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SPAN_COLUMNS)
    return spans[SPAN_COLUMNS]


@dataclass
class PredictionResult:
    """What an ``infer``/``ensemble`` run produced, for the CLI's summary."""

    essays: int
    spans: "pd.DataFrame"  # noqa: F821
    output: Optional[Path]
    probs_file: Optional[Path]
    html_dir: Optional[Path]
    decoding: DecodingConfig
    decoding_source: str
    checkpoints: int


def predict_directory(
    paths: Sequence[Path],
    input_dir: Path,
    output: Optional[Path] = Path("submission.csv"),
    weights: Optional[Sequence[float]] = None,
    save_probs: Optional[Path] = None,
    html_dir: Optional[Path] = None,
    truth: Optional[Path] = None,
    batch_size: int = 16,
    device: str = "cpu",
    decoding_file: Optional[Path] = None,
    on_checkpoint: Optional[Callable[[Path, "CheckpointMeta"], Optional[Progress]]] = None,  # noqa: F821
) -> PredictionResult:
    """Predict every ``input_dir/*.txt`` with the weighted average of the members, decode, write the outputs.

    ``weights``: one per member (default: equal). ``device``: where the models run (see :mod:`fbp.device`).
    ``on_checkpoint``: see :func:`predict_members`.
    """
    from .io.kaggle import read_span_file
    from .io.submission import write_submission
    from .io.word_probs import probs_path, save_word_probs
    from .word_probs import normalise_weights

    if batch_size < 1:
        raise UsageError(f"the batch size must be at least 1, got {batch_size}")
    members = resolve_members(paths)
    member_weights = normalise_weights(weights, len(members))
    decoding, decoding_source = resolve_decoding(members, decoding_file)
    essays = EssayDir.scan(input_dir)
    truth_spans = read_span_file(truth, "truth")[0] if truth is not None else None
    scratch_parent = Path(output).parent if output is not None else None
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fbp-infer-", dir=scratch_parent) as scratch:
        total = WordProbSum(essays.n_words, Path(scratch))
        predict_members(members, member_weights, essays, total, batch_size, device, on_checkpoint)
        spans = decode_all(essays, total, decoding)
        if output is not None:
            write_submission(output, spans)
        saved = None
        if save_probs is not None:
            saved = probs_path(save_probs)
            save_word_probs(saved, {essay_id: total.essay(i) for i, essay_id in enumerate(essays.ids)})
    if html_dir is not None:
        from .html import write_html_report

        write_html_report(html_dir, zip(essays.ids, essays.texts()), spans, truth_spans)
    n_checkpoints = sum(len(member.checkpoints) for member in members)
    return PredictionResult(len(essays.ids), spans, output, saved, html_dir, decoding, decoding_source, n_checkpoints)
