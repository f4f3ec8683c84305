"""Help that reads like documentation: plain text (never Rich markup, so ``[/PREFIX]`` in a help string is
printed as written), placeholders in capitals (``PATH``, ``FILE``, ``VOLUME...``), never Python types.

The CLI's typer app uses :class:`App`, whose commands are :class:`PlainCommand` and whose root is
:class:`PlainGroup`; both format their usage line and their option list here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, get_args

import typer
from typer.core import TyperCommand, TyperGroup

F = TypeVar("F", bound=Callable[..., Any])
_TYPE_METAVARS = {"int": "N", "str": "TEXT", "float": "NUMBER", "bool": "BOOL"}


def _is_argument(param: Any) -> bool:
    return param.param_type_name == "argument"  # type: ignore[no-any-return]


def metavar(param: Any) -> str:
    """The placeholder for a parameter's value: its own metavar, else one named after its type."""
    if param.metavar:
        return str(param.metavar)
    if _is_argument(param):
        return (param.name or "ARG").upper()
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return "VALUE"
    if desc.is_path:
        return "PATH"
    annotation = get_args(desc.annotation)[0] if desc.is_list else desc.annotation
    return _TYPE_METAVARS.get(getattr(annotation, "__name__", ""), "VALUE")


def _usage_piece(param: Any) -> str:
    piece = metavar(param) + ("..." if param.nargs != 1 else "")
    return piece if param.required else f"[{piece}]"


def help_record(param: Any, ctx: Any) -> tuple[str, str] | None:
    """``("--key FILE", "Trusted public key (PEM); repeatable.  [required]")``: the name column and the text."""
    if getattr(param, "hidden", False):
        return None
    if not _is_argument(param):
        names = ", ".join(param.opts + param.secondary_opts)
        name = names if param.is_flag else f"{names} {metavar(param)}"
    else:
        name = metavar(param) + ("..." if param.nargs != 1 else "")
    text = getattr(param, "help", None) or ""
    extra = []
    default = param.default
    shown = getattr(param, "show_default", None)
    if not _is_argument(param) and shown is not False and not param.is_flag and not param.multiple \
            and default is not None and not callable(default):
        extra.append(f"default: {default}")
    if param.required:
        extra.append("required")
    if extra:
        text = f"{text}  [{'; '.join(extra)}]" if text else f"[{'; '.join(extra)}]"
    return name, text


def _format_params(cmd: Any, ctx: Any, formatter: Any) -> None:
    args: list[tuple[str, str]] = []
    opts: list[tuple[str, str]] = []
    for param in cmd.get_params(ctx):
        record = help_record(param, ctx)
        if record is not None:
            (args if _is_argument(param) else opts).append(record)
    for title, rows in (("Arguments", args), ("Options", opts)):
        if rows:
            with formatter.section(title):
                formatter.write_dl(rows)


class PlainCommand(TyperCommand):
    """A typer command whose help is plain text with documentation-style placeholders."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [_usage_piece(p) for p in self.get_params(ctx) if _is_argument(p)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)


class PlainGroup(TyperGroup):
    """The root command: plain help, then the list of commands."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        _format_params(self, ctx, formatter)
        self.format_commands(ctx, formatter)


class App(typer.Typer):
    """``typer.Typer`` with plain help: commands are :class:`PlainCommand` unless told otherwise."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", PlainGroup)
        kwargs.setdefault("rich_markup_mode", None)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", PlainCommand)
        return super().command(*args, **kwargs)
