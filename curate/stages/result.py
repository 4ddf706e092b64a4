"""What a stage hands back: the records it kept, the rejects with reasons, its annotations."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curate.records.schema import ID, REASON


@dataclass
class StageResult:
    """The outcome of one stage over a record frame.

    ``kept`` and ``rejects`` partition the input (checked by :meth:`check`); ``annotations``
    holds ``id`` plus the stage's signals for every input record, kept or not, so a new
    threshold never needs a recompute.
    """

    name: str
    params: dict[str, Any]
    n_in: int
    kept: pl.DataFrame
    rejects: pl.DataFrame
    annotations: pl.DataFrame | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    signatures: Any = None

    def check(self) -> None:
        if self.kept.height + self.rejects.height != self.n_in:
            raise AssertionError(
                f"stage {self.name}: {self.n_in} in != {self.kept.height} kept + {self.rejects.height} rejected"
            )
        if self.kept[ID].n_unique() != self.kept.height:
            raise AssertionError(f"stage {self.name}: kept ids are not unique")

    def record(self) -> dict[str, Any]:
        reasons = Counter(self.rejects[REASON].to_list()) if self.rejects.height else Counter()
        return {
            "name": self.name,
            "params": self.params,
            "in": self.n_in,
            "kept": self.kept.height,
            "rejected": self.rejects.height,
            "rejected_by_reason": dict(sorted(reasons.items())),
            **({"stats": self.stats} if self.stats else {}),
        }


def concat_results(parts: list[StageResult]) -> StageResult:
    """One stage result from the results of the same stage over consecutive shards, in order.

    For a stage that decides each record on its own (every filter), this equals running the
    stage over the whole frame, which is what lets a flow spread shards over workers.
    """
    if not parts:
        raise ValueError("concat_results needs at least one part")
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    annotations = [p.annotations for p in parts if p.annotations is not None]
    return StageResult(
        first.name,
        first.params,
        sum(p.n_in for p in parts),
        pl.concat([p.kept for p in parts], rechunk=True),
        pl.concat([p.rejects for p in parts], rechunk=True),
        pl.concat(annotations, rechunk=True) if len(annotations) == len(parts) else None,
    )
