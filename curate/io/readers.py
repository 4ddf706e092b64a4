"""Readers: turn files into a stream of parsed rows, each with its location.

Every reader yields :class:`Row` items in file order. A row that could not be parsed carries
a reason code and detail instead of a value, so ingest can reject it with ``file:line``
rather than stop (or stop with that location under ``--strict``).

Supported: JSON arrays (Alpaca style), JSONL, Parquet, CSV/TSV and plain text (one document
per file, or one file split on a delimiter line), each optionally gzip or zstd compressed.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from curate.errors import InputError

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}
KINDS_BY_SUFFIX = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
}
WHOLE_FILE_LIMIT = 256 * 1024 * 1024
_LEADING_WS = re.compile(rb"[ \t\r\n]*")


@dataclass(slots=True)
class Row:
    """One parsed item: ``value`` is a dict, or ``reason``/``detail`` say why it is not."""

    path: str
    line: int | _ArrayLine
    index: int
    value: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None
    raw: str | None = None

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(slots=True)
class Block:
    """Many clean rows at once (every value a dict), read without per-row objects."""

    path: str
    values: list[dict[str, Any]]
    lines: _LazyLines

    def rows(self, start: int, stop: int) -> list[Row]:
        return [Row(self.path, self.lines.at(i), i, self.values[i]) for i in range(start, min(stop, len(self.values)))]


BOM = b"\xef\xbb\xbf"


def split_suffixes(path: Path) -> tuple[str | None, str]:
    """Return (compression, file kind) from a name like ``x.jsonl.zst``."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    kind = KINDS_BY_SUFFIX.get(suffixes[-1]) if suffixes else None
    if kind is None:
        raise InputError(str(path), f"unknown file type {''.join(path.suffixes) or '(no extension)'!r}")
    return compression, kind


def _local(path: Path) -> bool:
    """False for an object at a URL (a :class:`curate.io.storage.ObjectPath`, streamed through fsspec)."""
    return isinstance(path, str | os.PathLike)


def _open(path: Path) -> IO[bytes]:
    return open(path, "rb") if _local(path) else path.open()


def open_binary(path: Path, compression: str | None) -> IO[bytes]:
    """Open, checking the bytes really are what the extension claims."""
    with _open(path) as probe:
        head = probe.read(4)
    if compression and head[: len(_MAGIC[compression])] != _MAGIC[compression]:
        raise InputError(f"{path}:1", f"not a {compression} file although its name ends in {path.suffix}")
    if compression is None and head[:2] in (_MAGIC["gzip"], _MAGIC["zstd"][:2]):
        raise InputError(f"{path}:1", "looks compressed but its name has no .gz/.zst extension")
    if compression == "gzip":
        if not _local(path):
            from curate.io.storage import open_gzip

            return open_gzip(path)
        return gzip.open(path, "rb")
    if compression == "zstd":
        import zstandard

        handle = _open(path)
        raw = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True, closefd=True)
        return io.BufferedReader(raw)
    return _open(path)


def _decode(raw: bytes, path: str, line: int) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start} of the line"


def read_jsonl(path: Path, compression: str | None) -> Iterator[Row]:
    name = str(path)
    with open_binary(path, compression) as stream:
        index = 0
        blank = True
        for line_no, raw in enumerate(stream, start=1):
            if line_no == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]  # a UTF-8 byte order mark, as Windows tools write
            if not raw.strip():
                continue
            blank = False
            if line_no == 1 and b"\x00" in raw[:4096]:
                raise InputError(f"{name}:1", "binary data, not JSON lines")
            text, error = _decode(raw, name, line_no)
            if error:
                yield Row(
                    name,
                    line_no,
                    index,
                    reason="invalid_utf8",
                    detail=error,
                    raw=raw.decode("utf-8", "replace").rstrip("\n"),
                )
            else:
                try:
                    value = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    yield Row(name, line_no, index, reason="malformed_json", detail=str(exc), raw=text.rstrip("\n"))
                else:
                    if isinstance(value, dict):
                        yield Row(name, line_no, index, value)
                    else:
                        yield Row(
                            name,
                            line_no,
                            index,
                            reason="not_an_object",
                            detail=f"line holds a JSON {type(value).__name__}, expected an object",
                            raw=text.rstrip("\n"),
                        )
            index += 1
        if blank:
            raise InputError(f"{name}:1", "file holds only blank lines, no records")


def _line_starts(text: str) -> list[int]:
    starts = [0]
    find = text.find
    pos = find("\n")
    while pos != -1:
        starts.append(pos + 1)
        pos = find("\n", pos + 1)
    return starts


