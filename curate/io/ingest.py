"""Ingest: sources (registry names or paths) in, record batches and rejects out.

Streams in batches so a corpus larger than memory passes through; keeps the books per
input file (path, sha256, rows read, kept, rejected) for the manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError, InputError
from curate.io import catalog, storage
from curate.io.atomic import sha256_file
from curate.io.formats import FORMATS, MAPPERS, BadRecord, detect_format, text_mapper
from curate.io.readers import Block, Row, has_known_kind, list_files, read_rows
from curate.records.ids import UniqueIds, content_id, content_ids
from curate.records.schema import (
    INPUT,
    INSTRUCTION,
    KIND,
    KIND_TEXT,
    LICENSE,
    MESSAGES,
    OUTPUT,
    RECORD_SCHEMA,
    REJECT_SCHEMA,
    SOURCE,
    SOURCE_ID,
    TEXT,
    conform,
)

STAGE = "ingest"
DEFAULT_MAX_CHARS = 1_000_000


@dataclass(frozen=True)
class IngestOptions:
    """How to read sources.

    Attributes:
        format: a key of :data:`curate.io.formats.MAPPERS`, or None to detect per file.
        text_field: read this field as pretraining text (implies ``format="text"``).
        id_field: take ``source_id`` from this field instead of the row number.
        delimiter: split plain-text files on lines equal to this (e.g. ``------``).
        strict: stop at the first bad row with an error naming file and line.
        max_chars: records longer than this (all fields together) are rejected as ``too_large``.
        batch_size: rows per batch handed downstream.
        source: the ``source`` column for path inputs (default: the file or folder stem).
        license: the ``license`` column for path inputs (default ``unknown``).
    """

    format: str | None = None
    text_field: str | None = None
    id_field: str | None = None
    delimiter: str | None = None
    strict: bool = False
    max_chars: int = DEFAULT_MAX_CHARS
    batch_size: int = 50_000
    source: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in FORMATS:
            raise CurateError(f"unknown format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.max_chars < 1 or self.batch_size < 1:
            raise CurateError("max_chars and batch_size must be positive")

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("batch_size",)}


@dataclass
class Source:
    """One SOURCE argument resolved to files."""

    spec: str
    name: str
    path: Path
    license: str
    format: str | None
    delimiter: str | None
    dataset: catalog.Dataset | None = None
    files: list[Path] = field(default_factory=list)


def resolve_source(spec: str, options: IngestOptions) -> Source:
    if storage.is_url(spec):
        base, files, name = storage.resolve(spec, has_known_kind)
        license = options.license or "unknown"
        return Source(spec, options.source or name, base, license, options.format, options.delimiter, files=files)
    path = Path(spec)
    if path.exists():
        name = options.source or (path.name.split(".")[0] if path.is_file() else path.name)
        files = list_files(path)
        return Source(spec, name, path, options.license or "unknown", options.format, options.delimiter, files=files)
    dataset = catalog.lookup(spec)
    if dataset is None:
        known = ", ".join(sorted(catalog.registry()))
        raise CurateError(f"{spec!r} is neither a file nor a registered dataset (known: {known})")
    if dataset.format == "labels":
        raise CurateError(f"dataset {spec!r} holds judge labels, not records; use it with `curate probe train`")
    resolved = catalog.resolve(dataset, check=False)
    return Source(
        spec,
        dataset.name,
        resolved,
        options.license or dataset.license,
        options.format or dataset.format,
        options.delimiter or dataset.delimiter,
        dataset,
        files=[resolved],
    )


class Ingest:
    """Iterate record batches from sources; counts are complete once iteration ends.

    ``resumable``: read file by file (:meth:`files`, :meth:`read_file`), each file's books taken
    after it (:meth:`file_books`) and given back to a later ingest that skips it (:meth:`restore_file`)."""

    def __init__(self, sources: list[str], options: IngestOptions | None = None, resumable: bool = False) -> None:
        if not sources:
            raise CurateError("no SOURCE given")
        self.options = options or IngestOptions()
        self.sources = [resolve_source(spec, self.options) for spec in sources]
        self.inputs: list[dict[str, Any]] = []
        self.reasons: Counter[str] = Counter()
        self.n_in = 0
        self.n_kept = 0
        self._unique = UniqueIds(journal=resumable)
        self._reasons_before: Counter[str] = Counter()

    @property
    def n_rejected(self) -> int:
        return sum(self.reasons.values())

    def batches(self) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        for source, path in self.files():
            yield from self._file_batches(source, path)

    def files(self) -> list[tuple[Source, Path]]:
        """Every input file, with its source, in reading order."""
        return [(source, path) for source in self.sources for path in source.files]

    def read_file(self, source: Source, path: Path) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        """One file's batches (the files in :meth:`files` order, none skipped but by :meth:`restore_file`)."""
        self._reasons_before = Counter(self.reasons)
        yield from self._file_batches(source, path)

    def file_books(self) -> dict[str, Any]:
        """What the file :meth:`read_file` just read added: its ``inputs`` entry, its rejects by reason,
        and the ids it saw first (``seen``: :meth:`UniqueIds.take_journal`)."""
        return {
            "entry": dict(self.inputs[-1]),
            "reasons": dict(sorted((self.reasons - self._reasons_before).items())),
            "seen": self._unique.take_journal(),
        }

    def restore_file(self, books: dict[str, Any]) -> None:
        """Take a file's :meth:`file_books` back instead of reading it again (the same books and later ids)."""
        entry = books["entry"]
        self.inputs.append(dict(entry))
        self.n_in += entry["count"]
        self.n_kept += entry["kept"]
        self.reasons.update(books["reasons"])
        self._unique.replay(*books["seen"])

    def _file_batches(self, source: Source, path: Path) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        # Hash the file on another thread while this one parses it (hashlib releases the GIL).
        with ThreadPoolExecutor(1) as pool:
            digest = pool.submit(sha256_file, path)
            yield from self._parse_file(source, path, digest)

    def _parse_file(
        self, source: Source, path: Path, digest: Future[str]
    ) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        opts = self.options
        text_field = opts.text_field or "text"
        entry = {
            "source": source.name,
            "path": str(path),
            "sha256": None,
            "format": None,
            "count": 0,
            "kept": 0,
            "rejected": 0,
        }
        if source.dataset is not None:
            entry["dataset"] = source.dataset.name
        self.inputs.append(entry)
        prefix = f"{path.relative_to(source.path)}:" if source.path.is_dir() else ""
        fmt = "text" if opts.text_field else source.format
        batch: list[Row] = []
        for row in read_rows(path, delimiter=source.delimiter, text_field=text_field):
            if isinstance(row, Block):
                fmt = fmt or _detect(row.rows(0, 1)[0])
                entry["format"] = fmt
                yield from self._block_batches(source, prefix, fmt, row, entry)
                continue
            if fmt is None and row.value is not None:
                fmt = _detect(row)
            if opts.strict and row.reason is not None:
                raise InputError(row.location, f"{row.reason}: {row.detail}")
            batch.append(row)
            if len(batch) >= opts.batch_size:
                yield self._emit(source, prefix, fmt or "text", batch, entry)
                batch = []
        entry["format"] = fmt
        entry["sha256"] = digest.result()
        if source.dataset is not None:
            catalog.verify(source.dataset, path, entry["sha256"])
        if batch or entry["count"] == 0:
            yield self._emit(source, prefix, fmt or "text", batch, entry)

    def _block_batches(
        self, source: Source, prefix: str, fmt: str, block: Block, entry: dict[str, Any]
    ) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
        size = self.options.batch_size
        for start in range(0, len(block.values), size):
            values = block.values[start : start + size]
            fields = columnar_fields(fmt, values, self.options)
            if fields is None:
                yield self._emit(source, prefix, fmt, block.rows(start, start + size), entry)
                continue
            ids = self._source_ids(values, range(start, start + len(values)), prefix)
            self._count(entry, len(values), len(values))
            yield self._records(source, fields, ids), conform(pl.DataFrame(), REJECT_SCHEMA)

    def _count(self, entry: dict[str, Any], n_in: int, n_kept: int) -> None:
        entry["count"] += n_in
        entry["kept"] += n_kept
        entry["rejected"] += n_in - n_kept
        self.n_in += n_in
        self.n_kept += n_kept

    def _map(self, fmt: str, batch: list[Row]) -> tuple[pl.DataFrame, list[tuple[Row, str, str]], list[Row]]:
        """Rows to record fields: columnar when every row is clean, else row by row with rejects."""
        if all(row.reason is None for row in batch):
            fast = columnar_fields(fmt, [row.value for row in batch], self.options)
            if fast is not None:
                return fast, [], batch
        mapper = text_mapper(self.options.text_field) if self.options.text_field else MAPPERS[fmt]
        good: list[Row] = []
        fields: list[dict[str, Any]] = []
        bad: list[tuple[Row, str, str]] = []
        for row in batch:
            if row.reason is not None:
                bad.append((row, row.reason, row.detail or ""))
                continue
            try:
                mapped = mapper(row.value, self.options.id_field)
                check_size(mapped, self.options.max_chars)
            except BadRecord as exc:
                if self.options.strict:
                    raise InputError(row.location, f"{exc.reason}: {exc.detail}") from None
                bad.append((row, exc.reason, exc.detail))
                continue
            good.append(row)
            fields.append(mapped)
        frame = pl.DataFrame(
            {name: [f.get(name) for f in fields] for name in _FIELDS},
            schema={n: RECORD_SCHEMA[n] for n in _FIELDS},
        )
        return frame, bad, good

    def _emit(
        self, source: Source, prefix: str, fmt: str, batch: list[Row], entry: dict[str, Any]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        fields, bad, good = self._map(fmt, batch)
        ids = self._source_ids([row.value for row in good], [row.index for row in good], prefix)
        records = self._records(source, fields, ids)
        rejects = self._rejects(source, prefix, bad)
        self._count(entry, len(batch), len(good))
        return records, rejects

    def _records(self, source: Source, fields: pl.DataFrame, source_ids: list[str] | pl.Series) -> pl.DataFrame:
        # Derived text for instructions: the non-empty parts separated by a blank line.
        derived = pl.concat_str(
            [pl.col(INSTRUCTION), *(pl.when(pl.col(c) != "").then(pl.col(c)) for c in (INPUT, OUTPUT))],
            separator="\n\n",
            ignore_nulls=True,
        )
        # Chats: every turn, so dedup and embeddings see the whole conversation.
        turns = pl.col(MESSAGES).list.eval(pl.element().struct.field("content")).list.join("\n\n")
        frame = fields.with_columns(
            pl.when(pl.col(KIND) == KIND_TEXT)
            .then(pl.col(TEXT))
            .when(pl.col(MESSAGES).is_not_null())
            .then(turns)
            .otherwise(derived)
            .alias(TEXT),
            pl.lit(source.name, dtype=pl.String).alias(SOURCE),
            pl.Series(SOURCE_ID, source_ids, dtype=pl.String),
            pl.lit(source.license, dtype=pl.String).alias(LICENSE),
        )
        frame = frame.with_columns(self._unique(content_ids(frame)))
        return conform(frame)

    def _source_ids(
        self, values: list[dict[str, Any] | None], indices: Iterable[int], prefix: str
    ) -> list[str] | pl.Series:
        """The source's own id where the row has one (``--id-field``, else ``id``), else the row number."""
        key = self.options.id_field or "id"
        if not any(v is not None and key in v for v in values):
            if isinstance(indices, range) and not prefix:
                return pl.int_range(indices.start, indices.stop, eager=True).cast(pl.String)
            return [f"{prefix}{i}" for i in indices]
        out = []
        for value, index in zip(values, indices, strict=True):
            found = value.get(key) if value is not None else None
            if isinstance(found, str | int) and not isinstance(found, bool):
                out.append(str(found))
            else:
                out.append(f"{prefix}{index}")
        return out

    def _rejects(self, source: Source, prefix: str, bad: list[tuple[Row, str, str]]) -> pl.DataFrame:
        rows = []
        for row, reason, detail in bad:
            self.reasons[reason] += 1
            raw = row.raw if row.raw is not None else _json_text(row.value)
            rows.append(
                {
                    "id": content_id(KIND_TEXT, text=raw),
                    "source": source.name,
                    "source_id": self._source_ids([row.value], [row.index], prefix)[0],
                    "kind": KIND_TEXT,
                    "text": raw,
                    "license": source.license,
                    "stage": STAGE,
                    "reason": reason,
                    "detail": detail,
                    "location": row.location,
                }
            )
        return conform(
            pl.DataFrame(rows, schema={k: REJECT_SCHEMA[k] for k in rows[0]})
            if rows
            else pl.DataFrame(schema=REJECT_SCHEMA),
            REJECT_SCHEMA,
        )

    def stage_record(self) -> dict[str, Any]:
        return {
            "name": STAGE,
            "params": {"sources": [s.spec for s in self.sources], **self.options.params()},
            "in": self.n_in,
            "kept": self.n_kept,
            "rejected": self.n_rejected,
            "rejected_by_reason": dict(sorted(self.reasons.items())),
        }


def _json_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if value is not None else ""


_FIELDS = (KIND, INSTRUCTION, INPUT, OUTPUT, TEXT, "messages", "meta")
_COLUMNAR = {
    "alpaca": {INSTRUCTION: INSTRUCTION, INPUT: INPUT, OUTPUT: OUTPUT},
    "dolly": {INSTRUCTION: INSTRUCTION, "context": INPUT, "response": OUTPUT},
}


def check_size(fields: dict[str, Any], max_chars: int) -> None:
    """Reject records with no content at all, or more than ``max_chars`` characters."""
    if fields[KIND] == KIND_TEXT:
        size = len(fields[TEXT])
        blank = not fields[TEXT].strip()
    else:
        size = len(fields[INSTRUCTION]) + len(fields[INPUT] or "") + len(fields[OUTPUT])
        blank = not fields[INSTRUCTION].strip() and not fields[OUTPUT].strip()
    if blank:
        raise BadRecord("empty", "record has no content")
    if size > max_chars:
        raise BadRecord("too_large", f"{size} characters, more than max_chars={max_chars}")


def _detect(row: Row) -> str:
    try:
        return detect_format(row.value)
    except BadRecord as exc:
        raise InputError(row.location, exc.detail) from None


def columnar_fields(fmt: str, values: list[dict[str, Any]], options: IngestOptions) -> pl.DataFrame | None:
    """The fast path: build record fields column-wise when every row of the batch is clean.

    Returns None (and the caller goes row by row, producing exact rejects) as soon as any row
    has a missing or non-string field, carries extra keys for ``meta``, is blank
    or too large. Both paths give identical records.
    """
    if options.text_field:
        mapping = {options.text_field: TEXT}
    elif fmt == "text":
        mapping = {"text": TEXT}
    else:
        mapping = _COLUMNAR.get(fmt)
    if mapping is None or not values:
        return None
    columns = {}
    try:
        for key, column in mapping.items():
            data = [v.get(key, "") for v in values] if column == INPUT else [v[key] for v in values]
            columns[column] = pl.Series(column, data, dtype=pl.String, strict=True)
    except (KeyError, TypeError, pl.exceptions.PolarsError):
        return None
    # Extra keys go to meta, which is the row-by-row path's job: count keys instead of
    # collecting them (every row has the required ones, or we would have failed above).
    id_key = options.id_field or "id"
    expected = sum(len(values) if c != INPUT else sum(1 for v in values if k in v) for k, c in mapping.items())
    if id_key not in mapping:
        expected += sum(1 for v in values if id_key in v)
    if sum(map(len, values)) != expected:
        return None
    frame = pl.DataFrame(columns)
    if any(frame[c].null_count() for c in frame.columns):
        return None
    kind = KIND_TEXT if TEXT in columns else "instruction"
    if kind == KIND_TEXT:
        size = pl.col(TEXT).str.len_chars()
        blank = pl.col(TEXT).str.strip_chars() == ""
    else:
        size = pl.sum_horizontal(pl.col(c).str.len_chars() for c in (INSTRUCTION, INPUT, OUTPUT))
        blank = (pl.col(INSTRUCTION).str.strip_chars() == "") & (pl.col(OUTPUT).str.strip_chars() == "")
    if frame.select(((size > options.max_chars) | blank).any()).item():
        return None
    frame = frame.with_columns(pl.lit(kind, dtype=pl.String).alias(KIND))
    return conform(frame, {n: RECORD_SCHEMA[n] for n in _FIELDS})
