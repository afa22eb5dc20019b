"""A command's `--help` page, drawn from its parameter dataclass: panels by purpose (`params.GROUPS`), each
parameter as its flags with what they take on one line (`--mode independent|random|kfold`,
`--copy / --no-copy`, `--output <str> [required]`) and its help with the default indented below it.

Typer's own page puts flags, negative flags, types and help in six table columns that share the width, so at
80 columns choice lists broke mid-word (`kfo ld`) and long flags were cut (`--no-spectrum-fore…`); a line for
the flags and the full width for the help never do.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

from .params import GROUPS, Params, base_type, field_default, flag

CONFIG_HELP = "YAML file of parameters; flags override it."
ARGUMENTS, OPTIONS = "Arguments", "Options"
INDENT = 4  # the help's indent below its flags


def flag_names(spec: dataclasses.Field) -> list[str]:
    """The flags of a parameter: --name, and --no-name (or --name for a `no_` field) for a boolean."""
    if base_type(spec.type) is not bool or spec.metadata.get("positional"):
        return [flag(spec)]
    negative = spec.name[3:] if spec.name.startswith("no_") else f"no_{spec.name}"
    return [flag(spec), "--" + negative.replace("_", "-")]


def value_hint(spec: dataclasses.Field) -> str:
    """What a flag takes: its choices, its type (a list's items, comma-separated), nothing for a switch."""
    kind = base_type(spec.type)
    if spec.metadata.get("choices"):
        return "|".join(spec.metadata["choices"])
    if kind is bool and not spec.metadata.get("positional"):
        return ""
    if typing.get_origin(kind) is list:
        return f"<{typing.get_args(kind)[0].__name__},...>"
    return f"<{kind.__name__}>"


def help_text(spec: dataclasses.Field) -> str:
    """A field's help and its default where there is one (a None default is stated in the help, if at all)."""
    text = spec.metadata.get("help", "")
    default = field_default(spec)
    if default not in (None, dataclasses.MISSING, []):
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        text += f" (default: {shown})"
    return text


def help_order(fields: tuple[dataclasses.Field, ...]) -> list[dataclasses.Field]:
    """Arguments first, in their order; then the flags heading by heading (GROUPS order), required ones
    first, so `--help` shows data, model, training loop, output and system in that order."""
    def rank(spec: dataclasses.Field) -> tuple[int, bool]:
        group = spec.metadata.get("group")
        heading = -1 if spec.metadata.get("positional") else GROUPS.index(group) if group in GROUPS else len(GROUPS)
        return heading, not spec.metadata.get("required")
    return sorted(fields, key=rank)


def usage_arguments(params_type: type[Params]) -> list[str]:
    """The arguments as a usage line shows them: a required one bare (DATA), an optional one in brackets.
    Click must not require them itself, since a --config file may give them."""
    return [flag(spec) if spec.metadata.get("required") else f"[{flag(spec)}]"
            for spec in dataclasses.fields(params_type) if spec.metadata.get("positional")]


def panels(params_type: type[Params]) -> dict[str, list[tuple[str, str, bool, str]]]:
    """Panel title -> its entries (flags, value hint, required, help), in `--help` order."""
    found: dict[str, list[tuple[str, str, bool, str]]] = {ARGUMENTS: [], OPTIONS: [
        ("--config", "<file>", False, CONFIG_HELP), ("--help", "", False, "Show this message and exit.")]}
    for spec in help_order(dataclasses.fields(params_type)):
        title = ARGUMENTS if spec.metadata.get("positional") else spec.metadata.get("group") or OPTIONS
        entry = (" / ".join(flag_names(spec)), value_hint(spec), bool(spec.metadata.get("required")), help_text(spec))
        found.setdefault(title, []).append(entry)
    return {title: entries for title, entries in found.items() if entries}


def print_help(usage: str, params_type: type[Params]) -> None:
    """Print the page to stdout, wrapped at the terminal's width (COLUMNS where set), colours on a terminal."""
    from rich.console import Console, Group
    from rich.padding import Padding
    from rich.panel import Panel
    from rich.text import Text

    console = Console(highlight=False)
    console.print(Padding(Text(usage.strip(), style="yellow"), (1, 1, 0, 1)))
    for paragraph in inspect.cleandoc(params_type.__doc__ or "").split("\n\n"):
        console.print(Padding(Text(" ".join(paragraph.split())), (1, 1, 0, 1)))
    console.print()
    for title, entries in panels(params_type).items():
        rows = []
        for names, hint, required, text in entries:
            head = Text(names, style="bold cyan")
            head.append(f" {hint}" if hint else "", style="yellow")
            head.append(" [required]" if required else "", style="red")
            rows += [head, Padding(Text(text), (0, 0, 0, INDENT))]
        console.print(Panel(Group(*rows), title=title, title_align="left", border_style="dim"))
