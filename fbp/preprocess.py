"""The preprocess stage: validate the Kaggle layout, make word labels and folds, write the processed dataset.

Reading the files is :mod:`fbp.io.kaggle`; writing the dataset is :mod:`fbp.io.processed`.

Everything meets at the word level: words are ``text.split()``, a span is a contiguous range of word
indices (the ``predictionstring``), and each essay gets one BIO label per word.

Validation collects every problem before giving up: *errors* (the data cannot be used as it is) raise
one :class:`~fbp.errors.FbpError` listing them all with counts and examples, and nothing is written;
*warnings* (known quirks of real annotations, such as offsets that start inside a word) are counted,
shown and stored in ``meta.json``. See docs/data.md for which is which and why.

The work is vectorised over the whole corpus: all texts are joined into one array of code points, so
word boundaries, offset checks and labels of all 14k essays are a handful of numpy operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import __version__
from .errors import FbpError
from .io.kaggle import read_table, read_texts, unlisted_text_files
from .io.processed import write_processed
from .labels import CLASSES, begin_id, inside_id

EXAMPLES_SHOWN = 5
# Code points that str.split() treats as whitespace (all of them are below U+3001).
_WHITESPACE_TABLE = np.array([chr(code).isspace() for code in range(0x3002)], dtype=bool)
_WHITESPACE_TABLE[-1] = False  # the bucket for every code point above U+3000
_BEGIN_IDS = np.array([begin_id(index) for index in range(len(CLASSES))], dtype=np.int8)
_INSIDE_IDS = np.array([inside_id(index) for index in range(len(CLASSES))], dtype=np.int8)


@dataclass
class Finding:
    """One kind of problem found in the data: how many rows or essays have it, and the first few."""

    key: str
    message: str
    count: int
    examples: list[str]

    def __str__(self) -> str:
        shown = ", ".join(self.examples[:EXAMPLES_SHOWN])
        more = ", ..." if self.count > EXAMPLES_SHOWN else ""
        return f"{self.count} {self.message} (e.g. {shown}{more})"


@dataclass
class Findings:
    """Errors and warnings collected while validating a Kaggle layout."""

    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, key: str, message: str, examples: Sequence[str], count: Optional[int] = None) -> None:
        """Record a finding if ``examples`` is not empty (``count`` defaults to ``len(examples)``)."""
        count = len(examples) if count is None else count
        if count:
            target = self.errors if severity == "error" else self.warnings
            target.append(Finding(key, message, count, [str(example) for example in list(examples)[:EXAMPLES_SHOWN]]))

    def add_rows(self, severity: str, key: str, message: str, table, mask: np.ndarray, detail: Optional[Callable] = None) -> None:
        """Record the rows of ``table`` selected by ``mask`` (count and the first few, with ``detail(row)``)."""
        self.add(severity, key, message, _row_examples(table, mask, detail), count=int(np.count_nonzero(mask)))

    def raise_errors(self, where: Path) -> None:
        """Raise one FbpError listing every error, if there is any."""
        if self.errors:
            lines = "\n".join(f"  - {finding}" for finding in self.errors)
            raise FbpError(f"{where} is not usable ({len(self.errors)} kinds of problem, nothing written):\n{lines}")


@dataclass
class PreprocessSummary:
    """What ``preprocess`` wrote, for the CLI summary."""

    output_dir: Path
    essays: int
    words: int
    folds: int
    seed: int
    spans_per_class: dict[str, int]
    essays_per_fold: list[int]
    spans_per_fold: list[dict[str, int]]
    warnings: list[Finding]
    skipped_text_files: int


# ---------------------------------------------------------------------------------------------------
# Folds
# ---------------------------------------------------------------------------------------------------


def assign_folds(essay_ids: Sequence[str], spans: "pd.DataFrame", n_folds: int = 5, seed: int = 42) -> np.ndarray:  # noqa: F821
    """Fold number of each essay in ``essay_ids``, stratified on the set of classes each essay contains.

    ``spans`` needs columns ``id`` and ``class`` (as in ``ProcessedData.spans``). Uses iterative
    stratification (``iterstrat.MultilabelStratifiedKFold``); the same ids, spans and seed always give
    the same folds, so this can re-fold a processed dataset with another number of folds.
    """
    import pandas as pd
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    essay_ids = list(essay_ids)
    if n_folds < 2:
        raise FbpError(f"need at least 2 folds, got {n_folds}")
    if n_folds > len(essay_ids):
        raise FbpError(f"cannot make {n_folds} folds from {len(essay_ids)} essays")
    present = np.zeros((len(essay_ids), len(CLASSES)), dtype=np.int64)
    essay_of_span = pd.Index(essay_ids).get_indexer(spans["id"])
    class_of_span = pd.Index(CLASSES).get_indexer(spans["class"])
    known = (essay_of_span >= 0) & (class_of_span >= 0)
    present[essay_of_span[known], class_of_span[known]] = 1
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.empty(len(essay_ids), dtype=np.int64)
    for fold, (_, validation_rows) in enumerate(splitter.split(np.zeros(len(essay_ids)), present)):
        folds[validation_rows] = fold
    return folds


# ---------------------------------------------------------------------------------------------------
# Validating the Kaggle layout
# ---------------------------------------------------------------------------------------------------


def _row_examples(table: "pd.DataFrame", mask: np.ndarray, detail: Optional[Callable] = None) -> list[str]:  # noqa: F821
    """'row N (id X)' for the first few rows in ``mask`` (N: the row number in train.csv, from 1 after the header)."""
    examples = []
    for row in np.flatnonzero(mask)[:EXAMPLES_SHOWN]:
        extra = f": {detail(row)}" if detail else ""
        examples.append(f"row {table['row'].iat[row]} (id {table['id'].iat[row]}){extra}")
    return examples


@dataclass
class _Corpus:
    """Word boundaries of all essays, found at once on the joined texts (a newline between essays)."""

    char_start: np.ndarray  # first character of each essay in the joined text
    text_length: np.ndarray
    first_word: np.ndarray  # global index of each essay's first word
    n_words: np.ndarray
    word_starts: np.ndarray  # global character positions of every word
    word_ends: np.ndarray
    is_space: np.ndarray  # per character of the joined text

    @classmethod
    def from_texts(cls, texts: Sequence[str]) -> "_Corpus":
        text_length = np.fromiter((len(text) for text in texts), dtype=np.int64, count=len(texts))
        char_start = np.concatenate(([0], np.cumsum(text_length + 1)[:-1]))
        code_points = np.frombuffer("\n".join(texts).encode("utf-32-le"), dtype=np.uint32)
        is_space = _WHITESPACE_TABLE[np.minimum(code_points, len(_WHITESPACE_TABLE) - 1)]
        word_char = ~is_space
        word_starts = np.flatnonzero(word_char & np.concatenate(([True], is_space[:-1])))
        word_ends = np.flatnonzero(word_char & np.concatenate((is_space[1:], [True]))) + 1
        first_word = np.searchsorted(word_starts, char_start)
        n_words = np.diff(np.append(first_word, len(word_starts)))
        return cls(char_start, text_length, first_word, n_words, word_starts, word_ends, is_space)

    def trailing_whitespace(self) -> np.ndarray:
        """Characters after each essay's last word (its whole length when it has no word)."""
        last_word = np.maximum(self.first_word + self.n_words - 1, 0)
        last_end = self.word_ends[last_word] - self.char_start if len(self.word_ends) else np.zeros_like(self.text_length)
        return np.where(self.n_words > 0, self.text_length - last_end, self.text_length)

    def words_covered(self, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global word range [first, last] that character ranges cover, a word counting when at least half of it is covered."""
        if len(self.word_starts) == 0:
            return np.zeros_like(start), np.full_like(start, -1)
        first = np.searchsorted(self.word_ends, start, side="right")  # first word ending after start
        last = np.searchsorted(self.word_starts, end, side="left") - 1  # last word starting before end
        first_in_range = np.minimum(first, len(self.word_starts) - 1)
        last_in_range = np.maximum(last, 0)

        def less_than_half(word: np.ndarray) -> np.ndarray:
            covered = np.minimum(self.word_ends[word], end) - np.maximum(self.word_starts[word], start)
            return 2 * covered < self.word_ends[word] - self.word_starts[word]

        return first + less_than_half(first_in_range), last - less_than_half(last_in_range)


def _parse_offsets(table, findings: Findings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer start and end offsets and the mask of rows that have them (the original Kaggle file writes '8.0')."""
    import pandas as pd

    start = pd.to_numeric(table["discourse_start"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    end = pd.to_numeric(table["discourse_end"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    # Integers a float holds exactly (|x| < 2**53): 1e300 is "integral" as a float but no offset, and would overflow int64.
    in_range = (np.abs(np.nan_to_num(start, nan=0.0)) < 2.0**53) & (np.abs(np.nan_to_num(end, nan=0.0)) < 2.0**53)
    valid = np.isfinite(start) & np.isfinite(end) & in_range & (start == np.round(start)) & (end == np.round(end))
    findings.add_rows(
        "error", "bad_offsets", "rows whose discourse_start or discourse_end is not an integer character offset", table, ~valid,
        lambda row: f"{table['discourse_start'].iat[row]!r}, {table['discourse_end'].iat[row]!r}",
    )
    return np.where(valid, start, 0).astype(np.int64), np.where(valid, end, 0).astype(np.int64), valid


def _parse_predictionstrings(table, findings: Findings) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Word indices of every row, one row after the other; the count per row; the mask of rows that parsed;
    and the predictionstrings with single spaces, as Kaggle writes them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tokens_per_row = pc.utf8_split_whitespace(pa.array(table["predictionstring"], type=pa.string()))
    counts = pc.list_value_length(tokens_per_row).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = pc.list_flatten(tokens_per_row)
    token_ok = pc.and_(pc.ascii_is_decimal(tokens), pc.less_equal(pc.utf8_length(tokens), 9)).to_numpy(zero_copy_only=False)
    row_of_token = np.repeat(np.arange(len(table)), counts)
    valid = (counts > 0) & (np.bincount(row_of_token[~token_ok], minlength=len(table)) == 0)
    findings.add_rows(
        "error", "bad_predictionstring", "rows whose predictionstring is not space-separated word indices", table, ~valid,
        lambda row: repr(table["predictionstring"].iat[row][:40]),
    )
    indices = pc.if_else(pa.array(token_ok), tokens, "0").cast(pa.int64()).to_numpy()
    normalised = pc.binary_join(tokens_per_row, " ").to_pylist()
    return indices, counts, valid, normalised


def _validate_and_label(table, essay_ids: np.ndarray, texts: list[str], essay_index: np.ndarray, findings: Findings):
    """Check every row against the texts (findings) and make the word labels of all essays.

    ``essay_index`` is the position in ``essay_ids``/``texts`` of each row's essay. Returns the corpus
    word boundaries and one label per word of all essays, one essay after the other.
    """
    corpus = _Corpus.from_texts(texts)

    class_of_row = table["discourse_type"].map({name: index for index, name in enumerate(CLASSES)})
    known_class = class_of_row.notna().to_numpy()
    unknown_types = table["discourse_type"][~known_class].value_counts()
    findings.add(
        "error", "unknown_discourse_type", f"rows with an unknown discourse_type (allowed: {', '.join(CLASSES)})",
        [f"{name!r} in {count} rows" for name, count in unknown_types.items()], count=int((~known_class).sum()),
    )
    class_of_row = class_of_row.fillna(0).to_numpy(dtype=np.int64)

    # Offsets: integers with 0 <= start < end <= len(text).
    start, end, offsets_parsed = _parse_offsets(table, findings)
    text_length = corpus.text_length[essay_index]
    reversed_ = offsets_parsed & ((start >= end) | (start < 0))
    findings.add_rows(
        "error", "reversed_offsets", "rows whose discourse_start is not before discourse_end (or is negative)", table,
        reversed_, lambda row: f"{start[row]}..{end[row]}",
    )
    # A start past the end leaves nothing of the span. An end past it by no more than the text's trailing whitespace
    # is clamped, as Python slicing does: the real train.csv has two such ends (8 and 11 characters past texts that
    # end in 12 whitespace characters; their texts lost some trailing whitespace). An end further out is an error:
    # the row does not describe this text.
    past_end = offsets_parsed & ~reversed_ & (start >= text_length)
    findings.add_rows(
        "error", "offsets_past_end", "rows whose discourse_start is at or past the end of the text", table, past_end,
        lambda row: f"start {start[row]} >= {text_length[row]} characters",
    )
    trailing = corpus.trailing_whitespace()[essay_index]
    overshoot = end - text_length
    end_far_past = offsets_parsed & ~reversed_ & ~past_end & (overshoot > trailing)
    findings.add_rows(
        "error", "end_far_past_text",
        "rows whose discourse_end is past the end of the text by more than its trailing whitespace", table, end_far_past,
        lambda row: f"discourse_end {end[row]}, the text has {text_length[row]} characters",
    )
    end_clamped = offsets_parsed & ~reversed_ & ~past_end & ~end_far_past & (overshoot > 0)
    findings.add_rows(
        "warning", "end_past_text", "spans whose discourse_end is a little past the end of the text (clamped to it)", table,
        end_clamped, lambda row: f"end {end[row]} > {text_length[row]} characters",
    )
    end = np.minimum(end, text_length)
    good_offsets = offsets_parsed & ~reversed_ & ~past_end & ~end_far_past

    # Predictionstrings: word indices in range, consecutive, and no word in two spans of one essay.
    indices, counts, parsed, normalised = _parse_predictionstrings(table, findings)
    row_of_index = np.repeat(np.arange(len(table)), counts)
    row_n_words = corpus.n_words[essay_index]
    out_of_range = parsed & (np.bincount(row_of_index[indices >= row_n_words[row_of_index]], minlength=len(table)) > 0)
    findings.add_rows(
        "error", "predictionstring_out_of_range", "rows whose predictionstring has a word index past the last word of the essay",
        table, out_of_range, lambda row: f"essay has {row_n_words[row]} words",
    )
    row_end = np.cumsum(counts)
    row_begin = row_end - counts
    # Rows without any index (reported above) read a neighbour's; they are never used.
    first_index = np.append(indices, 0)[row_begin]
    last_index = np.append(indices, 0)[np.maximum(row_end - 1, 0)]
    consecutive = np.ones(len(indices), dtype=bool)
    consecutive[1:] = np.diff(indices) == 1
    consecutive[row_begin[counts > 0]] = True
    not_contiguous = parsed & ~out_of_range & (np.bincount(row_of_index[~consecutive], minlength=len(table)) > 0)
    findings.add_rows(
        "error", "predictionstring_not_contiguous", "rows whose predictionstring is not a range of consecutive word indices",
        table, not_contiguous, lambda row: repr(table["predictionstring"].iat[row][:40]),
    )
    usable = parsed & ~out_of_range & ~not_contiguous & known_class
    usable_index = usable[row_of_index]
    global_word = (corpus.first_word[essay_index][row_of_index] + indices)[usable_index]
    shared_words = np.flatnonzero(np.bincount(global_word, minlength=len(corpus.word_starts)) > 1)
    overlapping_essays = np.unique(np.searchsorted(corpus.first_word, shared_words, side="right") - 1)
    findings.add(
        "error", "overlapping_spans", "essays with overlapping spans (a word in two predictionstrings)",
        list(essay_ids[overlapping_essays]),
    )

    # Warnings: offsets that do not start on a word boundary, or that cover other words than the predictionstring.
    char_start = corpus.char_start[essay_index] + np.where(good_offsets, start, 0)
    char_end = corpus.char_start[essay_index] + np.where(good_offsets, end, 1)
    starts_inside = good_offsets & (start > 0) & ~corpus.is_space[char_start] & ~corpus.is_space[np.maximum(char_start - 1, 0)]
    findings.add_rows("warning", "span_starts_inside_word", "spans whose discourse_start is inside a word", table, starts_inside)
    essay_first_word = corpus.first_word[essay_index]
    covered_first, covered_last = corpus.words_covered(char_start, char_end)
    covered_first -= essay_first_word
    covered_last -= essay_first_word
    disagree = good_offsets & usable & ((covered_first != first_index) | (covered_last != last_index))
    findings.add_rows(
        "warning", "offsets_disagree_with_predictionstring",
        "spans whose predictionstring is not the words their offsets cover (a word counts when half of it is covered)",
        table, disagree,
        lambda row: f"offsets give words {covered_first[row]}..{covered_last[row]}, predictionstring {first_index[row]}..{last_index[row]}",
    )

    labels = np.zeros(len(corpus.word_starts), dtype=np.int8)
    labels[global_word] = _INSIDE_IDS[class_of_row[row_of_index[usable_index]]]
    first_words = corpus.first_word[essay_index[usable]] + first_index[usable]
    labels[first_words] = _BEGIN_IDS[class_of_row[usable]]
    return corpus, labels, normalised


def preprocess(
    data_dir: Path,
    output_dir: Path = Path("data/processed"),
    n_folds: int = 5,
    seed: int = 42,
    on_stage: Callable[[str], None] = lambda stage: None,
) -> PreprocessSummary:
    """Validate the Kaggle layout in ``data_dir`` and write the processed dataset to ``output_dir``.

    Raises FbpError listing every problem (and writes nothing) when the data has errors. ``on_stage`` is
    called with a short description as each stage starts (for a progress display).
    """
    import pandas as pd
    import pyarrow as pa

    from .atomic import guard_output

    data_dir = Path(data_dir)
    guard_output(Path(output_dir), "output", inputs=[data_dir], directory=True)  # before any work
    findings = Findings()
    on_stage("reading train.csv")
    table = read_table(data_dir)
    empty_id = table["id"].str.strip() == ""
    findings.add_rows("error", "empty_id", "rows with an empty id", table, empty_id.to_numpy())
    table = table[~empty_id].reset_index(drop=True)
    essay_ids = np.sort(table["id"].unique())
    essay_index = np.searchsorted(essay_ids, table["id"].to_numpy())

    on_stage(f"reading {len(essay_ids):,} texts")
    text_dir = data_dir / "train"
    if not text_dir.is_dir():
        raise FbpError(f"{text_dir}: no such directory (the essays, one ID.txt per id in train.csv)")
    texts, missing, not_utf8 = read_texts(text_dir, essay_ids)
    findings.add("error", "missing_text", f"essay ids in train.csv without a text file in {text_dir}", missing)
    findings.add("error", "not_utf8", "text files that are not UTF-8", not_utf8)
    skipped_text_files = unlisted_text_files(text_dir, essay_ids)

    on_stage("validating spans and making word labels")
    has_text = np.array([text is not None for text in texts])
    if not has_text.any():
        findings.raise_errors(data_dir)
    row_has_text = has_text[essay_index]
    # Rows of essays whose text is missing were reported already; check the rest against their texts.
    checked = table[row_has_text].reset_index(drop=True)
    kept_essays = np.flatnonzero(has_text)
    corpus, labels, predictionstrings = _validate_and_label(
        checked, essay_ids[kept_essays], [texts[i] for i in kept_essays], np.searchsorted(kept_essays, essay_index[row_has_text]), findings
    )
    findings.raise_errors(data_dir)

    on_stage(f"assigning {n_folds} folds")
    spans = pd.DataFrame({"id": checked["id"], "class": checked["discourse_type"], "predictionstring": predictionstrings})
    folds = assign_folds(essay_ids, spans, n_folds, seed)

    on_stage(f"writing {output_dir}")
    word_offsets = np.append(corpus.first_word, len(labels)).astype(np.int64)
    essays = pa.table({
        "id": pa.array(essay_ids, type=pa.string()),
        "text": pa.array(texts, type=pa.large_string()),
        "fold": pa.array(folds, type=pa.int64()),
        "n_words": pa.array(corpus.n_words, type=pa.int64()),
        "word_labels": pa.LargeListArray.from_arrays(pa.array(word_offsets), pa.array(labels, type=pa.int8())),
    })
    meta = {
        "fbp_version": __version__, "source": str(data_dir.resolve()), "folds": n_folds, "seed": seed,
        "essays": len(essay_ids), "words": int(len(labels)), "spans": len(spans),
        "warnings": {finding.key: finding.count for finding in findings.warnings},
    }
    if skipped_text_files:
        meta["warnings"]["text_files_without_rows"] = skipped_text_files

    write_processed(Path(output_dir), essays, spans, meta)

    fold_of_span = folds[np.searchsorted(essay_ids, spans["id"].to_numpy())]
    class_of_span = pd.Index(CLASSES).get_indexer(spans["class"])
    per_fold = np.zeros((n_folds, len(CLASSES)), dtype=np.int64)
    np.add.at(per_fold, (fold_of_span, class_of_span), 1)
    return PreprocessSummary(
        output_dir=Path(output_dir),
        essays=len(essay_ids),
        words=int(len(labels)),
        folds=n_folds,
        seed=seed,
        spans_per_class={name: int(per_fold[:, index].sum()) for index, name in enumerate(CLASSES)},
        essays_per_fold=np.bincount(folds, minlength=n_folds).tolist(),
        spans_per_fold=[{name: int(per_fold[fold, index]) for index, name in enumerate(CLASSES)} for fold in range(n_folds)],
        warnings=findings.warnings,
        skipped_text_files=skipped_text_files,
    )
