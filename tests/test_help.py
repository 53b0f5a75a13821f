"""The ``--help`` screens read like a well-kept CLI's: no value placeholder on on/off flags, no Python type names,
one usage style, commands in lifecycle order (the alias hidden), examples and defaults where a newcomer needs them.

Black-box: the help is rendered by the real ``fbp`` entry point, as a user sees it in a wide terminal.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from fbp.cli import app

COMMANDS = ["quickstart", "demo-data", "preprocess", "train", "evaluate", "infer", "ensemble", "compare", "tune"]
# The order a newcomer meets them: try it, get data, then the lifecycle, then the experiment tools.
LIFECYCLE = ["quickstart", "demo-data", "preprocess", "train", "evaluate", "infer", "ensemble"]
ON_OFF_FLAGS = {"": ["--help", "--version", "--debug"], "evaluate": ["--tune"], "ensemble": ["--fit-weights"]}


def help_text(*command: str, width: int = 160) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="fbp",
                                env={"COLUMNS": str(width), "TERMINAL_WIDTH": str(width), "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def option_rows(text: str) -> dict:
    """Each row of the option and argument panels, continuation lines joined: {'--epochs': 'row text', ...}."""
    rows, current = {}, None
    for line in text.splitlines():
        if not line.startswith("│"):  # only the panels' rows
            current = None
            continue
        inner = line.strip().strip("│").rstrip()
        match = re.match(r"\s*(?:\*\s+)?(--[\w-]+|[A-Z][A-Z_]*(?:\.\.\.)?)(?:\s|$)", inner)
        if match and not inner.startswith("  " * 8):
            current = match.group(1)
            rows[current] = inner
        elif current and inner.strip():
            rows[current] += " " + inner.strip()
    return rows


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_on_off_flags_show_no_value_placeholder(command):
    text = help_text(*([command] if command else []))
    assert "<bool>" not in text and "BOOLEAN" not in text
    for flag in ON_OFF_FLAGS.get(command, []) + ["--help"]:
        row = next(line for line in text.splitlines() if re.search(rf"{flag}(?![\w-])", line) and "│" in line)
        after = row.split(flag, 1)[1].strip().lstrip("-h").strip()
        first_word = after.split()[0] if after.split() else ""
        assert not re.fullmatch(r"<.*>|[A-Z][A-Z0-9_=.|]+|\[.*\]", first_word), f"{command} {flag} shows a value placeholder: {row!r}"


@pytest.mark.parametrize("command", ["", *COMMANDS, "compare-runs"])
def test_no_python_type_names_in_help(command):
    text = help_text(*([command] if command else []))
    for leak in ("list[", "List[", "Path]", "Optional[", "NoneType", "<bool>", "<str>", "<int>", "<float>", "<path>", "range>"):
        assert leak not in text, f"fbp {command} --help shows {leak!r}"
    assert not re.search(r"<[a-z][^>]*>", text), f"fbp {command} --help shows a type placeholder: {re.search(r'<[a-z][^>]*>', text).group()}"


@pytest.mark.parametrize("command", COMMANDS)
def test_usage_lines_share_one_style(command):
    usage = next(line.strip() for line in help_text(command).splitlines() if line.strip().startswith("Usage:"))
    # fbp CMD [OPTIONS] then arguments in capitals: optional ones in [ ], repeatable ones with a single "..."
    assert re.fullmatch(rf"Usage: fbp {command} \[OPTIONS\]( \[[A-Z][A-Z_]*(\.\.\.)?\]| [A-Z][A-Z_]*(\.\.\.)?)*", usage), usage
    assert "{" not in usage and "...]..." not in usage and "......" not in usage


def test_commands_are_listed_in_lifecycle_order_with_the_alias_hidden():
    text = help_text()
    listed = [m.group(1) for m in re.finditer(r"^│ ([a-z][a-z-]+)\s{2,}", text, re.M)]
    assert "compare-runs" not in listed, "the alias compare-runs is listed as a second command"
    assert set(COMMANDS) <= set(listed), listed
    assert listed[0] == "quickstart", listed
    positions = [listed.index(name) for name in LIFECYCLE]
    assert positions == sorted(positions), listed
    assert listed.index("compare") > listed.index("train") and listed.index("tune") > listed.index("train"), listed
    # the alias still works, and compare's help says it exists
    assert "compare-runs" in help_text("compare")
    assert "Usage: fbp compare-runs" in help_text("compare-runs")


@pytest.mark.parametrize("command", ["train", "evaluate", "preprocess", "infer", "ensemble", "compare", "tune", "demo-data"])
def test_commands_show_an_example(command):
    text = " ".join(help_text(command).split())
    assert re.search(r"Examples?:", text), f"fbp {command} --help has no example"
    assert re.search(rf"fbp {command} [\w./-]", text), f"fbp {command} --help has no example command"


def test_train_shows_its_defaults():
    rows = option_rows(help_text("train", width=200))
    expected = {"--epochs": "3", "--model": "minilm", "--data": "data/processed", "--wandb": "auto", "--output": "runs/"}
    for flag, default in expected.items():
        row = rows[flag]
        assert "default" in row and default in row, f"fbp train --help: {flag} shows no default ({row!r})"
    assert "default" in rows["--folds"], rows["--folds"]


def test_train_help_defaults_are_the_configs():
    from typer.testing import CliRunner

    from fbp.cli import app
    from fbp.config import Config

    text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"}).output.split())
    defaults = Config()
    for flag, value in (("--epochs", defaults.training.epochs), ("--model", defaults.model.name),
                        ("--data", defaults.data.processed_dir), ("--wandb", defaults.tracking.wandb)):
        row = text.split("Options", 1)[1].split(f"│ {flag} ", 1)[1].split("│", 1)[0]
        assert f"[default: {value}]" in row, (flag, row)
