"""Essays -> token windows: coverage, labels on sub-tokens, and the three tokenizer families."""

import numpy as np
import pytest
from tiny_models import byte_level_bpe_tokenizer, minilm_tokenizer, sentencepiece_unigram_tokenizer

from fbp.errors import UsageError
from fbp.labels import LABEL2ID
from fbp.windows import IGNORE_INDEX, make_windows, model_features, window_metadata

TOKENIZERS = {"bert": minilm_tokenizer, "byte-level-bpe": byte_level_bpe_tokenizer, "sentencepiece": sentencepiece_unigram_tokenizer}
LONG_ESSAY = " ".join(f"Students{i % 7} should consider driverless\ncars carefully, because safety matters." for i in range(40))
SHORT_ESSAY = "Phones  help students research."


def _labels_for(text):
    """B-Claim on every 5th word, I-Claim after it, so each word's label is recognisable."""
    return [LABEL2ID["B-Claim"] if i % 5 == 0 else LABEL2ID["I-Claim"] for i in range(len(text.split()))]


@pytest.mark.parametrize("family", TOKENIZERS)
def test_every_word_of_every_essay_starts_in_some_window(family):
    tokenizer = TOKENIZERS[family]()
    texts = [LONG_ESSAY, SHORT_ESSAY]
    windows = make_windows(tokenizer, texts, max_length=32, stride=8)
    assert max(len(window["input_ids"]) for window in windows) == 32
    for essay_index, text in enumerate(texts):
        started = set()
        for window in windows:
            if window["essay_index"] == essay_index:
                started.update(window["word_ids"][window["word_starts"]].tolist())
        assert started == set(range(len(text.split())))
    assert sum(window["essay_index"] == 0 for window in windows) > 5  # the long essay really overflows


@pytest.mark.parametrize("family", TOKENIZERS)
def test_first_subtoken_labels_match_the_word_and_the_rest_are_ignored(family):
    tokenizer = TOKENIZERS[family]()
    word_labels = [_labels_for(LONG_ESSAY)]
    windows = make_windows(tokenizer, [LONG_ESSAY], max_length=24, stride=6, word_labels=word_labels)
    for window in windows:
        labels = np.array(window["labels"])
        starts = window["word_starts"]
        expected = np.array(word_labels[0])[window["word_ids"][starts]]
        assert (labels[starts] == expected).all()
        assert (labels[~starts] == IGNORE_INDEX).all()
        assert len(labels) == len(window["input_ids"])


def test_windows_cut_mid_word_do_not_restart_the_word():
    """A window that begins inside a word (continuation sub-tokens) must not treat them as a word start."""
    tokenizer = minilm_tokenizer()
    text = " ".join(["unbelievably"] * 60)  # 3+ word pieces each, so window edges fall inside words
    windows = make_windows(tokenizer, [text], max_length=16, stride=3)
    cut = [w for w in windows[1:] if not w["word_starts"][1]]
    assert cut, "expected at least one window starting mid-word"
    for window in windows:
        starts_per_word = np.bincount(window["word_ids"][window["word_starts"]])
        assert starts_per_word.max() == 1


def test_all_subtokens_labelled_with_inside_for_continuations():
    tokenizer = minilm_tokenizer()
    text = "Driverless unbelievable cars"
    labels = [LABEL2ID["B-Lead"], LABEL2ID["I-Lead"], LABEL2ID["B-Claim"]]
    (window,) = make_windows(tokenizer, [text], max_length=32, stride=4, word_labels=[labels], label_subtokens="all")
    tokens = tokenizer.convert_ids_to_tokens(window["input_ids"])
    by_token = dict(zip(tokens, window["labels"]))
    assert by_token["driver"] == LABEL2ID["B-Lead"] and by_token["##less"] == LABEL2ID["I-Lead"]
    assert by_token["[CLS]"] == IGNORE_INDEX and by_token["cars"] == LABEL2ID["B-Claim"]


def test_features_and_metadata_split():
    tokenizer = minilm_tokenizer()
    windows = make_windows(tokenizer, [SHORT_ESSAY], max_length=16, stride=4, word_labels=[_labels_for(SHORT_ESSAY)])
    (features,), (meta,) = model_features(windows), window_metadata(windows)
    assert set(features) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert set(meta) == {"essay_index", "word_ids", "word_starts"}
    assert meta["word_ids"][0] == -1 and meta["word_ids"][-1] == -1


def test_bad_settings_are_usage_errors():
    tokenizer = minilm_tokenizer()
    with pytest.raises(UsageError, match="stride"):
        make_windows(tokenizer, [SHORT_ESSAY], max_length=16, stride=14)
    with pytest.raises(UsageError, match="word labels for"):
        make_windows(tokenizer, [SHORT_ESSAY], max_length=16, stride=4, word_labels=[[0, 0]])
