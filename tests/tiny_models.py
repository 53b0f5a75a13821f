"""Tiny, randomly initialised models and locally trained tokenizers for fast, offline tests."""

from __future__ import annotations

from functools import lru_cache

from fbp.labels import ID2LABEL, LABEL2ID, NUM_LABELS

CORPUS = [
    "Driverless cars are coming, and students should think about what that means for safety.",
    "Some people argue that phones in class distract students; however, phones can help them research.",
    "In conclusion, summer projects should be designed by students because they learn more.",
] * 20


@lru_cache(maxsize=None)
def minilm_tokenizer():
    """The packaged MiniLM's fast WordPiece tokenizer (BERT-style)."""
    from transformers import AutoTokenizer

    from fbp.model import resolve_model_name

    return AutoTokenizer.from_pretrained(resolve_model_name("minilm"))


def tiny_bert(vocab_size: int = 30522, seed: int = 0):
    """A one-layer BERT token classifier with fbp's labels (hidden size 32): milliseconds per batch."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, num_labels=NUM_LABELS, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID),
    )
    return BertForTokenClassification(config).eval()


@lru_cache(maxsize=None)
def byte_level_bpe_tokenizer():
    """A RoBERTa/Longformer-style tokenizer (byte-level BPE, <s> </s>), trained here on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", cls_token="<s>", sep_token="</s>", mask_token="<mask>"
    )


@lru_cache(maxsize=None)
def sentencepiece_unigram_tokenizer():
    """A DeBERTa-v3-style tokenizer (Unigram with the Metaspace "▁" pre-tokenizer), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    backend.train_from_iterator(CORPUS, trainers.UnigramTrainer(vocab_size=150, special_tokens=specials, unk_token="[UNK]"))
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]", mask_token="[MASK]")


def tiny_deberta_v2(vocab_size: int, seed: int = 0):
    """A one-layer DeBERTa-v3-style token classifier (relative positions only, c2p+p2c attention, shared keys)."""
    import torch
    from transformers import DebertaV2Config, DebertaV2ForTokenClassification

    torch.manual_seed(seed)
    config = DebertaV2Config(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, relative_attention=True, position_buckets=64, pos_att_type=["p2c", "c2p"],
        position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0, pad_token_id=0,
        num_labels=NUM_LABELS, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID),
    )
    return DebertaV2ForTokenClassification(config).eval()


def tiny_longformer(vocab_size: int, seed: int = 0):
    """A one-layer Longformer token classifier (sliding-window attention of 16 tokens; positions for 128-token windows)."""
    import torch
    from transformers import LongformerConfig, LongformerForTokenClassification

    torch.manual_seed(seed)
    config = LongformerConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        attention_window=[16], max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        num_labels=NUM_LABELS, id2label=dict(ID2LABEL), label2id=dict(LABEL2ID),
    )
    return LongformerForTokenClassification(config).eval()


ARCHITECTURES = {  # model_type -> (tiny model maker, its tokenizer maker)
    "bert": (tiny_bert, minilm_tokenizer),
    "deberta-v2": (tiny_deberta_v2, sentencepiece_unigram_tokenizer),
    "longformer": (tiny_longformer, byte_level_bpe_tokenizer),
}


def save_tiny_model(model_type: str, directory, seed: int = 0):
    """A tiny random model of ``model_type`` and its tokenizer kind, saved as a local model directory (as a hub model)."""
    make_model, make_tokenizer = ARCHITECTURES[model_type]
    tokenizer = make_tokenizer()
    make_model(len(tokenizer), seed=seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