def _line_of(starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_right(starts, offset)


def _array_elements(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """Walk a JSON array element by element, yielding (line, value); errors name their line."""
    starts = _line_starts(text)
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise InputError(f"{name}:{_line_of(starts, pos)}", "expected a JSON array of records")
    pos = _skip_ws(text, pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}:{_line_of(starts, exc.pos)}", f"malformed JSON: {exc.msg}") from None
        yield _line_of(starts, pos), value
        pos = _skip_ws(text, end)
        if pos < len(text) and text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
        elif pos < len(text) and text[pos] == "]":
            return
        else:
            raise InputError(f"{name}:{_line_of(starts, min(pos, len(text)))}", "malformed JSON: expected ',' or ']'")


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def read_json(path: Path, compression: str | None) -> Iterator[Row | Block]:
    """A JSON array of records (or a single object)."""
    name = str(path)
    with open_binary(path, compression) as stream:
        data = stream.read(WHOLE_FILE_LIMIT + 1)
        if len(data) > WHOLE_FILE_LIMIT:
            raise InputError(name, "JSON array larger than 256 MiB: convert it to JSON lines to stream it")
    if data.startswith(BOM):
        data = data[len(BOM) :]
    start = _LEADING_WS.match(data).end()
    first = data[start : start + 1]
    if first == b"{":
        yield from read_jsonl(path, compression)
        return
    if first != b"[":
        raise InputError(f"{name}:1", "not JSON: a .json file must hold an array of records or JSON lines")
    try:
        values = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        list(_array_elements(_decode_whole(data, name), name))  # raises naming the failing line
        line = data.count(b"\n", 0, exc.pos) + 1 if exc.pos is not None else 1
        raise InputError(f"{name}:{line}", f"malformed JSON: {exc.msg} (after the array's end)") from None
    table = _LazyLines(data, name)
    if all(type(v) is dict for v in values):
        yield Block(name, values, table)
        return
    for i, value in enumerate(values):
        if type(value) is dict:
            yield Row(name, table.at(i), i, value)
        else:
            yield Row(
                name,
                table.at(i),
                i,
                reason="not_an_object",
                detail=f"array element is a JSON {type(value).__name__}, expected an object",
                raw=orjson.dumps(value).decode(),
            )


def _decode_whole(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{name}:{line}", f"invalid UTF-8 at byte {exc.start}") from None


class _LazyLines:
    """Line numbers of a JSON array's elements, worked out only if a location is asked for."""

    def __init__(self, data: bytes, name: str) -> None:
        self._data = data
        self._name = name
        self._lines: list[int] | None = None

    def at(self, index: int) -> _ArrayLine:
        return _ArrayLine(self, index)

    def line(self, index: int) -> int:
        if self._lines is None:
            self._lines = [line for line, _ in _array_elements(_decode_whole(self._data, self._name), self._name)]
            self._data = b""
        return self._lines[index]


class _ArrayLine:
    __slots__ = ("_index", "_table")

    def __init__(self, table: _LazyLines, index: int) -> None:
        self._table = table
        self._index = index

    def __int__(self) -> int:
        return self._table.line(self._index)

    def __str__(self) -> str:
        return str(int(self))


def read_parquet(path: Path, compression: str | None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    name = str(path)
    if compression:
        raise InputError(name, "Parquet files compress internally; do not wrap them in gzip or zstd")
    with _open(path) as probe:
        if probe.read(4) != b"PAR1":
            raise InputError(f"{name}:1", "not a Parquet file although its name ends in .parquet")
    index = 0
    with contextlib.nullcontext(path) if _local(path) else path.open() as source:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=10_000):
            for value in batch.to_pylist():
                yield Row(name, index + 1, index, value)
                index += 1


def read_csv(path: Path, compression: str | None) -> Iterator[Row]:
    name = str(path)
    delimiter = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
    with open_binary(path, compression) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        reader = csv.DictReader(text, delimiter=delimiter)
        index = 0
        line = 1
        try:
            for value in reader:
                if None in value:
                    yield Row(
                        name,
                        line + 1,
                        index,
                        reason="malformed_csv",
                        detail="more fields than the header",
                        raw=json.dumps(value[None]),
                    )
                else:
                    yield Row(name, line + 1, index, dict(value))
                line = reader.line_num
                index += 1
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}:{reader.line_num + 1}", f"invalid UTF-8: {exc.reason}") from None
        except csv.Error as exc:
            raise InputError(f"{name}:{reader.line_num}", f"malformed CSV: {exc}") from None


def read_text(path: Path, compression: str | None, delimiter: str | None, text_field: str) -> Iterator[Row]:
    """One document per file, or documents separated by lines equal to ``delimiter``."""
    name = str(path)
    with open_binary(path, compression) as stream:
        head = stream.read(4096)
        if b"\x00" in head:
            raise InputError(f"{name}:1", "binary data, not text")
        if delimiter is None:
            data = head + stream.read()
            text, error = _decode(data, name, 1)
            if error:
                yield Row(name, 1, 0, reason="invalid_utf8", detail=error, raw=data.decode("utf-8", "replace"))
            else:
                yield Row(name, 1, 0, {text_field: text})
            return
        # Delimited documents stream: one document's lines in memory at a time, however large the file.
        yield from _delimited_documents(name, _split_lines(itertools.chain([head], stream)), delimiter, text_field)


def _split_lines(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """The pieces ``b"".join(chunks).split(b"\n")`` would give, each with whether it is the last, without joining."""
    partial = b""
    pending: bytes | None = None
    for chunk in chunks:
        parts = (partial + chunk).split(b"\n")
        partial = parts.pop()
        for part in parts:
            if pending is not None:
                yield pending, False
            pending = part
    if pending is not None:
        yield pending, False
    yield partial, True


def _delimited_documents(
    name: str, lines: Iterator[tuple[bytes, bool]], delimiter: str, text_field: str
) -> Iterator[Row]:
    index = 0
    start_line = 1
    chunk: list[bytes] = []
    marker = delimiter.encode("utf-8")
    for line_no, (raw, is_last) in enumerate(lines, start=1):
        if raw.rstrip(b"\r") == marker or is_last:
            if is_last and raw.rstrip(b"\r") != marker:
                chunk.append(raw)
            body = b"\n".join(chunk)
            # An empty document between two delimiters is a record (rejected downstream as empty);
            # only the nothing after a final delimiter is not.
            if not (is_last and not body.strip() and index > 0):
                text, error = _decode(body, name, start_line)
                if error:
                    yield Row(
                        name,
                        start_line,
                        index,
                        reason="invalid_utf8",
                        detail=error,
                        raw=body.decode("utf-8", "replace"),
                    )
                else:
                    yield Row(name, start_line, index, {text_field: text.strip("\r\n")})
                index += 1
            chunk = []
            start_line = line_no + 1
        else:
            chunk.append(raw)


def list_files(path: Path) -> list[Path]:
    """A path's data files in a fixed order; a directory is walked recursively."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")) and has_known_kind(p)
        )
        if not files:
            raise InputError(str(path), "directory holds no readable data files")
        return files
    if not path.exists():
        raise InputError(str(path), "no such file or directory")
    return [path]


def has_known_kind(path: Path) -> bool:
    try:
        split_suffixes(path)
    except InputError:
        return False
    return True


def read_rows(path: Path, delimiter: str | None = None, text_field: str = "text") -> Iterator[Row | Block]:
    compression, kind = split_suffixes(path)
    if (os.path.getsize(path) if _local(path) else path.size()) == 0:
        raise InputError(f"{path}:1", "file is empty")
    if kind == "jsonl":
        rows = read_jsonl(path, compression)
    elif kind == "json":
        rows = read_json(path, compression)
    elif kind == "parquet":
        rows = read_parquet(path, compression)
    elif kind == "csv":
        rows = read_csv(path, compression)
    else:
        rows = read_text(path, compression, delimiter, text_field)
    if not _local(path):
        from curate.io.storage import reading

        rows = reading(rows, str(path))
    return _whole(rows, path) if compression else rows


def _stream_errors() -> tuple[type[Exception], ...]:
    """What a decompressor raises on a truncated or corrupt stream."""
    import zlib

    errors: tuple[type[Exception], ...] = (EOFError, gzip.BadGzipFile, zlib.error)
    try:
        import zstandard
    except ImportError:
        return errors
    return (*errors, zstandard.ZstdError)


def _whole(rows: Iterator[Row | Block], path: Path) -> Iterator[Row | Block]:
    """Rows of a compressed file; a stream that ends early or is corrupt is an error, never a
    silently shorter input."""
    line = 0
    try:
        for row in rows:
            if isinstance(row, Row) and isinstance(row.line, int):
                line = row.line
            yield row
    except _stream_errors() as exc:
        raise InputError(
            f"{path}:{line + 1}", f"compressed data is truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from None
