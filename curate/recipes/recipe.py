"""YAML recipes: what to run, with every parameter typed and unknown keys refused by path.

A recipe is the file form of the command-line flags::

    dedup:
      exact: {unicode: NFKC, casefold: true, collapse_whitespace: true}
      near: {threshold: 0.8, ngram: 5, num_perm: 128, mode: word, keep: first}
    filters:
      - use: language
        params: {keep: [en]}
      - use: length
        params: {min_words: {output: 1}}

Values given on the command line win over the recipe; the recipe wins over the defaults.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model, field_validator

from curate.dedup.exact import ExactDedupParams
from curate.dedup.minhash import ShingleParams
from curate.dedup.near import NearDedupParams
from curate.errors import CurateError
from curate.records.normalize import TextNormalization
from curate.selection.strategies import SelectParams


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


_EXACT = TextNormalization()
_NEAR = NearDedupParams()


class ExactSpec(_Strict):
    """Exact dedup settings; defaults are :class:`curate.records.normalize.TextNormalization`'s."""

    unicode: str = _EXACT.unicode
    casefold: bool = _EXACT.casefold
    collapse_whitespace: bool = _EXACT.collapse_whitespace

    def params(self) -> ExactDedupParams:
        return ExactDedupParams(TextNormalization(self.unicode, self.casefold, self.collapse_whitespace))


class NearSpec(_Strict):
    """Near dedup settings; defaults are :class:`curate.dedup.near.NearDedupParams`'s."""

    threshold: float = _NEAR.threshold
    num_perm: int = _NEAR.num_perm
    seed: int = _NEAR.seed
    bands: int | None = _NEAR.bands
    rows: int | None = _NEAR.rows
    fp_weight: float = _NEAR.fp_weight
    fn_weight: float = _NEAR.fn_weight
    ngram: int = _NEAR.shingles.ngram
    mode: Literal["word", "char"] = _NEAR.shingles.mode
    max_shingles: int = _NEAR.shingles.max_shingles
    verify: Literal["exact", "estimate"] = _NEAR.verify
    keep: str = _NEAR.keep
    max_partners: int = _NEAR.max_partners
    giant_cluster: int = _NEAR.giant_cluster
    index: str | None = None

    def params(self, **overrides: Any) -> NearDedupParams:
        """The stage parameters, with ``overrides`` (None values ignored) winning over the spec."""
        values = {**self.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        shingles = ShingleParams(values.pop("ngram"), values.pop("mode"), values.pop("max_shingles"))
        values.pop("index")
        return NearDedupParams(shingles=shingles, **values)


class DedupSpec(_Strict):
    exact: ExactSpec | None = None
    near: NearSpec | None = None


class FilterSpec(_Strict):
    """One filter stage: a registry name, its parameters, and optionally a stage name."""

    use: str
    params: dict[str, Any] = {}
    name: str | None = None


PROBE_COLUMNS = ("quality_probe", "helpfulness_probe")


class CombineSpec(_Strict):
    """A combined score (see :func:`scorers.probe.combined_score`): ``sum_j w_j z_j`` over the probes'
    standardized logits, null under ``min_response_words`` and, with ``exclude_failed_checks``, where a
    label-free check fails (:func:`scorers.signals.failed_checks`: degenerate answers, missing input,
    wrong arithmetic, counts or choices, Python that does not parse, unchanged rewrites). The weights
    are chosen by nested cross-validation on the shared judge labels (``python benchmarks/quality.py``
    prints them) and copied here."""

    name: str
    weights: dict[str, float]
    min_response_words: int = 0
    exclude_failed_checks: bool = False


# The chosen weights (benchmarks/quality.py, nested 5-fold CV on the shared 20 % of both judges' labels):
# the 9k maximizes the worse of the two judges' lifts in its top 17 % under its median guard; the LIMA-style
# score the worse of (accuracy lift, helpfulness lift / 2.5) among the 2,000 best (the candidates), answers
# of 30 words or more. Both rank records that fail a label-free check last.
DEFAULT_COMBINE = [
    CombineSpec(
        name="quality_score",
        weights={"quality_probe": 0.6, "helpfulness_probe": 0.4},
        min_response_words=0,
        exclude_failed_checks=True,
    ),
    CombineSpec(
        name="lima_score",
        weights={"quality_probe": 0.55, "helpfulness_probe": 0.45},
        min_response_words=30,
        exclude_failed_checks=True,
    ),
]


class ScoreSpec(_Strict):
    """Quality signals: the judge probes (accuracy, helpfulness), label-free signals, combined scores, IFD."""

    probe: str | None = None
    helpfulness_probe: str | None = None
    combine: list[CombineSpec] = DEFAULT_COMBINE
    embedder: str | None = None
    ifd: bool = False
    ifd_model: str | None = None

    @field_validator("combine")
    @classmethod
    def _probe_columns(cls, combine: list[CombineSpec]) -> list[CombineSpec]:
        for spec in combine:
            missing = sorted(set(spec.weights) - set(PROBE_COLUMNS))
            if missing:
                raise ValueError(
                    f"combined score {spec.name!r} weights {', '.join(missing)}: no such probe column "
                    f"(have {', '.join(PROBE_COLUMNS)})"
                )
        return combine

    def probe_paths(self) -> dict[str, str | None]:
        """Probe files by annotation column (None: the shipped one)."""
        return {"quality_probe": self.probe, "helpfulness_probe": self.helpfulness_probe}


class _Selection(_Strict):
    name: str

    def params(self) -> SelectParams:
        return SelectParams(**self.model_dump(exclude={"name"}))


def _fields_of(params: type) -> dict[str, Any]:
    """Pydantic field definitions from a parameter dataclass, so the recipe form cannot drift from it."""
    hints = typing.get_type_hints(params)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(params)}


SelectSpec = create_model(
    "SelectSpec",
    __base__=_Selection,
    __doc__="A selection (see :mod:`curate.selection`); ``name`` names its run directory for the side selections.",
    **_fields_of(SelectParams),
)


class Recipe(_Strict):
    name: str | None = None
    dedup: DedupSpec | None = None
    filters: list[FilterSpec] = []
    score: ScoreSpec | None = None
    select: SelectSpec | None = None
    selections: list[SelectSpec] = []


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise CurateError(f"cannot read recipe {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CurateError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    try:
        return Recipe.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise CurateError(f"{path}: {problems}") from None
