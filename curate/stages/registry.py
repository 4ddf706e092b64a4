"""The registry of filters and scorers, found by name from recipes and the command line.

A stage registers itself with ``@register("filter", "language")`` in its own module under
``filters/`` or ``scorers/``; those packages are imported on first lookup, so the CLI stays
light until a stage is used.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from curate.errors import CurateError

_STAGES: dict[tuple[str, str], type] = {}
_PACKAGES = {"filter": "filters", "scorer": "scorers"}
_loaded: set[str] = set()


def register(kind: str, name: str) -> Any:
    """Class decorator: make a stage findable as (kind, name)."""

    def add(cls: type) -> type:
        key = (kind, name)
        if key in _STAGES and _STAGES[key] is not cls:
            raise ValueError(f"{kind} {name!r} is registered twice ({_STAGES[key].__module__}, {cls.__module__})")
        cls.name = name
        cls.kind = kind
        _STAGES[key] = cls
        return cls

    return add


def _load(kind: str) -> None:
    package = _PACKAGES[kind]
    if package in _loaded:
        return
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _loaded.add(package)


def get(kind: str, name: str) -> type:
    _load(kind)
    try:
        return _STAGES[(kind, name)]
    except KeyError:
        known = ", ".join(available(kind))
        raise CurateError(f"unknown {kind} {name!r}; available: {known}") from None


def available(kind: str) -> list[str]:
    _load(kind)
    return sorted(name for k, name in _STAGES if k == kind)
