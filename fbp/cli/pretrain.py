"""``fbp pretrain``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..pretrain import PretrainPlan, PretrainProgress, PretrainReporter
from ._app import ConfigArg, SetOpt, WandbOpt, app, console, err_console


class ConsolePretrainReporter(PretrainReporter):
    """``fbp pretrain``'s display: what is read, a progress bar (steps, loss, tokens/s, elapsed, time left for the
    whole run) on a terminal or a line per tenth of the steps in a log, and what was written."""

    def __init__(self, console: Console, notes: Optional[Console] = None):
        self.console = console
        self.notes = notes or console
        self.progress_bar = None
        self.task = None
        self.next_line = 0

    def begin(self, plan: PretrainPlan) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        resumed = f", resuming from {plan.resumed_from}" if plan.resumed_from else ""
        self.console.print(
            f"pretraining into [bold]{escape(str(plan.output))}[/] on {plan.device}{resumed}: {plan.essays:,} essays, {plan.words:,} words, "
            f"{plan.tokens:,} tokens -> {plan.train_blocks:,} blocks to train on, {plan.eval_blocks:,} held out; {plan.total_steps:,} steps",
            highlight=False, soft_wrap=True)
        self.progress_bar = Progress(TextColumn("[bold blue]masked-LM"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.fields[info]}"), console=self.console, transient=True,
                                     disable=not self.console.is_terminal)
        self.task = self.progress_bar.add_task("steps", total=plan.total_steps, info="")
        self.progress_bar.start()
        self.next_line = 0

    def progress(self, progress: PretrainProgress) -> None:
        from .reporting.words import duration

        left = f"about {duration(progress.remaining)} left" if progress.remaining is not None else "time left: after the first steps"
        loss = f"loss {progress.loss:.3f}" if progress.loss is not None else "loss -"
        speed = f"{progress.tokens_per_second:,.0f} tokens/s" if progress.tokens_per_second else ""
        info = ", ".join(part for part in (loss, speed, left) if part)
        if self.progress_bar is not None:
            self.progress_bar.update(self.task, completed=progress.step, info=info)
        if not self.console.is_terminal and progress.step >= self.next_line:
            self.console.print(f"step {progress.step}/{progress.total_steps}: {info}", highlight=False)
            self.next_line = progress.step + max(1, progress.total_steps // 10)

    def evaluating(self, blocks: int) -> None:
        self.close()
        self.console.print(f"[dim]scoring the masked-LM loss on {blocks} held-out blocks[/]", highlight=False)

    def end(self, meta, output: Path) -> None:
        from .reporting.words import duration

        self.close()
        held_out = f"; held-out masked-LM loss {meta.eval_loss:.3f} (perplexity {meta.eval_perplexity})" if meta.eval_loss is not None else ""
        self.console.print(f"[green]pretrained {meta.steps} steps in {duration(meta.seconds)} ({meta.tokens_per_second:,.0f} tokens/s){held_out}[/]",
                           highlight=False, soft_wrap=True)
        self.console.print(f"model directory: [bold]{escape(str(output))}[/]; train from it with "
                           f"[bold]fbp train --model {escape(str(output))}[/]", highlight=False, soft_wrap=True)

    def note(self, message: str) -> None:
        self.notes.print(f"[dim]{escape(message)}[/]", soft_wrap=True, highlight=False)

    def close(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.stop()
            self.progress_bar = None


@app.command("pretrain")
def pretrain_command(
    config_path: Optional[Path] = ConfigArg,
    data: Optional[Path] = typer.Option(None, "--data", "-d", metavar="DIR", help="Processed essays whose text is read (`fbp preprocess`). \\[default: data/processed]", show_default=False),
    text: Optional[List[Path]] = typer.Option(None, "--text", metavar="DIR", help="A folder of .txt essays read as well, e.g. the Kaggle test essays (repeatable).", show_default=False),
    no_data: bool = typer.Option(False, "--no-data", help="Read only the --text folders, no processed essays."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="NAME", help="The encoder to adapt: minilm (packaged), a hub name or a local path. \\[default: minilm]", show_default=False),
    output: Path = typer.Option(..., "--output", "-o", metavar="MODEL_DIR", help="The model directory to write (safetensors, tokenizer, fbp-pretrained.json).", show_default=False),
    epochs: Optional[float] = typer.Option(None, "--epochs", "-e", min=0.01, help="Passes over the text. \\[default: 3]", show_default=False),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps (a budget; overrides --epochs).", show_default=False),
    max_essays: Optional[int] = typer.Option(None, "--max-essays", min=1, help="Only this many processed essays: the subset `fbp train --max-essays N` picks.", show_default=False),
    wandb: Optional[str] = WandbOpt,
    sets: Optional[List[str]] = SetOpt,
) -> None:
    """Adapt an encoder to essays: masked-LM pretraining (whole words masked) on the essays' text, then train from it.

    Reads the processed essays' text (--data) and any folders of .txt essays (--text), cuts the tokens into blocks and trains the encoder to fill in masked words with the Hugging Face Trainer. The model directory it writes is what `fbp train --model MODEL_DIR` takes; it records which essays it read, and `fbp train` says when a fold's validation essays were among them. Re-running the same command after a stop resumes from the last checkpoint (kept in MODEL_DIR.pretrain-work/).

    Defaults come from CONFIG (configs/pretrain.yaml's values without one); a flag overrides its key.

    Examples:

    - `fbp pretrain -o models/minilm-essays` (the processed essays in data/processed)

    - `fbp pretrain --text data/kaggle/test -o models/minilm-essays --epochs 2`

    - `fbp pretrain configs/pretrain.yaml --max-steps 500 --set pretrain.learning_rate=1e-4 -o models/quick`
    """
    from ..config import PretrainConfig, command_overrides, load_config
    from ..errors import UsageError

    if no_data and data is not None:
        raise UsageError("--no-data and --data contradict each other; give one")
    options = {"data.processed_dir": str(data) if data else None, "model.name": model, "pretrain.epochs": epochs,
               "pretrain.max_steps": max_steps, "data.max_essays": max_essays, "tracking.wandb": wandb,
               "data.text_dirs": [str(path) for path in text] if text else None}
    overrides = command_overrides(options, sets)
    if no_data:
        overrides["data.processed_dir"] = None
    config = load_config(config_path, overrides, schema=PretrainConfig)

    from ..pretrain import pretrain

    reporter = ConsolePretrainReporter(console, err_console)
    try:
        pretrain(config, output, reporter=reporter)
    except KeyboardInterrupt:
        reporter.close()
        console.print("[yellow]stopped: run the same command again to resume from the last checkpoint[/]", highlight=False)
        raise typer.Exit(130) from None
    finally:
        reporter.close()
