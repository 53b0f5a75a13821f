"""The learned decoder's files: ``learned_decoder.json`` and its LightGBM model(s) in LightGBM's own text format.

``learned_decoder.json`` holds the format name and version, the classes, the feature names, the candidate and
fitting settings, each class's selection rule (score threshold, cap on spans per essay) and, for each model,
the file it lives in with that file's SHA-256, so a model file swapped or cut short is caught; ``content_sha256``
covers the rest, so a setting or rule changed into another valid value is caught too. Nothing is pickled.

The JSON and its models are one pair, written and read as one: each model file is named by its content
(``learned_decoder.<sha256[:16]>.lgb.txt``), so a new fit never overwrites a file an earlier JSON points to. The
model files are written first, then the JSON atomically (the moment the new pair takes effect), then the model
files no JSON points to any more are removed. A reader that read the previous JSON while a writer replaced it finds
its model gone and reads the JSON again: it sees one pair or the other, never a mix. Every field of the JSON is
checked against its schema (types, ranges, every class ruled once) before the decoder is used.

A missing, corrupt, foreign or newer-version decoder raises :class:`fbp.errors.FbpError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, field_validator, model_validator

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


def _model_file_name(json_path: Path, digest: str) -> str:
    stem = json_path.name[: -len(".json")] if json_path.name.endswith(".json") else json_path.name
    return f"{stem}.{digest[:16]}.lgb.txt"


def _model_files(json_path: Path) -> List[Path]:
    """Model files of the decoder at ``json_path``, of any fit (those named by content, and the fixed names of before)."""
    stem = json_path.name[: -len(".json")] if json_path.name.endswith(".json") else json_path.name
    return [path for path in json_path.parent.glob(f"{stem}.*lgb.txt") if path.is_file() and not path.is_symlink()]


# --- the schema of learned_decoder.json ------------------------------------------------------------------------
_Finite = ConfigDict(extra="ignore", allow_inf_nan=False)  # extra keys of a later version are ignored


class _Settings(BaseModel):
    """The stored :class:`fbp.learned_decoder.DecoderSettings`: types and ranges."""

    model_config = _Finite
    levels: List[float] = Field(min_length=1, max_length=64)
    max_candidates: StrictInt = Field(ge=1, le=100_000)
    unsplit_runs: StrictBool = False
    per_class_models: StrictBool = False
    nms_overlap: float = Field(0.0, ge=0, le=1)
    negatives_per_positive: float = Field(0.0, ge=0, le=1e6)
    rounds: StrictInt = Field(100, ge=1, le=1_000_000)
    learning_rate: float = Field(0.1, gt=0, le=10)
    num_leaves: StrictInt = Field(31, ge=2, le=1_000_000)
    min_child_samples: StrictInt = Field(20, ge=0)
    feature_fraction: float = Field(0.5, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    seed: StrictInt = Field(0, ge=0)
    threads: StrictInt = Field(1, ge=0, le=4096)
    # The second stage's options; a decoder saved before they existed has none of them: their "off" values.
    rare_levels: List[float] = Field(default_factory=list, max_length=64)
    rare_classes: List[Literal[CLASSES]] = Field(default_factory=lambda: ["Counterclaim", "Rebuttal"], max_length=len(CLASSES))  # type: ignore[valid-type]
    sub_span: float = Field(0.0, ge=0, lt=1)
    stretch: StrictInt = Field(0, ge=0, le=10_000)
    context_features: StrictBool = False

    @field_validator("levels", "rare_levels")
    @classmethod
    def _probability_levels(cls, levels: List[float]) -> List[float]:
        if any(not 0 < level < 1 for level in levels) or any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"levels must be increasing probabilities between 0 and 1, got {levels[:8]}")
        return levels


class _Rule(BaseModel):
    model_config = _Finite
    threshold: Optional[float] = Field(ge=0, le=1)  # null: the class is never predicted
    max_per_essay: StrictInt = Field(0, ge=0, le=100_000)


class _Model(BaseModel):
    model_config = _Finite
    classes: List[Literal[CLASSES]] = Field(min_length=1)  # type: ignore[valid-type]
    file: str = Field(min_length=1, max_length=255)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def _a_name_beside_the_json(cls, name: str) -> str:
        if Path(name).name != name or name in (".", ".."):
            raise ValueError(f"must be a file name next to the JSON, got {name!r}")
        return name


class _Stored(BaseModel):
    model_config = _Finite
    format: Literal[FORMAT]  # type: ignore[valid-type]
    version: StrictInt = Field(ge=1)
    classes: List[str]
    feature_names: List[str] = Field(min_length=1)
    settings: _Settings
    rules: Dict[str, _Rule]
    models: List[_Model] = Field(min_length=1, max_length=len(CLASSES))
    info: Dict[str, Any] = {}
    # SHA-256 of everything above but info (see _content_digest): a setting, rule or feature edited into another valid
    # value would decode differently from what was fitted. Decoders saved before 2026-12-07 have none.
    content_sha256: Optional[str] = Field(None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _every_class_once(self) -> "_Stored":
        unknown = sorted(set(self.rules) - set(CLASSES))
        missing = [name for name in CLASSES if name not in self.rules]
        if unknown or missing:
            raise ValueError(f"rules must name each class once (unknown: {unknown[:3]}, missing: {missing[:3]})")
        modelled = [name for model in self.models for name in model.classes]
        if sorted(modelled) != sorted(CLASSES):
            raise ValueError("models must cover each class exactly once")
        return self


def _validated(path: Path, stored: Any) -> _Stored:
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        found = stored.get("format") if isinstance(stored, dict) else type(stored).__name__
        raise FbpError(f"{path} is not an fbp learned decoder (format {str(found)[:40]!r}, expected {FORMAT!r})")
    version = stored.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise FbpError(f"{path} is a learned decoder of version {version!r}, which this fbp ({__version__}) cannot read (it reads version {VERSION}); upgrade fbp or refit the decoder")
    try:
        return _Stored.model_validate(stored)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise FbpError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')} (got {shown}); refit the decoder (fbp evaluate RUN --tune)") from None


def _content_digest(checked: _Stored) -> str:
    """SHA-256 of the validated content that decides the spans (classes, features, settings, rules, models)."""
    content = checked.model_dump(mode="json", include={"format", "version", "classes", "feature_names", "settings", "rules", "models"})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def save_decoder(decoder, path: Union[str, Path]) -> Path:
    """Write ``decoder`` (a :class:`fbp.learned_decoder.LearnedDecoder`) as ``path`` (a .json) plus its model files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    models: List[Dict[str, Any]] = []
    for codes, booster in decoder.models:
        text = booster.model_to_string()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        name = _model_file_name(path, digest)  # named by content: never overwrites a file an earlier JSON points to
        if not (path.parent / name).is_file():
            write_atomic(path.parent / name, text)
        models.append({"classes": [CLASSES[code] for code in codes], "file": name, "sha256": digest})
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
    stored["content_sha256"] = _content_digest(_Stored.model_validate(stored))
    write_atomic(path, json.dumps(stored, indent=2))  # the new pair takes effect here, at once
    kept = {entry["file"] for entry in models}
    for old in _model_files(path):
        if old.name not in kept:
            old.unlink(missing_ok=True)  # no JSON points to it any more (a reader that still wants it reads the JSON again)
    return path


