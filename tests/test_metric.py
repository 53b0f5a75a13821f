"""The competition metric: hand-worked cases for each rule, a brute-force cross-check, parse errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fbp.errors import FbpError
from fbp.labels import CLASSES
from fbp.metric import ClassScore, match_table, parse_spans, score, span_set_from_ranges

SHARED_TRAIN_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "feedback-prize-2021" / "train.csv"


def spans(*rows) -> pd.DataFrame:
    """``spans(("essay", "Claim", "1 2 3"), ...)`` as a span frame."""
    return pd.DataFrame(list(rows), columns=["id", "class", "predictionstring"])


def words(first: int, last: int) -> str:
    """Predictionstring of the words first..last (inclusive)."""
    return " ".join(map(str, range(first, last + 1)))


def counts(result, name: str = "Claim"):
    scores = result.per_class[name]
    return scores.tp, scores.fp, scores.fn


# ------------------------------------------------------------------------------------------------
# The rules, one at a time


def test_exact_match_is_a_true_positive():
    result = score(spans(("a", "Claim", "3 4 5")), spans(("a", "Claim", "3 4 5")))
    assert counts(result) == (1, 0, 0)
    assert result.f1 == 1.0


def test_half_overlap_both_ways_matches_and_less_does_not():
    truth = spans(("a", "Claim", words(0, 3)))  # 4 words
    # 2 of the 4 truth words and nothing else: 2/4 and 2/2, both >= 0.5.
    assert counts(score(spans(("a", "Claim", "2 3")), truth)) == (1, 0, 0)
    # The same 2 words plus 3 others: 2/5 of the prediction is < 0.5, so FP and FN.
    assert counts(score(spans(("a", "Claim", words(2, 6))), truth)) == (0, 1, 1)
    # 1 of 4 truth words: 1/4 < 0.5.
    assert counts(score(spans(("a", "Claim", "3")), truth)) == (0, 1, 1)


def test_class_and_essay_must_agree():
    truth = spans(("a", "Claim", words(0, 9)))
    assert counts(score(spans(("b", "Claim", words(0, 9))), truth)) == (0, 1, 1)
    result = score(spans(("a", "Evidence", words(0, 9))), truth)
    assert counts(result) == (0, 0, 1)
    assert result.ignored_classes == ("Evidence",)  # predicted but absent from the truth: not scored


def test_class_f1_is_tp_over_tp_plus_half_the_errors():
    truth = spans(("a", "Claim", words(0, 4)), ("a", "Claim", words(10, 14)), ("a", "Claim", words(20, 24)))
    preds = spans(("a", "Claim", words(0, 4)), ("a", "Claim", words(10, 14)), ("a", "Claim", words(30, 34)), ("a", "Claim", words(40, 44)))
    result = score(preds, truth)
    assert counts(result) == (2, 2, 1)
    assert result.per_class["Claim"].f1 == pytest.approx(2 / (2 + (2 + 1) / 2))
    assert result.per_class["Claim"].precision == pytest.approx(2 / 4)
    assert result.per_class["Claim"].recall == pytest.approx(2 / 3)


def test_duplicate_ground_truths_count_once():
    # The same word set twice (written differently): one ground truth.
    truth = spans(("a", "Claim", "1 2 3"), ("a", "Claim", "3 2 1"))
    assert counts(score(spans(("a", "Claim", "1 2 3")), truth)) == (1, 0, 0)
    assert counts(score(spans(("b", "Claim", "1 2 3")), truth)) == (0, 1, 1)  # unmatched: one FN, not two
    # The same words in another class or essay are different ground truths.
    truth = spans(("a", "Claim", "1 2 3"), ("a", "Lead", "1 2 3"), ("b", "Claim", "1 2 3"))
    result = score(spans(("a", "Claim", "1 2 3")), truth)
    assert counts(result) == (1, 0, 1) and counts(result, "Lead") == (0, 0, 1)


def test_duplicate_predictions_one_is_a_false_positive():
    result = score(spans(("a", "Claim", "1 2 3"), ("a", "Claim", "1 2 3")), spans(("a", "Claim", "1 2 3")))
    assert counts(result) == (1, 1, 0)


def test_ground_truth_keeps_the_prediction_with_the_highest_overlap():
    # Overlap is the larger of the two ratios (as in Kaggle's scorer): 7/10 for the first, 9/10 for the second.
    truth = spans(("a", "Claim", words(0, 9)))
    preds = spans(("a", "Claim", words(3, 12)), ("a", "Claim", words(1, 10)))
    table = match_table(preds, truth)
    assert table.pred_index[0] == 1
    assert counts(table.result()) == (1, 1, 0)


def test_ties_go_to_the_prediction_that_comes_first():
    # gt1 (6 words) overlaps p1 = 0..3 and p2 = 2..5 equally (4/6 and 4/4: max overlap 1.0 each).
    # gt2 = 4..7 can only keep p2 (2/4 and 2/4). Whether p1 ends up a FP depends on the tie.
    truth = spans(("a", "Claim", words(0, 5)), ("a", "Claim", words(4, 7)))
    p1, p2 = ("a", "Claim", words(0, 3)), ("a", "Claim", words(2, 5))
    # p1 first: gt1 keeps p1, gt2 keeps p2 -> no FP.
    assert counts(score(spans(p1, p2), truth)) == (2, 0, 0)
    # p2 first: gt1 keeps p2 as well, so p1 is never kept -> one FP.
    assert counts(score(spans(p2, p1), truth)) == (2, 1, 0)


def test_a_prediction_can_match_two_ground_truths():
    # Each truth half is exactly half of the prediction: both match it, both keep it (as Kaggle's scorer does).
    truth = spans(("a", "Claim", "0 1"), ("a", "Claim", "2 3"))
    result = score(spans(("a", "Claim", "0 1 2 3")), truth)
    assert counts(result) == (2, 0, 0)


def test_empty_predictions_score_zero():
    truth = spans(("a", "Claim", "1 2"), ("a", "Lead", "5 6"))
    result = score(spans(), truth)
    assert counts(result) == (0, 0, 1) and counts(result, "Lead") == (0, 0, 1)
    assert result.f1 == 0.0


def test_macro_f1_averages_the_classes_present_in_the_truth():
    truth = spans(("a", "Claim", "1 2"), ("a", "Lead", "5 6"))
    # Claim perfect, Lead missed, Rebuttal predicted but absent from the truth (ignored).
    preds = spans(("a", "Claim", "1 2"), ("a", "Rebuttal", "8 9"))
    result = score(preds, truth)
    assert list(result.per_class) == ["Lead", "Claim"]  # CLASSES order, truth classes only
    assert result.f1 == pytest.approx((1.0 + 0.0) / 2)
    assert result.ignored_classes == ("Rebuttal",)
    assert result.to_dict()["f1"] == result.f1


def test_essays_only_in_predictions_are_false_positives():
    truth = spans(("a", "Claim", "1 2 3"))
    result = score(spans(("a", "Claim", "1 2 3"), ("zz", "Claim", "1 2 3"), ("zz", "Claim", "7 8")), truth)
    assert counts(result) == (1, 2, 0)


def test_word_sets_need_not_be_contiguous_or_sorted():
    truth = spans(("a", "Claim", "1 2 3 10 11 12"))  # two runs, 6 words
    assert counts(score(spans(("a", "Claim", "10 1 3 2")), truth)) == (1, 0, 0)  # 4 shared: 4/6, 4/4
    assert counts(score(spans(("a", "Claim", words(1, 7))), truth)) == (0, 1, 1)  # 3 shared: 3/6, 3/7
    # Repeated indices are one word: {5, 6} against {5, 6}.
    assert counts(score(spans(("a", "Claim", "5 5 6 6 6")), spans(("a", "Claim", "5 6")))) == (1, 0, 0)


def test_parsed_truth_can_be_reused_and_class_column_may_be_discourse_type():
    truth = pd.DataFrame({"id": ["a"], "discourse_type": ["Claim"], "predictionstring": ["1 2"]})
    parsed = parse_spans(truth)
    assert score(spans(("a", "Claim", "1 2")), parsed).f1 == 1.0
    assert score(span_set_from_ranges(["a"], [CLASSES.index("Claim")], [1], [3]), parsed).f1 == 1.0


# ------------------------------------------------------------------------------------------------
# Cross-check against a brute-force implementation of the same rules


def brute_force_counts(preds: pd.DataFrame, truth: pd.DataFrame):
    """Per class (TP, FP, FN) by looping over every pair in Python: slow, obviously right."""
    as_set = lambda text: frozenset(int(word) for word in text.split())  # noqa: E731
    truth_keys = list(dict.fromkeys((row.id, row[1], as_set(row.predictionstring)) for row in truth.itertuples(index=False)))
    pred_rows = [(row.id, row[1], as_set(row.predictionstring)) for row in preds.itertuples(index=False)]
    result = {}
    for name in CLASSES:
        class_truth = [key for key in truth_keys if key[1] == name]
        if not class_truth:
            continue
        class_preds = [(index, row) for index, row in enumerate(pred_rows) if row[1] == name]
        kept, tp = set(), 0
        for essay, _, truth_words in class_truth:
            best = None
            for index, (pred_essay, _, pred_words) in class_preds:
                shared = len(truth_words & pred_words)
                if pred_essay == essay and 2 * shared >= len(truth_words) and 2 * shared >= len(pred_words):
                    overlap = shared / min(len(truth_words), len(pred_words))
                    if best is None or overlap > best[0]:
                        best = (overlap, index)
            if best is not None:
                tp += 1
                kept.add(best[1])
        result[name] = (tp, len(class_preds) - len(kept), len(class_truth) - tp)
    return result


def random_spans(rng, n_rows: int, contiguous: bool) -> pd.DataFrame:
    rows = []
    for _ in range(n_rows):
        essay, name = f"e{rng.integers(3)}", CLASSES[rng.integers(3)]
        if contiguous:
            start = int(rng.integers(0, 20))
            chosen = range(start, start + int(rng.integers(1, 8)))
        else:
            chosen = rng.choice(25, size=int(rng.integers(1, 8)), replace=True)
        rows.append((essay, name, " ".join(map(str, chosen))))
    return spans(*rows)


@pytest.mark.parametrize("seed, contiguous", list(itertools.product(range(30), [True, False])))
def test_agrees_with_brute_force_on_random_spans(seed, contiguous):
    rng = np.random.default_rng(seed)
    truth, preds = random_spans(rng, 12, contiguous), random_spans(rng, 14, contiguous)
    if seed % 3 == 0:
        truth = pd.concat([truth, truth.iloc[:3]])  # exact duplicates in the truth
    result = score(preds, truth)
    expected = brute_force_counts(preds, truth)
    assert {name: (s.tp, s.fp, s.fn) for name, s in result.per_class.items()} == expected
    assert result.f1 == pytest.approx(np.mean([ClassScore(*c).f1 for c in expected.values()]))


@pytest.mark.skipif(not SHARED_TRAIN_CSV.exists(), reason="shared training data not available")
def test_real_training_spans():
    truth = pd.read_csv(SHARED_TRAIN_CSV, usecols=["id", "discourse_type", "predictionstring"])
    assert score(truth.rename(columns={"discourse_type": "class"}), truth).f1 == 1.0
    subset = truth[truth["id"].isin(truth["id"].unique()[:150])]
    rng = np.random.default_rng(0)
    shifted = []
    for row in subset.itertuples(index=False):
        indices = [int(word) for word in row.predictionstring.split()]
        start, end = max(0, indices[0] + int(rng.integers(-3, 4))), indices[-1] + 1 + int(rng.integers(-3, 4))
        if end > start and rng.random() > 0.1:
            shifted.append((row.id, row.discourse_type, words(start, end - 1)))
    preds = spans(*shifted)
    result = score(preds, subset)
    assert {name: (s.tp, s.fp, s.fn) for name, s in result.per_class.items()} == brute_force_counts(preds, subset)


# ------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"id": ["a"], "predictionstring": ["1"]}), "missing column(s) class"),
        (spans(("a", "Claim", "1 2"), ("a", "Claimz", "3")), "row 2: unknown class 'Claimz'"),
        (spans(("a", "Claim", "1 2"), ("b", "Claim", "1 x 2")), "row 2 (essay b): predictionstring '1 x 2' is not a list of word indices"),
        (spans(("a", "Claim", "1.5")), "row 1 (essay a): predictionstring '1.5' is not"),
        (spans(("a", "Claim", "-1")), "is not a list of word indices"),
        (spans(("a", "Claim", "1"), ("a", "Claim", "  ")), "row 2 (essay a): predictionstring '  ' is empty"),
        (spans(("a", "Claim", "1"), ("a", "Claim", None)), "row 2 (essay a): predictionstring is empty"),
        (spans(("a", "Claim", "1"), (None, "Claim", "1")), "row 2: empty id"),
        (spans(("a", "Claim", "123456789")), "more than 8 digits"),
    ],
)
def test_bad_spans_name_the_row(frame, message):
    with pytest.raises(FbpError) as error:
        parse_spans(frame, "preds.csv")
    assert message in str(error.value)
    assert str(error.value).startswith("preds.csv")


def test_file_lines_are_named_when_asked():
    with pytest.raises(FbpError, match=r"preds.csv, line 3 \(essay b\)"):
        parse_spans(spans(("a", "Claim", "1"), ("b", "Claim", "x")), "preds.csv", first_line=2)


def test_long_word_indices_and_messy_whitespace_parse():
    parsed = parse_spans(spans(("a", "Claim", " 12345\t12346  12347 "), ("a", "Claim", "7")))
    assert parsed.run_starts.tolist() == [12345, 7] and parsed.run_ends.tolist() == [12348, 8]


@pytest.mark.parametrize(
    "rows",
    [["1"], ["12"], ["5", "7"], ["1234", "9999 10000"], ["3", "4", "55555"], ["0 1 2", "99999999 1", " 42  9 ", "1\t2\n3"]],
)
def test_word_indices_parse_exactly(rows):
    parsed = parse_spans(spans(*[("a", "Claim", row) for row in rows]))
    expected = [sorted({int(word) for word in row.split()}) for row in rows]
    assert parsed.sizes.tolist() == [len(words_of_row) for words_of_row in expected]
    covered = [
        sorted(word for run in range(parsed.run_offsets[i], parsed.run_offsets[i + 1]) for word in range(parsed.run_starts[run], parsed.run_ends[run]))
        for i in range(len(rows))
    ]
    assert covered == expected


def test_blank_rows_are_errors_unless_skipped():
    frame = spans(("x", None, None), ("a", "Claim", "1 2"), ("b", "Claim", None))
    with pytest.raises(FbpError, match="row 1: empty class"):
        parse_spans(frame, "preds")
    with pytest.raises(FbpError, match=r"row 3 \(essay b\): predictionstring is empty"):
        parse_spans(frame, "preds", skip_blank=True)  # only rows with neither class nor words are skipped
    assert len(parse_spans(frame.iloc[:2], "preds", skip_blank=True)) == 1


def test_scattered_predictionstrings_cost_linear_memory():
    """Two spans of 20,000 scattered words each: memory grows with the words, not their product (it took ~26 GB)."""
    import tracemalloc

    scattered = " ".join(str(2 * i) for i in range(20000))
    shifted = " ".join(str(2 * i + (i % 3 == 0)) for i in range(20000))
    pred = pd.DataFrame({"id": ["a"], "class": ["Claim"], "predictionstring": [scattered]})
    truth = pd.DataFrame({"id": ["a", "a"], "class": ["Claim", "Claim"], "predictionstring": [shifted, scattered]})
    tracemalloc.start()
    try:
        result = score(pred, truth)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.per_class["Claim"].tp, result.per_class["Claim"].fn) == (2, 0)  # 2/3 and all of the words shared
    assert peak < 60 * 2**20, f"peak {peak / 2**20:.0f} MB"
