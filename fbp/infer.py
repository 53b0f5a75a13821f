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

import csv
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_file
from .config import DecodingConfig, read_decoding, validate_decoding
from .errors import FbpError, UsageError
from .labels import LABELS, NUM_LABELS
from .model import expand_checkpoints, read_checkpoint_meta

SUBMISSION_COLUMNS = ["id", "class", "predictionstring"]
DECODE_CHUNK = 1000  # essays decoded at a time when writing the submission


@dataclass
class EssayDir:
    """The ``*.txt`` essays of a directory, checked up front (UTF-8, not empty) and read again on demand."""

    directory: Path
    ids: List[str]
    n_words: List[int]

    @classmethod
    def scan(cls, directory: Path) -> "EssayDir":
        directory = Path(directory)
        if not directory.is_dir():
            raise FbpError(f"text directory {directory} does not exist" if not directory.exists() else f"{directory} is not a directory")
        paths = sorted(directory.glob("*.txt"))
        if not paths:
            raise FbpError(f"{directory} has no *.txt essays")
        n_words = [len(_read_essay(path).split()) for path in paths]
        return cls(directory, [path.stem for path in paths], n_words)

    def texts(self) -> Iterator[str]:
        """The essays' texts in ``ids`` order, read one at a time."""
        return (_read_essay(self.directory / f"{essay_id}.txt") for essay_id in self.ids)

    # Iterating yields the texts; the length lets a progress bar show a total while essays stream.
    __iter__ = texts

    def __len__(self) -> int:
        return len(self.ids)


