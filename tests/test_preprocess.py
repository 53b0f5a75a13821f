"""The data stage: validation of the Kaggle layout, word labels, folds, the processed dataset."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import predictionstring, spans_from_word_labels, word_labels_from_spans

from fbp.io.processed import FORMAT, load_processed
from fbp.preprocess import _Corpus, assign_folds, preprocess
from fbp.errors import FbpError
from fbp.labels import CLASSES, LABEL2ID

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021"


@pytest.fixture
def kaggle_dir(tmp_path, demo_corpus) -> Path:
    """A private copy of the demo corpus that a test may break."""
    return Path(shutil.copytree(demo_corpus, tmp_path / "kaggle"))


def edit_table(kaggle_dir: Path, edit) -> None:
    """Rewrite train.csv after ``edit(table)`` (strings, as read from disk)."""
    table = pd.read_csv(kaggle_dir / "train.csv", dtype=str, keep_default_na=False)
    table = edit(table)
    table.to_csv(kaggle_dir / "train.csv", index=False)


def preprocess_error(kaggle_dir: Path, tmp_path: Path) -> str:
    """Run preprocess expecting an FbpError; check nothing was written and return the message."""
    output = tmp_path / "processed"
    with pytest.raises(FbpError) as raised:
        preprocess(kaggle_dir, output)
    assert not output.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".processed")]  # no staging left
    return str(raised.value)


def set_cell(row: int, column: str, value: str):
    def edit(table):
        table.loc[row, column] = value
        return table
    return edit


def swap_offsets(row: int):
    def edit(table):
        table.loc[row, ["discourse_start", "discourse_end"]] = [table.at[row, "discourse_end"], table.at[row, "discourse_start"]]
        return table
    return edit


def first_word_overlap(table: pd.DataFrame) -> pd.DataFrame:
    """Make row 1's predictionstring take the last word of row 0's (same essay in the demo)."""
    assert table.at[0, "id"] == table.at[1, "id"]
    last_of_first = table.at[0, "predictionstring"].split()[-1]
    table.loc[1, "predictionstring"] = f"{last_of_first} {table.at[1, 'predictionstring']}"
    return table


BAD_TABLES = {
    "unknown type": (set_cell(3, "discourse_type", "Hypothesis"), "unknown discourse_type", "'Hypothesis' in 1 rows"),
    "reversed offsets": (swap_offsets(2), "not before discourse_end", "row 3 ("),
    "start past end": (lambda t: set_cell(4, "discourse_end", "999999")(set_cell(4, "discourse_start", "999990")(t)),
                       "at or past the end of the text", "row 5 ("),
    "offset not a number": (set_cell(0, "discourse_start", "eight"), "not an integer", "'eight'"),
    "offset beyond any integer": (set_cell(0, "discourse_end", "1e300"), "not an integer", "'1e300'"),
    "end far past the text": (set_cell(0, "discourse_end", "10000000"), "past the end of the text by more than its trailing whitespace", "row 1 ("),
    "predictionstring not integers": (set_cell(5, "predictionstring", "1 2 x 4"), "not space-separated word indices", "row 6 ("),
    "predictionstring empty": (set_cell(5, "predictionstring", ""), "not space-separated word indices", "row 6 ("),
    "predictionstring empty on the last row": (lambda t: set_cell(len(t) - 1, "predictionstring", " ")(t),
                                               "not space-separated word indices", "' '"),
    "predictionstring out of range": (set_cell(0, "predictionstring", "99999 100000"), "past the last word", "row 1 ("),
    "predictionstring with a gap": (set_cell(0, "predictionstring", "2 3 5 6"), "not a range of consecutive", "row 1 ("),
    "overlapping spans": (first_word_overlap, "overlapping spans", None),
    "empty id": (set_cell(7, "id", ""), "empty id", "row 8"),
    "rows keep their file numbers": (lambda t: swap_offsets(9)(set_cell(2, "id", "")(t)), "not before discourse_end", "row 10 ("),
}


@pytest.mark.parametrize("name", list(BAD_TABLES))
def test_each_problem_is_reported_with_examples_and_nothing_is_written(name, kaggle_dir, tmp_path):
    edit, message, example = BAD_TABLES[name]
    edit_table(kaggle_dir, edit)
    error = preprocess_error(kaggle_dir, tmp_path)
    assert message in error
    if example:
        assert example in error


def test_overlap_names_the_essay(kaggle_dir, tmp_path):
    essay_id = pd.read_csv(kaggle_dir / "train.csv", dtype=str).at[0, "id"]
    edit_table(kaggle_dir, first_word_overlap)
    assert f"1 essays with overlapping spans (a word in two predictionstrings) (e.g. {essay_id})" in preprocess_error(kaggle_dir, tmp_path)


def test_every_problem_is_reported_at_once(kaggle_dir, tmp_path):
    edit_table(kaggle_dir, lambda t: set_cell(3, "discourse_type", "Hypothesis")(set_cell(5, "predictionstring", "x")(t)))
    edited_essays = set(pd.read_csv(kaggle_dir / "train.csv", dtype=str)["id"].iloc[[3, 5]])
    essay_id = next(path.stem for path in sorted((kaggle_dir / "train").glob("*.txt")) if path.stem not in edited_essays)
    (kaggle_dir / "train" / f"{essay_id}.txt").unlink()
    error = preprocess_error(kaggle_dir, tmp_path)
    assert "3 kinds of problem" in error
    assert "unknown discourse_type" in error and "not space-separated" in error and essay_id in error


def test_missing_text_file(kaggle_dir, tmp_path):
    victim = next((kaggle_dir / "train").glob("*.txt"))
    victim.unlink()
    assert f"essay ids in train.csv without a text file in {kaggle_dir / 'train'} (e.g. {victim.stem})" in preprocess_error(kaggle_dir, tmp_path)


def test_text_that_is_not_utf8(kaggle_dir, tmp_path):
    victim = next((kaggle_dir / "train").glob("*.txt"))
    victim.write_bytes(b"Caf\xe9 " + victim.read_bytes())
    assert f"text files that are not UTF-8 (e.g. {victim.name} (byte 3))" in preprocess_error(kaggle_dir, tmp_path)


def test_missing_columns(kaggle_dir, tmp_path):
    edit_table(kaggle_dir, lambda t: t.drop(columns=["predictionstring", "discourse_type"]))
    error = preprocess_error(kaggle_dir, tmp_path)
    assert "missing column(s) discourse_type, predictionstring" in error


def test_empty_table(kaggle_dir, tmp_path):
    edit_table(kaggle_dir, lambda t: t.iloc[:0])
    assert "the table has no rows" in preprocess_error(kaggle_dir, tmp_path)


def test_missing_layout(tmp_path):
    with pytest.raises(FbpError, match="no such directory"):
        preprocess(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FbpError, match="train.csv: not found"):
        preprocess(tmp_path / "empty", tmp_path / "out")


def test_start_inside_a_word_and_end_past_the_text_are_warnings(kaggle_dir, tmp_path):
    table = pd.read_csv(kaggle_dir / "train.csv", dtype=str)
    # A span whose first word is long enough that starting one character late still covers most of it.
    row = next(row for row, span_text in enumerate(table["discourse_text"]) if len(span_text.split()[0]) >= 3)
    essay = kaggle_dir / "train" / f"{table.at[row, 'id']}.txt"
    # An end a little past a text that ends in whitespace, as in the real train.csv (whose texts lost some of it).
    text = essay.read_text().rstrip() + " " * 6
    essay.write_text(text)
    last_row = table.index[table["id"] == table.at[row, "id"]][-1]

    def edit(t):
        t.loc[row, "discourse_start"] = str(int(t.at[row, "discourse_start"]) + 1)  # one character late, as in real data
        t.loc[last_row, "discourse_end"] = str(len(text) + 5)
        return t

    edit_table(kaggle_dir, edit)
    summary = preprocess(kaggle_dir, tmp_path / "processed")
    counts = {finding.key: finding.count for finding in summary.warnings}
    assert counts == {"span_starts_inside_word": 1, "end_past_text": 1}
    assert load_processed(tmp_path / "processed").meta["warnings"] == counts


def test_offsets_that_disagree_with_the_predictionstring_are_a_warning(kaggle_dir, tmp_path):
    # Drop the first word from the predictionstring only: offsets still cover it.
    edit_table(kaggle_dir, lambda t: set_cell(0, "predictionstring", " ".join(t.at[0, "predictionstring"].split()[1:]))(t))
    summary = preprocess(kaggle_dir, tmp_path / "processed")
    (finding,) = summary.warnings
    assert finding.key == "offsets_disagree_with_predictionstring" and finding.count == 1
    assert "row 1 (" in finding.examples[0]


# --- word labels -----------------------------------------------------------------------------------


def test_labels_round_trip_with_adjacent_spans_of_one_class():
    spans = [("Lead", 0, 3), ("Claim", 4, 6), ("Claim", 6, 9), ("Evidence", 9, 10), ("Concluding Statement", 12, 15)]
    labels = word_labels_from_spans(spans, 15)
    assert labels.dtype == np.int8
    assert labels[[0, 1, 3, 4, 6, 9]].tolist() == [LABEL2ID[name] for name in ("B-Lead", "I-Lead", "O", "B-Claim", "B-Claim", "B-Evidence")]
    assert spans_from_word_labels(labels) == spans
    assert spans_from_word_labels(labels.tolist()) == spans


def test_spans_from_labels_that_open_with_inside():
    labels = [LABEL2ID[name] for name in ("I-Claim", "I-Claim", "I-Evidence", "O", "I-Rebuttal", "B-Rebuttal")]
    assert spans_from_word_labels(labels) == [("Claim", 0, 2), ("Evidence", 2, 3), ("Rebuttal", 4, 5), ("Rebuttal", 5, 6)]
    assert spans_from_word_labels([]) == []


def test_word_boundaries_match_str_split_with_unicode_whitespace():
    texts = ["Phones\n\ntoday\xa0are  everywhere.\u3000Yes", "", "  one ", "caf\u00e9 na\u00efve\u2003x"]
    corpus = _Corpus.from_texts(texts)
    assert corpus.n_words.tolist() == [len(text.split()) for text in texts]
    joined = "\n".join(texts)
    assert [joined[start:end] for start, end in zip(corpus.word_starts, corpus.word_ends)] == joined.split()


def test_processed_labels_match_the_predictionstrings(processed_demo):
    data = load_processed(processed_demo)
    spans_by_essay = data.spans.groupby("id")
    for essay in data.essays.itertuples():
        assert len(essay.word_labels) == essay.n_words == len(essay.text.split())
        expected = [predictionstring(start, end) for _, start, end in spans_from_word_labels(essay.word_labels)]
        assert expected == spans_by_essay.get_group(essay.id)["predictionstring"].tolist()


# --- folds -----------------------------------------------------------------------------------------


def test_folds_are_deterministic_stratified_and_refoldable(processed_demo):
    data = load_processed(processed_demo)
    ids = data.essays["id"]
    assert data.meta["folds"] == 3 and sorted(data.essays["fold"].unique()) == [0, 1, 2]
    assert np.array_equal(assign_folds(ids, data.spans, 3, seed=0), data.essays["fold"].to_numpy())
    assert not np.array_equal(assign_folds(ids, data.spans, 3, seed=1), data.essays["fold"].to_numpy())

    folds = assign_folds(ids, data.spans, 4, seed=7)
    assert sorted(np.unique(folds)) == [0, 1, 2, 3]
    assert all(abs(size - 15) <= 2 for size in np.bincount(folds))  # iterstrat balances labels before sizes


def test_folds_spread_the_less_common_classes_evenly():
    generator = np.random.default_rng(0)
    essay_ids = [f"E{number:04d}" for number in range(1000)]
    class_rates = {"Lead": 0.6, "Position": 0.99, "Claim": 0.95, "Counterclaim": 0.3, "Rebuttal": 0.05,
                   "Evidence": 0.9, "Concluding Statement": 0.85}
    spans = pd.DataFrame(
        [(essay_id, name) for essay_id in essay_ids for name, rate in class_rates.items() if generator.random() < rate],
        columns=["id", "class"],
    )
    folds = assign_folds(essay_ids, spans, 5, seed=3)
    assert np.bincount(folds).min() >= 195
    for name in ("Lead", "Counterclaim", "Rebuttal"):
        with_class = np.isin(essay_ids, spans.loc[spans["class"] == name, "id"])
        per_fold = np.bincount(folds[with_class], minlength=5)
        assert per_fold.max() - per_fold.min() <= 2, (name, per_fold)  # a random split is off by ~10 here


def test_too_many_folds(processed_demo):
    data = load_processed(processed_demo)
    with pytest.raises(FbpError, match="cannot make 100 folds from 60 essays"):
        assign_folds(data.essays["id"], data.spans, 100)


# --- processed dataset -----------------------------------------------------------------------------


def test_processed_dataset_contract(processed_demo):
    data = load_processed(processed_demo)
    assert list(data.essays.columns) == ["id", "text", "fold", "n_words", "word_labels"]
    assert list(data.spans.columns) == ["id", "class", "predictionstring"]
    assert data.essays["word_labels"].iloc[0].dtype == np.int8
    assert data.essays["id"].is_monotonic_increasing
    assert set(data.spans["class"]) == set(CLASSES)
    assert data.meta["format"] == FORMAT
    assert {"fbp_version", "source", "folds", "seed", "essays", "words", "warnings"} <= set(data.meta)
    assert data.meta["essays"] == 60 and data.meta["words"] == int(data.essays["n_words"].sum())


def test_load_processed_errors(tmp_path):
    with pytest.raises(FbpError, match="no processed dataset there"):
        load_processed(tmp_path / "missing")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "meta.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(FbpError, match="not an fbp processed dataset"):
        load_processed(tmp_path / "foreign")


def test_output_is_replaced_only_when_complete_and_never_a_foreign_directory(kaggle_dir, tmp_path):
    output = tmp_path / "processed"
    preprocess(kaggle_dir, output, n_folds=3)
    preprocess(kaggle_dir, output, n_folds=2)  # an earlier dataset is replaced
    assert load_processed(output).meta["folds"] == 2

    edit_table(kaggle_dir, set_cell(0, "discourse_type", "Hypothesis"))
    with pytest.raises(FbpError):
        preprocess(kaggle_dir, output, n_folds=4)
    assert load_processed(output).meta["folds"] == 2  # a failed run leaves the old dataset alone

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    edit_table(kaggle_dir, set_cell(0, "discourse_type", "Lead"))
    with pytest.raises(FbpError, match="refusing to replace"):
        preprocess(kaggle_dir, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


# --- the shared development data (skipped when absent) ----------------------------------------------


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not available")
def test_shared_data_preprocesses_and_labels_reproduce_predictionstrings(tmp_path):
    summary = preprocess(SHARED_DATA, tmp_path / "processed")
    assert summary.essays == 13956 and sum(summary.spans_per_class.values()) == 129824
    data = load_processed(tmp_path / "processed")
    derived = [
        (essay_id, class_name, predictionstring(start, end))
        for essay_id, word_labels in zip(data.essays["id"], data.essays["word_labels"])
        for class_name, start, end in spans_from_word_labels(word_labels)
    ]
    original = pd.read_csv(SHARED_DATA / "train.csv", usecols=["id", "discourse_type", "predictionstring"])
    expected = sorted(original.itertuples(index=False, name=None))
    assert sorted(derived) == expected
