"""Out-of-core near-dedup: :func:`~curate.dedup.near.near_duplicates`' algorithm over record
shards, through a work folder on disk, with the same kept records, rejects and annotations.

The in-memory stage holds every text's shingles and signature at once (about 3.9 GB per
million 1 KB documents); here only small per-record numbers (ranks, node numbers, cluster
representatives) and the few verified edges stay in memory. Passes, each unit of work ending
with a done marker written after its files (all writes atomic), so a killed run resumes at
the shard or partition it was on and a temp file left by a kill is removed and redone:

1. ``sign`` (per shard): shingles and signatures (:func:`~curate.dedup.near.sign_texts`);
   signatures to ``.npy`` (rows read back with ``pread``); shingle counts and the keep value;
   the full-signature key and the band keys hash-partitioned into P partition files.
2. ``nodes`` (per partition of full keys): records with identical signatures become one node,
   numbered by its first record (the in-memory node order is first-appearance order).
3. ``candidates`` (per partition of band keys): pairs from shared band keys with
   :func:`~curate.dedup.lsh.candidate_pairs`' bucket cap, split by left node into P parts.
4. ``estimates`` (per pair partition): distinct pairs, the signature estimate, and the
   pre-filter (``threshold - ESTIMATE_MARGIN`` for exact verification).
5. ``shingles`` (per shard): only the records that can end up in a cluster are re-shingled
   (sorted distinct hashes to ``.npy``), with their ids.
6. ``verify`` (per pair partition): exact Jaccard of the surviving pairs.
7. clustering in memory over the edges alone (leaders best first, as in-memory).
8. ``output`` (per shard): kept records, rejects and annotations as Parquet.

With a Dask address (``tcp://HOST:PORT`` or ``local:N``) the units of passes 1-6 and 8 run as
Dask tasks; each writes only its own folder, so the outputs are byte-identical to the local run.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.dedup.minhash import estimated_jaccard, shingle
from curate.dedup.near import (
    ESTIMATE_MARGIN,
    REASON,
    STAGE,
    NearDedupParams,
    keep_values,
    sign_texts,
    signature_band_keys,
    sorted_set_jaccard,
)
from curate.errors import CurateError
from curate.io.atomic import atomic_path, clean_partial, write_json
from curate.records.schema import ID, SOURCE_ID, TEXT, duplicate_rejects
from curate.stages.result import StageResult

DONE = "DONE"
_CHUNK = 65_536
_FULL_SCHEMA = {"key": pl.UInt64, "doc": pl.Int64}
_BAND_SCHEMA = {"band": pl.UInt8, "key": pl.UInt64, "doc": pl.Int64}
_PAIR_SCHEMA = {"left": pl.Int64, "right": pl.Int64}


@dataclass
class OutOfCoreResult:
    """Where an out-of-core stage's per-shard outputs are (near or exact dedup: ``name``), with the stage's
    counts and stats (as :class:`StageResult`)."""

    params: dict[str, Any]
    n_in: int
    kept: int
    rejected: int
    shards: list[dict[str, Path]]
    stats: dict[str, Any] = field(default_factory=dict)
    name: str = STAGE

    def to_stage_result(self) -> StageResult:
        """All shards' outputs read back into one :class:`StageResult` (for callers that hold records in memory)."""
        kept = pl.concat([pl.read_parquet(s["kept"]) for s in self.shards], how="vertical_relaxed")
        rejects = pl.concat([pl.read_parquet(s["rejects"]) for s in self.shards], how="vertical_relaxed")
        annotations = pl.concat([pl.read_parquet(s["annotations"]) for s in self.shards])
        return StageResult(self.name, self.params, self.n_in, kept, rejects, annotations, dict(self.stats))


_LATER_STEPS = ("nodes", "candidates", "estimates", "shingles", "verify", "output")


def _file_fingerprint(path: Path, stage: str) -> str:
    """A Parquet shard's path, size and modification time: a changed file is signed again."""
    try:
        stat = path.stat()
    except OSError as error:
        raise CurateError(f"{stage}: cannot read record shard {path}: {error}") from None
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _frame_fingerprint(frame: pl.DataFrame) -> str:
    """A frame shard's row count and a hash of its ids and texts: other records are signed again."""
    hashes = frame.select(ID, TEXT).hash_rows(seed=0).to_numpy()
    positions = np.arange(1, hashes.size + 1, dtype=np.uint64)  # so that reordered rows differ
    digest = int(np.bitwise_xor.reduce(hashes * positions)) if hashes.size else 0
    return f"frame:{frame.height}:{digest:016x}"


