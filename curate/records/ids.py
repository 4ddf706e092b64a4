"""Stable content ids.

``id`` is the first 16 hex digits (64 bits) of SHA-256 over the record's canonical content:
kind, instruction, input and output (instruction records) or text (text records), plus the
chat messages when there are any, each passed through :func:`curate.records.normalize.canonical`
(NFC, CRLF to LF, surrounding ASCII whitespace stripped) and joined with unit separators.
It depends on nothing but the content, so it is the same on every machine, run and order.

Ids are unique within a run: when identical content appears again, the later copies get
``-2``, ``-3``, ... suffixes in input order (exact dedup then rejects them with
``duplicate_of`` pointing at the unsuffixed id).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable

import numpy as np
import polars as pl
import pyarrow as pa

from curate.records.normalize import canonical, canonical_series
from curate.records.schema import ID, INPUT, INSTRUCTION, KIND, KIND_TEXT, MESSAGES, OUTPUT, TEXT

ID_HEX_DIGITS = 16
_SEP = "\x1f"


def _digest(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:ID_HEX_DIGITS]


def _messages_part(messages: Iterable[dict[str, str]] | None) -> str:
    if not messages:
        return ""
    return "".join(f"{_SEP}{m['role']}:{canonical(m['content'])}" for m in messages)


def content_id(
    kind: str,
    instruction: str | None = None,
    input: str | None = None,
    output: str | None = None,
    text: str | None = None,
    messages: Iterable[dict[str, str]] | None = None,
) -> str:
    """The id of one record (see the module docstring)."""
    if kind == KIND_TEXT:
        body = f"{kind}{_SEP}{canonical(text)}"
    else:
        body = f"{kind}{_SEP}{canonical(instruction)}{_SEP}{canonical(input)}{_SEP}{canonical(output)}"
    return _digest(body + _messages_part(messages))


def content_ids(frame: pl.DataFrame) -> pl.Series:
    """:func:`content_id` for every row of a record frame, canonicalizing column-wise."""
    if frame.height == 0:
        return pl.Series(ID, [], dtype=pl.String)
    is_text = frame[KIND] == KIND_TEXT
    sep = pl.lit(_SEP)
    canon = pl.DataFrame({KIND: frame[KIND]})
    parts: list[pl.Expr] = []
    if is_text.any():
        canon = canon.with_columns(canonical_series(frame[TEXT]).alias(TEXT))
        parts.append(pl.when(pl.col(KIND) == KIND_TEXT).then(pl.concat_str([pl.col(KIND), sep, pl.col(TEXT)])))
    if not is_text.all():
        canon = canon.with_columns(canonical_series(frame[c]).alias(c) for c in (INSTRUCTION, INPUT, OUTPUT))
        parts.append(pl.concat_str([pl.col(KIND), sep, pl.col(INSTRUCTION), sep, pl.col(INPUT), sep, pl.col(OUTPUT)]))
    body = canon.select(pl.coalesce(parts) if len(parts) > 1 else parts[0]).to_series()
    if MESSAGES in frame.columns and frame[MESSAGES].null_count() < frame.height:
        texts = body.to_list()
        for i, messages in enumerate(frame[MESSAGES].to_list()):
            if messages:
                texts[i] += _messages_part(messages)
        body = pl.Series(texts, dtype=pl.String)
    return pl.Series(ID, _sha256_hex(body), dtype=pl.String)


def _sha256_hex(strings: pl.Series) -> list[str]:
    """SHA-256 prefix of each string's UTF-8 bytes, read straight from the Arrow buffers."""
    array = strings.rechunk().to_arrow()
    if array.type != pa.large_string():
        array = array.cast(pa.large_string())
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + len(array) + 1].tolist()
    data = memoryview(data_buffer) if data_buffer is not None else memoryview(b"")
    sha256 = hashlib.sha256
    return [sha256(data[a:b]).hexdigest()[:ID_HEX_DIGITS] for a, b in itertools.pairwise(offsets)]


class UniqueIds:
    """Keeps ids unique across the batches of one ingest by suffixing repeats."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def __call__(self, ids: pl.Series) -> pl.Series:
        out = ids.to_list()
        seen = self._seen
        if not ids.is_duplicated().any() and seen.keys().isdisjoint(out):
            seen.update(dict.fromkeys(out, 1))
            return ids.alias(ID)
        for i, value in enumerate(out):
            count = seen.get(value)
            if count is None:
                seen[value] = 1
            else:
                seen[value] = count + 1
                out[i] = f"{value}-{count + 1}"
        return pl.Series(ID, out, dtype=pl.String)
