"""Check values read from a stored file against a dataclass's declared field types.

Run folders are files a person can edit or a crash can cut short. A config whose `image_size` is
the text "<str>" or a status whose `pid` is a list would otherwise load and fail later, in a page,
with a TypeError. `check_field_types` says at load time which field is wrong and what it holds.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import Any

from core.errors import Unavailable

_NONE = type(None)


class FieldTypeError(Unavailable, ValueError):
    """A stored field holds a value of the wrong kind; the message names it and what it holds."""


def check_field_types(cls: type, values: dict[str, Any], what: str) -> None:
    """Raise FieldTypeError for the first of `values` whose type is not `cls`'s declared one.

    Keys `cls` does not declare are not checked. Numbers are lenient the JSON way (an int is a
    float); a bool is not a number; an enum field takes its value's text; a dataclass field a dict.
    """
    hints = _hints(cls)
    for name, value in values.items():
        hint = hints.get(name)
        if hint is not None and not _matches(value, hint):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise FieldTypeError(f"{what}: {name} is {shown}, not {_describe(hint)}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {name: hint for name, hint in typing.get_type_hints(cls).items() if name in names}


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is _NONE:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint | str)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return isinstance(value, hint | dict)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, tuple | list):
            return False
        args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        return not args or all(_matches(item, args[0]) for item in value)
    return True  # a kind this check does not know: accepted as before


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [_describe(arg) for arg in typing.get_args(hint) if arg is not _NONE]
        return " or ".join(kinds) + (" (or null)" if _NONE in typing.get_args(hint) else "")
    if hint is int:
        return "a whole number"
    if hint is float:
        return "a number"
    if hint is str:
        return "text"
    if hint is bool:
        return "true or false"
    if origin is dict or hint is dict or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return "an object"
    if origin in (tuple, list):
        args = [arg for arg in typing.get_args(hint) if arg is not Ellipsis]
        return "a list" + (f" of {_describe(args[0]).removeprefix('a ')}s" if args else "")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(str(member.value) for member in hint)
    return str(hint)