def start_work_folder(work: Path, plan: dict[str, Any], restart: bool, stage: str) -> None:
    """Open a work folder for ``plan``: leftovers of a killed write are removed; a folder started with
    another plan is refused, or emptied when ``restart`` says so (only curate's own work is in it)."""
    work.mkdir(parents=True, exist_ok=True)
    clean_partial(work)
    plan = json.loads(json.dumps(plan))
    plan_path = work / "plan.json"
    if plan_path.exists() and json.loads(plan_path.read_text()) != plan:
        if not restart:
            raise CurateError(f"{stage} work folder {work} was started with other settings; use a new folder")
        shutil.rmtree(work)
        work.mkdir(parents=True)
    if not plan_path.exists():
        write_json(plan_path, plan)


def _bound_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (process-wide, like ``MALLOC_ARENA_MAX``). Signing shard after
    shard on threads otherwise leaves memory fragmented across per-thread arenas: measured, the
    RSS grew by ~100 MB a 50k-record shard with the default and stayed flat with 2. A no-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def done_marker(folder: Path) -> dict[str, Any] | None:
    """The done marker's contents, or None when the unit is not finished."""
    marker = folder / DONE
    if not marker.exists():
        return None
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def shard_done_before(folder: Path, start: int, fingerprint: str) -> dict[str, Any] | None:
    """A first-pass unit's done marker when it was computed from the same records at the same start."""
    info = done_marker(folder)
    if info is not None and info["fingerprint"] == fingerprint and info["start"] == start:
        return info
    return None


def record_shard_listing(work: Path, infos: list[dict[str, Any]], later_steps: tuple[str, ...]) -> None:
    """Save which shards the first pass read; when they changed, the later passes' folders go
    (they hold only for the shards they were computed from)."""
    listing = [[i["fingerprint"], i["start"], i["rows"]] for i in infos]
    listing_path = work / "shards.json"
    if not listing_path.exists() or json.loads(listing_path.read_text()) != listing:
        for step in later_steps:
            if (work / step).exists():
                shutil.rmtree(work / step)
        write_json(listing_path, listing)


