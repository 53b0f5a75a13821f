"""The whole configuration as pydantic models, loaded from YAML and overridden from the command line.

Sections: ``data``, ``model``, ``windows``, ``training``, ``decoding``, ``tracking`` and ``search``
(the hyperparameter search space of ``fbp tune``). Every section forbids unknown keys, so a typo is an
error naming the key, never a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import FbpError, UsageError
from .labels import CLASSES


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type accepts true/false (``bool``, or a union or container with it)."""
    import typing

    return annotation is bool or annotation is Any or any(_takes_bool(argument) for argument in typing.get_args(annotation))


class Section(BaseModel):
    # No NaN or infinity anywhere: an infinite learning rate or class weight trains nothing and fails late.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: Any) -> Any:
        # pydantic takes true as 1 for an int: `--set training.batch_size=true` would train with batch size 1.
        field = cls.model_fields.get(info.field_name)
        if isinstance(value, bool) and field is not None and not _takes_bool(field.annotation):
            raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


class DataConfig(Section):
    processed_dir: Path = Field(Path("data/processed"), description="Output of `fbp preprocess`.")
    folds: Optional[int] = Field(None, ge=2, le=1000, description="Number of folds; None keeps the folds made by preprocess.")
    train_folds: Optional[List[int]] = Field(None, description="Folds to train (`--fold K`); None trains all.")
    max_essays: Optional[int] = Field(None, ge=2, le=100_000_000, description="Use only this many essays (a fixed random subset) for quick runs.")


class ModelConfig(Section):
    name: str = Field("minilm", description="`minilm` (packaged, offline), a Hugging Face hub name or a local path.")
    # 0 by default: a CPU epoch is ~2.2x faster without dropout (bench/RESULTS.md); None keeps the model's.
    hidden_dropout: Optional[float] = Field(0.0, ge=0, lt=1, description="Override the model's hidden dropout (None keeps it).")
    attention_dropout: Optional[float] = Field(0.0, ge=0, lt=1, description="Override the model's attention dropout (None keeps it).")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models on one GPU).")


class WindowsConfig(Section):
    max_length: int = Field(512, ge=16, le=1_000_000, description="Tokens per window, special tokens included.")
    stride: int = Field(128, ge=0, le=1_000_000, description="Tokens shared by consecutive windows of one essay.")
    label_subtokens: Literal["first", "all"] = Field("first", description="Train on the first sub-token of a word, or all of them.")

    @model_validator(mode="after")
    def _stride_below_length(self) -> "WindowsConfig":
        if self.stride >= self.max_length:
            raise ValueError(f"stride ({self.stride}) must be smaller than max_length ({self.max_length})")
        return self


# The rare classes' words weigh more in the loss: 2 seeds of 1,000 essays x 2 folds x 3 epochs, out of fold and on 200
# essays outside the runs, Counterclaim and Rebuttal F1 up on both (bench/RESULTS.md, "Class weights decided").
DEFAULT_CLASS_WEIGHTS = {"Counterclaim": 4.0, "Rebuttal": 8.0}


