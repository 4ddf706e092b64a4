"""Filters: small classes with a name, typed parameters and one method.

A filter's :meth:`Filter.apply` takes a record frame and returns ``id``, its annotation
columns (the measurements, kept for every record so a new threshold needs no re-measuring
of the corpus by hand), and two decision columns: ``reject`` (a reason code, or null to keep)
and ``detail`` (why, in words). :func:`run_filter` turns that into a stage result with the
books kept: in = kept + rejected, every reject with its stage and reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError

from curate.errors import CurateError
from curate.records.schema import ID, rejects_from
from curate.stages.result import StageResult

REJECT = "reject"
DETAIL = "detail"


class FilterParams(BaseModel):
    """Base of every filter's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Filter:
    """Subclass with a ``Params`` model and :meth:`apply`; register with ``@register("filter", name)``."""

    name: ClassVar[str] = "filter"
    kind: ClassVar[str] = "filter"
    Params: ClassVar[type[FilterParams]] = FilterParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise CurateError(f"filter {self.name}: {problems}") from None

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        """``id``, annotation columns, ``reject`` (reason or null) and ``detail`` for every record."""
        raise NotImplementedError

    def rewrite(self, records: pl.DataFrame, annotations: pl.DataFrame) -> pl.DataFrame:
        """The kept records as they go on; filters that edit text (PII redaction) override this.

        Record ids stay those of the original content, so edited records remain traceable.
        """
        return records


def first_failing(checks: list[tuple[pl.Expr, str, pl.Expr]]) -> tuple[pl.Expr, pl.Expr]:
    """``reject`` and ``detail`` of the first failing check (in order); null when all pass.

    Each check is (failed: bool expression, reason code, detail: string expression).
    """
    reason = pl.lit(None, dtype=pl.String)
    detail = pl.lit(None, dtype=pl.String)
    for failed, code, why in reversed(checks):
        reason = pl.when(failed).then(pl.lit(code)).otherwise(reason)
        detail = pl.when(failed).then(why).otherwise(detail)
    return reason.alias(REJECT), detail.alias(DETAIL)


def run_filter(records: pl.DataFrame, stage: Filter, name: str | None = None) -> StageResult:
    """Apply a filter and split the records into kept and rejected."""
    name = name or stage.name
    decided = stage.apply(records)
    if decided.height != records.height or not decided[ID].equals(records[ID]):
        raise AssertionError(f"filter {stage.name} must return one row per record, in order")
    rejected = decided[REJECT].is_not_null()
    rejects = rejects_from(
        records.filter(rejected).with_columns(decided.filter(rejected).select(REJECT, DETAIL)),
        name,
        pl.col(REJECT),
        detail=pl.col(DETAIL),
    )
    annotations = decided.drop(DETAIL)
    kept = stage.rewrite(records.filter(~rejected), annotations.filter(~rejected))
    return StageResult(name, stage.params.model_dump(mode="json"), records.height, kept, rejects, annotations)
