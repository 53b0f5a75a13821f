"""The generated demo corpus: Kaggle layout, consistent offsets, deterministic, accepted by preprocess."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pandas as pd
import pytest

from fbp.preprocess import preprocess
from fbp.demo import generate_demo_corpus
from fbp.errors import FbpError
from fbp.labels import CLASSES

KAGGLE_COLUMNS = ["id", "discourse_id", "discourse_start", "discourse_end", "discourse_text", "discourse_type",
                  "discourse_type_num", "predictionstring"]


def same_tree(left: Path, right: Path) -> bool:
    comparison = filecmp.dircmp(left, right)
    if comparison.left_only or comparison.right_only or comparison.diff_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(left / name, right / name) for name in comparison.common_dirs)


def test_same_seed_same_corpus_other_seed_other_corpus(tmp_path):
    generate_demo_corpus(tmp_path / "a", n_essays=30, seed=5)
    generate_demo_corpus(tmp_path / "b", n_essays=30, seed=5)
    generate_demo_corpus(tmp_path / "c", n_essays=30, seed=6)
    assert same_tree(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "train.csv").read_text() != (tmp_path / "c" / "train.csv").read_text()


def test_kaggle_layout_with_consistent_offsets_and_predictionstrings(demo_corpus):
    table = pd.read_csv(demo_corpus / "train.csv")
    assert list(table.columns) == KAGGLE_COLUMNS
    assert set(table["discourse_type"]) == set(CLASSES)
    assert table["discourse_id"].is_unique
    texts = {path.stem: path.read_text(encoding="utf-8") for path in (demo_corpus / "train").glob("*.txt")}
    assert set(texts) == set(table["id"]) and len(texts) == 60
    for row in table.itertuples():
        text = texts[row.id]
        assert text[row.discourse_start:row.discourse_end] == row.discourse_text
        first_word = len(text[:row.discourse_start].split())
        expected = " ".join(map(str, range(first_word, first_word + len(row.discourse_text.split()))))
        assert row.predictionstring == expected
        assert row.discourse_type_num.startswith(row.discourse_type + " ")
    test_ids = sorted(path.stem for path in (demo_corpus / "test").glob("*.txt"))
    submission = pd.read_csv(demo_corpus / "sample_submission.csv")
    assert list(submission.columns) == ["id", "class", "predictionstring"]
    assert sorted(submission["id"]) == test_ids and len(test_ids) == 5
    assert not set(test_ids) & set(texts)


def test_lengths_vary_and_some_essays_exceed_one_window(demo_corpus):
    n_words = [len(path.read_text().split()) for path in (demo_corpus / "train").glob("*.txt")]
    assert min(n_words) < 250 and max(n_words) > 450  # ~450 words is over 512 MiniLM tokens


def test_preprocess_accepts_it_without_warnings(demo_corpus, tmp_path):
    summary = preprocess(demo_corpus, tmp_path / "processed", n_folds=3)
    assert summary.essays == 60 and summary.warnings == [] and summary.skipped_text_files == 0
    assert all(count > 0 for count in summary.spans_per_class.values())


def test_replaces_an_earlier_corpus_but_not_other_directories(tmp_path):
    generate_demo_corpus(tmp_path / "demo", n_essays=10, seed=0)
    generate_demo_corpus(tmp_path / "demo", n_essays=12, seed=0)
    assert len(list((tmp_path / "demo" / "train").glob("*.txt"))) == 12
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    with pytest.raises(FbpError, match="refusing to replace"):
        generate_demo_corpus(tmp_path / "mine", n_essays=10)
    assert [path.name for path in (tmp_path / "mine").iterdir()] == ["keep.txt"]