class TrainingConfig(Section):
    epochs: int = Field(3, ge=1, le=10_000)
    learning_rate: float = Field(2e-4, gt=0, le=10)
    head_learning_rate: Optional[float] = Field(6e-3, gt=0, le=10, description="Learning rate of the classification head, which starts random; null: learning_rate. The pretrained encoder keeps learning_rate.")
    weight_decay: float = Field(0.01, ge=0, le=100)
    warmup: float = Field(0.1, ge=0, lt=1, description="Fraction of the training steps spent warming up.")
    scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"] = "linear"
    batch_size: int = Field(4, ge=1, le=1_000_000, description="Windows per device per step.")
    eval_batch_size: int = Field(32, ge=1, le=1_000_000)
    gradient_accumulation: int = Field(1, ge=1, le=1_000_000)
    adam_epsilon: float = Field(1e-8, gt=0, le=1)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0, le=1e6)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU.")
    group_by_length: bool = Field(True, description="Batch windows of similar length (dynamic padding wastes almost nothing), the batches in random order.")
    early_stopping_patience: Optional[int] = Field(None, ge=1, le=10_000, description="Stop a fold after this many epochs without a better F1 (off by default).")
    tune_thresholds: bool = Field(True, description="After training, tune the decoding thresholds on the out-of-fold probabilities (saved for infer; cross-fitted F1 in run.json).")
    learned_decoding: bool = Field(True, description="After training, fit the learned span decoder on the out-of-fold probabilities (cross-fitted F1 in run.json); the run uses it when it beats the tuned thresholds out of fold.")
    class_weights: Optional[Dict[str, float]] = Field(
        default_factory=lambda: {name: DEFAULT_CLASS_WEIGHTS.get(name, 1.0) for name in CLASSES},
        description="Weight of each class's words (B- and I-) in the training loss; classes left out (and O) weigh 1; null: every class 1.")
    begin_weight: float = Field(1.0, gt=0, le=1e6, description="Weight of each B- label (a span's first word) in the training loss, times its class's weight: a model that learns where spans begin splits them where they should be.")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Random seed (0 to 2**32 - 1).")
    dataloader_workers: int = Field(0, ge=0, le=1024)

    @field_validator("class_weights")
    @classmethod
    def _class_weights(cls, value: Optional[Dict[str, float]]) -> Optional[Dict[str, float]]:
        if value is None:
            return None
        unknown = sorted(set(value) - set(CLASSES))
        if unknown:
            raise ValueError(f"unknown class {unknown}; allowed: {', '.join(CLASSES)}")
        bad = {name: weight for name, weight in value.items() if not 0 < weight <= 1e6}
        if bad:
            raise ValueError(f"class weights must be positive (at most 1e6), got {bad}")
        # every class named (the ones left out at 1): a run's config.yaml then records all seven, so one missing
        # there is damage, not a choice
        return {name: float(value.get(name, 1.0)) for name in CLASSES}


