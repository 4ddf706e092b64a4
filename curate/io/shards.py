"""Parquet shard writing: bounded size, deterministic bytes, atomic publication."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.io.atomic import TMP_MARK, atomic_path, sha256_file

COMPRESSION = "zstd"
COMPRESSION_LEVEL = 1
ROW_GROUP_ROWS = 10_000


def write_parquet(frame: pl.DataFrame, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write one Parquet file atomically with fixed settings so equal frames give equal bytes."""
    with atomic_path(path) as tmp:
        frame.write_parquet(
            tmp,
            compression=COMPRESSION,
            compression_level=COMPRESSION_LEVEL,
            row_group_size=ROW_GROUP_ROWS,
            statistics=True,
            metadata=metadata,
        )


class StreamingParquet:
    """Append frames to one Parquet file; it appears under its real name only on ``close``."""

    def __init__(self, path: Path, schema: dict[str, pl.DataType]) -> None:
        self.path = path
        self.rows = 0
        self._schema = schema
        self._writer: pq.ParquetWriter | None = None
        self._tmp = path.with_name(f"{TMP_MARK}{path.name}")

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        table = frame.to_arrow()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(
                self._tmp, table.schema, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL
            )
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        self.rows += frame.height

    def close(self) -> None:
        if self._writer is None:
            write_parquet(pl.DataFrame(schema=self._schema), self.path)
            return
        self._writer.close()
        self._tmp.replace(self.path)


SHARD_NAME = re.compile(r"^[a-z]+-\d{5}-of-\d{5}\.parquet$")


def foreign_files(folder: Path) -> list[Path]:
    """What a shard folder holds besides curate's shards: a swap of the folder would lose it."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not SHARD_NAME.match(p.name))


class ShardWriter:
    """Write kept records as ``train-XXXXX-of-NNNNN.parquet`` shards into a folder.

    Shards are cut at ``max_rows`` rows or about ``max_bytes`` of in-memory size, whichever
    comes first. They are written to a staging folder and swapped into place by
    :meth:`publish`, so the folder always holds one complete set.
    """

    def __init__(
        self, folder: Path, max_rows: int = 100_000, max_bytes: int = 256 * 1024 * 1024, split: str = "train"
    ) -> None:
        if max_rows < 1 or max_bytes < 1:
            raise ValueError("shard limits must be positive")
        self.folder = folder
        self.split = split
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.staging = folder.with_name(f"{TMP_MARK}{folder.name}")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._written: list[tuple[Path, int]] = []
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        offset = 0
        while offset < frame.height:
            room = self.max_rows - self._pending_rows
            part = frame.slice(offset, room)
            size = part.estimated_size()
            if self._pending_rows and self._pending_bytes + size > self.max_bytes:
                self._flush()
                continue
            self._pending.append(part)
            self._pending_rows += part.height
            self._pending_bytes += size
            offset += part.height
            if self._pending_rows >= self.max_rows or self._pending_bytes >= self.max_bytes:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        frame = pl.concat(self._pending, rechunk=True)
        path = self.staging / f"part-{len(self._written):05d}.parquet"
        write_parquet(frame, path)
        self._written.append((path, frame.height))
        self.rows += frame.height
        self._pending, self._pending_rows, self._pending_bytes = [], 0, 0

    def publish(self, schema: dict[str, pl.DataType]) -> list[dict[str, object]]:
        """Name the shards ``-of-N``, swap the staging folder in, return their file records."""
        self._flush()
        if not self._written:
            path = self.staging / "part-00000.parquet"
            write_parquet(pl.DataFrame(schema=schema), path)
            self._written.append((path, 0))
        total = len(self._written)
        for i, (path, rows) in enumerate(self._written):
            final = self.staging / f"{self.split}-{i:05d}-of-{total:05d}.parquet"
            path.rename(final)
            self._written[i] = (final, rows)
        foreign = foreign_files(self.folder)
        if foreign:
            raise CurateError(f"{foreign[0]} was not written by curate; move it away (curate deletes only its own)")
        old = self.folder.with_name(f"{TMP_MARK}old-{self.folder.name}")
        if self.folder.exists():
            self.folder.rename(old)
        self.staging.rename(self.folder)
        if old.exists():
            shutil.rmtree(old)
        return [file_record(self.folder / path.name, self.folder.parent, rows=rows) for path, rows in self._written]


def file_record(path: Path, root: Path, rows: int | None = None) -> dict[str, object]:
    record: dict[str, object] = {
        "path": str(path.relative_to(root)),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
    }
    if rows is not None:
        record["rows"] = rows
    return record


def read_parquet_files(paths: list[Path]) -> pl.DataFrame:
    tables = [pq.ParquetFile(p).read() for p in paths]  # read_table would import pyarrow.dataset (0.4 s)
    if not tables:
        raise ValueError("no parquet files")
    return pl.from_arrow(pa.concat_tables(tables, promote_options="default"))


def vectors_frame(ids: list[str], column: str, vectors: np.ndarray, dtype: pl.DataType) -> pl.DataFrame:
    """``id`` plus one fixed-length array per row: how signatures and embeddings are stored."""
    return pl.DataFrame(
        {
            "id": pl.Series(ids, dtype=pl.String),
            column: pl.Series(vectors, dtype=pl.Array(dtype, vectors.shape[1])),
        }
    )


def frame_vectors(frame: pl.DataFrame, column: str, dtype: type) -> np.ndarray:
    """The inverse of :func:`vectors_frame`: the array column as a (rows, length) matrix."""
    if frame.height == 0:
        width = frame.schema[column].size if isinstance(frame.schema[column], pl.Array) else 0
        return np.zeros((0, width), dtype=dtype)
    return np.asarray(frame[column].to_numpy(), dtype=dtype).reshape(frame.height, -1)
