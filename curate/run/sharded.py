"""A run whose records stay on disk between stages, as bounded Parquet shards in its work area.

:class:`RunWriter` hands each stage one frame of the whole corpus; a :class:`ShardedRun` hands
it a list of shard files (at most ``shard_rows`` records each) under ``OUT/.checkpoints/stream``
instead, so a process holds one shard at a time (or, for a stage that needs the whole corpus, an
out-of-core pass works over the shards). The books stay whole: every stage's rejects and
annotations go to the run's files as before, and its record says in = kept + rejected.

Resume: ``state.json`` (written atomically after each booked stage) holds the books and the kept
shards so far; a per-shard stage writes each shard's outputs and then a done marker, so a killed
run restarts at the shard it was on, and the out-of-core dedup passes resume in their own work
folders. Ingest resumes at the source file it was on: after each file, ``ingest/files/NNNNN/``
holds its rejects, the records it left for the next shard (``tail.ipc``), the ids it saw first
(``seen.npy``, ``seen.json``) and then its done marker with its books and the shards it finished;
a rerun takes the finished files' books back, removes what the killed file had written and goes
on from there, shard for shard as an uninterrupted run. The work area goes when the run commits.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.io.atomic import atomic_path, write_json
from curate.io.ingest import Ingest, IngestOptions
from curate.io.shards import StreamingParquet
from curate.records.schema import REASON, REJECT_SCHEMA, conform, empty_records
from curate.run.directory import RunDir
from curate.run.pipeline import CHECKPOINTS, RunWriter, UpToDate, _input_hashes
from curate.run.progress import Progress
from curate.stages.result import StageResult

DONE = "DONE"
STATE = "state.json"
INGEST = "ingest"  # the ingest's shards, and per source file (files/NNNNN/) its books and done marker
TAIL = "tail.ipc"  # a file's records waiting for the next shard: uncompressed Arrow, written and read fast
SHARD_COMPRESSION = "lz4"  # work shards are temporary: fast to write and read back


class ShardOutputs(Protocol):
    """What an out-of-core stage hands back: per-shard ``kept``/``rejects``/``annotations`` files."""

    params: dict[str, Any]
    n_in: int
    kept: int
    rejected: int
    shards: list[dict[str, Path]]
    stats: dict[str, Any]


def _done(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return None


def write_shard(frame: pl.DataFrame, path: Path) -> None:
    """One work shard, atomically."""
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp, compression=SHARD_COMPRESSION)


def read_shard(path: Path) -> pl.DataFrame:
    """One work shard; a damaged one is a :class:`CurateError` naming it (rerun to redo it)."""
    try:
        return pl.read_parquet(path)
    except Exception as error:  # polars raises several kinds for a damaged file
        raise CurateError(f"cannot read work shard {path}: {error}; remove it and rerun") from None


class _ShardSink:
    """Record batches in, shards of exactly ``rows`` records (the last one shorter) out."""

    def __init__(self, folder: Path, rows: int) -> None:
        self.folder = folder
        self.rows = rows
        self.paths: list[Path] = []
        self._pending: list[pl.DataFrame] = []
        self._pending_rows = 0
        self._empty: pl.DataFrame | None = None
        self._file_start = 0  # where the current source file's records begin in _pending

    def restore(self, paths: list[Path], pending: list[pl.DataFrame]) -> None:
        """Carry on after shards already written, with records of earlier files still to come in the next one."""
        self.paths = list(paths)
        self._pending = list(pending)
        self._pending_rows = sum(frame.height for frame in pending)
        self._file_start = len(self._pending)

    def end_file(self) -> pl.DataFrame:
        """The current source file's records that wait for the next shard (the next file's records come after)."""
        tail = self._pending[self._file_start :]
        self._file_start = len(self._pending)
        return pl.concat(tail, rechunk=True) if tail else (self._empty if self._empty is not None else empty_records())

    def write(self, frame: pl.DataFrame) -> None:
        if self._empty is None:
            self._empty = frame.clear()
        offset = 0
        while offset < frame.height:
            part = frame.slice(offset, self.rows - self._pending_rows)
            self._pending.append(part)
            self._pending_rows += part.height
            offset += part.height
            if self._pending_rows >= self.rows:
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        path = self.folder / f"part-{len(self.paths):05d}.parquet"
        write_shard(pl.concat(self._pending, rechunk=True), path)
        self.paths.append(path)
        self._pending, self._pending_rows, self._file_start = [], 0, 0

    def close(self) -> list[Path]:
        """The shards written; at least one (an empty one when no record came), so a stage always has input."""
        self._flush()
        if not self.paths:
            path = self.folder / "part-00000.parquet"
            write_shard(self._empty if self._empty is not None else empty_records(), path)
            self.paths.append(path)
        return self.paths


def _column_types(paths: Iterable[Path]) -> dict[str, pl.DataType]:
    """The columns of Parquet files with, for each, the first type that is not Null."""
    types: dict[str, pl.DataType] = {}
    for path in paths:
        for name, dtype in pl.read_parquet_schema(path).items():
            if name not in types or types[name] == pl.Null:
                types[name] = dtype
    return types


class ShardedRun:
    """One command's stages over shards of records, booked by ``writer`` (made with ``checkpoints=False``)."""

    def __init__(self, writer: RunWriter, shard_rows: int = 100_000) -> None:
        if shard_rows < 1:
            raise CurateError(f"shard rows must be at least 1, not {shard_rows}")
        self.writer = writer
        self.shard_rows = shard_rows
        self.work = writer.run.root / CHECKPOINTS / "stream"
        self.shards: list[Path] = []
        self.records = 0
        self._restored: list[str] = []
        self._fingerprint: str | None = None

    # -- input --------------------------------------------------------------------------------

    def open(self, specs: list[str], options: IngestOptions, progress: bool = False) -> list[Path]:
        """Ingest ``specs`` into shards (raises :class:`UpToDate` when ``out`` already holds this run),
        or, when a killed run of the same command over the same inputs left its state, resume it."""
        if len(specs) == 1 and RunDir.is_run(specs[0]):
            return self._continue(specs, options, progress)
        ingest = Ingest(specs, options, resumable=True)
        if self.writer.up_to_date(lambda: _input_hashes(ingest)):
            raise UpToDate(self.writer.run)
        hashes = _input_hashes(ingest)
        self._fingerprint = self.writer.fingerprint(hashes)
        if self._resume():
            return self.shards
        self.writer.run.prepare()  # claims the folder (and clears what a kill left) before anything is removed
        self._ingest(ingest, hashes, progress)
        self.records = ingest.n_kept
        self._save()
        if (self.work / INGEST / "files").exists():
            shutil.rmtree(self.work / INGEST / "files")  # the files' books are in state.json now
        return self.shards

    # -- ingest, file by file -------------------------------------------------------------------

    def _ingest(self, ingest: Ingest, hashes: list[str], progress: bool) -> None:
        """Read the sources into shards, skipping the files a killed run finished (their books come back)."""
        folder = self.work / INGEST
        files = ingest.files()
        plan = {
            "command": self.writer.plan_fingerprint(),
            "shard_rows": self.shard_rows,
            "batch_size": ingest.options.batch_size,
        }
        done = self._ingested_before(plan, [str(path) for _, path in files], hashes)
        sink = _ShardSink(folder, self.shard_rows)
        pending: list[int] = []  # the files whose tails wait in the sink for the next shard
        if done:
            for marker in done:
                ingest.restore_file({**marker["books"], "seen": _read_seen(folder / "files" / marker["unit"])})
            pending = done[-1]["pending"]
            tails = [_read_tail(folder / "files" / f"{k:05d}") for k in pending]
            sink.restore([folder / name for marker in done for name in marker["shards"]], tails)
            print(f"ingest: resuming, {len(done)} of {len(files)} files already done", file=sys.stderr)
        meter = Progress("ingest", enabled=progress)
        for k in range(len(done), len(files)):
            source, path = files[k]
            unit = folder / "files" / f"{k:05d}"
            written = len(sink.paths)
            rejects = StreamingParquet(unit / "rejects.parquet", REJECT_SCHEMA)
            for records, rejected in ingest.read_file(source, path):
                sink.write(records)
                rejects.write(rejected)
                meter.advance(records.height + rejected.height)
            rejects.close()
            tail = sink.end_file()
            if len(sink.paths) > written:
                pending = []
            if tail.height:
                _write_tail(tail, unit)
                pending = [*pending, k]
            books = ingest.file_books()
            _write_seen(unit, *books.pop("seen"))
            marker = {
                "unit": unit.name,
                "path": str(path),
                "sha256": hashes[k],
                "books": books,
                "rejects": rejects.rows,
                "shards": [p.name for p in sink.paths[written:]],
                "pending": pending,
            }
            write_json(unit / DONE, marker)
        meter.close()
        self.shards = sink.close()
        # The run's ingest rejects: each file's, in file order, row group by row group.
        import pyarrow.parquet as pq

        out = StreamingParquet(self.writer.run.rejects_path(INGEST), REJECT_SCHEMA)
        for k in range(len(files)):
            part = pq.ParquetFile(folder / "files" / f"{k:05d}" / "rejects.parquet")
            for group in range(part.num_row_groups):
                out.write(conform(pl.from_arrow(part.read_row_group(group)), REJECT_SCHEMA))
        out.close()
        self.writer.ingested(ingest, out.path)

    def _ingested_before(self, plan: dict[str, Any], paths: list[str], hashes: list[str]) -> list[dict[str, Any]]:
        """The done markers of the first files a killed ingest finished (the same files, unchanged, with
        all they wrote still there), in order; the work area is cleared of everything else."""
        folder = self.work / INGEST
        plan_path = folder / "plan.json"
        try:
            same = json.loads(plan_path.read_text()) == plan
        except (OSError, ValueError):
            same = False
        if not same:
            if self.work.exists():
                shutil.rmtree(self.work)
            write_json(plan_path, plan)
            return []
        for other in self.work.iterdir():  # a later stage's leftovers (state.json did not match)
            if other.is_dir() and other.name != INGEST:
                shutil.rmtree(other)
            elif other.is_file():
                other.unlink()
        done: list[dict[str, Any]] = []
        for k, (path, sha256) in enumerate(zip(paths, hashes, strict=True)):
            unit = folder / "files" / f"{k:05d}"
            marker = _done(unit)
            if marker is None or marker["path"] != path or marker["sha256"] != sha256:
                break
            needed = [folder / name for name in marker["shards"]]
            needed += [unit / name for name in ("rejects.parquet", "seen.npy", "seen.json")]
            needed += [folder / "files" / f"{j:05d}" / TAIL for j in marker["pending"]]
            if not all(p.exists() for p in needed):
                break
            done.append(marker)
        # What the file after them had written (its shards, a shard half-written by the kill) goes.
        shards = {name for marker in done for name in marker["shards"]}
        for shard in folder.glob("part-*.parquet"):
            if shard.name not in shards:
                shard.unlink()
        for unit in (folder / "files").glob("*"):
            if not unit.name.isdigit() or int(unit.name) >= len(done):
                shutil.rmtree(unit)
        return done

    def _continue(self, specs: list[str], options: IngestOptions, progress: bool) -> list[Path]:
        """An earlier run's kept records as the input (read in one frame, as :meth:`RunWriter.open_input` does)."""
        records = self.writer.open_input(specs, options, progress)
        if self.work.exists():
            shutil.rmtree(self.work)
        sink = _ShardSink(self.work / "ingest", self.shard_rows)
        sink.write(records)
        self.shards = sink.close()
        self.records = records.height
        return self.shards

    def _resume(self) -> bool:
        try:
            state = json.loads((self.work / STATE).read_text())
        except (OSError, ValueError):
            return False
        shards = [self.work / p for p in state["shards"]]
        files = [self.writer.run.root / e["path"] for g in ("rejects", "annotations") for e in state["outputs"][g]]
        if state.get("fingerprint") != self._fingerprint or not all(p.exists() for p in shards + files):
            return False
        self.writer.run.prepare()
        self.writer.restore(state)
        self.shards = shards
        self.records = state["records"]
        self._restored = [stage["name"] for stage in state["stages"][1:]]
        print(
            f"resuming {self.writer.run.root} after stage {state['stages'][-1]['name']} "
            f"({len(state['stages'])} stage(s) already done)",
            file=sys.stderr,
        )
        return True

    def _save(self) -> None:
        state = {
            "fingerprint": self._fingerprint,
            "records": self.records,
            "shards": [str(p.relative_to(self.work)) for p in self.shards],
            **{key: self.writer.manifest[key] for key in ("inputs", "stages", "outputs")},
        }
        write_json(self.work / STATE, state)

    def skip(self, stage: str) -> bool:
        """True when a resumed run already finished this stage (the next one it recorded)."""
        if self._restored and self._restored[0] == stage:
            self._restored.pop(0)
            return True
        return False

    def stage_dir(self, stage: str) -> Path:
        """Where a stage keeps its per-shard outputs or its out-of-core work folder."""
        return self.work / "stages" / stage

    # -- stages -------------------------------------------------------------------------------

    def frames(self) -> Iterator[pl.DataFrame]:
        """The current shards' records, one shard at a time."""
        for path in self.shards:
            yield read_shard(path)

    def whole(self) -> pl.DataFrame:
        """All current records in one frame (for the in-memory path below the out-of-core threshold)."""
        return pl.concat(list(self.frames()), rechunk=True)

    def add(self, result: StageResult) -> None:
        """Book a stage that ran over the whole frame; its kept records become the new shards."""
        kept = self.writer.add(result)
        folder = self.stage_dir(result.name) / "kept"
        if folder.exists():
            shutil.rmtree(folder)
        sink = _ShardSink(folder, self.shard_rows)
        sink.write(kept)
        self.shards = sink.close()
        self.records = kept.height
        self._save()

    def add_out_of_core(self, name: str, done: ShardOutputs) -> None:
        """Book an out-of-core stage from its per-shard outputs; its kept shards become the new shards."""
        self._book(name, done.params, done.n_in, done.shards, done.stats)
        self.shards = [Path(s["kept"]) for s in done.shards]
        self.records = done.kept
        self._save()

    def pending(self, stage: str) -> list[tuple[int, Path]]:
        """The current shards (number, path) that a per-shard stage has not finished yet."""
        return [(i, p) for i, p in enumerate(self.shards) if _done(self.stage_dir(stage) / f"{i:05d}") is None]

    def save_shard(self, stage: str, index: int, result: StageResult) -> None:
        """One shard's result of a per-shard stage: its files, then its done marker."""
        result.check()
        folder = self.stage_dir(stage) / f"{index:05d}"
        write_shard(result.kept, folder / "kept.parquet")
        write_shard(conform(result.rejects, REJECT_SCHEMA), folder / "rejects.parquet")
        if result.annotations is not None:
            write_shard(result.annotations, folder / "annotations.parquet")
        write_json(folder / DONE, {"in": result.n_in, "kept": result.kept.height, "params": result.params})

    def close_stage(self, stage: str) -> None:
        """Book a per-shard stage once every shard is done; its kept shards become the new shards."""
        if self.pending(stage):
            raise CurateError(f"stage {stage}: {len(self.pending(stage))} shard(s) not done")
        folders = [self.stage_dir(stage) / f"{i:05d}" for i in range(len(self.shards))]
        infos = [_done(f) for f in folders]
        shards = [{k: f / f"{k}.parquet" for k in ("kept", "rejects", "annotations")} for f in folders]
        if not all(s["annotations"].exists() for s in shards):
            shards = [{k: v for k, v in s.items() if k != "annotations"} for s in shards]
        params = infos[0]["params"] if infos else {}
        n_in = sum(i["in"] for i in infos)
        self._book(stage, params, n_in, shards, {})
        self.shards = [s["kept"] for s in shards]
        self.records = sum(i["kept"] for i in infos)
        self._save()

    def _book(
        self, name: str, params: dict[str, Any], n_in: int, shards: list[dict[str, Path]], stats: dict[str, Any]
    ) -> None:
        """Stream the per-shard rejects and annotations into the run's files and record the stage."""
        run = self.writer.run
        reasons: Counter[str] = Counter()
        rejects = StreamingParquet(run.rejects_path(name), REJECT_SCHEMA)
        for shard in shards:
            frame = conform(pl.read_parquet(shard["rejects"]), REJECT_SCHEMA)
            reasons.update(frame[REASON].to_list())
            rejects.write(frame)
        rejects.close()
        annotations_path = None
        if shards and all("annotations" in s for s in shards):
            types = _column_types(s["annotations"] for s in shards)
            sink = StreamingParquet(run.annotations_path(name), types)
            for shard in shards:
                sink.write(conform(pl.read_parquet(shard["annotations"]), types))
            sink.close()
            annotations_path = sink.path
        rejected = rejects.rows
        if n_in - rejected != sum(_rows(s["kept"]) for s in shards):
            raise AssertionError(f"stage {name}: in != kept + rejected over its shards")
        record = {
            "name": name,
            "params": params,
            "in": n_in,
            "kept": n_in - rejected,
            "rejected": rejected,
            "rejected_by_reason": dict(sorted(reasons.items())),
            **({"stats": stats} if stats else {}),
        }
        self.writer.book(record, rejects.path, annotations_path)

    # -- output -------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """Export the kept records shard by shard (bounded output shards) and commit the run."""
        return self.writer.finish(self.frames())


def _write_tail(frame: pl.DataFrame, unit: Path) -> None:
    with atomic_path(unit / TAIL) as tmp:
        frame.write_ipc(tmp, compression="uncompressed")


def _read_tail(unit: Path) -> pl.DataFrame:
    try:
        return pl.read_ipc(unit / TAIL)
    except Exception as error:  # polars raises several kinds for a damaged file
        raise CurateError(f"cannot read work file {unit / TAIL}: {error}; remove {unit} and rerun") from None


def _write_seen(unit: Path, numbers: np.ndarray, others: list[str], repeats: dict[str, int]) -> None:
    """A file's first-seen ids (:meth:`curate.records.ids.UniqueIds.take_journal`), for a resumed ingest."""
    with atomic_path(unit / "seen.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, numbers)
    write_json(unit / "seen.json", {"others": others, "repeats": repeats})


def _read_seen(unit: Path) -> tuple[np.ndarray, list[str], dict[str, int]]:
    seen = json.loads((unit / "seen.json").read_text())
    return np.load(unit / "seen.npy"), seen["others"], seen["repeats"]


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
