"""Every file format fbp reads, mutated one way at a time: refused with one message naming the file, or read to exactly
what the unmutated file gives. Never a silent change, never a traceback.

The fixture is one tiny run made once per session by the real command line (a random one-layer model, 12 demo
essays, 2 folds), plus an ensemble directory written by its owner. Each format is read through its owner in
``fbp.io`` (what every command asks), so a table of a few hundred mutations stays fast.

Mutations of a JSON or YAML file: every leaf (and a sample of inner nodes) replaced by a value of the wrong type,
NaN, infinity, a negative number, an out-of-range number, removed, or given an unknown sibling key; the whole file
emptied or cut short. Checkpoint tensors: one removed, one added, one reshaped, NaN, infinity, the file emptied or
cut short. The out-of-fold file and the processed data: each array or column damaged the same ways.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy as np
import pytest

from fbp.errors import FbpError

TRAIN = ["--wandb", "disabled", "--set", "training.batch_size=16", "--set", "windows.max_length=128",
         "--set", "windows.stride=32", "--set", "training.learning_rate=1e-3"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished 2-fold run of a tiny random model on 12 demo essays, made by the real CLI (once per session)."""
    from conftest import run_cli

    root = tmp_path_factory.mktemp("mutations")
    assert run_cli("demo-data", root / "demo", "--essays", "12", "--seed", "0").exit_code == 0
    assert run_cli("preprocess", root / "demo", "-o", root / "processed", "--folds", "2", "--seed", "0").exit_code == 0
    made = run_cli("train", "--data", root / "processed", "--model", tiny_model_dir, "--epochs", "1", "-o", root / "run", *TRAIN)
    assert made.exit_code == 0, made.output
    from fbp.io.decoder import load_decoder
    from fbp.io.ensemble_dir import save_ensemble_dir

    decoder = load_decoder(root / "run" / "learned_decoder.json")
    save_ensemble_dir(root / "ensemble", [root / "run", root / "run"], [0.6, 0.4], decoder, {"note": "test"})
    return root


# ---------------------------------------------------------------------------------------------------------------
# Mutations of a parsed JSON/YAML tree
# ---------------------------------------------------------------------------------------------------------------

BAD_VALUES = {"wrong type": ["x"], "wrong type (text)": "x", "NaN": math.nan, "infinity": math.inf, "negative": -1,
              "out of range": 1e12}


