"""Stitching windows back to words, streaming prediction, averaging, storage."""

import numpy as np
import pytest
import torch
from tiny_models import minilm_tokenizer, tiny_bert

from fbp.errors import FbpError, UsageError
from fbp.labels import NUM_LABELS
from fbp.windows import make_windows, window_metadata
from fbp.io.word_probs import load_word_probs, save_word_probs
from fbp.word_probs import average_word_probs, predict_word_probs, stitch_word_probs

ESSAYS = [
    " ".join(f"word{i} unbelievably" for i in range(70)),
    "A short essay.",
    " ".join(f"Students should{i} research driverless cars." for i in range(30)),
]


def _one_hot(indices):
    return np.eye(NUM_LABELS, dtype=np.float32)[np.asarray(indices) % NUM_LABELS]


def test_consistent_token_probs_give_each_word_its_own_row():
    windows = window_metadata(make_windows(minilm_tokenizer(), ESSAYS, max_length=24, stride=6))
    token_probs = [_one_hot(np.maximum(meta["word_ids"], 0)) for meta in windows]
    stitched = stitch_word_probs(token_probs, windows, [len(text.split()) for text in ESSAYS])
    for text, word_probs in zip(ESSAYS, stitched):
        assert word_probs.shape == (len(text.split()), NUM_LABELS)
        assert (word_probs.argmax(1) == np.arange(len(word_probs)) % NUM_LABELS).all()


def test_overlapping_windows_prefer_the_one_with_most_context():
    windows = window_metadata(make_windows(minilm_tokenizer(), ESSAYS[:1], max_length=20, stride=8))
    assert len(windows) > 3
    token_probs = [np.full((len(meta["word_ids"]), NUM_LABELS), k, dtype=np.float32) for k, meta in enumerate(windows)]  # value = window number
    (word_probs,) = stitch_word_probs(token_probs, windows, [len(ESSAYS[0].split())])
    chosen = word_probs[:, 0].astype(int)
    last = len(windows) - 1
    for word in range(len(word_probs)):
        contexts = {}
        for k, meta in enumerate(windows):
            text = np.flatnonzero(meta["word_ids"] >= 0)
            hit = [p for p in text if meta["word_ids"][p] == word and meta["word_starts"][p]]
            if hit:
                left = hit[0] - text[0] if k > 0 else 10**6
                right = text[-1] - hit[0] if k < last else 10**6
                contexts[k] = min(left, right)
        assert len(contexts) >= 1
        assert contexts[chosen[word]] == max(contexts.values())
    assert len(set(chosen.tolist())) == len(windows)  # every window contributes somewhere


def test_words_without_tokens_copy_a_neighbour():
    meta = [{"essay_index": 0, "word_ids": np.array([-1, 0, 2, -1]), "word_starts": np.array([False, True, True, False])}]
    (word_probs,) = stitch_word_probs([_one_hot([0, 3, 5, 0])], meta, [3])
    assert word_probs.argmax(1).tolist() == [3, 3, 5]


def test_streaming_prediction_matches_one_window_at_a_time():
    tokenizer, model = minilm_tokenizer(), tiny_bert()
    streamed = dict(predict_word_probs(model, tokenizer, iter(ESSAYS), max_length=24, stride=6, batch_size=4, chunk_essays=2))
    assert sorted(streamed) == [0, 1, 2]
    windows = make_windows(tokenizer, ESSAYS, max_length=24, stride=6)
    with torch.no_grad():
        token_probs = [
            torch.softmax(model(input_ids=torch.tensor([w["input_ids"]]), attention_mask=torch.tensor([w["attention_mask"]])).logits[0], -1).numpy()
            for w in windows
        ]
    expected = stitch_word_probs(token_probs, window_metadata(windows), [len(text.split()) for text in ESSAYS])
    for essay_index, word_probs in streamed.items():
        np.testing.assert_allclose(word_probs, expected[essay_index], atol=1e-5)
        np.testing.assert_allclose(word_probs.sum(1), 1.0, atol=1e-5)


def test_prediction_restores_training_mode():
    model = tiny_bert().train()
    list(predict_word_probs(model, minilm_tokenizer(), ESSAYS[1:2], max_length=16, stride=4, batch_size=2))
    assert model.training


def test_weighted_average_and_mismatches():
    first = {"a": _one_hot([1, 2]), "b": _one_hot([0])}
    second = {"a": _one_hot([3, 2]), "b": _one_hot([0])}
    averaged = average_word_probs([first, second], [3, 1])
    np.testing.assert_allclose(averaged["a"][0, [1, 3]], [0.75, 0.25])
    np.testing.assert_allclose(averaged["a"][1, 2], 1.0)
    with pytest.raises(UsageError, match="2 weights for 1 model"):
        average_word_probs([first], [1, 2])
    with pytest.raises(FbpError, match="different essays"):
        average_word_probs([first, {"a": first["a"]}])
    with pytest.raises(FbpError, match="essay 'a'"):
        average_word_probs([first, {"a": _one_hot([1]), "b": first["b"]}])


def test_save_and_load_round_trip(tmp_path):
    probs = {"essay1": np.random.default_rng(0).dirichlet(np.ones(NUM_LABELS), size=7).astype(np.float32), "empty": np.zeros((0, NUM_LABELS))}
    save_word_probs(tmp_path / "probs.npz", probs)
    loaded = load_word_probs(tmp_path / "probs.npz")
    assert list(loaded) == ["essay1", "empty"]
    np.testing.assert_allclose(loaded["essay1"], probs["essay1"], atol=1e-3)
    assert loaded["empty"].shape == (0, NUM_LABELS)


def test_words_the_tokenizer_drops_still_get_a_row():
    """Zero-width spaces, NUL and U+FFFD are words to str.split() but produce no BERT token."""
    text = "Hello \u200b world \x00 \ufffd fine"
    ((essay_index, word_probs),) = predict_word_probs(tiny_bert(), minilm_tokenizer(), [text], 16, 4, batch_size=4)
    assert essay_index == 0 and word_probs.shape == (6, NUM_LABELS)
    np.testing.assert_allclose(word_probs[1], word_probs[0])  # copied from the previous word
    np.testing.assert_allclose(word_probs.sum(1), 1.0, atol=1e-5)
