"""Post-training decoding (fbp.post_training): cross-fitted by the folds recorded with the out-of-fold
probabilities, never by rebuilt folds; the learned decoder only when it beats the thresholds out of fold."""

from __future__ import annotations

import numpy as np
import pytest

import fbp.learned_decoder
from fbp.config import ThresholdConfig
from fbp.io.run_dir import RunDir
from fbp.io.run_record import RunRecord
from fbp.io.word_probs import load_folds, load_word_probs, save_word_probs
from fbp.post_training import FOLDS, choose_decoding, cross_fit_groups
from test_learned_decoder import FAST, synthetic_essays


@pytest.fixture(scope="module")
def essays():
    return synthetic_essays(60)


def test_the_out_of_fold_file_records_each_essays_fold_and_a_file_without_that_record_says_so(tmp_path):
    probs = {"a": np.full((3, 15), 1 / 15, np.float32), "b": np.full((2, 15), 1 / 15, np.float32)}
    save_word_probs(tmp_path / "with.npz", probs, {"a": 1, "b": 0})
    save_word_probs(tmp_path / "without.npz", probs)
    assert load_folds(tmp_path / "with.npz") == {"a": 1, "b": 0}
    assert load_folds(tmp_path / "without.npz") is None
    assert set(load_word_probs(tmp_path / "with.npz")) == {"a", "b"}  # readers of the probabilities see no change
    with pytest.raises(ValueError, match="no fold for 1 essays"):
        save_word_probs(tmp_path / "partial.npz", probs, {"a": 1})


def test_cross_fitting_groups_are_the_recorded_folds_or_halves_with_the_reason():
    ids = [f"e{i}" for i in range(8)]
    by_folds = cross_fit_groups(ids, {essay_id: i % 3 for i, essay_id in enumerate(ids)}, "unused")
    assert by_folds.are_folds and by_folds.source == FOLDS and by_folds.groups.tolist() == [i % 3 for i in range(8)]
    no_record = cross_fit_groups(ids, None, "the file records no folds")
    assert not no_record.are_folds and "the file records no folds" in no_record.source
    assert sorted(np.bincount(no_record.groups).tolist()) == [4, 4]  # two halves
    one_fold = cross_fit_groups(ids, {essay_id: 2 for essay_id in ids}, "unused")
    assert "one fold" in one_fold.source and len(np.unique(one_fold.groups)) == 2


def test_the_learned_decoder_is_chosen_only_when_it_beats_the_thresholds_out_of_fold(essays):
    probs, truth = essays
    groups = cross_fit_groups(list(probs), {essay_id: i % 3 for i, essay_id in enumerate(probs)}, "unused")
    choice = choose_decoding(probs, truth, ThresholdConfig(), groups, tune=True, learn=True, settings=FAST)
    # These essays' Rebuttals never win the argmax: only the learned decoder finds them, out of fold.
    assert choice.learned.result.f1 > choice.thresholds_result.f1 and choice.uses_learned
    assert choice.learned.groups.tolist() == groups.groups.tolist()  # both cross-fitted by the same groups
    not_learned = choose_decoding(probs, truth, ThresholdConfig(), groups, tune=True, learn=False)
    assert not not_learned.uses_learned and not_learned.thresholds_result.f1 == choice.thresholds_result.f1


def _run_with_out_of_fold(directory, probs, truth, folds):
    run = RunDir(directory)
    directory.mkdir(parents=True)
    save_word_probs(run.oof_path, probs, folds)
    run.write_decoding(ThresholdConfig())
    run.write_record(RunRecord(name=directory.name, config={}, folds=[]))
    truth_path = directory.parent / f"{directory.name}-truth.csv"
    truth.to_csv(truth_path, index=False)
    return run, truth_path


def test_evaluate_tune_cross_fits_by_the_recorded_folds_and_says_when_a_run_has_none(essays, tmp_path, monkeypatch):
    from fbp.evaluate import evaluate

    probs, truth = essays
    seen_groups = []
    real_fit = fbp.learned_decoder.fit_learned_decoder

    def recording_fit(word_probs, truth_spans, groups, *rest):
        seen_groups.append(list(groups))
        return real_fit(word_probs, truth_spans, groups, FAST)

    monkeypatch.setattr(fbp.learned_decoder, "fit_learned_decoder", recording_fit)
    folds = {essay_id: (i * 7) % 4 for i, essay_id in enumerate(probs)}  # not a pattern anything could rebuild
    run, truth_path = _run_with_out_of_fold(tmp_path / "recorded", probs, truth, folds)
    tuned = evaluate(run.path, truth_path, tune=True)
    assert seen_groups == [[folds[essay_id] for essay_id in probs]]
    assert tuned.learned["cross_fitted_by"] == "folds" and not tuned.warnings
    assert run.read_record().cv_f1_tuned == round(tuned.learned["thresholds"], 6)

    old, truth_path = _run_with_out_of_fold(tmp_path / "old", probs, truth, None)  # written before folds were recorded
    tuned = evaluate(old.path, truth_path, tune=True)
    assert "two random halves" in tuned.learned["cross_fitted_by"]
    assert any("two random halves" in warning and "retrain" in warning for warning in tuned.warnings)