def _paths(tree: Any, prefix: Tuple = ()) -> Iterator[Tuple]:
    """Every path into a tree (mappings and lists), leaves and inner nodes."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(tree, list):
        for index, value in enumerate(tree[:3]):  # the first items stand for the rest
            yield prefix + (index,)
            yield from _paths(value, prefix + (index,))


def _set(tree: Any, path: Tuple, value: Any) -> Any:
    tree = copy.deepcopy(tree)
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return tree


def _remove(tree: Any, path: Tuple) -> Any:
    tree = copy.deepcopy(tree)
    node = tree
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return tree


def _add_sibling(tree: Any, path: Tuple) -> Any:
    tree = copy.deepcopy(tree)
    node = tree
    for part in path[:-1]:
        node = node[part]
    if isinstance(node, dict):
        node["unexpected_key"] = 1
    return tree


def _at(tree: Any, path: Tuple) -> Any:
    for part in path:
        tree = tree[part]
    return tree


def tree_mutations(tree: Any) -> Iterator[Tuple[str, Any]]:
    for path in _paths(tree):
        where = ".".join(map(str, path))
        for name, value in BAD_VALUES.items():
            if name == "wrong type (text)" and isinstance(_at(tree, path), str):
                continue  # another text in a text field is not a wrong type (free-text fields: names, dates)
            yield f"{where}={name}", _set(tree, path, value)
        yield f"{where} removed", _remove(tree, path)
        yield f"{where} extra key", _add_sibling(tree, path)


def text_mutations(text: str) -> Iterator[Tuple[str, str]]:
    yield "empty", ""
    yield "truncated", text[: len(text) // 2]
    yield "not text", "\x00\xff"


# Keys whose absence has a documented meaning that no command hides: a run.json figure not computed (compare and
# evaluate show it as missing, "-"), a fold not recorded (fbp train trains it again: recomputed, never wrong), a
# checkpoint saved without thresholds (decodes with fbp's defaults, and says so). Removing them is allowed to read;
# any other value in them must still be valid.
OPTIONAL_REMOVALS = {"run.json": ("folds", "cv_f1", "cv_per_class", "cv_essays", "cv_f1_tuned", "cv_per_class_tuned", "cv_f1_learned",
                                  "cv_per_class_learned", "train_seconds", "decoder", "seconds", "loss", "eval_loss", "saved",
                                  "best_f1", "best_epoch", "f1", "per_class", "epochs", "info"),
                     "fbp.json": ("decoding",), "ensemble.json": ("info",), "learned_decoder.json": ("info",)}


def optional_removal(file: Path, mutation: str) -> bool:
    if not mutation.endswith(" removed"):
        return False
    parts = mutation.removesuffix(" removed").split(".")
    if len(parts) >= 2 and parts[-2] in ("min_words", "min_confidence"):
        return True  # a class without a threshold has no minimum: a meaning a config may choose (fbp.decode)
    allowed = OPTIONAL_REMOVALS.get(file.name, ())
    # Inside an optional figure (one class's F1 of cv_per_class, one epoch of a fold's record): the same rule.
    return any(part in allowed for part in parts) or (file.name == "run.json" and parts[-1].isdigit() and parts[-2] in ("folds", "epochs"))


def check(read: Callable[[], Any], original: Any, file: Path, mutation: str, same: Callable[[Any, Any], bool] = lambda a, b: a == b) -> str:
    """Read the mutated file: refused naming it (one FbpError), or the same as the original. Returns the outcome."""
    try:
        value = read()
    except FbpError as error:
        message = str(error)
        assert file.name in message, f"{mutation}: the message does not name {file.name}: {message}"
        assert len(message) < 1000, f"{mutation}: a {len(message)}-character message"
        return "refused"
    if optional_removal(file, mutation):
        return "same"  # see OPTIONAL_REMOVALS
    assert same(value, original), f"{mutation}: {file.name} was accepted with another meaning"
    return "same"


def run_table(file: Path, read: Callable[[], Any], mutations: Iterator[Tuple[str, bytes]], same=lambda a, b: a == b) -> Dict[str, int]:
    original_bytes = file.read_bytes()
    original = read()
    outcomes = {"refused": 0, "same": 0}
    try:
        for mutation, content in mutations:
            file.write_bytes(content)
            outcomes[check(read, original, file, mutation, same)] += 1
    finally:
        file.write_bytes(original_bytes)
    assert same(read(), original)
    return outcomes


def json_mutations(file: Path, allow_nan_literals: bool = True) -> Iterator[Tuple[str, bytes]]:
    tree = json.loads(file.read_text())
    for name, mutated in tree_mutations(tree):
        yield name, json.dumps(mutated).encode()
    for name, text in text_mutations(file.read_text()):
        yield name, text.encode("utf-8", "surrogatepass") if name != "not text" else b"\x00\xff"


# ---------------------------------------------------------------------------------------------------------------
# The table: one test per format
# ---------------------------------------------------------------------------------------------------------------


# Labels, not settings: what a run or checkpoint is called and which fbp wrote it. No command decides anything on
# them (compare shows a missing name as the folder's), so a file that lacks one or names another still gives
# the same predictions and scores; they are left out of the comparison (a wrong type is still refused).
LABELS_ONLY = {"name", "model", "run", "fbp_version", "created"}


def declared(value: Any) -> Any:
    """A pydantic record as fbp uses it: its declared fields only (unknown keys are kept but never read)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return {name: declared(getattr(value, name)) for name in type(value).model_fields if name not in LABELS_ONLY}
    if isinstance(value, dict):
        return {key: declared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [declared(item) for item in value]
    return value


def _copy_run(tiny_run: Path, tmp_path: Path) -> Path:
    shutil.copytree(tiny_run / "run", tmp_path / "run")
    return tmp_path / "run"


def test_fbp_json(tiny_run, tmp_path):
    from fbp.io.checkpoint import read_checkpoint_meta

    run = _copy_run(tiny_run, tmp_path)
    file = run / "fold_0" / "fbp.json"

    def read():  # what prediction uses: the windows, the label placement, the thresholds, the labels
        meta = read_checkpoint_meta(run / "fold_0")
        return declared(meta.decoding), meta.max_length, meta.stride, meta.label_subtokens, meta.labels

    outcomes = run_table(file, read, json_mutations(file))
    assert outcomes["refused"] > 50


def test_run_json(tiny_run, tmp_path):
    from fbp.io.run_dir import read_run_json

    run = _copy_run(tiny_run, tmp_path)
    file = run / "run.json"
    tree = json.loads(file.read_text())
    tree.pop("config")  # the run's settings: checked as config.yaml below
    file.write_text(json.dumps(tree))
    from fbp.io.run_dir import RunDir

    def read():  # the record, with the processed data it leads to (run.json's processed_dir, else config.yaml's)
        record = declared(read_run_json(file))
        record.pop("processed_dir"), record.pop("processed_fingerprint")  # absent from runs made before them: optional
        return record, RunDir(run).processed_dir()

    outcomes = run_table(file, read, json_mutations(file))
    assert outcomes["refused"] > 100


def test_decoding_json(tiny_run, tmp_path):
    from fbp.config import read_decoding

    run = _copy_run(tiny_run, tmp_path)
    file = run / "decoding.json"
    outcomes = run_table(file, lambda: read_decoding(file).model_dump(), json_mutations(file))
    assert outcomes["refused"] > 50


def test_learned_decoder_pair(tiny_run, tmp_path):
    from fbp.io.decoder import load_decoder
    from fbp.io.word_probs import load_word_probs

    run = _copy_run(tiny_run, tmp_path)
    file = run / "learned_decoder.json"
    probs = load_word_probs(run / "oof_word_probs.npz")

    def decoded():
        return load_decoder(file).decode(probs).to_dict("list")

    outcomes = run_table(file, decoded, json_mutations(file))
    assert outcomes["refused"] > 100
    # The model file of the pair: emptied, cut short, changed.
    model = next(run.glob("learned_decoder.*lgb.txt"))
    text = model.read_text()
    outcomes = run_table(model, decoded, iter([("empty", b""), ("truncated", text[: len(text) // 2].encode()),
                                               ("changed", text.replace("learning_rate", "learning_ratX", 1).encode())]))
    assert outcomes == {"refused": 3, "same": 0}


def test_ensemble_json(tiny_run, tmp_path):
    from fbp.io.ensemble_dir import ENSEMBLE_FILE, EnsembleDir

    shutil.copytree(tiny_run / "ensemble", tmp_path / "ensemble")
    file = tmp_path / "ensemble" / ENSEMBLE_FILE

    def read():
        ensemble = EnsembleDir(tmp_path / "ensemble")
        return ensemble.members, ensemble.weights

    outcomes = run_table(file, read, json_mutations(file))
    assert outcomes["refused"] > 10


def _newer_setting_removed(mutation: str) -> bool:
    """Whether a mutation removed a setting newer than the first fbp: a run made before it existed lacks it, and it
    reads as its default (the documented rule for old runs), so refusing and reading are both right."""
    from fbp.io.run_dir import CORE_SETTINGS

    key = mutation.removesuffix(" removed")
    return mutation.endswith(" removed") and key.count(".") == 1 and key not in CORE_SETTINGS


def _read_or_refused(read: Callable[[], Any]) -> None:
    """Read a file whose mutation may be refused or read (both right): anything but an FbpError fails the test."""
    try:
        read()
    except FbpError:
        pass


def test_run_config_yaml(tiny_run, tmp_path):
    import yaml

    from fbp.config import validate_config
    from fbp.io.run_dir import RunDir, run_settings

    run = _copy_run(tiny_run, tmp_path)
    file = run / "config.yaml"
    tree = yaml.safe_load(file.read_text())

    def read():  # what train (resuming) and compare do with it: the settings, validated
        config = RunDir(run).read_config()
        try:
            validated = validate_config(config, str(file)).model_dump(mode="json")
        except FbpError as error:
            raise FbpError(f"{file.name}: {error}") from None
        return run_settings(validated)  # what makes the run this run: settings that may change between invocations left out

    def mutations():
        for name, mutated in tree_mutations(tree):
            yield name, yaml.safe_dump(mutated).encode()
        yield "empty", b""  # no settings: the defaults -- not this run's; refused below by comparison unless identical
        yield "not yaml", b"training: [unclosed\n"
        yield "a list", b"- 1\n- 2\n"
        yield "alias bomb", ("a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}," * 1 + f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))).encode()
        yield "deep", ("x: " + "[" * 5000 + "]" * 5000 + "\n").encode()

    outcomes = {"refused": 0, "same": 0}
    original = read()
    for mutation, content in mutations():
        file.write_bytes(content)
        if _newer_setting_removed(mutation) or mutation == "empty":
            _read_or_refused(read)
            continue
        outcomes[check(read, original, file, mutation)] += 1
    assert outcomes["refused"] > 100


def test_run_json_config(tiny_run, tmp_path):
    """The copy of the run's config in run.json (the settings fbp compare shows): damaged, it is refused naming
    run.json, or it reads as the same settings; never shown as another run's."""
    from fbp.compare.reading import load_run
    from fbp.config import complete_settings, default_settings
    from fbp.io.run_dir import run_settings

    run = _copy_run(tiny_run, tmp_path)
    file = run / "run.json"
    record = json.loads(file.read_text())

    def read():  # the settings compare shows, as it shows them (a key an older run lacks at what it meant), that
        # make the run this run (its name, tracking... may change between invocations)
        return run_settings(complete_settings(load_run(file).settings, default_settings()))

    original = read()
    outcomes = {"refused": 0, "same": 0}
    for mutation, config in tree_mutations(record["config"]):
        file.write_text(json.dumps({**record, "config": config}))
        if _newer_setting_removed(mutation):
            _read_or_refused(read)
            continue
        outcomes[check(read, original, file, mutation)] += 1
    assert outcomes["refused"] > 100


def test_user_config(tmp_path):
    """A config given to train/tune: NaN, infinity, negative, out of range, unknown keys refused naming the key,
    before any run directory is made."""
    import yaml

    from fbp.config import Config, load_config

    tree = Config().model_dump(mode="json")
    tree.pop("search")
    file = tmp_path / "config.yaml"
    refused = 0
    for mutation, mutated in tree_mutations(tree):
        file.write_text(yaml.safe_dump(mutated))
        try:
            loaded = load_config(file).model_dump(mode="json")
        except FbpError as error:
            assert len(str(error)) < 2000, f"{mutation}: a {len(str(error))}-character message"
            refused += 1
            continue
        # Accepted: only where the mutated value is a valid setting (a negative seed is not, a nullable one may be).
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(loaded)), mutation
        assert loaded["training"]["seed"] >= 0 and loaded["training"]["learning_rate"] > 0, mutation
    assert refused > 200


