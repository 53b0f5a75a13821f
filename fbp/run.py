"""The run directory: resolved config, ``run.json`` summary, out-of-fold word probabilities, fold checkpoints.

A run directory is the unit of resuming and comparing. Everything in it is written atomically, and a fold
counts as finished only once its checkpoint and out-of-fold probabilities are on disk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from . import __version__
from .atomic import write_atomic
from .config import Config, DecodingConfig, flatten_config, read_decoding, validate_decoding
from .errors import UsageError

# Settings that may change between invocations on the same run directory without making it another run.
RESUMABLE_KEYS = ("name", "data.train_folds", "tracking.", "training.dataloader_workers", "training.eval_batch_size")


def run_settings(config_tree: Dict[str, Any]) -> Dict[str, Any]:
    """The dotted settings that make a run what it is (those in ``RESUMABLE_KEYS`` left out)."""
    return {
        key: value for key, value in flatten_config(config_tree).items()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)
    }


def config_differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """Dotted keys whose values differ, ignoring settings that do not change what is trained."""
    old_settings, new_settings = run_settings(old), run_settings(new)
    return [
        f"{key}: {old_settings.get(key)!r} -> {new_settings.get(key)!r}"
        for key in sorted(set(old_settings) | set(new_settings))
        if old_settings.get(key) != new_settings.get(key)
    ]


class RunDir:
    """One training run on disk: ``config.yaml``, ``run.json``, ``oof_word_probs.npz``, ``decoding.json``, ``fold_K/``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config_path = self.path / "config.yaml"
        self.summary_path = self.path / "run.json"
        self.oof_path = self.path / "oof_word_probs.npz"
        self.decoding_path = self.path / "decoding.json"
        self.work_path = self.path / ".work"  # Trainer checkpoints of unfinished folds (removed when a fold ends)

    def fold_dir(self, fold: int) -> Path:
        return self.path / f"fold_{fold}"

    def fold_work_dir(self, fold: int) -> Path:
        return self.work_path / f"fold_{fold}"

    def open(self, config: Config) -> Dict[str, Any]:
        """Create the run directory, or check that an existing one holds this same run; return its summary."""
        resolved = config.model_dump(mode="json")
        if self.config_path.exists():
            previous = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
            differences = config_differences(previous, resolved)
            if differences:
                raise UsageError(
                    f"{self.path} holds a different run (its config.yaml differs: {'; '.join(differences[:5])}). "
                    "Use another output directory (-o), or delete that one to start over."
                )
        elif self.path.exists() and any(self.path.iterdir()):
            raise UsageError(f"{self.path} exists and is not an fbp run directory (no config.yaml); use another output directory (-o)")
        write_atomic(self.config_path, config.to_yaml())
        summary = self.read_summary()
        if summary is None:
            summary = {
                "name": config.name or self.path.name,
                "model": config.model.name,
                "fbp_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "status": "running",
                # Absolute, so that evaluate and ensemble find the truth from any working directory.
                "processed_dir": str(Path(config.data.processed_dir).resolve()),
                "config": resolved,
                "cv_f1": None,
                "cv_per_class": {},
                "train_seconds": 0.0,
                "folds": [],
            }
        summary["config"] = resolved
        return summary

    def decoding(self) -> DecodingConfig:
        """The thresholds in use: ``decoding.json`` (tuned), else the run's configured ones, else fbp's defaults."""
        if self.decoding_path.exists():
            return read_decoding(self.decoding_path)
        if self.config_path.exists():
            configured = (yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}).get("decoding", {})
            return validate_decoding(configured, str(self.config_path))
        return DecodingConfig()

    def read_summary(self) -> Optional[Dict[str, Any]]:
        if not self.summary_path.exists():
            return None
        return json.loads(self.summary_path.read_text(encoding="utf-8"))

    def write_summary(self, summary: Dict[str, Any]) -> None:
        write_atomic(self.summary_path, json.dumps(summary, indent=2))

    def finished_folds(self, summary: Dict[str, Any]) -> Dict[int, Dict[str, Any]]:
        """Folds recorded in ``run.json`` whose checkpoint is on disk."""
        return {entry["fold"]: entry for entry in summary["folds"] if (self.fold_dir(entry["fold"]) / "fbp.json").exists()}
