"""Command-line options made from pydantic configs, and the one pydantic error → flag message formatter.

``@config_options(Config)`` gives a typer command one ``--flag`` per field of ``Config`` (its name, type, default and
description), so each default is written once, in the config. The command receives the values as one dict and
builds the config with :func:`build_config`, whose validation errors name the flags. Literal fields take text
(pydantic says which values are allowed); tuple and list fields take comma-separated values.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from addp_agent.errors import UserError, validation_message

Config = TypeVar("Config", bound=BaseModel)
Command = TypeVar("Command", bound=Callable[..., Any])


def flag(name: str) -> str:
    """A config field (or a dotted path into one) as its flag: ``max_rounds`` → ``--max-rounds``,
    ``correction.1`` → ``--correction[1]`` (the second of a repeated or comma-separated option)."""
    head, *rest = name.split(".")
    tail = "".join(f"[{part}]" if part.isdigit() else "-" + part.replace("_", "-") for part in rest)
    return "--" + head.replace("_", "-") + tail


def refuse_non_finite(command: Any) -> Any:
    """Make every option of a (typer-made) click ``command``, and of its subcommands, refuse NaN and ±inf floats
    with one :class:`UserError` naming the flag: typer accepts ``--guidance-scale nan`` as a float."""
    for sub in (getattr(command, "commands", None) or {}).values():
        refuse_non_finite(sub)
    original = command.callback
    if original is None or getattr(original, "_finite_floats", False):
        return command
    names = {p.name: (p.opts or [p.name])[0] for p in command.params if p.name}

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        for name, value in kwargs.items():
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, float) and not math.isfinite(item):
                    raise UserError(f"{names.get(name, name)}: must be a finite number, got {item}")
        return original(*args, **kwargs)

    checked._finite_floats = True  # type: ignore[attr-defined]
    command.callback = checked
    return command


def config_error(error: ValidationError, name: Callable[[str], str] = flag) -> UserError:
    """A config's validation error as one line naming the flags: ``--max-rounds: Input should be …``."""
    return UserError(validation_message(error, name))


def build_config(model: type[Config], values: Mapping[str, Any], name: Callable[[str], str] = flag) -> Config:
    """``model(**values)``; a validation error becomes one :class:`UserError` line naming the flags (``name``)."""
    try:
        return model(**values)
    except ValidationError as error:
        raise config_error(error, name) from None


def model_config_flag(path: Any) -> Callable[[str], str]:
    """:func:`flag`, except that the ``model`` field, read from ``--model-config path``, is named by that file and
    the key in it: ``--model-config m.json: down_block_types[0]``."""

    def name(field: str) -> str:
        head, _, key = field.partition(".")
        if head != "model" or path is None:
            return flag(field)
        parts = key.split(".") if key else []
        where = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in parts).lstrip(".")
        return f"--model-config {path}" + (f": {where}" if where else "")

    return name


def given_options(context: typer.Context, names: Collection[str]) -> set[str]:
    """Which of ``names`` (a command's parameters) the user typed or set through the environment, not defaults."""
    typed = {"COMMANDLINE", "ENVIRONMENT"}
    return {name for name in names if getattr(context.get_parameter_source(name), "name", None) in typed}


def config_options(model: type[BaseModel], *, into: str = "options", only: Collection[str] | None = None,
                   exclude: Collection[str] = ()) -> Callable[[Command], Command]:
    """Give a typer command one option per field of ``model`` (``only`` those, or all but ``exclude`` and the
    command's own parameters); the command receives their values as the dict parameter ``into``."""

    def decorate(command: Command) -> Command:
        own = inspect.signature(command, eval_str=True)
        names = [name for name in model.model_fields if name not in own.parameters and name not in exclude
                 and (only is None or name in only)]
        generated = [_option(name, model.model_fields[name]) for name in names]
        lists = {name for name in names if _is_sequence(model.model_fields[name].annotation)}

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            for name in lists & {n for n, v in values.items() if isinstance(v, str)}:
                values[name] = [item.strip() for item in values[name].split(",") if item.strip()]
            return command(**kwargs, **{into: values})

        parameters = [p for name, p in own.parameters.items() if name != into] + generated
        run.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def _option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The typer option of one config field."""
    annotation, optional = _unwrap_optional(field.annotation)
    help_text = field.description or ""
    if get_origin(annotation) is Literal:
        choices = " | ".join(str(choice) for choice in get_args(annotation))
        help_text = help_text if choices in help_text else f"{help_text} ({choices})".strip()
        annotation = str
    elif _is_sequence(annotation):
        annotation = str
    elif (isinstance(annotation, type) and issubclass(annotation, BaseModel)) or get_origin(annotation) is dict:
        raise TypeError(f"{name}: a {annotation} field has no command-line form; exclude it and add an option")
    default: Any = ... if field.is_required() else field.get_default(call_default_factory=True)
    if isinstance(default, (tuple, list)):
        default = ",".join(map(str, default))
    decls = [f"{flag(name)}/--no-{flag(name)[2:]}"] if annotation is bool else [flag(name)]
    cli_type = annotation | None if optional else annotation
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=cli_type,
                             default=typer.Option(default, *decls, help=help_text or None))


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(``X``, True) for ``X | None``; (annotation, False) otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        rest = [a for a in get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return annotation, False


def _is_sequence(annotation: Any) -> bool:
    return get_origin(_unwrap_optional(annotation)[0]) in (tuple, list)