def write_ipc(path: Path, frame: pl.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.write_ipc(tmp, compression="uncompressed")


def _write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def read_shard(
    path: Path,
    columns: list[str] | None = None,
    required: list[str] | None = None,
    stage: str = "near dedup",
) -> pl.DataFrame:
    """One shard of records from Parquet (``columns``, all when None); a file that is not one, or that
    lacks a column of ``columns`` (or of ``required`` when reading all), is a :class:`CurateError` naming it."""
    try:
        frame = pl.read_parquet(path, columns=columns)
    except Exception as error:  # polars raises several kinds for a damaged file
        raise CurateError(f"{stage}: cannot read record shard {path}: {error}") from None
    missing = [c for c in (columns or required or [ID, SOURCE_ID, TEXT]) if c not in frame.columns]
    if missing:
        raise CurateError(f"{stage}: record shard {path} has no column {', '.join(missing)}")
    return frame


class _NpyFile:
    """Rows of a ``.npy`` file read with ``pread``: the pages a memory map touches would count
    in the process's RSS (random rows pull in whole read-ahead windows), these reads do not."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            self.shape, _, self.dtype = read_header(handle)
            self._offset = handle.tell()
        self._path = path
        self._fd: int | None = None
        self._row_items = int(np.prod(self.shape[1:], dtype=np.int64))

    def _read(self, start_item: int, items: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDONLY)
        size = items * self.dtype.itemsize
        data = os.pread(self._fd, size, self._offset + start_item * self.dtype.itemsize)
        if len(data) != size:
            raise CurateError(f"near dedup work file {self._path} is truncated")
        return data

    def rows(self, which: np.ndarray) -> np.ndarray:
        """Rows ``which`` of a 2-D array."""
        data = b"".join(self._read(int(i) * self._row_items, self._row_items) for i in which.tolist())
        return np.frombuffer(data, dtype=self.dtype).reshape(which.size, *self.shape[1:])

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Items ``start:stop`` of a 1-D array."""
        return np.frombuffer(self._read(start, stop - start), dtype=self.dtype)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class _Signatures:
    """All shards' signatures on disk, gathered by global record number."""

    def __init__(self, paths: list[Path], starts: np.ndarray) -> None:
        self._files = [_NpyFile(p) for p in paths]
        self._starts = starts

    def rows(self, docs: np.ndarray, num_perm: int) -> np.ndarray:
        out = np.empty((docs.size, num_perm), dtype=np.uint32)
        shard = np.searchsorted(self._starts, docs, side="right") - 1
        for s in np.unique(shard).tolist():
            sel = np.flatnonzero(shard == s)
            out[sel] = self._files[s].rows(docs[sel] - self._starts[s])
        return out

    def close(self) -> None:
        for file in self._files:
            file.close()


class _ShingleStore:
    """Sorted distinct shingle hashes (on disk) and ids of the re-shingled records, per shard."""

    def __init__(self, folders: list[Path]) -> None:
        self._docs = [np.load(f / "docs.npy") for f in folders]
        self._offsets = [np.load(f / "offsets.npy") for f in folders]
        self._hashes = [_NpyFile(f / "hashes.npy") for f in folders]
        self._ids_paths = [f / "ids.ipc" for f in folders]
        self._firsts = np.array([d[0] if d.size else np.iinfo(np.int64).max for d in self._docs], dtype=np.int64)
        self._nonempty = np.flatnonzero([d.size > 0 for d in self._docs])

    def _locate(self, doc: int) -> tuple[int, int]:
        candidates = self._nonempty[self._firsts[self._nonempty] <= doc]
        s = int(candidates[-1])
        at = int(np.searchsorted(self._docs[s], doc))
        if at >= self._docs[s].size or self._docs[s][at] != doc:
            raise KeyError(doc)
        return s, at

    def __getitem__(self, doc: int) -> np.ndarray:
        s, at = self._locate(doc)
        offsets = self._offsets[s]
        return self._hashes[s].slice(int(offsets[at]), int(offsets[at + 1]))

    def close(self) -> None:
        for file in self._hashes:
            file.close()

    def jaccard(self, left: int, right: int) -> float:
        return sorted_set_jaccard(self[left], self[right])

    def ids(self, docs: np.ndarray) -> dict[int, str]:
        """Ids of these (re-shingled) records."""
        wanted = set(docs.tolist())
        found: dict[int, str] = {}
        for s, path in enumerate(self._ids_paths):
            if not wanted.intersection(self._docs[s].tolist()):
                continue
            frame = pl.read_ipc(path)
            for doc, rid in zip(self._docs[s].tolist(), frame[ID].to_list(), strict=True):
                if doc in wanted:
                    found[doc] = rid
        return found


def shard_fingerprint(shard: str | Path | pl.DataFrame, stage: str = "near dedup") -> str:
    """What a work folder remembers of an input shard (file or frame), to redo a pass when it changed."""
    if isinstance(shard, pl.DataFrame):
        return _frame_fingerprint(shard)
    return _file_fingerprint(Path(shard), stage)


def shard_rows(shard: str | Path | pl.DataFrame, stage: str = "near dedup") -> int:
    """A shard's record count (a Parquet file's from its footer)."""
    if isinstance(shard, pl.DataFrame):
        return shard.height
    try:
        return int(pl.scan_parquet(shard).select(pl.len()).collect().item())
    except Exception as error:  # polars raises several kinds for a damaged file
        raise CurateError(f"{stage}: cannot read record shard {shard}: {error}") from None


def first_pass(
    run: Any,
    shards: Iterable[str | Path | pl.DataFrame],
    units: Units,
    step: str,
    method: str,
    later_steps: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Pass 1 of an out-of-core dedup (``run.method(s, shard, start, fingerprint)`` per record shard),
    skipping the shards done before with the same fingerprint and first record number. Here one shard at
    a time (only it is read, so ``shards`` may be a lazy iterator); on Dask every shard's first record
    number comes up front from the Parquet footers, then all run at once."""
    infos: list[dict[str, Any]] = []
    if units.client is None:
        start = 0
        for s, shard in enumerate(shards):
            fingerprint = shard_fingerprint(shard, run.label)
            info = shard_done_before(run._dir(step, s), start, fingerprint)
            if info is None:
                info = getattr(run, method)(s, shard, start, fingerprint)
                run._count(step, [s])
            infos.append(info)
            start += info["rows"]
    else:
        shards = list(shards)
        starts = np.concatenate([[0], np.cumsum([shard_rows(shard, run.label) for shard in shards])]).tolist()
        fingerprints = [shard_fingerprint(shard, run.label) for shard in shards]
        infos = [shard_done_before(run._dir(step, s), starts[s], fingerprints[s]) for s in range(len(shards))]
        pending = [s for s, info in enumerate(infos) if info is None]
        done = units.map(run, method, [(s, shards[s], starts[s], fingerprints[s]) for s in pending])
        for s, info in zip(pending, done, strict=True):
            infos[s] = info
        run._count(step, pending)
    if not infos:
        raise CurateError(f"out-of-core {run.label} needs at least one record shard")
    record_shard_listing(run.work, infos, later_steps)
    return infos


def shard_frame(
    folder: Path,
    s: int,
    shard: str | Path | pl.DataFrame,
    required: list[str],
    columns: list[str] | None,
    stage: str,
) -> tuple[Path, pl.DataFrame]:
    """A pass-1 unit's records, its folder emptied first: a file's ``columns`` (all when None), or a
    frame, kept as ``folder/records.parquet`` for the later passes."""
    if folder.exists():
        shutil.rmtree(folder)
    if not isinstance(shard, pl.DataFrame):
        return Path(shard), read_shard(Path(shard), columns, required, stage)
    missing = [c for c in required if c not in shard.columns]
    if missing:
        raise CurateError(f"{stage}: record shard {s} has no column {', '.join(missing)}")
    path = folder / "records.parquet"
    with atomic_path(path) as tmp:
        shard.write_parquet(tmp)
    return path, shard


def _call(run: Any, method: str, *args: Any) -> Any:
    """One unit of a pass on a Dask worker: ``run`` (sent to each worker once) does it."""
    return getattr(run, method)(*args)


class Units:
    """Where a pass's units run (near or exact dedup out of core): one after another here, or as Dask
    tasks on ``client`` (each unit writes only its own folder, so the order they run in does not change
    a byte). A task's key says its stage and pass (``exact_dedup.hash_shard-...``), as the dashboard shows."""

    def __init__(self, client: Any = None, run: Any = None) -> None:
        self.client = client
        self._run = client.scatter(run, broadcast=True) if client is not None else None

    def share(self, value: Any) -> Any:
        """A large argument of many units, sent to each worker once."""
        return value if self.client is None else self.client.scatter(value, broadcast=True)

    def map(self, run: Any, method: str, units: list[tuple]) -> list[Any]:
        """``run.method(*unit)`` for each unit; the results in unit order."""
        if self.client is None:
            return [getattr(run, method)(*unit) for unit in units]
        import uuid

        prefix = f"{run.stage}.{method.lstrip('_')}"
        futures = [
            self.client.submit(_call, self._run, method, *unit, key=f"{prefix}-{uuid.uuid4().hex}", pure=False)
            for unit in units
        ]
        return self.client.gather(futures)


class OutOfCoreNearDedup:
    """One out-of-core run over a work folder; :meth:`run` does the passes that are not done yet."""

    stage = STAGE
    label = "near dedup"

    def __init__(
        self,
        work_dir: str | Path,
        params: NearDedupParams | None = None,
        partitions: int = 16,
        scores: pl.DataFrame | None = None,
        restart: bool = False,
    ) -> None:
        if partitions < 1:
            raise CurateError(f"out-of-core near dedup needs at least 1 partition, not {partitions}")
        self.params = params or NearDedupParams()
        self.bands, self.rows = self.params.banding()
        self.partitions = partitions
        self.scores = scores
        self.restart = restart
        self.work = Path(work_dir).absolute()  # Dask workers may run in another folder
        self.ran: dict[str, int] = defaultdict(int)

    # -- layout ---------------------------------------------------------------------------

    def _dir(self, step: str, unit: int) -> Path:
        return self.work / step / f"{unit:05d}"

    def _start(self) -> None:
        scores = None
        if self.scores is not None:
            scores = int(np.bitwise_xor.reduce(self.scores.hash_rows(seed=0).to_numpy())) if self.scores.height else 0
        plan = {"params": self.params.as_dict(), "partitions": self.partitions, "scores": scores}
        start_work_folder(self.work, plan, self.restart, "near dedup")

    # -- pass 1: sign -----------------------------------------------------------------------

    def _sign(self, shards: Iterable[str | Path | pl.DataFrame], units: Units) -> list[dict[str, Any]]:
        return first_pass(self, shards, units, "sign", "_sign_shard", _LATER_STEPS)

    def _sign_shard(self, s: int, shard: str | Path | pl.DataFrame, start: int, fingerprint: str) -> dict[str, Any]:
        """One unit of pass 1."""
        folder = self._dir("sign", s)
        path, frame = shard_frame(folder, s, shard, [ID, SOURCE_ID, TEXT], None, self.label)
        return self._sign_one(folder, frame, start, str(path), fingerprint)

    def _sign_one(self, folder: Path, frame: pl.DataFrame, start: int, source: str, fingerprint: str) -> dict[str, Any]:
        shingles, sigs = sign_texts(frame[TEXT], self.params)
        counts = shingles.counts
        del shingles
        _write_npy(folder / "signatures.npy", sigs)
        meta = pl.DataFrame({"count": counts.astype(np.int64)})
        values = keep_values(frame, self.params.keep, self.scores)
        if values is not None:
            meta = meta.with_columns(values)
        write_ipc(folder / "meta.ipc", meta)
        has = np.flatnonzero(counts > 0)
        docs = has.astype(np.int64) + start
        full = signature_band_keys(sigs, has, 1, self.params.num_perm, _CHUNK)[:, 0]
        parts = (full % np.uint64(self.partitions)).astype(np.int64)
        for p in range(self.partitions):
            sel = parts == p
            write_ipc(folder / f"full-{p}.ipc", pl.DataFrame({"key": full[sel], "doc": docs[sel]}, _FULL_SCHEMA))
        keys = signature_band_keys(sigs, has, self.bands, self.rows, _CHUNK)
        del sigs
        band = np.broadcast_to(np.arange(self.bands, dtype=np.uint8), keys.shape).ravel()
        doc = np.repeat(docs, self.bands)
        flat = keys.ravel()
        parts = (flat % np.uint64(self.partitions)).astype(np.int64)
        for p in range(self.partitions):
            sel = parts == p
            frame_p = pl.DataFrame({"band": band[sel], "key": flat[sel], "doc": doc[sel]}, _BAND_SCHEMA)
            write_ipc(folder / f"bands-{p}.ipc", frame_p)
        info = {
            "source": source,
            "fingerprint": fingerprint,
            "start": start,
            "rows": int(counts.size),
            "no_shingles": int((counts == 0).sum()),
            "truncated": int((counts >= self.params.shingles.max_shingles).sum()),
        }
        write_json(folder / DONE, info)
        return info

    def _ranks(self, infos: list[dict[str, Any]], n: int) -> np.ndarray:
        """Each record's rank under the keep policy (0 = kept first; ties by input order), as in-memory."""
        if self.params.keep == "first":
            return np.arange(n, dtype=np.int64)
        values = pl.concat(
            [pl.read_ipc(self._dir("sign", s) / "meta.ipc", columns=["v"])["v"] for s in range(len(infos))]
        )
        order = pl.DataFrame({"i": np.arange(n), "v": values})
        ranked = order.sort(["v", "i"], descending=[True, False], nulls_last=True)["i"].to_numpy()
        rank = np.empty(n, dtype=np.int64)
        rank[ranked] = np.arange(n)
        return rank

    # -- pass 2: nodes ----------------------------------------------------------------------

    def _pending(self, step: str, count: int) -> list[int]:
        """The units of ``step`` without a done marker."""
        return [unit for unit in range(count) if done_marker(self._dir(step, unit)) is None]

    def _count(self, step: str, ran: list[int]) -> None:
        if ran:
            self.ran[step] += len(ran)

    def _nodes(self, n_shards: int, rank: np.ndarray, units: Units) -> None:
        pending = self._pending("nodes", self.partitions)
        if pending:
            rank_ref = units.share(rank)
            units.map(self, "_nodes_partition", [(p, n_shards, rank_ref) for p in pending])
        self._count("nodes", pending)

    def _nodes_partition(self, p: int, n_shards: int, rank: np.ndarray) -> None:
        folder = self._dir("nodes", p)
        frame = pl.concat([pl.read_ipc(self._dir("sign", s) / f"full-{p}.ipc") for s in range(n_shards)])
        frame = frame.with_columns(pl.Series("rank", rank[frame["doc"].to_numpy()]))
        nodes = frame.group_by("key").agg(
            pl.col("doc").min().alias("node"),
            pl.col("doc").sort_by("rank").first().alias("best_doc"),
            pl.len().alias("size"),
        )
        mapping = frame.join(nodes.select("key", "node"), on="key", how="left").select("doc", "node")
        write_ipc(folder / "mapping.ipc", mapping)
        write_ipc(folder / "nodes.ipc", nodes.select("node", "best_doc", "size"))
        write_json(folder / DONE, {"nodes": nodes.height})

    def _load_nodes(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``node_of`` (per record: its node, the node's first record; -1 without shingles),
        ``best_of`` and ``size_of`` (per node number; arrays over record numbers)."""
        node_of = np.full(n, -1, dtype=np.int64)
        best_of = np.full(n, -1, dtype=np.int64)
        size_of = np.zeros(n, dtype=np.int64)
        for p in range(self.partitions):
            mapping = pl.read_ipc(self._dir("nodes", p) / "mapping.ipc")
            node_of[mapping["doc"].to_numpy()] = mapping["node"].to_numpy()
            nodes = pl.read_ipc(self._dir("nodes", p) / "nodes.ipc")
            best_of[nodes["node"].to_numpy()] = nodes["best_doc"].to_numpy()
            size_of[nodes["node"].to_numpy()] = nodes["size"].to_numpy()
        return node_of, best_of, size_of

    # -- pass 3: candidates -----------------------------------------------------------------

    def _candidates(self, n_shards: int, node_of: np.ndarray, units: Units) -> None:
        pending = self._pending("candidates", self.partitions)
        if pending:
            is_first = units.share(node_of == np.arange(node_of.size))
            units.map(self, "_candidates_partition", [(p, n_shards, is_first) for p in pending])
        self._count("candidates", pending)

    def _candidates_partition(self, p: int, n_shards: int, is_first: np.ndarray) -> None:
        folder = self._dir("candidates", p)
        cap = self.params.max_partners
        frame = pl.concat([pl.read_ipc(self._dir("sign", s) / f"bands-{p}.ipc") for s in range(n_shards)])
        # One row per (band, node): the node's first record stands for it, as in-memory.
        frame = frame.filter(pl.Series(is_first[frame["doc"].to_numpy()]))
        buckets = (
            frame.group_by("band", "key")
            .agg(pl.col("doc").sort().alias("node"))
            .filter(pl.col("node").list.len() > 1)
            .select("node")
            .with_row_index("bucket")
            .explode("node")
            .with_columns(pl.int_range(pl.len()).over("bucket").alias("rank"))
        )
        heads = buckets.filter(pl.col("rank") < cap).rename({"node": "left", "rank": "left_rank"})
        pairs = (
            buckets.join(heads, on="bucket")
            .filter(pl.col("left_rank") < pl.col("rank"))
            .select(pl.col("left"), pl.col("node").alias("right"))
            .unique()
        )
        part = pairs["left"].to_numpy() % self.partitions
        for q in range(self.partitions):
            write_ipc(folder / f"pairs-{q}.ipc", pairs.filter(pl.Series(part == q)))
        write_json(folder / DONE, {"pairs": pairs.height})

    # -- pass 4: estimates ------------------------------------------------------------------

    def _signatures(self, infos: list[dict[str, Any]]) -> _Signatures:
        return _Signatures(
            [self._dir("sign", s) / "signatures.npy" for s in range(len(infos))],
            np.array([info["start"] for info in infos], dtype=np.int64),
        )

    def _estimates(self, infos: list[dict[str, Any]], units: Units) -> int:
        pending = self._pending("estimates", self.partitions)
        units.map(self, "_estimates_partition", [(q, infos) for q in pending])
        self._count("estimates", pending)
        return sum(done_marker(self._dir("estimates", q))["pairs"] for q in range(self.partitions))

    def _estimates_partition(self, q: int, infos: list[dict[str, Any]]) -> None:
        cut = self.params.threshold - ESTIMATE_MARGIN if self.params.verify == "exact" else self.params.threshold
        folder = self._dir("estimates", q)
        pairs = pl.concat([pl.read_ipc(self._dir("candidates", p) / f"pairs-{q}.ipc") for p in range(self.partitions)])
        pairs = pairs.unique().sort("left", "right")
        left, right = pairs["left"].to_numpy(), pairs["right"].to_numpy()
        estimate = np.zeros(left.size)
        signatures = self._signatures(infos)
        try:
            for i in range(0, left.size, _CHUNK):
                a = signatures.rows(left[i : i + _CHUNK], self.params.num_perm)
                b = signatures.rows(right[i : i + _CHUNK], self.params.num_perm)
                estimate[i : i + _CHUNK] = estimated_jaccard(a, b)
        finally:
            signatures.close()
        keep = estimate >= cut
        survivors = pl.DataFrame({"left": left[keep], "right": right[keep], "estimate": estimate[keep]})
        write_ipc(folder / "survivors.ipc", survivors)
        write_json(folder / DONE, {"pairs": int(left.size)})

    def _survivors(self, q: int) -> pl.DataFrame:
        return pl.read_ipc(self._dir("estimates", q) / "survivors.ipc")

    # -- pass 5: re-shingle the records that can be in a cluster ---------------------------

    def _reshingle(self, infos: list[dict[str, Any]], needed: np.ndarray, units: Units) -> None:
        pending = self._pending("shingles", len(infos))
        work = [
            (s, infos[s], np.flatnonzero(needed[infos[s]["start"] : infos[s]["start"] + infos[s]["rows"]]))
            for s in pending
        ]
        units.map(self, "_reshingle_shard", work)
        self._count("shingles", pending)

    def _reshingle_shard(self, s: int, info: dict[str, Any], local: np.ndarray) -> None:
        exact = self.params.verify == "exact"
        folder = self._dir("shingles", s)
        path = Path(info["source"])
        frame = read_shard(path, [ID, TEXT] if exact else [ID])[local]
        offsets = np.zeros(local.size + 1, dtype=np.int64)
        hashes = np.zeros(0, dtype=np.uint32)
        if exact and local.size:
            found = shingle(frame[TEXT], self.params.shingles)
            distinct = [np.unique(found.of(i)) for i in range(local.size)]
            offsets[1:] = np.cumsum([d.size for d in distinct])
            hashes = np.concatenate(distinct).astype(np.uint32)
        _write_npy(folder / "docs.npy", local.astype(np.int64) + info["start"])
        _write_npy(folder / "offsets.npy", offsets)
        _write_npy(folder / "hashes.npy", hashes)
        write_ipc(folder / "ids.ipc", frame.select(ID))
        write_json(folder / DONE, {"records": int(local.size)})

    # -- pass 6: verify ---------------------------------------------------------------------

    def _store(self, n_shards: int) -> _ShingleStore:
        return _ShingleStore([self._dir("shingles", s) for s in range(n_shards)])

    def _verify(self, n_shards: int, units: Units) -> pl.DataFrame:
        """The verified edges (left < right, similarity), all partitions."""
        if self.params.verify == "estimate":
            return pl.concat([self._survivors(q).rename({"estimate": "similarity"}) for q in range(self.partitions)])
        pending = self._pending("verify", self.partitions)
        units.map(self, "_verify_partition", [(q, n_shards) for q in pending])
        self._count("verify", pending)
        return pl.concat([pl.read_ipc(self._dir("verify", q) / "edges.ipc") for q in range(self.partitions)])

    def _verify_partition(self, q: int, n_shards: int) -> None:
        folder = self._dir("verify", q)
        survivors = self._survivors(q)
        left, right = survivors["left"].to_list(), survivors["right"].to_list()
        store = self._store(n_shards)
        try:
            similarity = np.array([store.jaccard(a, b) for a, b in zip(left, right, strict=True)], dtype=float)
        finally:
            store.close()
        keep = similarity >= self.params.threshold
        edges = pl.DataFrame({"left": survivors["left"].filter(keep), "right": survivors["right"].filter(keep)})
        edges = edges.with_columns(pl.Series("similarity", similarity[keep]))
        write_ipc(folder / "edges.ipc", edges)
        write_json(folder / DONE, {"edges": edges.height})

    # -- pass 7: cluster --------------------------------------------------------------------

    @staticmethod
    def _cluster(edges: pl.DataFrame, node_of: np.ndarray, best_of: np.ndarray, rank: np.ndarray) -> np.ndarray:
        """Each record's representative (its own number when it is kept), by the in-memory leader rule."""
        adjacency: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for left, right, sim in edges.iter_rows():
            adjacency[left].append((right, sim))
            adjacency[right].append((left, sim))
        leader = np.arange(node_of.size, dtype=np.int64)
        assigned: set[int] = set()
        with_edges = np.fromiter(adjacency, dtype=np.int64, count=len(adjacency))
        order = with_edges[np.argsort(rank[best_of[with_edges]], kind="stable")]
        for node in order.tolist():
            if node in assigned:
                continue
            assigned.add(node)
            for neighbour, _ in sorted(adjacency[node], key=lambda e: (-e[1], e[0])):
                if neighbour not in assigned:
                    assigned.add(neighbour)
                    leader[neighbour] = node
        cluster = np.arange(node_of.size, dtype=np.int64)
        has = np.flatnonzero(node_of >= 0)
        cluster[has] = best_of[leader[node_of[has]]]
        return cluster

    # -- pass 8: output ---------------------------------------------------------------------

    def _output(
        self,
        infos: list[dict[str, Any]],
        cluster: np.ndarray,
        sizes: np.ndarray,
        rep_ids: dict[int, str],
        units: Units,
    ) -> list[dict[str, Path]]:
        pending = self._pending("output", len(infos))
        work = []
        for s in pending:
            docs = np.arange(infos[s]["start"], infos[s]["start"] + infos[s]["rows"], dtype=np.int64)
            reps = cluster[docs]
            ids = {rep: rep_ids[rep] for rep in np.unique(reps[reps != docs]).tolist()}
            work.append((s, infos, reps, sizes[reps], ids))
        units.map(self, "_output_shard", work)
        self._count("output", pending)
        return [
            {k: self._dir("output", s) / f"{k}.parquet" for k in ("kept", "rejects", "annotations")}
            for s in range(len(infos))
        ]

    def _output_shard(
        self, s: int, infos: list[dict[str, Any]], reps: np.ndarray, rep_sizes: np.ndarray, rep_ids: dict[int, str]
    ) -> None:
        """Shard ``s``'s kept records, rejects and annotations (``reps``: each record's representative)."""
        info = infos[s]
        folder = self._dir("output", s)
        records = read_shard(Path(info["source"]))
        docs = np.arange(info["start"], info["start"] + info["rows"], dtype=np.int64)
        members = np.flatnonzero(reps != docs)
        ids = records[ID].to_list()
        cluster_ids = list(ids)
        duplicate_of: list[str | None] = [None] * docs.size
        similarity: list[float | None] = [None] * docs.size
        store = self._store(len(infos)) if self.params.verify == "exact" else None
        try:
            if members.size and self.params.verify == "estimate":
                signatures = self._signatures(infos)
                try:
                    est = estimated_jaccard(
                        signatures.rows(docs[members], self.params.num_perm),
                        signatures.rows(reps[members], self.params.num_perm),
                    )
                finally:
                    signatures.close()
            for k, i in enumerate(members.tolist()):
                rep = int(reps[i])
                cluster_ids[i] = duplicate_of[i] = rep_ids[rep]
                similarity[i] = store.jaccard(int(docs[i]), rep) if store is not None else float(est[k])
        finally:
            if store is not None:
                store.close()
        annotations = pl.DataFrame(
            {
                ID: records[ID],
                SOURCE_ID: records[SOURCE_ID],
                "cluster_id": pl.Series(cluster_ids, dtype=pl.String),
                "cluster_size": pl.Series(rep_sizes, dtype=pl.Int64),
                "duplicate_of": pl.Series(duplicate_of, dtype=pl.String),
                "similarity": pl.Series(similarity, dtype=pl.Float64),
            }
        )
        is_member = np.zeros(docs.size, dtype=bool)
        is_member[members] = True
        mask = pl.Series(is_member)
        rejects = duplicate_rejects(records, annotations, mask, STAGE, REASON, "jaccard")
        for name, frame in (("kept", records.filter(~mask)), ("rejects", rejects), ("annotations", annotations)):
            with atomic_path(folder / f"{name}.parquet") as tmp:
                frame.write_parquet(tmp)
        write_json(folder / DONE, {"kept": int(docs.size - members.size), "rejected": int(members.size)})

    # -- the whole run ----------------------------------------------------------------------

    def run(self, shards: Iterable[str | Path | pl.DataFrame], dask: str | None = None) -> OutOfCoreResult:
        """The passes not done yet: here, or with ``dask`` (``tcp://HOST:PORT`` or ``local:N``) each
        pass's units as Dask tasks (the workers must see the work folder and the shards at the same paths)."""
        _bound_malloc_arenas()
        self._start()
        if dask is None:
            return self._run(shards, Units())
        from curate.run.cluster import dask_client

        with dask_client(dask) as client:
            return self._run(shards, Units(client, self))

    def _run(self, shards: Iterable[str | Path | pl.DataFrame], units: Units) -> OutOfCoreResult:
        infos = self._sign(shards, units)
        n = infos[-1]["start"] + infos[-1]["rows"]
        rank = self._ranks(infos, n)
        self._nodes(len(infos), rank, units)
        node_of, best_of, size_of = self._load_nodes(n)
        self._candidates(len(infos), node_of, units)
        n_pairs = self._estimates(infos, units)

        # Records that can be in a cluster: those of nodes in a surviving pair or of many records.
        node_needed = size_of > 1
        for q in range(self.partitions):
            survivors = self._survivors(q)
            node_needed[survivors["left"].to_numpy()] = True
            node_needed[survivors["right"].to_numpy()] = True
        needed = np.zeros(n, dtype=bool)
        has = node_of >= 0
        needed[has] = node_needed[node_of[has]]
        del node_needed
        self._reshingle(infos, needed, units)
        edges = self._verify(len(infos), units)

        cluster = self._cluster(edges, node_of, best_of, rank)
        sizes = np.bincount(cluster, minlength=n)
        reps = np.unique(cluster[cluster != np.arange(n)])
        store = self._store(len(infos))
        try:
            rep_ids = store.ids(reps)
        finally:
            store.close()
        outputs = self._output(infos, cluster, sizes, rep_ids, units)

        multi = np.flatnonzero(sizes > 1)
        multi_frame = pl.DataFrame(
            {
                "cluster_id": pl.Series([rep_ids[int(c)] for c in multi], dtype=pl.String),
                "size": pl.Series(sizes[multi], dtype=pl.UInt32),
            }
        ).sort(["size", "cluster_id"], descending=[True, False])
        rejected = int((cluster != np.arange(n)).sum())
        stats = {
            "bands": self.bands,
            "rows": self.rows,
            "no_shingles": sum(info["no_shingles"] for info in infos),
            "truncated": sum(info["truncated"] for info in infos),
            "nodes": int((node_of == np.arange(n)).sum()),
            "index_candidates": 0,
            "candidate_pairs": n_pairs,
            "verified_edges": edges.height,
            "clusters_with_duplicates": multi_frame.height,
            "largest_clusters": multi_frame.head(5).rows(named=True),
            "giant_clusters": multi_frame.filter(pl.col("size") >= self.params.giant_cluster).rows(named=True),
            "out_of_core": {"shards": len(infos), "partitions": self.partitions, "ran": dict(self.ran)},
        }
        return OutOfCoreResult(self.params.as_dict(), n, n - rejected, rejected, outputs, stats)


def near_duplicates_out_of_core(
    shards: Iterable[str | Path | pl.DataFrame],
    work_dir: str | Path,
    params: NearDedupParams | None = None,
    partitions: int = 16,
    scores: pl.DataFrame | None = None,
    index: Any = None,
    restart: bool = False,
    dask: str | None = None,
) -> OutOfCoreResult:
    """:func:`~curate.dedup.near.near_duplicates` over record shards (Parquet paths or frames,
    in order) through ``work_dir``; rerun with the same folder to resume a killed run. A folder
    started with other settings is an error, or (``restart``, for a folder the caller owns) cleared.
    ``dask`` (``tcp://HOST:PORT`` or ``local:N``) runs the per-shard and per-partition work as Dask
    tasks, with byte-identical outputs."""
    if index is not None:
        raise CurateError("the out-of-core near dedup takes no --index; use the in-memory path with an index")
    return OutOfCoreNearDedup(work_dir, params, partitions, scores, restart).run(shards, dask)


def use_out_of_core(records: int, above: int | None, index: Any = None, force: bool | None = None) -> bool:
    """Whether near dedup of ``records`` records goes out of core: when ``force`` says so, else above
    ``above`` records (never when ``above`` is None) and only without an index, which only the
    in-memory path reads. Both paths give the same result."""
    if force is not None:
        return force
    return above is not None and index is None and records > above


def frame_shards(records: pl.DataFrame, rows: int) -> Iterator[pl.DataFrame]:
    """Consecutive slices of at most ``rows`` records (zero-copy), at least one."""
    if rows < 1:
        raise CurateError(f"shard rows must be at least 1, not {rows}")
    for start in range(0, max(records.height, 1), rows):
        yield records.slice(start, rows)
