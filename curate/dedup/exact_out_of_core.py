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

With a Dask address (``tcp://HOST:PORT`` or ``local:N``) each pass's units run as Dask tasks
(:class:`~curate.dedup.out_of_core.Units`, as the near dedup's); each writes only its own folder,
so the outputs are byte-identical to the local run.

Keys: a text record's (or chat's) normalized text; an instruction record's normalized
instruction, input and output. The in-memory stage gives an instruction record whose
instruction and input nobody shares a key of its own instead, which differs only if a text
record's normalized text equals its three fields joined with U+001F.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.dedup.exact import STAGE, ExactDedupParams, dedup_keys, first_occurrences
from curate.dedup.out_of_core import (
    OutOfCoreResult,
    Units,
    done_marker,
    first_pass,
    read_shard,
    shard_frame,
    start_work_folder,
    write_ipc,
)
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
    return read_shard(path, columns, _KEY_COLUMNS, "exact dedup")


class OutOfCoreExactDedup:
    """One out-of-core exact dedup over a work folder; :meth:`run` does the passes not done yet."""

    stage = STAGE
    label = "exact dedup"

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
        self.work = Path(work_dir).absolute()  # Dask workers may run in another folder
        self.ran: dict[str, int] = {}

    def _dir(self, step: str, unit: int) -> Path:
        return self.work / step / f"{unit:05d}"

    def _pending(self, step: str, count: int) -> list[int]:
        """The units of ``step`` without a done marker."""
        return [unit for unit in range(count) if done_marker(self._dir(step, unit)) is None]

    def _count(self, step: str, ran: list[int]) -> None:
        if ran:
            self.ran[step] = self.ran.get(step, 0) + len(ran)

    def _start(self) -> None:
        plan = {"params": self.params.as_dict(), "partitions": self.partitions}
        start_work_folder(self.work, plan, self.restart, "exact dedup")

    # -- pass 1: hashes ---------------------------------------------------------------------

    def _hashes(self, shards: Iterable[str | Path | pl.DataFrame], units: Units) -> list[dict[str, Any]]:
        return first_pass(self, shards, units, "hashes", "_hash_shard", _LATER_STEPS)

    def _hash_shard(self, s: int, shard: str | Path | pl.DataFrame, start: int, fingerprint: str) -> dict[str, Any]:
        """One unit of pass 1."""
        folder = self._dir("hashes", s)
        path, frame = shard_frame(folder, s, shard, _KEY_COLUMNS, _KEY_COLUMNS, self.label)
        digest = dedup_keys(frame, self.params.normalization, every_output=True).hash(seed=0)
        table = pl.DataFrame({"hash": digest, "doc": pl.int_range(start, start + frame.height, eager=True)})
        part = (digest % self.partitions).to_numpy()
        for p in range(self.partitions):
            write_ipc(folder / f"hashes-{p}.ipc", table.filter(pl.Series(part == p)))
        info = {"fingerprint": fingerprint, "source": str(path), "start": start, "rows": frame.height}
        write_json(folder / DONE, info)
        return info

    def _shard_of(self, docs: pl.Series, infos: list[dict[str, Any]]) -> np.ndarray:
        starts = np.array([i["start"] for i in infos], dtype=np.int64)
        return np.searchsorted(starts, docs.to_numpy(), side="right") - 1

    # -- pass 2: shared hashes --------------------------------------------------------------

    def _shared(self, infos: list[dict[str, Any]], units: Units) -> int:
        pending = self._pending("shared", self.partitions)
        units.map(self, "_shared_partition", [(p, infos) for p in pending])
        self._count("shared", pending)
        return sum(done_marker(self._dir("shared", p))["records"] for p in range(self.partitions))

    def _shared_partition(self, p: int, infos: list[dict[str, Any]]) -> None:
        folder = self._dir("shared", p)
        frame = pl.concat([pl.read_ipc(self._dir("hashes", s) / f"hashes-{p}.ipc") for s in range(len(infos))])
        shared = frame.filter(pl.len().over("hash") > 1).select("doc").sort("doc")
        shard = self._shard_of(shared["doc"], infos)
        for s in range(len(infos)):
            write_ipc(folder / f"docs-{s}.ipc", shared.filter(pl.Series(shard == s)))
        write_json(folder / DONE, {"records": shared.height})

    # -- pass 3: full keys of the shared-hash records ---------------------------------------

    def _keys(self, infos: list[dict[str, Any]], units: Units) -> None:
        pending = self._pending("keys", len(infos))
        units.map(self, "_keys_shard", [(s, infos[s]) for s in pending])
        self._count("keys", pending)

    def _keys_shard(self, s: int, info: dict[str, Any]) -> None:
        folder = self._dir("keys", s)
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

    # -- pass 4: groups on the key itself ---------------------------------------------------

    def _groups(self, infos: list[dict[str, Any]], units: Units) -> None:
        pending = self._pending("groups", self.partitions)
        units.map(self, "_groups_partition", [(p, infos) for p in pending])
        self._count("groups", pending)

    def _groups_partition(self, p: int, infos: list[dict[str, Any]]) -> None:
        folder = self._dir("groups", p)
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

    # -- pass 5: output ---------------------------------------------------------------------

    def _output(self, infos: list[dict[str, Any]], units: Units) -> list[dict[str, Path]]:
        pending = self._pending("output", len(infos))
        units.map(self, "_output_shard", [(s, infos[s]) for s in pending])
        self._count("output", pending)
        return [
            {k: self._dir("output", s) / f"{k}.parquet" for k in ("kept", "rejects", "annotations")}
            for s in range(len(infos))
        ]

    def _output_shard(self, s: int, info: dict[str, Any]) -> None:
        folder = self._dir("output", s)
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
            with atomic_path(folder / f"{name}.parquet") as tmp:
                frame.write_parquet(tmp)
        write_json(folder / DONE, {"kept": kept.height, "rejected": rejects.height})

    # -- the whole run ----------------------------------------------------------------------

    def run(self, shards: Iterable[str | Path | pl.DataFrame], dask: str | None = None) -> OutOfCoreResult:
        """The passes not done yet: here, or with ``dask`` (``tcp://HOST:PORT`` or ``local:N``) each
        pass's units as Dask tasks (the workers must see the work folder and the shards at the same paths)."""
        self._start()
        if dask is None:
            return self._run(shards, Units())
        from curate.run.cluster import dask_client

        with dask_client(dask) as client:
            return self._run(shards, Units(client, self))

    def _run(self, shards: Iterable[str | Path | pl.DataFrame], units: Units) -> OutOfCoreResult:
        infos = self._hashes(shards, units)
        shared = self._shared(infos, units)
        self._keys(infos, units)
        self._groups(infos, units)
        outputs = self._output(infos, units)
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
    dask: str | None = None,
) -> OutOfCoreResult:
    """:func:`~curate.dedup.exact.exact_duplicates` over record shards (Parquet paths or frames,
    in order) through ``work_dir``; rerun with the same folder to resume a killed run. A folder
    started with other settings is an error, or (``restart``, for a folder the caller owns) cleared.
    ``dask`` (``tcp://HOST:PORT`` or ``local:N``) runs each pass's units as Dask tasks, with
    byte-identical outputs."""
    return OutOfCoreExactDedup(work_dir, params, partitions, restart).run(shards, dask)
