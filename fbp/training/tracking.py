"""wandb tracking that never prompts and never blocks: online when logged in, else offline into the run."""

from __future__ import annotations

import hashlib
import netrc
import os
from contextlib import contextmanager
from typing import Callable
from urllib.parse import urlparse

from ..config import Config

def wandb_logged_in() -> bool:
    """True when an API key is in the environment or in ~/.netrc for the wandb host (no network, no prompt)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_wandb_mode(requested: str) -> str:
    if requested == "auto":
        return "online" if wandb_logged_in() else "offline"
    return requested


def quiet_wandb_import_notice() -> None:
    """Import transformers' wandb integration without its ``[INFO] Running in WANDB offline mode`` line.

    transformers prints that line (with ``print``) on import whenever ``WANDB_MODE=offline`` is set, even when
    tracking is off (``--wandb disabled``). fbp says itself how wandb runs, so the import happens here with the
    variable hidden for that moment. A no-op once the module is imported.
    """
    import sys

    if "transformers.integrations.integration_utils" in sys.modules:
        return
    saved = os.environ.pop("WANDB_MODE", None)
    try:
        import transformers.integrations.integration_utils  # noqa: F401
    finally:
        if saved is not None:
            os.environ["WANDB_MODE"] = saved


@contextmanager
def start_wandb_run(config: Config, run, fold: int, is_main: bool, note: Callable[[str], None] = lambda message: None):
    """One wandb run per fold, grouped by the run name; yields it (or None when tracking is off).

    ``note(message)`` is told how tracking runs (offline, or falling back to offline).

    The run id is derived from the run directory, so a resumed fold continues the same wandb run.
    """
    mode = resolve_wandb_mode(config.tracking.wandb)
    if mode == "disabled" or not is_main:
        yield None
        return
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    run_name = config.name or run.path.name
    summary = run.read_record()
    created = summary.created if summary is not None else None
    run_id = hashlib.sha1(f"{run.path.resolve()}|{created}|{fold}".encode()).hexdigest()[:12]
    init_args = dict(
        project=config.tracking.project, entity=config.tracking.entity, group=config.tracking.group or run_name, name=f"{run_name}-fold{fold}",
        id=run_id, resume="allow", dir=str(run.path), job_type="train",
        config={**config.model_dump(mode="json"), "fold": fold},
    )
    try:
        wandb_run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, silent=True), **init_args)
    except Exception as error:  # an unreachable server must not stop training: fall back to offline
        if mode != "online":
            raise
        note(f"wandb online failed ({error}); logging offline instead")
        mode = "offline"
        wandb_run = wandb.init(mode=mode, settings=wandb.Settings(silent=True), **init_args)
    if mode == "offline":
        note(f"wandb offline: {run.path / 'wandb'} (upload later with `wandb sync {run.path}/wandb/offline-run-*`)")
    try:
        yield wandb_run
    except BaseException:
        wandb_run.finish(exit_code=1)
        raise
    wandb_run.finish()