class ThresholdConfig(Section):
    """The thresholds decoding keeps a span by (the ``decoding:`` section of a config, a run's ``decoding.json``):
    per class, a minimum number of words and a minimum mean class probability. Defaults are the values the
    competition's public notebooks converged on."""

    min_words: Dict[str, Annotated[int, Field(ge=0, le=100_000)]] = Field(
        default_factory=lambda: {"Lead": 9, "Position": 5, "Claim": 3, "Counterclaim": 6, "Rebuttal": 4, "Evidence": 14, "Concluding Statement": 11}
    )
    min_confidence: Dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {"Lead": 0.7, "Position": 0.55, "Claim": 0.55, "Counterclaim": 0.5, "Rebuttal": 0.55, "Evidence": 0.65, "Concluding Statement": 0.7}
    )

    @field_validator("min_words", "min_confidence")
    @classmethod
    def _known_classes(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        unknown = sorted(set(value) - set(CLASSES))
        if unknown:
            raise ValueError(f"unknown class {unknown}; allowed: {', '.join(CLASSES)}")
        return value


DecodingConfig = ThresholdConfig  # its name before it said what it holds; kept so code written against it imports


def validate_decoding(stored: Any, source: str) -> ThresholdConfig:
    """Thresholds read from ``source`` (a decoding.json, a checkpoint's fbp.json...), validated: FbpError if bad."""
    try:
        return ThresholdConfig.model_validate(stored)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        shown = f"{where} = {_short(first.get('input'))}: " if where else ""
        raise FbpError(f"{source}: invalid decoding thresholds ({shown}{first['msg'].removeprefix('Value error, ')})") from None


def check_complete_decoding(decoding: "ThresholdConfig", source: str) -> "ThresholdConfig":
    """Stored thresholds name both tables: one missing would silently become fbp's defaults. (A class absent from a
    table has no minimum: that is a meaning of its own, which a config may choose.)"""
    missing = [field for field in ("min_words", "min_confidence") if field not in decoding.model_fields_set]
    if missing:
        raise FbpError(f"{source}: invalid decoding thresholds (no {' and no '.join(missing)})")
    return decoding


def _short(value: Any, limit: int = 80) -> str:
    """A value as shown in a message: its repr, cut to ``limit`` characters (messages stay short)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_decoding(path: Path, decoding: ThresholdConfig) -> Path:
    """Save thresholds as a ``decoding.json`` (atomically), the file :func:`read_decoding` reads: a run's and a
    saved ensemble's."""
    import json

    from .atomic import write_atomic

    write_atomic(Path(path), json.dumps(decoding.model_dump(mode="json"), indent=2))
    return Path(path)


def read_decoding(path: Path) -> ThresholdConfig:
    """Validated thresholds from a ``decoding.json`` (``{"min_words": {...}, "min_confidence": {...}}``)."""
    import json

    try:
        stored = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FbpError(f"cannot read decoding thresholds from {path}: {error}") from None
    return check_complete_decoding(validate_decoding(stored, str(path)), str(path))


class TrackingConfig(Section):
    wandb: Literal["auto", "online", "offline", "disabled"] = Field("auto", description="auto: online when logged in, otherwise offline into the run directory.")
    project: str = "fbp"
    entity: Optional[str] = None
    group: Optional[str] = Field(None, description="wandb group of the per-fold runs (default: the run name; `fbp tune`: the study).")


class SearchParam(Section):
    """One dimension of the `fbp tune` search space: a numeric range or a list of choices."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[List[Union[bool, int, float, str]]] = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> "SearchParam":
        if self.choices is not None:
            if not self.choices:
                raise ValueError("choices must not be empty")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
        elif self.low is None or self.high is None:
            raise ValueError("give low and high, or choices")
        elif self.low > self.high:
            raise ValueError(f"low ({self.low}) is greater than high ({self.high})")
        elif self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class Config(Section):
    name: Optional[str] = Field(None, description="Run name (defaults to the output directory's name).")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    windows: WindowsConfig = Field(default_factory=WindowsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    decoding: ThresholdConfig = Field(default_factory=ThresholdConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    search: Dict[str, SearchParam] = Field(default_factory=dict, description="`fbp tune` search space: dotted key -> range or choices.")

    @field_validator("search")
    @classmethod
    def _search_keys_exist(cls, value: Dict[str, SearchParam]) -> Dict[str, SearchParam]:
        for key in value:
            section, _, field = key.partition(".")
            model = cls.model_fields.get(section)
            section_type = model.annotation if model is not None else None
            if field == "" or not isinstance(section_type, type) or not issubclass(section_type, Section) or field not in section_type.model_fields:
                raise ValueError(f"search key '{key}' is not a config setting (use section.key, e.g. training.learning_rate)")
        return value

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def default_settings() -> Dict[str, Any]:
    """Every setting's default, as dotted keys (what a run made before a setting existed had)."""
    return flatten_config(Config().model_dump(mode="json"))


# Settings whose default changed: what a run that does not record them had.
FORMER_DEFAULTS: Dict[str, Any] = {
    "training.class_weights": None,  # unweighted until 2026-12-06
    "training.head_learning_rate": None,  # the head at learning_rate until 2026-12-07
}
# What a class a mapping does not name has (None where not listed: no minimum, for the decoding tables).
UNNAMED_ENTRY: Dict[str, Any] = {"training.class_weights": 1.0}


def unrecorded_setting(settings: Dict[str, Any], key: str, defaults: Dict[str, Any]) -> Any:
    """What a run whose dotted ``settings`` lack ``key`` had: for an entry of a mapping the run records (as null, or
    without that entry) or predates, what an unnamed entry means (``training.class_weights.Rebuttal`` of an
    unweighted run: 1); the former default for a setting whose default changed since; else today's default."""
    mapping = key.rsplit(".", 1)[0] if key.count(".") >= 2 else None
    recorded = mapping is not None and (mapping in settings or any(name.startswith(mapping + ".") for name in settings))
    if recorded or (mapping is not None and mapping in FORMER_DEFAULTS):
        return UNNAMED_ENTRY.get(mapping)
    if key in FORMER_DEFAULTS:
        return FORMER_DEFAULTS[key]
    return defaults.get(key)


def complete_settings(settings: Dict[str, Any], defaults: Dict[str, Any]) -> Dict[str, Any]:
    """A run's dotted settings with every default key it lacks filled in as :func:`unrecorded_setting` says."""
    return {**{key: unrecorded_setting(settings, key, defaults) for key in defaults if key not in settings}, **settings}


def flatten_config(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested config as dotted keys, down to the leaves (``{"decoding": {"min_words": {"Lead": 9}}}`` ->
    ``{"decoding.min_words.Lead": 9}``)."""
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(tree: Dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree["a"]["b"] = value`` for ``key = "a.b"``, creating sections as needed."""
    *sections, last = key.split(".")
    if sections[:1] == ["search"] and len(sections) > 1:
        # search keys are dotted settings themselves: search.training.learning_rate -> search["training.learning_rate"]
        sections, last = ["search"], key.removeprefix("search.")
    node = tree
    for section in sections:
        if node.get(section) is None:  # absent, or null in the YAML (an optional section such as training.class_weights)
            node[section] = {}
        child = node[section]
        if not isinstance(child, dict):
            raise UsageError(f"cannot set '{key}': '{section}' is a value, not a section")
        node = child
    node[last] = value


def command_overrides(options: Dict[str, Any], sets: Optional[List[str]]) -> Dict[str, Any]:
    """Overrides from a command line: the named options that were given (None = not given), then ``--set`` values,
    where null is a value (``--set model.hidden_dropout=null`` keeps the model's own dropout)."""
    overrides = {key: value for key, value in options.items() if value is not None}
    overrides.update(parse_sets(sets))
    return overrides


def parse_sets(sets: Optional[List[str]]) -> Dict[str, Any]:
    """Parse ``--set section.key=value`` strings; values are read as YAML (numbers, lists, null...)."""
    parsed = {}
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"a setting must be section.key=value, got '{item}'")
        from .io.yamlfile import load_yaml

        try:
            parsed[key.strip()] = load_yaml(raw, f"--set {key.strip()}") if raw.strip() else None
        except UsageError:
            parsed[key.strip()] = raw
    return parsed


def resolve_config_path(path: Union[str, Path]) -> Path:
    """A config path as given, or a bare name looked up as ``configs/NAME.yaml``."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    named = Path("configs") / f"{candidate.stem}.yaml"
    if candidate.suffix == "" and named.exists():
        return named
    raise UsageError(f"config file not found: {path}")


def _closest_key(wanted: str, allowed: List[str]) -> Optional[str]:
    """The allowed key a mistyped one most likely meant: its initials (``lr``: learning_rate), a prefix, or a
    close spelling (``learnig_rate``); None when nothing is close."""
    import difflib

    wanted = wanted.lower()
    for key in allowed:
        if wanted == "".join(word[0] for word in key.split("_") if word) or (len(wanted) >= 3 and key.startswith(wanted)):
            return key
    close = difflib.get_close_matches(wanted, allowed, n=1, cutoff=0.6)
    return close[0] if close else None


def _describe(error: Dict[str, Any], tree: Dict[str, Any], schema: Any = None) -> str:
    key = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        section = schema or Config
        for part in error["loc"][:-1]:
            field = section.model_fields.get(str(part))
            section = field.annotation if field is not None and isinstance(field.annotation, type) else None
            if section is None:
                break
        names = list(section.model_fields) if section is not None and issubclass(section, BaseModel) else []
        allowed = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "") if names else "see the README"
        hint = _closest_key(str(error["loc"][-1]), names)
        prefix = ".".join(str(part) for part in error["loc"][:-1])
        hint = f"; did you mean '{prefix + '.' if prefix else ''}{hint}'?" if hint else ""
        return f"unknown key '{_short(key, 60)[1:-1]}'{hint} (allowed here: {allowed})"
    message = error["msg"].removeprefix("Value error, ")[:200]
    if error["loc"]:
        return f"{_short(key, 60)[1:-1]} = {_short(error.get('input'))}: {message}"
    return message


MAX_PROBLEMS_SHOWN = 10


def validate_config(tree: Dict[str, Any], source: str = "config", schema: Any = None) -> Any:
    """Validate a raw config tree (against ``schema``, default :class:`Config`), turning pydantic errors into one
    clear :class:`UsageError`."""
    schema = schema or Config
    try:
        return schema.model_validate(tree)
    except ValidationError as error:
        problems = error.errors()
        lines = [_describe(e, tree, schema) for e in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN:,} more problems")
        raise UsageError(f"invalid {source}:\n  " + "\n  ".join(lines)) from None


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[Dict[str, Any]] = None, schema: Any = None) -> Any:
    """Load a YAML config (or the defaults), apply dotted-key ``overrides``, validate (against ``schema``: default
    :class:`Config`, ``fbp pretrain`` gives :class:`PretrainConfig`).

    A None override sets the key to None (``--set model.hidden_dropout=null`` keeps the model's own dropout); leave
    out the keys that were not given.
    """
    tree: Dict[str, Any] = {}
    source = "config"
    if path is not None:
        config_path = resolve_config_path(path)
        source = f"config {config_path}"
        try:
            text = config_path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise FbpError(f"{config_path} is not UTF-8 text (byte {error.start}); save the config as UTF-8") from None
        except OSError as error:
            raise FbpError(f"cannot read {config_path}: {error.strerror or error}") from None
        from .io.yamlfile import load_yaml

        tree = load_yaml(text, config_path) or {}
        if not isinstance(tree, dict):
            raise UsageError(f"{config_path} must hold a mapping of sections, got {type(tree).__name__}")
    defaults = None
    for key, value in (overrides or {}).items():
        section, _, rest = key.partition(".")
        field = rest.partition(".")[0]
        node = tree.get(section)
        if "." in rest and section != "search" and (node is None or isinstance(node, dict) and field not in node):
            # an entry of a mapping the config leaves at its default (--set training.class_weights.Rebuttal=3):
            # change that entry of the default mapping, keep the others
            defaults = defaults or (schema or Config)().model_dump(mode="json")
            default = (defaults.get(section) or {}).get(field)
            if isinstance(default, dict):
                set_dotted(tree, f"{section}.{field}", dict(default))
        set_dotted(tree, key, value)
    return validate_config(tree, source, schema)


# --- fbp pretrain ------------------------------------------------------------------------------------------------

class PretrainDataConfig(Section):
    processed_dir: Optional[Path] = Field(Path("data/processed"), description="Processed essays whose text is read (`fbp preprocess`); null: none, only text_dirs.")
    text_dirs: List[Path] = Field(default_factory=list, description="Folders of *.txt essays read as well (e.g. the Kaggle test essays).")
    max_essays: Optional[int] = Field(None, ge=1, description="Only this many processed essays: the fixed random subset `fbp train --max-essays N` picks with the same seed.")


class PretrainModelConfig(Section):
    name: str = Field("minilm", description="The encoder to adapt: `minilm` (packaged), a hub name or a local path.")


class PretrainSettings(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the text.")
    max_steps: Optional[int] = Field(None, ge=1, description="Stop after this many optimizer steps (a budget); overrides epochs.")
    max_length: int = Field(512, ge=16, description="Tokens per block: the essays' tokens, concatenated, cut into blocks of this length.")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Share of the words masked.")
    whole_word_mask: bool = Field(True, description="Mask every sub-token of a chosen word (otherwise single sub-tokens).")
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.06, ge=0, lt=1, description="Fraction of the steps spent warming up.")
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    batch_size: int = Field(8, ge=1, description="Blocks per device per step.")
    gradient_accumulation: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU.")
    hidden_dropout: Optional[float] = Field(None, ge=0, lt=1, description="Override the model's hidden dropout while pretraining (None keeps it; 0 is ~2x faster on a CPU). The saved model keeps its own.")
    attention_dropout: Optional[float] = Field(None, ge=0, lt=1, description="Override the model's attention dropout while pretraining (None keeps it).")
    eval_fraction: float = Field(0.05, ge=0, lt=0.5, description="Share of the blocks held out for the masked-LM loss (perplexity) at the end; 0: none.")
    save_steps: int = Field(200, ge=1, description="A resumable checkpoint every this many steps (and at the end of each epoch).")
    seed: int = 42


class PretrainConfig(Section):
    """`fbp pretrain`'s whole configuration (configs/pretrain.yaml)."""

    name: Optional[str] = Field(None, description="Name of the pretraining (wandb; defaults to the output directory's name).")
    data: PretrainDataConfig = Field(default_factory=PretrainDataConfig)
    model: PretrainModelConfig = Field(default_factory=PretrainModelConfig)
    pretrain: PretrainSettings = Field(default_factory=PretrainSettings)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
