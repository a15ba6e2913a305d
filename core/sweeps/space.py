"""A sweep's search space: which head-phase settings vary, over what, and how a trial draws them.

A space is a JSON object of TrainConfig field -> range, e.g.

    {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true},
     "dropout": {"low": 0.0, "high": 0.5},
     "head": {"choices": ["", "256", "512,128"]},
     "batch_size": {"choices": [32, 64, 128]}}

Numbers take a range (`low`, `high`, optional `log`) or a list of `choices`; the other settings
take `choices` (a head in its text form: "" for no hidden layer, "512,128" for two). Only settings
of the head phase can be searched: everything else (image size, weights, augmentation, epochs...)
is fixed for the whole sweep, so every trial trains on the same cached features. Nothing here
imports Keras or Optuna: the page and the CLI check a space before anything starts.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from core.settings.config import CLASS_WEIGHTING_CHOICES, LR_SCHEDULES, ConfigError, TrainConfig
from core.settings.options import OPTIONS, format_head, parse_head

FLOAT, INT, CHOICE = "float", "int", "choice"


class SpaceError(ConfigError):
    """The search space cannot be searched; the message says which parameter and why."""


@dataclass(frozen=True)
class Searchable:
    """A TrainConfig field a sweep may vary."""

    field: str
    kind: str  # FLOAT | INT | CHOICE
    label: str
    choices: tuple = ()  # the values a CHOICE field can take (empty: any valid one)


SEARCHABLE: dict[str, Searchable] = {
    s.field: s
    for s in (
        Searchable("learning_rate", FLOAT, "learning rate"),
        Searchable("dropout", FLOAT, "dropout"),
        Searchable("head", CHOICE, "head (Dense units)"),
        Searchable("label_smoothing", FLOAT, "label smoothing"),
        Searchable("batch_size", INT, "batch size"),
        Searchable("class_weighting", CHOICE, "class weights", CLASS_WEIGHTING_CHOICES),
        Searchable("augmented_views", INT, "augmented views"),
        Searchable("lr_schedule", CHOICE, "learning-rate schedule", LR_SCHEDULES),
    )
}

# What the page starts from and `python -m core sweep` searches without --space.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "head": {"choices": ["", "256", "512", "256,128"]},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "batch_size": {"choices": [32, 64, 128]},
    "augmented_views": {"low": 0, "high": 2},
    "lr_schedule": {"choices": list(LR_SCHEDULES)},
}


def default_space(fixed: TrainConfig) -> dict[str, dict[str, Any]]:
    """DEFAULT_SPACE, without augmented views when the fixed settings have no augmentation."""
    space = {name: dict(spec) for name, spec in DEFAULT_SPACE.items()}
    if not fixed.augment.enabled:
        space.pop("augmented_views")
    return space


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (low, high, log) or a list of choices, in TrainConfig's terms.

    A head's choices are kept in their text form ("256,128"), which is what Optuna stores.
    """

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def searchable(self) -> Searchable:
        return SEARCHABLE[self.name]

    def to_dict(self) -> dict[str, Any]:
        if self.choices:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}

    def suggest(self, trial) -> Any:
        """Draw this setting for an Optuna trial (its raw value: a head stays text)."""
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.searchable.kind == INT:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def contains(self, raw: Any) -> bool:
        """True when `raw` (a raw value, as Optuna stores it) lies in this range or among the choices."""
        if self.choices:
            return raw in self.choices
        return isinstance(raw, int | float) and self.low <= raw <= self.high

    def describe(self) -> str:
        """'0.0001 to 0.01 (log)', 'none, 256 or 512,128'."""
        if self.choices:
            shown = [display_value(self.name, c) for c in self.choices]
            return ", ".join(shown[:-1]) + f" or {shown[-1]}" if len(shown) > 1 else shown[0]
        return f"{self.low:g} to {self.high:g}" + (" (log)" if self.log else "")


