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

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from curate.errors import CurateError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExactSpec(_Strict):
    unicode: str = "NFKC"
    casefold: bool = True
    collapse_whitespace: bool = True


class NearSpec(_Strict):
    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1
    bands: int | None = None
    rows: int | None = None
    fp_weight: float = 0.05
    fn_weight: float = 0.95
    ngram: int = 5
    mode: Literal["word", "char"] = "word"
    max_shingles: int = 100_000
    verify: Literal["exact", "estimate"] = "exact"
    keep: str = "first"
    max_partners: int = 64
    giant_cluster: int = 100
    index: str | None = None


class DedupSpec(_Strict):
    exact: ExactSpec | None = None
    near: NearSpec | None = None


class FilterSpec(_Strict):
    """One filter stage: a registry name, its parameters, and optionally a stage name."""

    use: str
    params: dict[str, Any] = {}
    name: str | None = None


class Recipe(_Strict):
    name: str | None = None
    dedup: DedupSpec | None = None
    filters: list[FilterSpec] = []


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
