"""Help that agrees with itself, checked on every command's options as the CLI defines them (not one screen at a
time): one style for defaults, the same short flag and placeholder for the same option everywhere, the accepted
range shown wherever a number is refused outside it, `auto` listed where it is accepted, examples in one style, and
help paragraphs without hard line breaks (the terminal wraps them at its width)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import typer.main

from fbp.cli import app

GROUP = typer.main.get_command(app)
COMMANDS = {name: command for name, command in GROUP.commands.items() if not command.hidden}
OPTIONS = [(name, param) for name, command in COMMANDS.items() for param in command.params if param.param_type_name == "option"]
# The same long option naming a different thing in a different command, so a different placeholder.
DIFFERENT_THINGS = {"--output": "a file (infer, ensemble) or a directory (preprocess, train, tune)",
                    "--decoding": "infer and ensemble also take a decoding.json FILE"}


def _number_range(option):
    """(value type, minimum) of an option as declared (typer keeps them in the parameter's type descriptor)."""
    descriptor = option.type_descriptor
    return descriptor.annotation, descriptor.parameter_info.min


def test_one_style_for_defaults():
    for name, option in OPTIONS:
        text = option.help or ""
        assert not re.search(r"\(default|\bDefault\b|default:(?!.*\])", text), f"fbp {name} {option.opts[0]}: {text!r} (use \\[default: ...])"
        assert text.count("[default") <= 1, f"fbp {name} {option.opts[0]}: {text!r}"
        if option.show_default and text.count("[default"):
            raise AssertionError(f"fbp {name} {option.opts[0]} shows its default twice")


def test_the_same_option_has_the_same_short_flag_and_placeholder_everywhere():
    shorts, placeholders = defaultdict(set), defaultdict(set)
    for name, option in OPTIONS:
        long = next(opt for opt in option.opts if opt.startswith("--"))
        shorts[long].add(tuple(sorted(opt for opt in option.opts if not opt.startswith("--"))))
        if long not in DIFFERENT_THINGS:
            placeholders[long].add(option.metavar)
    assert {long: found for long, found in shorts.items() if len(found) > 1} == {}
    assert {long: found for long, found in placeholders.items() if len(found) > 1} == {}


def test_a_number_refused_outside_a_range_shows_the_range():
    from typer.testing import CliRunner

    numbers = 0
    for name, option in OPTIONS:
        import typing

        annotation, minimum = _number_range(option)
        while typing.get_args(annotation):  # Optional[List[int]] -> int
            annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
        if annotation not in (int, float):
            continue
        numbers += 1
        assert minimum is not None, f"fbp {name} {option.opts[0]}: a number option without its accepted range"
    assert numbers >= 10
    # and the help screen shows it
    text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}).output
    folds = next(line for line in text.splitlines() if "--folds" in line and "│" in line)
    assert "x>=2" in folds, folds


def test_auto_is_listed_where_it_is_accepted():
    for name, option in OPTIONS:
        if option.opts[0] in ("--decoding", "--wandb"):
            assert re.search(r"\bauto\b", option.help or ""), f"fbp {name} {option.opts[0]}: accepts auto, says not"


def _paragraphs(command) -> list:
    return [paragraph.strip() for paragraph in (command.help or "").split("\n\n") if paragraph.strip()]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_examples_in_one_style_and_no_hard_line_breaks(name):
    paragraphs = _paragraphs(COMMANDS[name])
    for paragraph in paragraphs:
        assert "\n" not in paragraph, f"fbp {name}: a hard line break inside {paragraph!r}"
        assert not re.match(r"Examples?:\s*\S", paragraph), f"fbp {name}: an inline example: {paragraph!r} (use 'Examples:' and '- `fbp ...`' items)"
    if "Examples:" in paragraphs:
        examples = paragraphs[paragraphs.index("Examples:") + 1:]
        assert examples and all(re.match(r"- `fbp [^`]+`( \(.+\))?$", item) for item in examples), examples


def test_infer_names_its_input_in_its_summary():
    assert "--input" in COMMANDS["infer"].help.split("\n\n")[0]
    assert "--input" in (COMMANDS["infer"].short_help or COMMANDS["infer"].help.split("\n")[0])


@pytest.mark.parametrize("name", ["", *sorted(COMMANDS)])
def test_help_fits_80_columns_without_cutting_a_word(name, monkeypatch):
    import typer.rich_utils
    from typer.testing import CliRunner

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 80)  # (read from TERMINAL_WIDTH once, when typer first renders help)

    text = CliRunner().invoke(app, [*([name] if name else []), "--help"], prog_name="fbp",
                              env={"COLUMNS": "80", "TERMINAL_WIDTH": "80", "NO_COLOR": "1", "TERM": "dumb"}).output
    assert "…" not in text, text
    assert all(len(line) <= 80 for line in text.splitlines()), text
