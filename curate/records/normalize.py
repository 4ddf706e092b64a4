"""Text normalization shared by content ids and exact dedup.

Two strengths, because they answer different questions:

* :func:`canonical` (for ids): Unicode NFC, ``\\r\\n`` -> ``\\n`` and surrounding ASCII
  whitespace stripped. Two records share an id only if a reader could not tell them apart.
* :class:`TextNormalization` (for exact dedup, configurable): NFKC, case folding and
  whitespace collapse by default, so ``"Hello  World"`` and ``"hello world"`` are duplicates.

Both exist as a per-string Python function and as a vectorized polars version that give the
same result; the vectorized ones rewrite only the rows that need it (non-ASCII rows for
Unicode normalization, rows with whitespace runs for collapsing), which is most of the speed.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import polars as pl

ASCII_WHITESPACE = " \t\n\r\x0b\x0c"
_WHITESPACE_RUN = r"\s\s|[^\S ]"


def canonical(value: str | None) -> str:
    if value is None:
        return ""
    if "\r" in value:
        value = value.replace("\r\n", "\n")
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return value.strip(ASCII_WHITESPACE)


def _rewrite(series: pl.Series, mask: pl.Series, expr: pl.Expr) -> pl.Series:
    """Apply ``expr`` (over ``pl.col('')``) to the rows where ``mask`` holds."""
    rows = mask.arg_true()
    if rows.len() == 0:
        return series
    changed = series.gather(rows).to_frame("").select(expr).to_series()
    return series.scatter(rows, changed)


def _rewrite_py(series: pl.Series, mask: pl.Series, function: Callable[[str], str]) -> pl.Series:
    """Apply a Python string function to the rows where ``mask`` holds (few rows, typically)."""
    rows = mask.arg_true()
    if rows.len() == 0:
        return series
    changed = pl.Series([function(value) for value in series.gather(rows).to_list()], dtype=pl.String)
    return series.scatter(rows, changed)


def _non_ascii(series: pl.Series) -> pl.Series:
    return series.str.len_bytes() != series.str.len_chars()


def _collapse_whitespace(series: pl.Series) -> pl.Series:
    """``" ".join(text.split())`` for a column: Python's C split on the rows with whitespace
    runs or non-space whitespace; the rest only need their end spaces trimmed."""
    series = _rewrite_py(series, series.str.contains(_WHITESPACE_RUN), _join_words)
    return series.str.strip_chars(" ")


def _join_words(value: str) -> str:
    return " ".join(value.split())


def canonical_series(series: pl.Series) -> pl.Series:
    """:func:`canonical` for a whole column."""
    series = series.fill_null("")
    series = _rewrite(
        series, series.str.contains("\r", literal=True), pl.col("").str.replace_all("\r\n", "\n", literal=True)
    )
    # Python's unicodedata on the non-ASCII rows: faster than polars here, and the same tables
    # as canonical() uses.
    series = _rewrite_py(series, _non_ascii(series), partial(unicodedata.normalize, "NFC"))
    return series.str.strip_chars(ASCII_WHITESPACE)


@dataclass(frozen=True)
class TextNormalization:
    """How exact dedup compares texts.

    Attributes:
        unicode: Unicode normalization form (``NFKC``, ``NFC``, ``NFD``, ``NFKD`` or ``none``).
        casefold: compare case-insensitively (Unicode lowercase, the same in Python and polars).
        collapse_whitespace: runs of whitespace count as one space; ends are stripped.
    """

    unicode: str = "NFKC"
    casefold: bool = True
    collapse_whitespace: bool = True

    def __post_init__(self) -> None:
        if self.unicode not in ("NFC", "NFD", "NFKC", "NFKD", "none"):
            raise ValueError(f"unknown unicode normalization {self.unicode!r}: use NFC, NFD, NFKC, NFKD or none")

    def apply(self, value: str) -> str:
        if self.unicode != "none":
            value = unicodedata.normalize(self.unicode, value)
        if self.casefold:
            value = value.lower()
        if self.collapse_whitespace:
            value = _join_words(value)
        return value

    def series(self, series: pl.Series) -> pl.Series:
        """The same normalization for a whole column."""
        series = series.fill_null("")
        if self.unicode != "none":
            series = _rewrite_py(series, _non_ascii(series), partial(unicodedata.normalize, self.unicode))
        if self.casefold:
            series = series.str.to_lowercase()
        if self.collapse_whitespace:
            series = _collapse_whitespace(series)
        return series

    def as_dict(self) -> dict[str, object]:
        return {"unicode": self.unicode, "casefold": self.casefold, "collapse_whitespace": self.collapse_whitespace}
