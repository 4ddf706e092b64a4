"""curate: data-centric dataset curation. ``import curate`` gives the Python API.

Stage functions on record frames (``ingest``, ``exact_dedup``, ``near_dedup``, ``filter``, ``score``,
``select``), run directories (``open_run``, ``card``), training (``train``, ``ablate``) and
:class:`Pipeline`, which runs a recipe into a run directory. Names load on first use, so importing
curate (and ``curate --help``) stays instant.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Pipeline",
    "RunResult",
    "ablate",
    "card",
    "exact_dedup",
    "filter",
    "ingest",
    "near_dedup",
    "open_run",
    "score",
    "select",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from curate import api

        return getattr(api, name)
    raise AttributeError(f"module 'curate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
