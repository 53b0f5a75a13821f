"""The settings that make a run what it is, and how two runs' settings differ (resuming refuses a changed run;
``fbp compare`` shows the differences)."""

from __future__ import annotations

from typing import Any, Dict, List

from ..config import complete_settings, default_settings, flatten_config

# Settings that may change between invocations on the same run directory without making it another run.
RESUMABLE_KEYS = ("name", "data.train_folds", "tracking.", "training.dataloader_workers", "training.eval_batch_size", "training.learned_decoding")


def run_settings(config_tree: Dict[str, Any]) -> Dict[str, Any]:
    """The dotted settings that make a run what it is (those in ``RESUMABLE_KEYS`` left out)."""
    return {
        key: value for key, value in flatten_config(config_tree).items()
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUMABLE_KEYS)
    }


def config_differences(old: Dict[str, Any], new: Dict[str, Any]) -> List[str]:
    """Dotted keys whose values differ, ignoring settings that do not change what is trained. A key one side
    lacks (a run made before the setting existed) has its default value."""
    defaults = default_settings()
    old_settings, new_settings = (run_settings(complete_settings(flatten_config(tree), defaults)) for tree in (old, new))
    return [
        f"{key}: {old_settings.get(key)!r} -> {new_settings.get(key)!r}"
        for key in sorted(set(old_settings) | set(new_settings))
        if old_settings.get(key) != new_settings.get(key)
    ]