def load_decoder(path: Union[str, Path]):
    """Read a decoder written by :func:`save_decoder`; FbpError naming the file if it is not one this fbp can use.

    The JSON and its models are read as one pair: a model file that vanished meanwhile (a writer replaced the pair)
    sends the reader back to the JSON, which then names the new models."""
    path = Path(path)
    for attempt in range(5):
        try:
            return _load_pair(path)
        except _PairReplaced:
            continue
    raise FbpError(f"{path}: the learned decoder keeps being replaced while it is read (another fbp evaluate --tune?); try again")


class _PairReplaced(Exception):
    """A model file named by the JSON is gone: the pair was replaced since the JSON was read."""


def _load_pair(path: Path):
    import lightgbm

    from ..learned_decoder import ClassRule, DecoderSettings, LearnedDecoder, feature_names

    if not path.is_file():
        raise FbpError(f"{path}: learned decoder file not found")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise FbpError(f"{path} is not a valid fbp learned decoder (unreadable JSON: {str(error)[:200]})") from None
    checked = _validated(path, stored)
    if checked.content_sha256 is not None and checked.content_sha256 != _content_digest(checked):
        raise FbpError(f"{path}: its settings, rules or model list were changed after the decoder was fitted (they do not match "
                       "its content_sha256); refit the decoder (fbp evaluate RUN --tune)")
    if tuple(checked.classes) != CLASSES:
        raise FbpError(f"{path}: the decoder's classes {list(checked.classes)[:8]} are not fbp's {list(CLASSES)}")
    settings = DecoderSettings.from_dict(checked.settings.model_dump())
    names = tuple(checked.feature_names)
    if names != feature_names(settings):
        raise FbpError(f"{path} was fitted on other features than this fbp computes; refit it (fbp evaluate RUN --tune)")
    rules = {name: ClassRule(float("inf") if rule.threshold is None else float(rule.threshold), rule.max_per_essay)
             for name, rule in checked.rules.items()}
    texts = []
    for entry in checked.models:
        model_path = path.parent / entry.file
        try:
            if model_path.is_symlink():
                raise FbpError(f"{model_path}: a symbolic link; the learned decoder's model must be a real file")
            text = model_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if any(other != model_path for other in _model_files(path)):
                raise _PairReplaced() from None
            raise FbpError(f"{model_path}: the learned decoder's model file is missing; refit the decoder (fbp evaluate RUN --tune)") from None
        except (OSError, UnicodeDecodeError) as error:
            raise FbpError(f"{model_path}: cannot read the learned decoder's model ({error.__class__.__name__}: {error})") from None
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != entry.sha256:
            raise FbpError(f"{model_path}: the learned decoder's model file does not match {path.name} (changed or cut short); refit the decoder")
        texts.append((entry, model_path, text))
    models = []
    for entry, model_path, text in texts:
        try:
            booster = lightgbm.Booster(model_str=text)
        except lightgbm.basic.LightGBMError as error:
            raise FbpError(f"{model_path}: not a LightGBM text model ({str(error)[:200]})") from None
        if booster.num_feature() != len(names):
            raise FbpError(f"{model_path}: the model has {booster.num_feature()} features, {path.name} names {len(names)}")
        models.append((tuple(CLASSES.index(name) for name in entry.classes), booster))
    return LearnedDecoder(settings, models, rules, names, tuple(checked.classes), dict(checked.info))
