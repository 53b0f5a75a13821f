"""The learned decoder's files: ``learned_decoder.json`` and its LightGBM model(s) in LightGBM's own text format.

``learned_decoder.json`` holds the format name and version, the classes, the feature names, the candidate and
fitting settings, each class's selection rule (score threshold, cap on spans per essay) and, for each model,
the file it lives in (``learned_decoder.lgb.txt``, or one per class) with that file's SHA-256, so a model file
swapped or cut short is caught. Nothing is pickled. The model files are written first and the JSON last, each
atomically: a decoder is on disk complete, or its previous version is.

A missing, corrupt, foreign or newer-version decoder raises :class:`fbp.errors.FbpError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from .. import __version__
from ..atomic import write_atomic
from ..errors import FbpError
from ..labels import CLASSES

DECODER_FILE = "learned_decoder.json"
FORMAT = "fbp-learned-decoder"
VERSION = 1


def decoder_path(directory: Union[str, Path]) -> Path:
    """Where a run (or ensemble) directory keeps its learned decoder."""
    return Path(directory) / DECODER_FILE


def _model_file_name(json_path: Path, codes: Tuple[int, ...]) -> str:
    stem = json_path.name[: -len(".json")] if json_path.name.endswith(".json") else json_path.name
    return f"{stem}.lgb.txt" if len(codes) == len(CLASSES) else f"{stem}.{'-'.join(map(str, codes))}.lgb.txt"


def save_decoder(decoder, path: Union[str, Path]) -> Path:
    """Write ``decoder`` (a :class:`fbp.learned_decoder.LearnedDecoder`) as ``path`` (a .json) plus its model files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    models: List[Dict[str, Any]] = []
    for codes, booster in decoder.models:
        text = booster.model_to_string()
        name = _model_file_name(path, tuple(codes))
        write_atomic(path.parent / name, text)
        models.append({"classes": [CLASSES[code] for code in codes], "file": name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()})
    stored = {
        "format": FORMAT,
        "version": VERSION,
        "fbp_version": __version__,
        "classes": list(decoder.classes),
        "feature_names": list(decoder.feature_names),
        "settings": decoder.settings.to_dict(),
        # A class that is never predicted has no finite threshold: stored as null (JSON has no infinity).
        "rules": {name: {"threshold": rule.threshold if math.isfinite(rule.threshold) else None, "max_per_essay": rule.max_per_essay}
                  for name, rule in decoder.rules.items()},
        "models": models,
        "info": decoder.info,
    }
    write_atomic(path, json.dumps(stored, indent=2))
    return path


def load_decoder(path: Union[str, Path]):
    """Read a decoder written by :func:`save_decoder`; FbpError naming the file if it is not one this fbp can use."""
    import lightgbm

    from ..learned_decoder import ClassRule, DecoderSettings, LearnedDecoder, feature_names

    path = Path(path)
    if not path.is_file():
        raise FbpError(f"{path}: learned decoder file not found")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FbpError(f"{path} is not a valid fbp learned decoder (unreadable JSON: {error})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        found = stored.get("format") if isinstance(stored, dict) else type(stored).__name__
        raise FbpError(f"{path} is not an fbp learned decoder (format {found!r}, expected {FORMAT!r})")
    version = stored.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise FbpError(f"{path} is a learned decoder of version {version!r}, which this fbp ({__version__}) cannot read (it reads version {VERSION}); upgrade fbp or refit the decoder")
    try:
        classes = tuple(stored["classes"])
        if classes != CLASSES:
            raise FbpError(f"{path}: the decoder's classes {list(classes)} are not fbp's {list(CLASSES)}")
        settings = DecoderSettings.from_dict(stored["settings"])
        names = tuple(stored["feature_names"])
        if names != feature_names(settings):
            raise FbpError(f"{path} was fitted on other features than this fbp computes; refit it (fbp evaluate RUN --tune)")
        rules = {}
        for name, rule in stored["rules"].items():
            if name not in CLASSES:
                raise FbpError(f"{path}: unknown class {name!r} in rules")
            threshold = float("inf") if rule["threshold"] is None else float(rule["threshold"])
            rules[name] = ClassRule(threshold, int(rule.get("max_per_essay", 0)))
        models = []
        for entry in stored["models"]:
            model_path = path.parent / str(entry["file"])
            if Path(entry["file"]).name != entry["file"]:
                raise FbpError(f"{path}: model file {entry['file']!r} must be a file name next to it")
            try:
                text = model_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise FbpError(f"{model_path}: cannot read the learned decoder's model ({error.__class__.__name__}: {error})") from None
            if hashlib.sha256(text.encode("utf-8")).hexdigest() != entry["sha256"]:
                raise FbpError(f"{model_path}: the learned decoder's model file does not match {path.name} (changed or cut short); refit the decoder")
            try:
                booster = lightgbm.Booster(model_str=text)
            except lightgbm.basic.LightGBMError as error:
                raise FbpError(f"{model_path}: not a LightGBM text model ({error})") from None
            if booster.num_feature() != len(names):
                raise FbpError(f"{model_path}: the model has {booster.num_feature()} features, {path.name} names {len(names)}")
            models.append((tuple(CLASSES.index(name) for name in entry["classes"]), booster))
    except FbpError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise FbpError(f"{path} is not a valid fbp learned decoder (bad or missing field: {error})") from None
    return LearnedDecoder(settings, models, rules, names, classes, dict(stored.get("info") or {}))
