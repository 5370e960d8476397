"""Config dataclasses <-> command-line flags, shared by every ``llm-bridge`` subcommand.

Each stage takes one dataclass whose fields carry ``metadata={"help": ...}`` (and optionally
``"choices"``) and validate themselves in ``__post_init__``. ``add_arguments`` turns the fields
into ``--flag`` options; flags the user did not give are absent from the parsed namespace
(``argparse.SUPPRESS``), so ``given(ns, cls)`` returns only what was typed and a preset can
supply the rest: ``dataclasses.replace(preset, **given(ns, cls))``.

Supported field types: ``str``, ``int``, ``float``, ``bool`` (``--x`` / ``--no-x``),
``tuple[str, ...]`` (comma-separated) and ``T | None`` (the word ``none`` gives ``None``).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def _parse_none(inner):
    def parse(text: str):
        return None if text.strip().lower() in ("none", "null", "") else inner(text)

    parse.__name__ = getattr(inner, "__name__", "value")
    return parse


def _parse_str_tuple(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(","))


def _converter(tp) -> tuple[Any, bool]:
    """(callable that parses one command-line string, whether the type is bool)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union type {tp!r}")
        inner, is_bool = _converter(args[0])
        if is_bool:
            raise TypeError("bool | None fields are not supported on the command line")
        return _parse_none(inner), False
    if origin is tuple:
        return _parse_str_tuple, False
    if tp is bool:
        return None, True
    if tp in (str, int, float):
        return tp, False
    raise TypeError(f"unsupported field type {tp!r}")


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    prefix: str = "",
    skip: tuple[str, ...] = (),
    title: str | None = None,
) -> None:
    """Add one ``--flag`` per field of the dataclass ``cls`` (fields named in ``skip`` excluded).

    ``prefix`` keeps two dataclasses apart on one command line: with ``prefix="data"`` the field
    ``seed`` becomes ``--data-seed`` (stored as ``data_seed``; ``given(ns, cls, prefix="data")``
    strips the prefix again).
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(title or cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        convert, is_bool = _converter(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        text = f.metadata.get("help", "").replace("%", "%%")
        text += f" (default: {_show(default)})"
        dest = f"{prefix}_{f.name}" if prefix else f.name
        flag = "--" + dest.replace("_", "-")
        if is_bool:
            group.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text,
            )
        else:
            group.add_argument(
                flag,
                dest=dest,
                type=convert,
                choices=f.metadata.get("choices"),
                default=argparse.SUPPRESS,
                metavar=f.metadata.get("metavar", f.name.upper()),
                help=text,
            )


def given(ns: argparse.Namespace, cls: type, *, prefix: str = "") -> dict[str, Any]:
    """The fields of ``cls`` that appear in ``ns``, i.e. the flags the user actually typed."""
    out = {}
    for f in dataclasses.fields(cls):
        dest = f"{prefix}_{f.name}" if prefix else f.name
        if hasattr(ns, dest):
            out[f.name] = getattr(ns, dest)
    return out


def to_jsonable(config) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
