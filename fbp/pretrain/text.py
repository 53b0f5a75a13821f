"""The text ``fbp pretrain`` reads (processed essays, folders of .txt essays) and its blocks of tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..config import PretrainConfig
from ..errors import FbpError, UsageError
from ..io.pretrained import text_hash


@dataclass(frozen=True)
class PretrainText:
    """The essays read: ids, texts, and where they came from."""

    ids: List[str]
    texts: List[str]
    sources: List[str]


def gather_text(config: PretrainConfig) -> PretrainText:
    """Every essay to pretrain on: the processed essays (optionally the fixed subset ``fbp train --max-essays N``
    picks) and each text folder's ``*.txt``; an essay in two sources (same id, same words) is read once."""
    import numpy as np

    from ..io.kaggle import EssayDir
    from ..io.processed import load_processed

    ids: List[str] = []
    texts: List[str] = []
    sources: List[str] = []
    hashes: Dict[str, Tuple[str, str]] = {}  # id -> (hash, source)

    def add(essay_id: str, text: str, source: str) -> None:
        if not text.split():
            return  # an empty essay has nothing to learn from
        digest = text_hash(text)
        known = hashes.get(essay_id)
        if known is not None:
            if known[0] == digest:
                return
            raise FbpError(f"essay {essay_id} is in {known[1]} and in {source} with different text; "
                           "give each essay one id (rename one file) or drop one of the sources")
        hashes[essay_id] = (digest, source)
        ids.append(essay_id)
        texts.append(text)

    data = config.data
    if data.processed_dir is not None:
        processed = load_processed(Path(data.processed_dir))
        essays = processed.essays
        if data.max_essays is not None and data.max_essays < len(essays):
            # The same subset as `fbp train --max-essays N` with the same seed (fbp.training.loop.select_essays).
            picked = np.random.default_rng(config.pretrain.seed).choice(len(essays), data.max_essays, replace=False)
            essays = essays.iloc[np.sort(picked)]
        for essay_id, text in zip(essays["id"], essays["text"]):
            add(str(essay_id), str(text), f"processed data {data.processed_dir}")
        sources.append(str(Path(data.processed_dir).resolve()))
    for directory in data.text_dirs:
        folder = EssayDir.scan(Path(directory))
        for essay_id, text in zip(folder.ids, folder.texts()):
            add(essay_id, text, f"text folder {directory}")
        sources.append(str(Path(directory).resolve()))
    if not sources:
        raise UsageError("no text to pretrain on: give --data DIR (processed essays) or --text DIR (a folder of .txt essays)")
    if not ids:
        raise FbpError(f"no text to pretrain on: every essay in {', '.join(sources)} is empty")
    return PretrainText(ids=ids, texts=texts, sources=sources)


def make_blocks(tokenizer: Any, texts: List[str], max_length: int) -> Tuple[List[Dict[str, List]], int]:
    """The essays' tokens (each essay with its own special tokens), concatenated and cut into blocks of
    ``max_length``; the remainder after the last full block is dropped unless there is no full block. Each block
    keeps its offsets and special-token mask, which whole-word masking reads to find the words. Returns the
    blocks and the number of tokens."""
    from ..model import quiet_transformers

    input_ids: List[int] = []
    offsets: List[Tuple[int, int]] = []
    special: List[int] = []
    with quiet_transformers():  # "sequence longer than the model's maximum": blocks are cut below
        for text in texts:
            encoded = tokenizer(text.split(), is_split_into_words=True, return_offsets_mapping=True,
                                return_special_tokens_mask=True, truncation=False)
            input_ids.extend(encoded["input_ids"])
            offsets.extend(tuple(pair) for pair in encoded["offset_mapping"])
            special.extend(encoded["special_tokens_mask"])
    total = len(input_ids)
    if total == 0:
        return [], 0
    length = max_length if total >= max_length else total
    blocks = []
    for start in range(0, total - length + 1, length):
        end = start + length
        blocks.append({"input_ids": input_ids[start:end], "attention_mask": [1] * length,
                       "special_tokens_mask": special[start:end], "offset_mapping": [list(pair) for pair in offsets[start:end]]})
    return blocks, total
