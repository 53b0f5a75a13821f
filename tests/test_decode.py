"""Decoding word probabilities into spans, and tuning its thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fbp.config import ThresholdConfig
from fbp.errors import FbpError
from fbp.labels import CLASSES, LABEL2ID, NUM_LABELS
from fbp.metric import score
from fbp.decode import candidate_spans, decode_essays, decode_spans, tune_thresholds

NO_THRESHOLDS = ThresholdConfig(min_words={name: 1 for name in CLASSES}, min_confidence={name: 0.0 for name in CLASSES})


def probs_of(labels, confidence: float = 0.9) -> np.ndarray:
    """Word probabilities whose argmax is ``labels`` (label names), ``confidence`` on each word's label."""
    ids = [LABEL2ID[label] for label in labels]
    probs = np.full((len(ids), NUM_LABELS), (1 - confidence) / (NUM_LABELS - 1), np.float32)
    probs[np.arange(len(ids)), ids] = confidence
    return probs


def test_begin_and_inside_words_form_spans():
    labels = ["O", "B-Claim", "I-Claim", "I-Claim", "O", "B-Lead", "I-Lead"]
    assert decode_spans(probs_of(labels), NO_THRESHOLDS) == [("Claim", 1, 4), ("Lead", 5, 7)]


def test_inside_after_outside_or_another_class_starts_a_span():
    labels = ["I-Claim", "I-Claim", "O", "I-Claim", "I-Evidence", "I-Evidence"]
    assert decode_spans(probs_of(labels), NO_THRESHOLDS) == [("Claim", 0, 2), ("Claim", 3, 4), ("Evidence", 4, 6)]


def test_a_new_begin_of_the_same_class_starts_a_new_span():
    labels = ["B-Claim", "I-Claim", "B-Claim", "I-Claim", "I-Claim", "B-Claim"]
    assert decode_spans(probs_of(labels), NO_THRESHOLDS) == [("Claim", 0, 2), ("Claim", 2, 5), ("Claim", 5, 6)]


def test_min_words_drops_short_spans_per_class():
    labels = ["B-Claim", "I-Claim", "O", "B-Lead", "I-Lead", "O", "B-Claim", "I-Claim", "I-Claim"]
    decoding = NO_THRESHOLDS.model_copy(update={"min_words": {"Claim": 3, "Lead": 2}})
    assert decode_spans(probs_of(labels), decoding) == [("Lead", 3, 5), ("Claim", 6, 9)]


def test_min_confidence_uses_the_mean_of_begin_plus_inside():
    probs = probs_of(["B-Claim", "I-Claim", "I-Claim"], confidence=0.5)
    # Word 0: B-Claim 0.5 and I-Claim a little; the class probability is B + I on every word.
    class_prob = probs[:, LABEL2ID["B-Claim"]] + probs[:, LABEL2ID["I-Claim"]]
    mean = float(class_prob.mean())
    just_above = NO_THRESHOLDS.model_copy(update={"min_confidence": {"Claim": mean - 1e-6}})
    just_below = NO_THRESHOLDS.model_copy(update={"min_confidence": {"Claim": mean + 1e-6}})
    assert decode_spans(probs, just_above) == [("Claim", 0, 3)]
    assert decode_spans(probs, just_below) == []


def test_a_class_missing_from_the_thresholds_has_none():
    decoding = ThresholdConfig(min_words={"Lead": 50}, min_confidence={})
    assert decode_spans(probs_of(["B-Claim", "B-Lead"]), decoding) == [("Claim", 0, 1)]


def test_essays_never_continue_each_other():
    word_probs = {"first": probs_of(["O", "B-Claim", "I-Claim"]), "empty": probs_of([]), "second": probs_of(["I-Claim", "I-Claim", "O"]), "none": probs_of(["O", "O"])}
    frame = decode_essays(word_probs, NO_THRESHOLDS)
    assert frame.to_dict("records") == [
        {"id": "first", "class": "Claim", "predictionstring": "1 2"},
        {"id": "second", "class": "Claim", "predictionstring": "0 1"},
    ]


def test_decode_essays_with_no_spans_is_an_empty_submission():
    frame = decode_essays({"a": probs_of(["O", "O"])}, NO_THRESHOLDS)
    assert list(frame.columns) == ["id", "class", "predictionstring"] and frame.empty
    assert decode_essays({}, NO_THRESHOLDS).empty


def test_wrong_shape_is_an_error_naming_the_essay():
    with pytest.raises(FbpError, match="essay bad"):
        decode_essays({"bad": np.zeros((4, 3))}, NO_THRESHOLDS)


def test_decoded_truth_scores_one():
    labels = ["B-Lead"] + ["I-Lead"] * 9 + ["O"] + ["B-Evidence"] + ["I-Evidence"] * 20
    truth = pd.DataFrame({"id": ["a", "a"], "class": ["Lead", "Evidence"], "predictionstring": [" ".join(map(str, range(10))), " ".join(map(str, range(11, 32)))]})
    assert score(decode_essays({"a": probs_of(labels)}, ThresholdConfig()), truth).f1 == 1.0