@dataclass(frozen=True)
class SearchSpace:
    """The searched settings, checked against the sweep's fixed settings."""

    params: tuple[Param, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {p.name: p.to_dict() for p in self.params}

    def suggest(self, trial) -> dict[str, Any]:
        """Raw values for every searched setting (Optuna's params of the trial)."""
        return {p.name: p.suggest(trial) for p in self.params}

    def start_values(self, fixed: TrainConfig) -> dict[str, Any]:
        """The fixed settings' own values, where they lie inside the space (raw form).

        The first trial uses them, so the sweep's best is never worse on validation than the
        settings the person started from.
        """
        values = {}
        for param in self.params:
            raw = raw_value(param.name, getattr(fixed, param.name))
            if param.contains(raw):
                values[param.name] = raw
        return values

    def max_views(self, fixed: TrainConfig) -> int:
        """The most augmented views a trial may train on: what the sweep extracts once."""
        if not fixed.augment.enabled:
            return 0
        for param in self.params:
            if param.name == "augmented_views":
                return int(max(param.choices) if param.choices else param.high)
        return fixed.augmented_views


def config_for(fixed: TrainConfig, raw: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of a trial: the fixed settings with the trial's values (raw, as Optuna stores them).

    Raises:
        ConfigError: a value TrainConfig refuses (or an unknown setting).
    """
    changes = {}
    for name, value in raw.items():
        if name not in SEARCHABLE:
            raise SpaceError(f"unknown parameter {name!r}")
        changes[name] = typed_value(name, value)
    return fixed.replace(**changes)


def typed_value(name: str, raw: Any) -> Any:
    """A raw value (as Optuna stores it) -> the TrainConfig value: a head's text becomes a tuple."""
    if name == "head":
        return parse_head(str(raw))
    kind = SEARCHABLE[name].kind
    if kind == INT:
        return int(raw)
    if kind == FLOAT:
        return float(raw)
    return raw


def raw_value(name: str, value: Any) -> Any:
    """A TrainConfig value -> its raw form (a head as text)."""
    return format_head(value) if name == "head" else value


def display_value(name: str, raw: Any) -> str:
    """How a raw value reads in tables: a head "" is 'none', a rate 0.00123 '0.00123'."""
    if name == "head":
        return str(raw) or "none"
    if isinstance(raw, float):
        return f"{raw:.3g}"
    return str(raw)


def parse_space(data: Any, fixed: TrainConfig) -> SearchSpace:
    """Check a space (a dict as in the module docstring) against the fixed settings.

    Raises:
        SpaceError: an empty space, an unknown parameter, a malformed range, low > high, a value
            TrainConfig refuses, or a setting the fixed ones make meaningless. The message names it.
    """
    if not isinstance(data, dict):
        raise SpaceError(
            'a search space is a JSON object of setting -> range, e.g. {"learning_rate": {"low": 1e-4, '
            f'"high": 1e-2, "log": true}}. Received: {type(data).__name__}'
        )
    if not data:
        raise SpaceError(
            "the search space is empty: give at least one setting to search, e.g. "
            '{"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true}}. Searchable: ' + ", ".join(SEARCHABLE)
        )
    params = tuple(_parse_param(name, spec, fixed) for name, spec in data.items())
    return SearchSpace(params)


def _parse_param(name: str, spec: Any, fixed: TrainConfig) -> Param:
    if name not in SEARCHABLE:
        close = _meant(str(name))
        hint = f" (did you mean {close!r}?)" if close else ""
        raise SpaceError(
            f"unknown parameter {name!r} in the search space{hint}. Searchable: {', '.join(SEARCHABLE)}; "
            "everything else is fixed for the whole sweep"
        )
    searchable = SEARCHABLE[name]
    if name == "augmented_views" and not fixed.augment.enabled:
        raise SpaceError(
            "augmented_views: the fixed augmentation is 'none', so there are no augmented views to vary; "
            "choose an augmentation or leave augmented_views out of the space"
        )
    if not isinstance(spec, dict):
        raise SpaceError(f"{name}: give a range {{low, high[, log]}} or {{choices: [...]}}. Received: {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise SpaceError(f"{name}: unknown key(s) {sorted(unknown)}; a range is {{low, high, log}} or {{choices}}")
    if "choices" in spec:
        if {"low", "high"} & set(spec):
            raise SpaceError(f"{name}: give either choices or low/high, not both")
        return _choices(name, spec["choices"], fixed)
    if searchable.kind == CHOICE:
        raise SpaceError(f'{name} takes a list of choices, e.g. {{"choices": {_example_choices(name)}}}')
    return _range(name, spec, fixed)


def _meant(name: str) -> str | None:
    """The searchable setting a mistyped name most likely meant: its CLI flag ('lr'), or a near spelling."""
    flags = {option.flag.lstrip("-"): option.field for option in OPTIONS}
    field = flags.get(name) or flags.get(name.replace("_", "-"))
    if field in SEARCHABLE:
        return field
    close = difflib.get_close_matches(name, list(SEARCHABLE), n=1)
    return close[0] if close else None


def _example_choices(name: str) -> list:
    return ["", "256", "512,128"] if name == "head" else list(SEARCHABLE[name].choices)


def _choices(name: str, values: Any, fixed: TrainConfig) -> Param:
    if not isinstance(values, list) or not values:
        raise SpaceError(f"{name}: choices must be a non-empty list. Received: {values!r}")
    raw_choices = []
    for value in values:
        raw = _raw_choice(name, value)
        _check_value(name, raw, fixed)
        if raw not in raw_choices:
            raw_choices.append(raw)
    return Param(name, choices=tuple(raw_choices))


def _raw_choice(name: str, value: Any) -> Any:
    searchable = SEARCHABLE[name]
    if name == "head":
        if isinstance(value, list):  # [512, 128] is accepted as well as "512,128"
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str | int):
            raise SpaceError(f"head: each choice is text like '512,128' ('' for none). Received: {value!r}")
        try:
            return format_head(parse_head(str(value)))
        except ConfigError as e:
            raise SpaceError(f"head: {e}") from None
    if searchable.kind == CHOICE:
        if value not in searchable.choices:
            raise SpaceError(f"{name}: {value!r} is not one of {', '.join(searchable.choices)}")
        return value
    return _number(name, value, "choice")


def _number(name: str, value: Any, what: str) -> int | float:
    kind = SEARCHABLE[name].kind
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"{name}: {what} must be a number. Received: {value!r}")
    if kind == INT:
        if float(value) != int(value):
            raise SpaceError(f"{name}: {what} must be a whole number. Received: {value!r}")
        return int(value)
    return float(value)


def _range(name: str, spec: dict[str, Any], fixed: TrainConfig) -> Param:
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"{name}: a range needs both low and high. Received: {spec!r}")
    low, high = _number(name, spec["low"], "low"), _number(name, spec["high"], "high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{name}: log is true or false. Received: {log!r}")
    if low > high:
        raise SpaceError(f"{name}: low ({low:g}) is greater than high ({high:g})")
    if log and low <= 0:
        raise SpaceError(f"{name}: a log scale needs low > 0. Received: low={low:g}")
    for value in (low, high):
        _check_value(name, value, fixed)
    return Param(name, low=low, high=high, log=log)


def _check_value(name: str, raw: Any, fixed: TrainConfig) -> None:
    """Refuse a value TrainConfig would refuse, with TrainConfig's own message."""
    try:
        config_for(fixed, {name: raw})
    except ConfigError as e:
        raise SpaceError(f"{name}: {e}") from None
