"""How ``--help`` reads: one place that shapes every command's help screen.

Typer's defaults show a type placeholder on on/off flags (``--tune <bool>``), Python type names
(``<list[str]>``), and usage lines in several styles (``[config_path]``, ``{data_dir}``, ``{RUN...}...``).
Here every command gets:

- on/off flags without a placeholder: ``--tune``, ``--help``;
- values shown by a short capitalised name: ``--epochs N``, ``--data PATH``, ``--set KEY=VALUE``;
- arguments in capitals in the usage line, optional ones in brackets, repeatable ones with one ``...``:
  ``fbp train [OPTIONS] [CONFIG]``, ``fbp infer [OPTIONS] CKPT_OR_RUN...``;
- the commands listed in the order a newcomer meets them, grouped (get started, the lifecycle, experiments),
  with aliases hidden (each alias is named in its command's help instead).
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional

import click
import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# The order and grouping of ``fbp --help``: try it, then the lifecycle, then the tools for experiments.
# A command missing here is listed after these, in the "Commands" panel.
COMMAND_PANELS: Dict[str, List[str]] = {
    "Get started": ["quickstart", "demo-data"],
    "The lifecycle": ["preprocess", "train", "evaluate", "infer", "ensemble", "export"],
    "Experiments": ["compare", "tune", "pretrain"],
}
COMMAND_ORDER = [name for names in COMMAND_PANELS.values() for name in names]
PANEL_OF = {name: panel for panel, names in COMMAND_PANELS.items() for name in names}

# The placeholder of a value by its type, when an option does not name one itself.
_METAVARS = {int: "N", float: "NUMBER", Path: "PATH", str: "TEXT", bool: ""}


def _value_type(annotation: Any) -> Any:
    """``Optional[List[int]]`` -> ``int``: the type of one value an option or argument takes."""
    while True:
        origin = typing.get_origin(annotation)
        if origin in (list, tuple, set, typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None) and arg is not Ellipsis]
            if not args:
                return str
            annotation = args[0]
        else:
            return annotation


def _placeholder(param: click.Parameter) -> str:
    """The capitalised placeholder for a parameter's value: its own metavar, else one chosen by type."""
    if param.metavar is not None:
        return param.metavar
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return "VALUE"
    if descriptor.is_choice and descriptor.choices:
        return "|".join(str(getattr(choice, "value", choice)) for choice in descriptor.choices)
    return _METAVARS.get(_value_type(descriptor.annotation), "VALUE")


class FbpOption(TyperOption):
    """An option shown as ``--flag`` (on/off) or ``--name VALUE``."""

    def display_type_rich(self, ctx: click.Context) -> Optional[str]:
        if self.is_flag or self.count:
            return None
        return _placeholder(self)


class FbpArgument(TyperArgument):
    """An argument shown by its capitalised name (``CONFIG``, ``RUN...``), without a type placeholder."""

    @property
    def display_name_raw(self) -> str:  # type: ignore[override]
        return self.metavar if self.metavar is not None else self.name.upper()

    def _rich_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.nargs == 1 or name.endswith("...") else name + "..."

    def display_type_rich(self, ctx: click.Context) -> Optional[str]:
        return None

    def _usage_display_name(self) -> str:
        name = self._rich_display_name()
        return name if self.required else f"[{name}]"


def _restyle(param: click.Parameter) -> click.Parameter:
    """Give a parameter Typer built the display above (same object, same state; only how help shows it)."""
    if type(param) is TyperOption:
        param.__class__ = FbpOption
    elif type(param) is TyperArgument:
        param.__class__ = FbpArgument
    return param


class FbpCommand(TyperCommand):
    """A command whose parameters display as described in this module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _restyle(param)

    def get_help_option(self, ctx: click.Context):
        option = super().get_help_option(ctx)
        return _restyle(option) if option is not None else None


class FbpGroup(TyperGroup):
    """The ``fbp`` group: commands in lifecycle order and grouped into panels; its own options displayed the same way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _restyle(param)
        for name, command in list(self.commands.items()):
            self._place(name, command)

    def add_command(self, cmd: click.Command, name: Optional[str] = None) -> None:
        super().add_command(cmd, name)
        self._place(name or cmd.name, cmd)

    @staticmethod
    def _place(name: Optional[str], command: click.Command) -> None:
        if name in PANEL_OF and not getattr(command, "rich_help_panel", None):  # unset (typer: a falsy placeholder)
            command.rich_help_panel = PANEL_OF[name]

    def get_help_option(self, ctx: click.Context):
        option = super().get_help_option(ctx)
        return _restyle(option) if option is not None else None

    def list_commands(self, ctx: click.Context) -> List[str]:
        names = super().list_commands(ctx)
        known = [name for name in COMMAND_ORDER if name in names]
        return known + [name for name in names if name not in known]


class FbpTyper(typer.Typer):
    """``typer.Typer`` whose commands and group use the classes above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", FbpGroup)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("cls", FbpCommand)
        return super().command(*args, **kwargs)