def _leaves(tree: Any) -> Iterator[Any]:
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree


def test_checkpoint_tensors(tiny_run, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from fbp.io.checkpoint import load_checkpoint

    run = _copy_run(tiny_run, tmp_path)
    folder = run / "fold_0"
    file = folder / "model.safetensors"
    tensors = load_file(file)

    def read():
        return {name: tensor.clone() for name, tensor in load_checkpoint(folder).model.state_dict().items()}

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def saved(changed: Dict[str, torch.Tensor]) -> bytes:
        save_file(changed, tmp_path / "t.safetensors", metadata={"format": "pt"})
        return (tmp_path / "t.safetensors").read_bytes()

    head = next(name for name in tensors if name.startswith("classifier.") and name.endswith("weight"))
    encoder = next(name for name in tensors if "encoder" in name and name.endswith("weight"))
    mutations: List[Tuple[str, bytes]] = [("empty", b""), ("truncated", file.read_bytes()[: file.stat().st_size // 2])]
    for name in (head, encoder):
        mutations.append((f"{name} removed", saved({k: v for k, v in tensors.items() if k != name})))
        mutations.append((f"{name} reshaped", saved({**tensors, name: tensors[name][:1].contiguous()})))
        for label, value in (("NaN", math.nan), ("infinity", math.inf)):
            broken = tensors[name].clone()
            broken.view(-1)[0] = value
            mutations.append((f"{name}={label}", saved({**tensors, name: broken})))
    mutations.append(("extra tensor", saved({**tensors, "extra.weight": torch.zeros(2)})))
    outcomes = run_table(file, read, iter(mutations), same)
    assert outcomes == {"refused": len(mutations), "same": 0}


def _npz(arrays: Dict[str, np.ndarray], tmp_path: Path) -> bytes:
    path = tmp_path / "m.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path.read_bytes()


def test_oof_word_probs(tiny_run, tmp_path):
    from fbp.io.word_probs import load_word_probs

    run = _copy_run(tiny_run, tmp_path)
    file = run / "oof_word_probs.npz"
    with np.load(file) as stored:
        arrays = {name: stored[name] for name in stored.files}

    def read():
        return load_word_probs(file)

    def same(a, b):
        return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)

    def changed(name: str, value) -> bytes:
        return _npz({**arrays, name: value}, tmp_path)

    probs, offsets, ids = arrays["probs"], arrays["offsets"], arrays["ids"]
    nan, big, negative = probs.copy(), probs.copy(), probs.copy()
    nan[3, 2], big[3, 2], negative[3, 2] = np.nan, 7, -0.5
    infinite = probs.copy()
    infinite[5, 0] = np.inf
    unsorted = offsets.copy()
    unsorted[1], unsorted[2] = offsets[2], offsets[1]
    duplicated = ids.copy()
    duplicated[1] = ids[0]
    mutations = [
        ("probs NaN", changed("probs", nan)), ("probs infinity", changed("probs", infinite)),
        ("probs above 1", changed("probs", big)), ("probs negative", changed("probs", negative)),
        ("probs wrong width", changed("probs", probs[:, :3])), ("probs text", changed("probs", np.array(["x"] * 3))),
        ("offsets decreasing", changed("offsets", unsorted)), ("offsets short", changed("offsets", offsets[:-1])),
        ("offsets past the rows", changed("offsets", offsets + 1)), ("offsets negative", changed("offsets", offsets - 5)),
        ("offsets floats", changed("offsets", offsets.astype(float))),
        ("ids duplicated", changed("ids", duplicated)), ("ids empty string", changed("ids", np.array([""] + list(ids[1:])))),
        ("ids numbers", changed("ids", np.arange(len(ids)))),
        ("ids missing", _npz({k: v for k, v in arrays.items() if k != "ids"}, tmp_path)),
        ("extra array", changed("extra", np.zeros(3))),
        ("empty", b""), ("truncated", file.read_bytes()[: file.stat().st_size // 2]),
    ]
    outcomes = run_table(file, read, iter(mutations), same)
    assert outcomes["refused"] == len(mutations) - 1  # an extra array is ignored: the same probabilities


def test_processed_data(tiny_run, tmp_path):
    import pandas as pd

    from fbp.io.processed import load_processed

    shutil.copytree(tiny_run / "processed", tmp_path / "processed")
    folder = tmp_path / "processed"
    essays_file = folder / "essays.parquet"
    essays = pd.read_parquet(essays_file)

    def read():
        data = load_processed(folder)
        return data.fingerprint()

    def parquet(frame) -> bytes:
        frame.to_parquet(tmp_path / "m.parquet", index=False)
        return (tmp_path / "m.parquet").read_bytes()

    def with_labels(change) -> bytes:
        frame = essays.copy()
        labels = [np.asarray(value).copy() for value in frame["word_labels"]]
        change(labels[0])
        frame["word_labels"] = labels
        return parquet(frame)

    mutations = [
        ("label out of range", with_labels(lambda a: a.__setitem__(0, 99))),
        ("label negative", with_labels(lambda a: a.__setitem__(0, -1))),
        ("fold out of range", parquet(essays.assign(fold=essays["fold"].where(essays.index != 0, 7)))),
        ("fold negative", parquet(essays.assign(fold=essays["fold"].where(essays.index != 0, -1)))),
        ("n_words wrong", parquet(essays.assign(n_words=essays["n_words"] + 1))),
        ("fold text", parquet(essays.assign(fold=essays["fold"].astype(str)))),
        ("id duplicated", parquet(essays.assign(id=[essays["id"][1]] + list(essays["id"][1:])))),
        ("id empty", parquet(essays.assign(id=[""] + list(essays["id"][1:])))),
        ("column missing", parquet(essays.drop(columns=["word_labels"]))),
        ("empty", b""), ("truncated", essays_file.read_bytes()[: essays_file.stat().st_size // 2]),
    ]
    outcomes = run_table(essays_file, read, iter(mutations))
    assert outcomes["refused"] == len(mutations)
    meta = folder / "meta.json"
    outcomes = run_table(meta, read, iter([(name, content) for name, content in json_mutations(meta)]))
    assert outcomes["refused"] > 5
