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
    """Keeps ids unique across the batches of one ingest by suffixing repeats.

    The ids seen so far are kept as 64-bit numbers (an id is 16 hex digits) in a few sorted arrays,
    8 bytes an id instead of a Python string in a dict, so a long ingest's memory grows slowly;
    only ids seen more than once are in a dict, with their count. An id that is not 16 lowercase
    hex digits is kept as a string.
    """

    def __init__(self, journal: bool = False) -> None:
        self._runs: list[np.ndarray] = []  # sorted, disjoint, each at most half the size of the one before
        self._others: set[str] = set()
        self._repeats: dict[str, int] = {}
        # With ``journal``: what was learned since the last :meth:`take_journal` (a resumable ingest saves it per file).
        self._journal: tuple[list[np.ndarray], set[str], set[str]] | None = ([], set(), set()) if journal else None

    @staticmethod
    def _numbers(ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """The ids as numbers, and which ids are 16 hex digits (the others' numbers mean nothing)."""
        numbers = ids.str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        is_hex = ids.str.contains(f"^[0-9a-f]{{{ID_HEX_DIGITS}}}$").fill_null(False)
        return numbers.fill_null(0).to_numpy(), is_hex.to_numpy()

    def _seen(self, numbers: np.ndarray) -> np.ndarray:
        seen = np.zeros(numbers.size, dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, numbers), run.size - 1)
            seen |= run[at] == numbers
        return seen

    def _remember(self, numbers: np.ndarray) -> None:
        """Add ids not seen before (merging runs like a binary counter: few runs, each id moved log N times)."""
        run = np.sort(numbers)
        run = run[np.concatenate([[True], run[1:] != run[:-1]])] if run.size else run
        while self._runs and self._runs[-1].size <= 2 * run.size:
            run = np.sort(np.concatenate([self._runs.pop(), run]), kind="stable")  # a merge of two sorted runs
        self._runs.append(run)

    def __call__(self, ids: pl.Series) -> pl.Series:
        numbers, is_hex = self._numbers(ids)
        seen = np.zeros(ids.len(), dtype=bool)
        seen[is_hex] = self._seen(numbers[is_hex])
        if not is_hex.all():
            others = ids.filter(pl.Series(~is_hex)).to_list()
            seen[~is_hex] = np.fromiter((i in self._others for i in others), dtype=bool, count=len(others))
            self._others.update(others)
            if self._journal is not None:
                self._journal[1].update(others)
        repeated = seen | ids.is_duplicated().to_numpy()
        if (is_hex & ~seen).any():
            self._remember(numbers[is_hex & ~seen])
            if self._journal is not None:
                self._journal[0].append(numbers[is_hex & ~seen])
        if not repeated.any():
            return ids.alias(ID)
        out = ids.to_list()
        first_here: set[str] = set()
        for i in np.flatnonzero(repeated).tolist():
            value = out[i]
            count = self._repeats.get(value)
            if count is None:
                if not seen[i] and value not in first_here:
                    first_here.add(value)
                    continue
                count = 1
            self._repeats[value] = count + 1
            out[i] = f"{value}-{count + 1}"
            if self._journal is not None:
                self._journal[2].add(value)
        return pl.Series(ID, out, dtype=pl.String)

    def take_journal(self) -> tuple[np.ndarray, list[str], dict[str, int]]:
        """What this instance learned since the last take (``journal=True``): the new 16-hex-digit ids as
        sorted numbers, the other new ids, and the repeat counts that changed; :meth:`replay` takes them back."""
        if self._journal is None:
            raise ValueError("UniqueIds(journal=True) keeps a journal; this one does not")
        numbers, others, repeated = self._journal
        self._journal = ([], set(), set())
        learned = np.unique(np.concatenate(numbers)) if numbers else np.zeros(0, dtype=np.uint64)
        return learned, sorted(others), {value: self._repeats[value] for value in sorted(repeated)}

    def replay(self, numbers: np.ndarray, others: list[str], repeats: dict[str, int]) -> None:
        """Learn again what :meth:`take_journal` gave (in the order taken): the same ids then get the same suffixes."""
        if numbers.size:
            self._remember(numbers.astype(np.uint64, copy=False))
        self._others.update(others)
        self._repeats.update(repeats)