def _read_essay(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise FbpError(f"essay {path.name} is not valid UTF-8 (byte {error.start})") from None
    if not text.split():
        raise FbpError(f"essay {path.name} is empty")
    return text


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
        parents = {checkpoint.parent for checkpoint in checkpoints}
        run_dir = parents.pop() if len(parents) == 1 else None
        return cls(path, checkpoints=checkpoints, run_dir=run_dir if run_dir is not None and (run_dir / "run.json").exists() else None)


def resolve_members(paths: Sequence[Path]) -> List[Member]:
    """Members from paths: checkpoints, run directories (all their folds) or ``.npz`` word probabilities."""
    if not paths:
        raise UsageError("give at least one checkpoint, run directory or word-probabilities file")
    members = [Member.from_path(Path(path)) for path in paths]
    check_label_sets([checkpoint for member in members for checkpoint in member.checkpoints])
    return members


def check_label_sets(checkpoints: Sequence[Path]) -> None:
    """Every checkpoint must predict fbp's 15 labels in the same order, or their probabilities cannot be averaged."""
    for checkpoint in checkpoints:
        labels = read_checkpoint_meta(checkpoint)["labels"]
        if tuple(labels) != LABELS:
            extra = sorted(set(labels) - set(LABELS)) or labels
            raise FbpError(f"checkpoint {checkpoint} has a different label set ({len(labels)} labels, e.g. {extra[:3]}) than fbp's {NUM_LABELS}; they cannot be combined")


def parse_weights(raw: Optional[Sequence[str]], n_members: int) -> List[float]:
    """``--weights 0.6,0.4`` or ``--weights 0.6 --weights 0.4`` -> floats, one per member (default: equal)."""
    if not raw:
        return [1.0 / n_members] * n_members
    try:
        weights = [float(part) for item in raw for part in str(item).split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--weights must be numbers, got {','.join(raw)}") from None
    if len(weights) != n_members:
        raise UsageError(f"{len(weights)} weights for {n_members} models; give one weight per checkpoint, run or probabilities file")
    if any(weight < 0 for weight in weights) or sum(weights) <= 0:
        raise UsageError(f"weights must be non-negative and not all zero, got {weights}")
    return [weight / sum(weights) for weight in weights]


def resolve_decoding(members: Sequence[Member], decoding_file: Optional[Path] = None) -> Tuple[DecodingConfig, str]:
    """The decoding thresholds and where they come from: ``decoding_file`` if given, else the first
    run's ``decoding.json`` (tuned thresholds land there), else the first checkpoint's ``fbp.json``,
    else fbp's defaults."""
    if decoding_file is not None:
        return read_decoding(Path(decoding_file)), str(decoding_file)
    for member in members:
        if member.run_dir is not None and (member.run_dir / "decoding.json").exists():
            return read_decoding(member.run_dir / "decoding.json"), str(member.run_dir / "decoding.json")
        if member.checkpoints:
            source = member.checkpoints[0] / "fbp.json"
            stored = read_checkpoint_meta(member.checkpoints[0]).get("decoding")
            if stored:
                return validate_decoding(stored, str(source)), str(source)
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
    progress: bool = True,
) -> None:
    """Add every member's word probabilities, times its weight, to ``total``; folds of a member share its weight."""
    from .model import load_checkpoint
    from .word_probs import load_word_probs, predict_word_probs

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
            if progress:
                from rich.console import Console

                Console(stderr=True).print(f"[bold]{checkpoint_dir}[/] (windows of {meta['max_length']}, stride {meta['stride']})")
            predictions = predict_word_probs(
                checkpoint.model, checkpoint.tokenizer, essays, meta["max_length"], meta["stride"], batch_size, device, progress
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
    spans = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUBMISSION_COLUMNS)
    return spans[SUBMISSION_COLUMNS]


def write_submission(path: Path, spans: "pd.DataFrame") -> None:  # noqa: F821
    """Write ``id,class,predictionstring`` atomically (an essay with no span simply has no row)."""
    with atomic_file(Path(path), newline="") as file:
        spans[SUBMISSION_COLUMNS].to_csv(file, index=False, quoting=csv.QUOTE_MINIMAL)


def probs_path(target: Path) -> Path:
    """``--save-probs``: a ``.npz`` file as given, or ``word_probs.npz`` inside a directory."""
    target = Path(target)
    return target if target.suffix == ".npz" else target / "word_probs.npz"


def default_device(device: Optional[str]) -> str:
    """``cuda`` when a GPU is there and no device was asked for, else ``cpu``."""
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
    return device


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
    weights: Optional[Sequence[str]] = None,
    save_probs: Optional[Path] = None,
    html_dir: Optional[Path] = None,
    truth: Optional[Path] = None,
    batch_size: int = 16,
    device: Optional[str] = None,
    decoding_file: Optional[Path] = None,
    progress: bool = True,
) -> PredictionResult:
    """Predict every ``input_dir/*.txt`` with the weighted average of the members, decode, write the outputs."""
    from .word_probs import save_word_probs

    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    members = resolve_members(paths)
    member_weights = parse_weights(weights, len(members))
    decoding, decoding_source = resolve_decoding(members, decoding_file)
    essays = EssayDir.scan(input_dir)
    truth_spans = read_truth(truth) if truth is not None else None
    device = default_device(device)
    scratch_parent = Path(output).parent if output is not None else None
    if scratch_parent is not None:
        scratch_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fbp-infer-", dir=scratch_parent) as scratch:
        total = WordProbSum(essays.n_words, Path(scratch))
        predict_members(members, member_weights, essays, total, batch_size, device, progress)
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


def read_truth(path: Path) -> "pd.DataFrame":  # noqa: F821
    """Ground-truth spans from a ``train.csv``-style file (``discourse_type`` or ``class``)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise FbpError(f"cannot read truth file {path}: {error}") from None
    frame = frame.rename(columns={"discourse_type": "class"})
    missing = [column for column in SUBMISSION_COLUMNS if column not in frame.columns]
    if missing:
        raise FbpError(f"truth file {path} lacks column(s) {', '.join(missing)} (needs id, class or discourse_type, predictionstring)")
    return frame[SUBMISSION_COLUMNS]