def synthetic_oof(seed: int = 0, n_essays: int = 40):
    """Essays of true Claim spans (confident) plus short, unsure noise spans the default thresholds keep."""
    rng = np.random.default_rng(seed)
    word_probs, truth_rows = {}, []
    for essay in range(n_essays):
        labels, position = [], 0
        for _ in range(4):
            gap, length = int(rng.integers(1, 4)), int(rng.integers(5, 12))
            labels += ["O"] * gap
            truth_rows.append((f"e{essay}", "Claim", " ".join(map(str, range(position + gap, position + gap + length)))))
            labels += ["B-Claim"] + ["I-Claim"] * (length - 1)
            position += gap + length
        probs = probs_of(labels, confidence=0.9)
        # Noise: 3-word Claim spans with confidence 0.6, after the last true span.
        for _ in range(2):
            noise = probs_of(["O", "B-Claim", "I-Claim", "I-Claim"], confidence=0.6)
            probs = np.concatenate([probs, noise])
        word_probs[f"e{essay}"] = probs
    return word_probs, pd.DataFrame(truth_rows, columns=["id", "class", "predictionstring"])


def test_tuning_finds_thresholds_that_drop_the_noise():
    word_probs, truth = synthetic_oof()
    start = ThresholdConfig(min_words={**ThresholdConfig().min_words, "Claim": 2}, min_confidence={**ThresholdConfig().min_confidence, "Claim": 0.5})
    tuned, report = tune_thresholds(word_probs, truth, start)
    before = score(decode_essays(word_probs, start), truth)
    after = score(decode_essays(word_probs, tuned), truth)
    (claim,) = report.classes
    assert claim.before.f1 == pytest.approx(before.f1) and claim.after.f1 == pytest.approx(after.f1)
    assert before.f1 == pytest.approx(160 / (160 + 80 / 2))  # 160 true spans found, 80 noise spans
    assert after.f1 == 1.0
    assert tuned.min_words["Claim"] >= 4 or tuned.min_confidence["Claim"] > 0.6
    assert tuned.min_words["Lead"] == start.min_words["Lead"]  # classes absent from the truth keep theirs
    assert report.to_dict()["f1_after"] == 1.0


def test_tuning_keeps_thresholds_that_are_already_best():
    word_probs, truth = synthetic_oof(seed=1)
    best = ThresholdConfig(min_words={"Claim": 5}, min_confidence={"Claim": 0.7})
    tuned, report = tune_thresholds(word_probs, truth, best)
    assert tuned.min_words["Claim"] == 5 and tuned.min_confidence["Claim"] == 0.7
    assert report.classes[0].after.f1 == report.classes[0].before.f1 == 1.0


def test_tuning_scores_only_the_essays_given():
    word_probs, truth = synthetic_oof(n_essays=10)
    other = pd.DataFrame({"id": ["unseen"], "class": ["Lead"], "predictionstring": ["0 1 2"]})
    _, report = tune_thresholds(word_probs, pd.concat([truth, other]), NO_THRESHOLDS)
    assert [row.name for row in report.classes] == ["Claim"]


def test_candidate_spans_report_length_and_confidence():
    candidates = candidate_spans({"a": probs_of(["B-Claim", "I-Claim", "O", "B-Lead"], confidence=0.8)})
    assert candidates.length.tolist() == [2, 1]
    assert candidates.confidence[0] == pytest.approx(0.8 + 0.2 / 14)


def test_cross_fitted_tuning_decodes_each_group_with_thresholds_tuned_on_the_others(monkeypatch):
    import numpy as np
    import pandas as pd

    import fbp.decode
    from fbp.config import ThresholdConfig
    from fbp.labels import begin_id, inside_id
    from fbp.decode import cross_fitted_thresholds

    # Every essay: one confident 4-word Claim. The default Claim min_words (3) keeps it; tuning must not lose it.
    probs, truth_rows = {}, []
    for index in range(6):
        word_probs = np.full((10, 15), 0.01, dtype=np.float32)
        word_probs[:, 0] = 0.86
        word_probs[2] = 0.01
        word_probs[2, begin_id(2)] = 0.86
        word_probs[3:6] = 0.01
        word_probs[3:6, inside_id(2)] = 0.86
        probs[f"e{index}"] = word_probs
        truth_rows.append({"id": f"e{index}", "class": "Claim", "predictionstring": "2 3 4 5"})
    truth = pd.DataFrame(truth_rows)
    tuned_on = []  # the essays each tuning saw, and the truth it was given
    real_tune = fbp.decode.tune_thresholds

    def recording_tune(word_probs, truth_spans, decoding):
        tuned_on.append((sorted(word_probs), sorted(truth_spans["id"])))
        return real_tune(word_probs, truth_spans, decoding)

    monkeypatch.setattr(fbp.decode, "tune_thresholds", recording_tune)
    tuned, predictions = cross_fitted_thresholds(probs, truth, ThresholdConfig(), groups=[0, 0, 1, 1, 2, 2])
    # Once on everything (the thresholds kept); then group g decoded with thresholds tuned on the other groups' essays and truth only.
    assert tuned_on == [(sorted(probs),) * 2, (["e2", "e3", "e4", "e5"],) * 2, (["e0", "e1", "e4", "e5"],) * 2,
                        (["e0", "e1", "e2", "e3"],) * 2]
    assert predictions.sort_values("id").reset_index(drop=True).equals(truth)  # every Claim found, nothing else
    assert tuned.min_words["Claim"] <= 4 and tuned.min_confidence["Claim"] <= 0.86
    tuned_on.clear()
    _, halves = cross_fitted_thresholds(probs, truth, ThresholdConfig(), groups=[0] * 6)  # one group: split in halves
    first_half, second_half = tuned_on[1][0], tuned_on[2][0]
    assert len(first_half) == len(second_half) == 3 and sorted(first_half + second_half) == sorted(probs)
    assert halves.sort_values("id").reset_index(drop=True).equals(truth)
