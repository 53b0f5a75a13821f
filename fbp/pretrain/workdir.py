"""Before any work: the output checked against the inputs; the work folder next to the output (its settings,
Trainer checkpoints to resume from)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from ..config import PretrainConfig, flatten_config
from ..errors import UsageError
from ..io.pretrained import is_pretrained_dir, text_hash
from .text import PretrainText

WORK_SUFFIX = ".pretrain-work"
SETTINGS_FILE = "settings.json"


def _inside(path: Path, other: Path) -> bool:
    try:
        path.resolve().relative_to(other.resolve())
        return True
    except ValueError:
        return False


def work_dir_of(output: Path) -> Path:
    return Path(output).parent / f"{Path(output).name}{WORK_SUFFIX}"


def check_output(config: PretrainConfig, output: Path) -> None:
    """Refuse, before any work, an output that is (or holds, or lies inside) an input, a symlink, a file, or a
    directory that ``fbp pretrain`` did not write."""
    from ..atomic import check_output_location
    from ..model import resolve_model_name

    output = Path(output)
    inputs = []
    if config.data.processed_dir is not None:
        inputs.append(("the processed data", Path(config.data.processed_dir)))
    inputs += [("the text folder", Path(directory)) for directory in config.data.text_dirs]
    base = Path(resolve_model_name(config.model.name))
    if base.exists():
        inputs.append(("the base model", base))
    for what, path in inputs:
        if path.exists() and (_inside(output, path) or _inside(path, output)):
            raise UsageError(f"output {output} overlaps {what} {path}: write the pretrained model somewhere else (-o)")
    for path in (output, work_dir_of(output)):
        if path.is_symlink():
            raise UsageError(f"output {path} is a symlink; fbp does not write through links (give a real directory)")
    if output.exists() and not output.is_dir():
        raise UsageError(f"output {output} is a file; give a directory")
    if output.is_dir() and any(output.iterdir()) and not is_pretrained_dir(output):
        raise UsageError(f"output {output} exists and was not written by `fbp pretrain`; refusing to replace it (choose another -o)")
    check_output_location(output, "the pretrained model")


def resume_settings(config: PretrainConfig, text: PretrainText) -> Dict[str, Any]:
    """What a resumed pretraining must share with the one it continues: the settings and the text."""
    from ..io.pretrained import PretrainedMeta

    digest = PretrainedMeta(base_model="", created="", settings={}, sources=[], essays=dict(zip(text.ids, map(text_hash, text.texts))),
                            tokens=0, steps=0, seconds=0, tokens_per_second=0).essays_digest()
    resolved = config.model_dump(mode="json")
    resolved.pop("tracking", None)
    resolved.pop("name", None)
    return {"config": resolved, "essays": len(text.ids), "text_digest": digest}


def open_work_dir(work_dir: Path, settings: Dict[str, Any]) -> None:
    """Create the work folder, or check that the one there holds this same pretraining (to resume it)."""
    from ..atomic import write_atomic

    path = work_dir / SETTINGS_FILE
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            previous = None
        if previous != settings:
            differences = []
            if isinstance(previous, dict) and isinstance(previous.get("config"), dict):
                old, new = flatten_config(previous["config"]), flatten_config(settings["config"])
                differences = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
            if isinstance(previous, dict) and previous.get("text_digest") != settings["text_digest"]:
                differences.append(f"the text ({previous.get('essays')} essays then, {settings['essays']} now)")
            raise UsageError(f"{work_dir} holds an unfinished pretraining with other settings ({'; '.join(differences[:4]) or 'unreadable settings'}); "
                             "run its own command again to resume it, or delete that folder to start anew")
    work_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(settings, sort_keys=True, indent=1))


def resumable_checkpoint(work_dir: Path) -> Optional[Path]:
    """The last complete Trainer checkpoint (``trainer_state.json`` written last); incomplete ones are deleted."""
    import re

    found = {}
    for path in work_dir.glob("checkpoint-*"):
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir():
            found[path] = int(match.group(1))
    complete = []
    for path in found:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            if any(path.glob("*.safetensors")):
                complete.append(path)
                continue
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            pass
        shutil.rmtree(path, ignore_errors=True)
    return max(complete, key=found.get) if complete else None


def created_stamp(work_dir: Path) -> str:
    try:
        return str((work_dir / SETTINGS_FILE).stat().st_mtime_ns)
    except OSError:
        return ""
