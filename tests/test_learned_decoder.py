"""Learned span decoding: candidates, honest cross-fitting, a class the argmax never finds, its files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fbp import learned_decoder
from fbp.learned_decoder import fitting, scorer
from fbp.config import ThresholdConfig
from fbp.decode import cross_fitted_thresholds, decode_essays
from fbp.errors import FbpError
from fbp.io.decoder import decoder_path, load_decoder, save_decoder
from fbp.labels import CLASSES, NUM_LABELS, begin_id, inside_id
from fbp.learned_decoder import DecoderSettings, fit_learned_decoder, make_candidates, suppress_overlaps
from fbp.metric import score

FAST = DecoderSettings(rounds=40, num_leaves=15, min_child_samples=5, rare_levels=())  # the second stage's options off: each test adds its own


def synthetic_essays(n_essays: int, seed: int = 0):
    """Essays whose Rebuttal spans never win a word's argmax (O keeps 0.5) but carry a clear B+I signal (~0.4),
    with short Rebuttal-looking blips in the O text; the other classes are easy."""
    rng = np.random.default_rng(seed)
    rebuttal = CLASSES.index("Rebuttal")
    probs_by_id, rows = {}, []
    for index in range(n_essays):
        essay_id = f"E{index:04d}"
        layout = [("Lead", rng.integers(8, 13)), (None, 2), ("Claim", rng.integers(6, 12)), ("Evidence", rng.integers(15, 30))]
        if rng.random() < 0.7:
            layout += [(None, rng.integers(1, 4)), ("Rebuttal", rng.integers(7, 14))]
        layout += [(None, rng.integers(3, 10)), ("Concluding Statement", rng.integers(8, 15))]
        n_words = int(sum(length for _, length in layout))
        probs = np.full((n_words, NUM_LABELS), 0.01, np.float32)
        probs[:, 0] = 0.9
        position = 0
        for name, length in layout:
            length = int(length)
            if name is None:
                if rng.random() < 0.5 and length >= 3:  # a short blip of Rebuttal probability in the O text
                    probs[position : position + 2, inside_id(rebuttal)] = 0.3
            elif name == "Rebuttal":
                probs[position : position + length, 0] = 0.5
                probs[position, begin_id(rebuttal)] = 0.3
                probs[position + 1 : position + length, inside_id(rebuttal)] = 0.38 + rng.normal(0, 0.03, length - 1)
                probs[position : position + length, inside_id(CLASSES.index("Claim"))] = 0.1
            else:
                code = CLASSES.index(name)
                probs[position : position + length, 0] = 0.05
                probs[position, begin_id(code)] = 0.85
                probs[position + 1 : position + length, inside_id(code)] = 0.85
            if name is not None:
                rows.append((essay_id, name, " ".join(map(str, range(position, position + length)))))
            position += length
        probs += rng.uniform(0, 0.02, probs.shape).astype(np.float32)
        probs_by_id[essay_id] = probs / probs.sum(axis=1, keepdims=True)
    truth = pd.DataFrame(rows, columns=["id", "class", "predictionstring"])
    return probs_by_id, truth


@pytest.fixture(scope="module")
def essays():
    return synthetic_essays(120)


@pytest.fixture(scope="module")
def fitted(essays):
    probs, truth = essays
    groups = np.arange(len(probs)) % 3
    return fit_learned_decoder(probs, truth, groups, FAST)


def test_candidates_include_argmax_spans_and_runs_of_a_class_that_never_wins_the_argmax(essays):
    probs, truth = essays
    candidates = make_candidates(probs, FAST)
    rebuttal = CLASSES.index("Rebuttal")
    assert (candidates.class_code == rebuttal).any()
    assert not ((candidates.class_code == rebuttal) & ((candidates.source & 1) > 0)).any()  # never an argmax span
    assert ((candidates.source & 1) > 0).any()
    assert candidates.features.shape == (len(candidates), len(candidates.feature_names))
    assert np.isfinite(candidates.features[:, candidates.feature_names.index("mean")]).all()
    per_group = pd.Series(candidates.essay * 7 + candidates.class_code).value_counts()
    assert per_group.max() <= FAST.max_candidates


def test_learned_decoding_finds_the_class_that_thresholds_never_find(essays, fitted):
    probs, truth = essays
    default = score(decode_essays(probs, ThresholdConfig()), truth).class_f1()
    _, tuned_frame = cross_fitted_thresholds(probs, truth, ThresholdConfig(), np.arange(len(probs)) % 3)
    tuned = score(tuned_frame, truth).class_f1()
    assert default["Rebuttal"] == 0.0 and tuned["Rebuttal"] == 0.0
    learned = fitted.result.class_f1()  # cross-fitted: no essay scored by a model or rules fitted on it
    assert learned["Rebuttal"] > 0.8
    assert fitted.result.f1 > score(tuned_frame, truth).f1
    # The decoder that is kept finds it too.
    assert score(fitted.decoder.decode(probs), truth).class_f1()["Rebuttal"] > 0.8


class _Memorizer:
    """A stand-in model that scores 1 for any row it was fitted on and 0 for the rest."""

    def __init__(self, features):
        self.seen = {row.tobytes() for row in np.asarray(features, np.float32)}

    def predict(self, features):
        return np.array([1.0 if row.tobytes() in self.seen else 0.0 for row in np.asarray(features, np.float32)])


def test_cross_fitting_never_scores_a_candidate_with_a_model_fitted_on_its_own_group(essays, monkeypatch):
    probs, truth = essays
    monkeypatch.setattr(scorer, "_fit_model", lambda features, labels, names, settings: _Memorizer(features))
    tuned_on = []
    real_tune_rules = learned_decoder.tune_rules
    monkeypatch.setattr(fitting, "tune_rules", lambda candidates, *rest: tuned_on.append(set(candidates.essay.tolist())) or real_tune_rules(candidates, *rest))
    groups = np.arange(len(probs)) % 3
    fit = fit_learned_decoder(probs, truth, groups, DecoderSettings(negatives_per_positive=0))
    # Feature rows are distinct here, so a score of 1 would mean "scored by a model that saw this candidate".
    assert len({row.tobytes() for row in fit.candidates.features}) == len(fit.candidates)
    assert (fit.candidate_scores == 0).all()
    # The memorizer does recognise what it was fitted on: the final decoder (fitted on everything) scores all 1.
    assert (fit.decoder.score_candidates(fit.candidates) == 1).all()
    # Each group was decoded with rules tuned on the other groups' essays only.
    for group in range(3):
        assert set(np.flatnonzero(groups != group)) == tuned_on[group]


def test_suppression_matches_the_one_by_one_greedy_pass():
    rng = np.random.default_rng(3)
    for n in [0, 1, 2] + [60] * 20:  # none, one (nothing to overlap: crashed fbp quickstart once), two, many
        start = rng.integers(0, 80, n)
        end = start + rng.integers(1, 20, n)
        essay, code = rng.integers(0, 2, n), rng.integers(0, 2, n)
        candidates = learned_decoder.Candidates(("a", "b"), essay, code, start, end, np.zeros(n, np.int64), np.zeros((n, 0), np.float32), ())
        scores = rng.integers(0, 10, n) / 10.0  # ties on purpose
        for max_overlap in (0.0, 0.5):
            kept = []
            for i in sorted(range(n), key=lambda i: (-scores[i], i)):
                clash = any(essay[j] == essay[i] and code[j] == code[i]
                            and min(end[i], end[j]) - max(start[i], start[j]) > max_overlap * min(end[i] - start[i], end[j] - start[j])
                            for j in kept)
                if not clash:
                    kept.append(i)
            expected = np.zeros(n, bool)
            expected[kept] = True
            assert (suppress_overlaps(candidates, scores, max_overlap) == expected).all()


def test_saved_decoder_gives_identical_predictions(fitted, essays, tmp_path):
    probs, _ = essays
    path = save_decoder(fitted.decoder, decoder_path(tmp_path))
    assert json.loads(path.read_text())["format"] == "fbp-learned-decoder"
    model_files = list(tmp_path.glob("*.lgb.txt"))
    assert model_files and model_files[0].read_text().startswith("tree")  # LightGBM's own text format
    loaded = load_decoder(path)
    pd.testing.assert_frame_equal(loaded.decode(probs), fitted.decoder.decode(probs))
    assert loaded.rules == fitted.decoder.rules


@pytest.mark.parametrize(
    "damage, names",
    [
        ("missing", "json"),
        ("not json", "json"),
        ("foreign", "json"),
        ("newer", "json"),
        ("truncated model", "model"),
        ("missing model", "model"),
        ("a level dropped", "json"),  # still valid settings, but not the ones the models were fitted with
        ("a rule's threshold changed", "json"),
    ],
)
def test_a_bad_decoder_file_gives_one_clear_error_naming_it(fitted, tmp_path, damage, names):
    path = save_decoder(fitted.decoder, decoder_path(tmp_path))
    model_path = next(tmp_path.glob("*.lgb.txt"))
    stored = json.loads(path.read_text())
    if damage == "missing":
        path.unlink()
    elif damage == "not json":
        path.write_text('{"format": "fbp-learned-decoder", "vers')
    elif damage == "foreign":
        path.write_text(json.dumps({"format": "something-else", "version": 1}))
    elif damage == "newer":
        path.write_text(json.dumps({**stored, "version": 99}))
    elif damage == "truncated model":
        model_path.write_text(model_path.read_text()[:500])
    elif damage == "missing model":
        model_path.unlink()
    elif damage == "a level dropped":
        stored["settings"]["levels"] = stored["settings"]["levels"][1:]
        path.write_text(json.dumps(stored))
    elif damage == "a rule's threshold changed":
        rule = next(rule for rule in stored["rules"].values() if rule["threshold"] is not None)
        rule["threshold"] = rule["threshold"] / 2
        path.write_text(json.dumps(stored))
    with pytest.raises(FbpError) as error:
        load_decoder(path)
    message = str(error.value)
    assert str(path if names == "json" else model_path) in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------------------
# In the lifecycle: runs, infer, evaluate, ensembles


def _oof_run(directory, probs, truth, decoder=None, chosen=None):
    """A run directory with out-of-fold probabilities (and optionally a learned decoder), written by the real owners."""
    from fbp.io.run_dir import RunDir
    from fbp.io.run_record import RunRecord
    from fbp.io.word_probs import save_word_probs

    run = RunDir(directory)
    directory.mkdir(parents=True)
    save_word_probs(run.oof_path, probs)
    run.write_decoding(ThresholdConfig())
    summary = RunRecord(name=directory.name, config={}, folds=[], cv_f1_tuned=0.5)
    if decoder is not None:
        run.write_learned_decoder(decoder)
        summary.decoder = chosen
    run.write_record(summary)
    truth_path = directory.parent / f"{directory.name}-truth.csv"
    truth.to_csv(truth_path, index=False)
    return run, truth_path


def test_evaluate_tune_refits_the_learned_decoder_and_the_run_chooses_it(essays, tmp_path):
    from fbp.evaluate import evaluate
    from fbp.io.run_dir import RunDir

    probs, truth = essays
    run, truth_path = _oof_run(tmp_path / "run", probs, truth)
    before = evaluate(run.path, truth_path)
    assert before.result.class_f1()["Rebuttal"] == 0.0 and not run.decoder_path.exists()
    tuned = evaluate(run.path, truth_path, tune=True)
    summary = RunDir(run.path).read_record()
    assert run.decoder_path.exists() and summary.cv_f1_learned > 0.5 and summary.decoder == "learned"
    assert tuned.learned["decoder"] == "learned" and run.decoder_path in tuned.saved
    # From now on the run decodes with it (in-sample here), and --decoding picks any decoding explicitly.
    after = evaluate(run.path, truth_path)
    assert after.result.class_f1()["Rebuttal"] > 0.8 and after.to_quote[0] == "cv_f1_learned"
    assert evaluate(run.path, truth_path, decoding="thresholds").result.class_f1()["Rebuttal"] == 0.0
    assert evaluate(run.path, truth_path, decoding="argmax").result.f1 < after.result.f1


def test_a_run_without_a_learned_decoder_decodes_exactly_as_before(essays, fitted, tmp_path):
    from fbp.infer import Member, resolve_decoder

    probs, truth = essays
    old, _ = _oof_run(tmp_path / "old", probs, truth)  # made before the learned decoder existed
    member = Member(old.path, checkpoints=[old.path / "fold_0"], run_dir=old.path)
    decoding, decoder, source = resolve_decoder([member], "auto")
    assert decoder is None and decoding == old.decoding() and source.startswith("thresholds")
    with pytest.raises(FbpError, match="has no learned decoder"):
        resolve_decoder([member], "learned")
    # A run whose decoder lost to its thresholds keeps them unless asked; one whose decoder won uses it.
    lost, _ = _oof_run(tmp_path / "lost", probs, truth, fitted.decoder, chosen="thresholds")
    won, _ = _oof_run(tmp_path / "won", probs, truth, fitted.decoder, chosen="learned")
    assert resolve_decoder([Member(lost.path, run_dir=lost.path)], "auto")[1] is None
    assert resolve_decoder([Member(lost.path, run_dir=lost.path)], "learned")[1] is not None
    assert resolve_decoder([Member(won.path, run_dir=won.path)], "auto")[1] is not None
    assert resolve_decoder([Member(won.path, run_dir=won.path)], "thresholds")[1] is None


def test_infer_with_a_run_without_a_learned_decoder_is_the_threshold_decoding(tmp_path):
    from tiny_models import minilm_tokenizer, tiny_bert

    from fbp.io.checkpoint import CheckpointMeta, save_checkpoint
    from fbp.io.run_dir import RunDir
    from fbp.io.run_record import RunRecord
    from fbp.io.word_probs import load_word_probs
    from fbp.infer import predict_directory

    run = RunDir(tmp_path / "run")
    for fold in (0, 1):
        save_checkpoint(run.fold_dir(fold), tiny_bert(seed=fold), minilm_tokenizer(),
                        CheckpointMeta(max_length=48, stride=12, label_subtokens="first", model="minilm", fold=fold, run="tiny", decoding=ThresholdConfig()))
    run.write_record(RunRecord(name="tiny", config={}, folds=[]))
    thresholds = ThresholdConfig(min_words={"Claim": 2}, min_confidence={"Claim": 0.05})
    run.write_decoding(thresholds)
    texts = tmp_path / "texts"
    texts.mkdir()
    for index in range(3):
        (texts / f"E{index}.txt").write_text("Phones should be allowed in school because they help. " * (5 + index))
    result = predict_directory([run.path], texts, tmp_path / "sub.csv", save_probs=tmp_path / "probs.npz")
    assert not result.learned and result.decoding == thresholds
    saved = load_word_probs(tmp_path / "probs.npz")
    expected = decode_essays(saved, thresholds)
    pd.testing.assert_frame_equal(result.spans.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False)
    explicit = predict_directory([run.path], texts, tmp_path / "sub2.csv", decoding_mode="thresholds")
    pd.testing.assert_frame_equal(explicit.spans, result.spans)
    with pytest.raises(FbpError, match="has no learned decoder"):
        predict_directory([run.path], texts, tmp_path / "sub3.csv", decoding_mode="learned")


def test_infer_decodes_with_the_runs_learned_decoder_and_a_corrupt_one_is_named(essays, fitted, tmp_path):
    from conftest import run_cli
    from fbp.io.word_probs import save_word_probs

    probs, truth = essays
    some = dict(list(probs.items())[:20])
    run, _ = _oof_run(tmp_path / "won", some, truth, fitted.decoder, chosen="learned")
    texts = tmp_path / "texts"
    texts.mkdir()
    for essay_id, rows in some.items():
        (texts / f"{essay_id}.txt").write_text(" ".join(["word"] * len(rows)))
    npz = tmp_path / "probs.npz"
    save_word_probs(npz, some)
    # A saved-probabilities member in the run directory's place: the decoder comes from the run it names.
    from fbp.infer import Member, resolve_decoder
    decoding, decoder, source = resolve_decoder([Member(npz, probs_file=npz, run_dir=run.path)], "auto")
    assert source == f"learned decoder {run.decoder_path}"
    pd.testing.assert_frame_equal(decoder.decode(some).reset_index(drop=True), fitted.decoder.decode(some).reset_index(drop=True))
    # A corrupt decoder file: one message naming it, exit code 1, no traceback.
    run.decoder_path.write_text("{broken")
    code, output = run_cli("evaluate", str(run.path), "--truth", str(tmp_path / "won-truth.csv"))
    assert code == 1 and str(run.decoder_path) in output and "Traceback" not in output


def report_thresholds(report, a, b, truth_path):
    """The thresholds tuned on the fitted blend of ``a`` and ``b`` (what the saved directory should hold)."""
    from fbp.io.kaggle import read_span_file
    from fbp.io.word_probs import load_folds, load_word_probs
    from fbp.post_training import choose_decoding, cross_fit_groups
    from fbp.word_probs import average_word_probs

    blend = average_word_probs([load_word_probs(a.oof_path), load_word_probs(b.oof_path)], report.fitted_weights)
    groups = cross_fit_groups(sorted(blend), load_folds(a.oof_path), "")
    truth = read_span_file(truth_path, "truth")[0]
    return choose_decoding(blend, truth, a.decoding(), groups, tune=True, learn=False).thresholds


def test_ensemble_fit_weights_saves_weights_and_the_blends_decoder(essays, tmp_path):
    from fbp.io.ensemble_dir import EnsembleDir
    from fbp.ensemble import ensemble_oof
    from fbp.infer import expand_ensemble_dir, resolve_decoder

    probs, truth = essays
    rng = np.random.default_rng(1)
    noisy = {essay_id: rows * 0.5 + rng.dirichlet(np.ones(NUM_LABELS), len(rows)).astype(np.float32) * 0.5 for essay_id, rows in probs.items()}
    a, truth_path = _oof_run(tmp_path / "a", probs, truth)
    b, _ = _oof_run(tmp_path / "b", noisy, truth)
    report = ensemble_oof([a.path, b.path], fit_weights=True, truth=truth_path, save_dir=tmp_path / "blend")
    assert report.learned_result.class_f1()["Rebuttal"] > 0.8 and report.learned_result.f1 > report.fitted_result.f1
    saved = EnsembleDir(tmp_path / "blend")
    assert saved.weights == pytest.approx(report.fitted_weights) and saved.learned_decoder() is not None
    # The directory stands for its members, weights and decoder.
    paths, weights, ensemble = expand_ensemble_dir([tmp_path / "blend"], None)
    assert [p.name for p in paths] == ["a", "b"] and weights == saved.weights
    assert resolve_decoder([], "auto", None, ensemble)[1] is not None  # (its members here are runs without checkpoints)
    # Its thresholds are the blend's, tuned on the blended out-of-fold probabilities, not its first member's.
    assert saved.thresholds() == report_thresholds(report, a, b, truth_path)
    thresholds, _, source = resolve_decoder([], "thresholds", None, ensemble)
    assert thresholds == saved.thresholds() and source == f"thresholds from {saved.decoding_path}"
    again = ensemble_oof([tmp_path / "blend"], truth=truth_path)
    assert again.weights == pytest.approx(saved.weights)
    with pytest.raises(FbpError, match="give it alone"):
        expand_ensemble_dir([tmp_path / "blend", a.path], None)


# --------------------------------------------------------------------------------------------------
# The training-side option for classes the model gives little signal: training.class_weights


def test_class_weights_scale_each_tokens_loss_by_its_class_and_are_validated():
    import torch

    from fbp.config import load_config
    from fbp.errors import UsageError
    from fbp.model import class_label_weights, token_classification_loss

    weights = class_label_weights({"Rebuttal": 4.0})
    rebuttal = CLASSES.index("Rebuttal")
    assert weights[0] == 1.0 and weights[begin_id(rebuttal)] == weights[inside_id(rebuttal)] == 4.0 and sum(weights) == 15 + 2 * 3
    assert class_label_weights(None) is None
    logits = torch.randn(2, 6, NUM_LABELS)
    labels = torch.tensor([[0, begin_id(rebuttal), inside_id(rebuttal), -100, 1, 2], [0, 0, 5, 6, -100, -100]])
    plain = token_classification_loss({"logits": logits}, labels)
    weighted = token_classification_loss({"logits": logits}, labels, label_weights=weights)
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, NUM_LABELS), labels.reshape(-1), ignore_index=-100, reduction="none")
    factor = torch.tensor([weights[label] if label >= 0 else 0.0 for label in labels.reshape(-1).tolist()])
    n_labelled = int(labels.ne(-100).sum())
    assert float(weighted) == pytest.approx(float((per_token * factor).sum() / n_labelled), rel=1e-5)
    assert float(plain) == pytest.approx(float(per_token.sum() / n_labelled), rel=1e-5)
    # The default weights Counterclaim 4, Rebuttal 8; --set changes one entry and keeps the other, with or without
    # a config file, and a config's null (no weights) takes the entry alone. The validated mapping names every class
    # (those left out at 1), so a run's config.yaml records all seven.
    def weighted(**named):
        return {name: named.get(name.replace(" ", "_"), 1.0) for name in CLASSES}

    assert load_config(None).training.class_weights == weighted(Counterclaim=4.0, Rebuttal=8.0) == load_config("configs/default.yaml").training.class_weights
    for config in (None, "configs/default.yaml", "configs/tune-example.yaml"):
        assert load_config(config, {"training.class_weights.Rebuttal": 3}).training.class_weights == weighted(Counterclaim=4.0, Rebuttal=3.0)
    assert load_config("configs/longformer-large.yaml", {"training.class_weights.Rebuttal": 3}).training.class_weights == weighted(Rebuttal=3.0)
    assert load_config(None, {"training.class_weights": None}).training.class_weights is None
    assert load_config(None, {"training.class_weights": {"Claim": 2}}).training.class_weights == weighted(Claim=2.0)
    assert list(load_config(None, {"training.class_weights": {"Rebuttal": 2, "Claim": 3}}).training.class_weights) == list(CLASSES)
    for bad in ({"training.class_weights.Rebutal": 3}, {"training.class_weights.Rebuttal": 0}):
        with pytest.raises(UsageError, match="class_weights"):
            load_config(None, bad)
    with pytest.raises(UsageError, match="begin_weight"):
        load_config(None, {"training.begin_weight": 0})


def test_begin_weight_scales_every_b_label_times_its_class_weight():
    from fbp.config import load_config
    from fbp.model import class_label_weights

    rebuttal = CLASSES.index("Rebuttal")
    assert class_label_weights(None, 1.0) is None
    only_begin = class_label_weights(None, 3.0)
    assert only_begin[0] == 1.0
    assert all(only_begin[begin_id(code)] == 3.0 and only_begin[inside_id(code)] == 1.0 for code in range(len(CLASSES)))
    both = class_label_weights({"Rebuttal": 4.0}, 2.0)
    assert both[begin_id(rebuttal)] == 8.0 and both[inside_id(rebuttal)] == 4.0 and both[begin_id(0)] == 2.0 and both[inside_id(0)] == 1.0
    assert load_config("configs/default.yaml", {"training.begin_weight": 3}).training.begin_weight == 3.0


def test_a_run_made_before_a_setting_existed_resumes_when_the_setting_is_at_its_default():
    from fbp.config import Config
    from fbp.io.run_settings import config_differences

    current = Config().model_dump(mode="json")
    older = Config().model_dump(mode="json")
    del older["training"]["begin_weight"], older["training"]["learned_decoding"]
    assert config_differences(older, current) == []
    current["training"]["begin_weight"] = 2.0
    assert config_differences(older, current) == ["training.begin_weight: 1.0 -> 2.0"]


SECOND_STAGE = {
    "rare levels": dict(rare_levels=(0.02, 0.05)),
    "sub-spans": dict(sub_span=0.65),
    "stretched rare spans": dict(stretch=2),
    "context features": dict(context_features=True),
}


@pytest.mark.parametrize("change", SECOND_STAGE.values(), ids=list(SECOND_STAGE))
def test_second_stage_options_fit_save_and_reload(essays, tmp_path, change):
    """Each option of the stronger second stage makes its candidates and features, fits, and a saved decoder
    decodes exactly as the fitted one."""
    from dataclasses import replace

    from fbp.learned_decoder import feature_names, make_candidates

    probs, truth = essays
    settings = replace(FAST, **change)
    candidates = make_candidates(probs, settings)
    assert candidates.features.shape[1] == len(feature_names(settings)) > len(feature_names(FAST)) - (1 if "rare_levels" in change else 0)
    assert (candidates.end > candidates.start).all()
    assert not np.isnan(candidates.features[:, list(candidates.feature_names).index("mean")]).any()
    base = make_candidates(probs, FAST)
    if "rare_levels" in change or "sub_span" in change or "stretch" in change:
        assert len(candidates) > len(base)  # more candidates than the defaults give
    if "rare_levels" in change:
        rare_bits = sum(1 << (1 + index) for index, level in enumerate(settings.all_levels()) if level not in settings.levels)
        extra = candidates.subset(((candidates.source & rare_bits) > 0) & ((candidates.source & ~rare_bits) == 0))
        rare = {CLASSES.index(name) for name in settings.rare_classes}
        assert len(extra) and set(extra.class_code.tolist()) <= rare  # the low levels cut the rare classes only
    fit = fit_learned_decoder(probs, truth, np.arange(len(probs)) % 3, settings)
    assert 0 < fit.result.f1 <= 1
    loaded = load_decoder(save_decoder(fit.decoder, decoder_path(tmp_path)))
    assert loaded.settings == settings
    pd.testing.assert_frame_equal(loaded.decode(probs), fit.decoder.decode(probs))


def test_the_rare_classes_lower_levels_are_on_by_default_the_rest_off():
    """Measured on real out-of-fold probabilities (bench/RESULTS.md, issue 19): only the rare levels gained."""
    settings = DecoderSettings()
    assert settings.rare_levels == (0.02, 0.05) and settings.rare_classes == ("Counterclaim", "Rebuttal")
    assert (settings.sub_span, settings.stretch, settings.context_features) == (0.0, 0, False)


def test_a_decoder_saved_without_its_content_checksum_loads_as_before(fitted, essays, tmp_path):
    """Decoders saved before content_sha256 existed lack it; they are read (and decode) exactly as before."""
    probs, _ = essays
    path = save_decoder(fitted.decoder, decoder_path(tmp_path))
    stored = json.loads(path.read_text())
    assert len(stored.pop("content_sha256")) == 64
    path.write_text(json.dumps(stored))
    pd.testing.assert_frame_equal(load_decoder(path).decode(probs), fitted.decoder.decode(probs))


def test_a_decoder_saved_before_the_second_stage_settings_loads_as_fitted(fitted, essays, tmp_path):
    """A decoder file without the newer settings (rare_levels, sub_span, stretch, context_features) reads them as
    off, so its features match and it decodes as before."""
    probs, _ = essays
    path = save_decoder(fitted.decoder, decoder_path(tmp_path))
    stored = json.loads(path.read_text())
    for name in ("rare_levels", "rare_classes", "sub_span", "stretch", "context_features"):
        stored["settings"].pop(name)
    path.write_text(json.dumps(stored))
    pd.testing.assert_frame_equal(load_decoder(path).decode(probs), fitted.decoder.decode(probs))
