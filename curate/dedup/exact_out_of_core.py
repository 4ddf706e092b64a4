"""Out-of-core exact dedup: :func:`~curate.dedup.exact.exact_duplicates` over record shards,
through a work folder on disk, with the same kept records, rejects and annotations.

The in-memory stage holds every record's normalized key at once; here a pass holds one shard,
or one hash partition of small numbers (a 64-bit key hash and a record number per record),
plus the full keys of the records whose hash is shared, which are the only ones that can be
duplicates. As in :mod:`curate.dedup.out_of_core`, each unit of work ends with a done marker
written after its files (all writes atomic), so a killed run resumes at the shard or partition
it was on:

1. ``hashes`` (per shard): the normalized key's hash, hash-partitioned with the record number.
2. ``shared`` (per partition): the record numbers whose hash another record has, per shard.
3. ``keys`` (per shard): the full keys and ids of those records, hash-partitioned.
4. ``groups`` (per partition): records grouped on the key itself (a hash collision can never
   reject a record); the first record in input order is kept, the others are its duplicates.
5. ``output`` (per shard): kept records, rejects (``duplicate_of``) and annotations as Parquet.

Keys: a text record's (or chat's) normalized text; an instruction record's normalized
instruction, input and output. The in-memory stage gives an instruction record whose
instruction and input nobody shares a key of its own instead, which differs only if a text
record's normalized text equals its three fields joined with U+001F.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.dedup.exact import STAGE, ExactDedupParams, dedup_keys, first_occurrences
from curate.dedup.out_of_core import OutOfCoreResult, done_marker, shard_fingerprint, start_work_folder, write_ipc
from curate.errors import CurateError
from curate.io.atomic import atomic_path, write_json
from curate.records.schema import ID, INPUT, INSTRUCTION, KIND, MESSAGES, OUTPUT, TEXT

DONE = "DONE"
_KEY_COLUMNS = [ID, KIND, INSTRUCTION, INPUT, OUTPUT, TEXT, MESSAGES]
_HASH_SCHEMA = {"hash": pl.UInt64, "doc": pl.Int64}
_KEY_SCHEMA = {"doc": pl.Int64, "id": pl.String, "key": pl.String}
_GROUP_SCHEMA = {"doc": pl.Int64, "first": pl.String, "copies": pl.Int64}
_LATER_STEPS = ("shared", "keys", "groups", "output")


def _read_shard(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """One shard of records; a damaged file or a missing column is a :class:`CurateError` naming it."""
    try:
        frame = pl.read_parquet(path, columns=columns)
    except Exception as error:  # polars raises several kinds for a damaged file
        raise CurateError(f"exact dedup: cannot read record shard {path}: {error}") from None
    missing = [c for c in (columns or _KEY_COLUMNS) if c not in frame.columns]
    if missing:
        raise CurateError(f"exact dedup: record shard {path} has no column {', '.join(missing)}")
    return frame


class OutOfCoreExactDedup:
    """One out-of-core exact dedup over a work folder; :meth:`run` does the passes not done yet."""

    def __init__(
        self,
        work_dir: str | Path,
        params: ExactDedupParams | None = None,
        partitions: int = 16,
        restart: bool = False,
    ) -> None:
        if partitions < 1:
            raise CurateError(f"out-of-core exact dedup needs at least 1 partition, not {partitions}")
        self.params = params or ExactDedupParams()
        self.partitions = partitions
        self.restart = restart
        self.work = Path(work_dir)
        self.ran: dict[str, int] = {}

    def _dir(self, step: str, unit: int) -> Path:
        return self.work / step / f"{unit:05d}"

    def _count(self, step: str) -> None:
        self.ran[step] = self.ran.get(step, 0) + 1

    def _start(self) -> None:
        plan = {"params": self.params.as_dict(), "partitions": self.partitions}
        start_work_folder(self.work, plan, self.restart, "exact dedup")

    # -- pass 1: hashes ---------------------------------------------------------------------

    def _hashes(self, shards: Iterable[str | Path | pl.DataFrame]) -> list[dict[str, Any]]:
        infos: list[dict[str, Any]] = []
        start = 0
        for s, shard in enumerate(shards):
            folder = self._dir("hashes", s)
            info = done_marker(folder)
            is_frame = isinstance(shard, pl.DataFrame)
            fingerprint = shard_fingerprint(shard, "exact dedup")
            if info is not None and info["fingerprint"] == fingerprint and info["start"] == start:
                infos.append(info)
                start += info["rows"]
                continue
            if folder.exists():
                shutil.rmtree(folder)
            if is_frame:
                missing = [c for c in _KEY_COLUMNS if c not in shard.columns]
                if missing:
                    raise CurateError(f"exact dedup: record shard {s} has no column {', '.join(missing)}")
                path = folder / "records.parquet"
                with atomic_path(path) as tmp:
                    shard.write_parquet(tmp)
                frame = shard
            else:
                path = Path(shard)
                frame = _read_shard(path, _KEY_COLUMNS)
            digest = dedup_keys(frame, self.params.normalization, every_output=True).hash(seed=0)
            table = pl.DataFrame({"hash": digest, "doc": pl.int_range(start, start + frame.height, eager=True)})
            part = (digest % self.partitions).to_numpy()
            for p in range(self.partitions):
                write_ipc(folder / f"hashes-{p}.ipc", table.filter(pl.Series(part == p)))
            info = {"fingerprint": fingerprint, "source": str(path), "start": start, "rows": frame.height}
            write_json(folder / DONE, info)
            infos.append(info)
            start += frame.height
            self._count("hashes")
        if not infos:
            raise CurateError("out-of-core exact dedup needs at least one record shard")
        listing = [[i["fingerprint"], i["start"], i["rows"]] for i in infos]
        listing_path = self.work / "shards.json"
        if not listing_path.exists() or json.loads(listing_path.read_text()) != listing:
            for step in _LATER_STEPS:  # later passes hold only for the shards they were computed from
                if (self.work / step).exists():
                    shutil.rmtree(self.work / step)
            write_json(listing_path, listing)
        return infos

    def _shard_of(self, docs: pl.Series, infos: list[dict[str, Any]]) -> np.ndarray:
        starts = np.array([i["start"] for i in infos], dtype=np.int64)
        return np.searchsorted(starts, docs.to_numpy(), side="right") - 1

    # -- pass 2: shared hashes --------------------------------------------------------------

    def _shared(self, infos: list[dict[str, Any]]) -> int:
        total = 0
        for p in range(self.partitions):
            folder = self._dir("shared", p)
            info = done_marker(folder)
            if info is None:
                frame = pl.concat([pl.read_ipc(self._dir("hashes", s) / f"hashes-{p}.ipc") for s in range(len(infos))])
                shared = frame.filter(pl.len().over("hash") > 1).select("doc").sort("doc")
                shard = self._shard_of(shared["doc"], infos)
                for s in range(len(infos)):
                    write_ipc(folder / f"docs-{s}.ipc", shared.filter(pl.Series(shard == s)))
                info = {"records": shared.height}
                write_json(folder / DONE, info)
                self._count("shared")
            total += info["records"]
        return total

    # -- pass 3: full keys of the shared-hash records ---------------------------------------

    def _keys(self, infos: list[dict[str, Any]]) -> None:
        for s, info in enumerate(infos):
            folder = self._dir("keys", s)
            if done_marker(folder) is not None:
                continue
            docs = pl.concat([pl.read_ipc(self._dir("shared", p) / f"docs-{s}.ipc") for p in range(self.partitions)])
            local = (docs["doc"].sort() - info["start"]).to_numpy()
            frame = _read_shard(Path(info["source"]), _KEY_COLUMNS)[local] if local.size else None
            if frame is None:
                table = pl.DataFrame(schema=_KEY_SCHEMA)
            else:
                keys = dedup_keys(frame, self.params.normalization, every_output=True)
                table = pl.DataFrame({"doc": local + info["start"], ID: frame[ID], "key": keys})
            part = (table["key"].hash(seed=0) % self.partitions).to_numpy()
            for p in range(self.partitions):
                write_ipc(folder / f"keys-{p}.ipc", table.filter(pl.Series(part == p)))
            write_json(folder / DONE, {"records": table.height})
            self._count("keys")

    # -- pass 4: groups on the key itself ---------------------------------------------------

    def _groups(self, infos: list[dict[str, Any]]) -> None:
        for p in range(self.partitions):
            folder = self._dir("groups", p)
            if done_marker(folder) is not None:
                continue
            frame = pl.concat([pl.read_ipc(self._dir("keys", s) / f"keys-{p}.ipc") for s in range(len(infos))])
            frame = frame.sort("doc").select(
                "doc",
                pl.col(ID).first().over("key").alias("first"),
                pl.len().over("key").cast(pl.Int64).alias("copies"),
            )
            shard = self._shard_of(frame["doc"], infos)
            for s in range(len(infos)):
                write_ipc(folder / f"groups-{s}.ipc", frame.filter(pl.Series(shard == s)))
            write_json(folder / DONE, {"records": frame.height})
            self._count("groups")

    # -- pass 5: output ---------------------------------------------------------------------

    def _output(self, infos: list[dict[str, Any]]) -> list[dict[str, Path]]:
        outputs = []
        for s, info in enumerate(infos):
            folder = self._dir("output", s)
            paths = {k: folder / f"{k}.parquet" for k in ("kept", "rejects", "annotations")}
            outputs.append(paths)
            if done_marker(folder) is not None:
                continue
            records = _read_shard(Path(info["source"]))
            groups = pl.concat(
                [pl.read_ipc(self._dir("groups", p) / f"groups-{s}.ipc") for p in range(self.partitions)]
            ).sort("doc")
            local = (groups["doc"] - info["start"]).to_numpy()
            first = records[ID].clone().scatter(local, groups["first"]) if local.size else records[ID]
            copies = pl.Series("exact_copies", np.ones(records.height, dtype=np.int64))
            if local.size:
                copies = copies.scatter(local, groups["copies"])
            kept, rejects, annotations = first_occurrences(records, first, copies)
            for name, frame in (("kept", kept), ("rejects", rejects), ("annotations", annotations)):
                with atomic_path(paths[name]) as tmp:
                    frame.write_parquet(tmp)
            write_json(folder / DONE, {"kept": kept.height, "rejected": rejects.height})
            self._count("output")
        return outputs

    def run(self, shards: Iterable[str | Path | pl.DataFrame]) -> OutOfCoreResult:
        self._start()
        infos = self._hashes(shards)
        shared = self._shared(infos)
        self._keys(infos)
        self._groups(infos)
        outputs = self._output(infos)
        rejected = sum(done_marker(self._dir("output", s))["rejected"] for s in range(len(infos)))
        n = infos[-1]["start"] + infos[-1]["rows"]
        stats = {
            "out_of_core": {
                "shards": len(infos),
                "partitions": self.partitions,
                "shared_hashes": shared,
                "ran": dict(self.ran),
            }
        }
        return OutOfCoreResult(self.params.as_dict(), n, n - rejected, rejected, outputs, stats, STAGE)


def exact_duplicates_out_of_core(
    shards: Iterable[str | Path | pl.DataFrame],
    work_dir: str | Path,
    params: ExactDedupParams | None = None,
    partitions: int = 16,
    restart: bool = False,
) -> OutOfCoreResult:
    """:func:`~curate.dedup.exact.exact_duplicates` over record shards (Parquet paths or frames,
    in order) through ``work_dir``; rerun with the same folder to resume a killed run. A folder
    started with other settings is an error, or (``restart``, for a folder the caller owns) cleared."""
    return OutOfCoreExactDedup(work_dir, params, partitions, restart).run(shards)
