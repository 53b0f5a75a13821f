"""``fbp infer`` and ``fbp ensemble``'s progress: a line per checkpoint and a bar counting essays."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text


class EssaysPerSecond(ProgressColumn):
    """A rich progress column showing essays per second (rich's own speed column assumes bytes and needs many updates)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        speed = task.completed / elapsed if elapsed else None
        return Text(f"{speed:.1f} essays/s" if speed else "- essays/s", style="progress.data.speed")


class PredictionProgress:
    """``on_checkpoint`` for :func:`fbp.predict.predict_directory`: a line per checkpoint (on ``notes``) and a bar
    counting essays per second while it predicts. Use as a context manager, so the last bar is closed."""

    def __init__(self, console: Console, notes: Console, total: Optional[int]):
        self.console, self.notes, self.total = console, notes, total
        self.bar: Optional[Progress] = None

    def __call__(self, checkpoint: Path, meta) -> Callable[[float], None]:
        self.close()
        self.notes.print(f"[bold]{escape(str(checkpoint))}[/] (windows of {meta.max_length}, stride {meta.stride})")
        columns = [TextColumn("[bold]predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("essays"), TimeElapsedColumn(), EssaysPerSecond()]
        self.bar = Progress(*columns, console=self.console, transient=False)
        task = self.bar.add_task("predict", total=self.total)
        self.bar.start()
        return lambda essays: self.bar.update(task, advance=essays)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "PredictionProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
