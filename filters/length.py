"""Length filter: words, characters and tokens of a named tokenizer, per field."""

from __future__ import annotations

from functools import cache
from typing import Literal

import polars as pl

from curate.records.schema import ID
from curate.stages.filter import Filter, FilterParams, first_failing
from curate.stages.registry import register

Field = Literal["instruction", "input", "output", "text"]


class LengthParams(FilterParams):
    """Bounds per field; a field without a bound is measured but never rejects.

    Attributes:
        fields: fields to measure.
        min_words, max_words, min_chars, max_chars, min_tokens, max_tokens: bounds per field,
            e.g. ``{"output": 1}``; words are whitespace-separated, tokens need ``tokenizer``.
        tokenizer: a Hugging Face tokenizer name or path (``minilm`` for the bundled one).
    """

    fields: list[Field] = ["instruction", "input", "output", "text"]
    min_words: dict[Field, int] = {}
    max_words: dict[Field, int] = {}
    min_chars: dict[Field, int] = {}
    max_chars: dict[Field, int] = {}
    min_tokens: dict[Field, int] = {}
    max_tokens: dict[Field, int] = {}
    tokenizer: str | None = None


@cache
def _tokenizer(name: str):
    from transformers import AutoTokenizer

    from curate.io.models import offline_hint, resolve_model

    path = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise offline_hint(path, exc) from None


@register("filter", "length")
class Length(Filter):
    """Words, characters and tokens per field, with optional bounds."""

    Params = LengthParams

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        p = self.params
        if (p.min_tokens or p.max_tokens) and not p.tokenizer:
            from curate.errors import CurateError

            raise CurateError("filter length: min_tokens/max_tokens need a tokenizer")
        columns = {ID: records[ID]}
        for field in p.fields:
            values = records[field].fill_null("")
            columns[f"{field}_chars"] = values.str.len_chars().cast(pl.Int64)
            columns[f"{field}_words"] = values.str.count_matches(r"\S+").cast(pl.Int64)
            if p.tokenizer:
                tok = _tokenizer(p.tokenizer)
                encoded = tok(values.to_list(), add_special_tokens=False)["input_ids"]
                columns[f"{field}_tokens"] = pl.Series([len(ids) for ids in encoded], dtype=pl.Int64)
        frame = pl.DataFrame(columns)
        checks = []
        for unit in ("words", "chars", "tokens"):
            for field, bound in getattr(p, f"min_{unit}").items():
                col = pl.col(f"{field}_{unit}")
                checks.append((col < bound, f"{field}_too_short", pl.format(f"{{}} {unit} in {field} < {bound}", col)))
            for field, bound in getattr(p, f"max_{unit}").items():
                col = pl.col(f"{field}_{unit}")
                checks.append((col > bound, f"{field}_too_long", pl.format(f"{{}} {unit} in {field} > {bound}", col)))
        return frame.with_columns(*first_failing(checks))
