"""Run a command's stages into a run directory, keeping the books, then commit it.

A :class:`RunWriter` is what the CLI and the flows use: it takes the input (sources to
ingest, or an earlier run to continue), records each stage's rejects, annotations and
counts, exports the kept records as shards and writes the manifest last. Rerunning the
same command with the same inputs finds the committed run up to date and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.io.atomic import atomic_path, write_json
from curate.io.ingest import Ingest, IngestOptions
from curate.io.shards import ShardWriter, StreamingParquet, write_parquet
from curate.records.schema import ID, RECORD_SCHEMA, REJECT_SCHEMA, conform, empty_records
from curate.run.directory import FORMAT, RunDir, git_commit, versions
from curate.run.progress import Progress
from curate.stages.result import StageResult

CHECKPOINTS = ".checkpoints"


@dataclass(frozen=True)
class ExportOptions:
    """Shard layout: at most ``max_shard_rows`` rows and about ``max_shard_bytes`` per shard."""

    max_shard_rows: int = 100_000
    max_shard_bytes: int = 256 * 1024 * 1024


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


class RunWriter:
    """Collects one command's work into ``out`` and commits it atomically."""

    def __init__(
        self,
        out: Path | str,
        command: str,
        plan: dict[str, Any],
        export: ExportOptions | None = None,
        invocation: str | None = None,
        checkpoints: bool = False,
        overwrite: bool = False,
        publish: bool = True,
    ) -> None:
        self.run = RunDir(out, writer=True)
        # False: a run staged for a URL is committed locally only; the caller writes its dataset card and
        # then calls ``self.run.publish()``, so that the manifest is still the last object uploaded.
        self.publish_on_commit = publish
        self.checkpoints = checkpoints
        self.overwrite = overwrite
        self._restored: list[str] = []
        self.command = command
        self.export_options = export or ExportOptions()
        self._input_fingerprints: list[str] | None = None
        self.plan = {"command": command, **plan, "export": self.export_options.__dict__}
        self.manifest: dict[str, Any] = {
            "format": FORMAT,
            "command": command,
            "invocation": invocation,
            "fingerprint": None,
            "inputs": [],
            "stages": [],
            "outputs": {"data": [], "rejects": [], "annotations": []},
            "records": {},
            "versions": versions(),
            "git_commit": git_commit(),
        }

    def _set_fingerprint(self, input_fingerprints: list[str]) -> str:
        self.manifest["fingerprint"] = _fingerprint(
            {
                "plan": self.plan,
                "inputs": input_fingerprints,
                "curate": self.manifest["versions"].get("curate"),
                "commit": self.manifest["git_commit"],
            }
        )
        return self.manifest["fingerprint"]

    def up_to_date(self, input_fingerprints: Callable[[], list[str]]) -> bool:
        """True when ``out`` already holds this exact command over these inputs, intact.

        Input fingerprints are computed only when there is a committed run to compare with.
        """
        if not RunDir.is_run(self.run.root):
            return False
        try:
            old = self.run.manifest()
        except CurateError:
            return False
        if old.get("fingerprint") == self._set_fingerprint(input_fingerprints()):
            intact = not self.run.verify()  # the same run, intact; damaged, it is redone
            if intact:
                self.run.publish()  # a run staged for a URL whose upload was cut short goes up now
            return intact
        if not self.overwrite:
            raise CurateError(
                f"{self.run.location} already holds a curate run of other inputs or parameters "
                f"({old.get('command')}); pass --overwrite to replace it, or choose another --out"
            )
        return False

    def open_input(self, specs: list[str], options: IngestOptions, progress: bool = True) -> pl.DataFrame:
        """Records to work on: an earlier run's kept records, or ``specs`` ingested now.

        With ``checkpoints``, a run killed part-way resumes: the records after its last
        finished stage come back, and :meth:`skip` says which stages are already done.
        """
        if len(specs) == 1 and RunDir.is_run(specs[0]):
            records = self._continue(RunDir(specs[0]))
        else:
            ingest = Ingest(specs, options)
            if self.up_to_date(lambda: _input_hashes(ingest)):
                raise UpToDate(self.run)
            resumed = self._resume(_input_hashes(ingest)) if self.checkpoints else None
            if resumed is not None:
                return resumed
            frames: list[pl.DataFrame] = []
            self._ingest(ingest, frames.append, progress)
            self._input_fingerprints = [entry["sha256"] for entry in self.manifest["inputs"]]
            records = pl.concat(frames, rechunk=True) if frames else empty_records()
        self._checkpoint(records)
        return records

    def begin(self, inputs: list[dict[str, Any]]) -> None:
        """Start a run whose records a stage makes itself (self-instruct) from ``inputs`` it read.

        Raises :class:`UpToDate` when ``out`` already holds this command over these inputs.
        """
        hashes = [entry["sha256"] for entry in inputs]
        if self.up_to_date(lambda: hashes):
            raise UpToDate(self.run)
        self.run.prepare()
        self.manifest["inputs"] = inputs
        self._input_fingerprints = hashes

    def skip(self, stage: str) -> bool:
        """True when a resumed run already finished this stage (the next one it recorded)."""
        if self._restored and self._restored[0] == stage:
            self._restored.pop(0)
            return True
        return False

    @property
    def _checkpoint_dir(self) -> Path:
        return self.run.root / CHECKPOINTS

    def _checkpoint(self, records: pl.DataFrame) -> None:
        """After each stage: the kept records and the books so far (written atomically)."""
        if not self.checkpoints:
            return
        fingerprint = self._set_fingerprint(self._input_fingerprints or [])
        step = len(self.manifest["stages"])
        latest = self._checkpoint_dir / f"after-{step:02d}.parquet"
        # Uncompressed: a checkpoint is temporary, and zstd would cost ~4x the write time per stage.
        with atomic_path(latest) as tmp:
            records.write_parquet(tmp, compression="uncompressed")
        state = {key: self.manifest[key] for key in ("inputs", "stages", "outputs")}
        write_json(self._checkpoint_dir / "state.json", {"fingerprint": fingerprint, "step": step, **state})
        for older in self._checkpoint_dir.glob("after-*.parquet"):  # resume needs only the latest
            if older != latest:
                older.unlink()

    def _resume(self, input_hashes: list[str]) -> pl.DataFrame | None:
        state_path = self._checkpoint_dir / "state.json"
        if not state_path.exists():
            return None
        state = json.loads(state_path.read_text())
        if state.get("fingerprint") != self._set_fingerprint(input_hashes):
            return None
        files = [self.run.root / e["path"] for g in ("rejects", "annotations") for e in state["outputs"][g]]
        records_path = self._checkpoint_dir / f"after-{state['step']:02d}.parquet"
        if not records_path.exists() or not all(f.exists() for f in files):
            return None
        self.run.prepare()
        for key in ("inputs", "stages", "outputs"):
            self.manifest[key] = state[key]
        self._input_fingerprints = input_hashes
        self._restored = [stage["name"] for stage in state["stages"][1:]]
        print(
            f"resuming {self.run.location} after stage {state['stages'][-1]['name']} "
            f"({len(state['stages'])} stage(s) already done)",
            file=sys.stderr,
        )
        return pl.read_parquet(records_path)

    def _ingest(self, ingest: Ingest, keep: Callable[[pl.DataFrame], None], progress: bool) -> None:
        """Run an ingest into this run: kept batches to ``keep``, rejects streamed to their file."""
        self.run.prepare()
        meter = Progress("ingest", enabled=progress)
        sink = StreamingParquet(self.run.rejects_path("ingest"), REJECT_SCHEMA)
        for records, rejects in ingest.batches():
            keep(records)
            sink.write(rejects)
            meter.advance(records.height + rejects.height)
        meter.close()
        sink.close()
        self.ingested(ingest, sink.path)

    def _continue(self, source: RunDir) -> pl.DataFrame:
        previous = source.manifest()
        same = source.root.resolve() == self.run.root.resolve()
        # Naming a run as both input and --out asks to rewrite it in place: no --overwrite needed.
        self.overwrite = self.overwrite or same
        if self.up_to_date(lambda: _parent_hashes(previous)):
            raise UpToDate(self.run)
        records = source.records()
        self.run.prepare()
        if not same:
            self.run.copy_history_from(source)
        self.manifest["inputs"] = previous["inputs"]
        self._input_fingerprints = _parent_hashes(previous)
        self.manifest["parent"] = {"run": source.location, "fingerprint": previous.get("fingerprint")}
        self.manifest["stages"] = previous["stages"]
        for group in ("rejects", "annotations"):
            self.manifest["outputs"][group] = list(previous["outputs"].get(group, []))
        return records

    def annotation_column(self, column: str) -> pl.DataFrame | None:
        """``id`` and ``column`` from the annotations this run has written so far (latest stage wins)."""
        for entry in reversed(self.manifest["outputs"]["annotations"]):
            path = self.run.root / entry["path"]
            if path.exists() and column in pl.read_parquet_schema(path):
                return pl.read_parquet(path, columns=[ID, column])
        return None

    def branch(self, out: Path | str, command: str, plan: dict[str, Any]) -> RunWriter:
        """A second run that shares this one's stages so far (a selection beside the main line).

        Its books start from the same ingest and stages; the rejects and annotations written so far
        are copied into it, so each run directory accounts for every input record on its own.
        """
        import copy

        other = RunWriter(
            out,
            command,
            {**plan, "branch_of": self.plan},
            self.export_options,
            self.manifest["invocation"],
            overwrite=self.overwrite,
        )
        other.run.prepare()
        for group in ("rejects", "annotations"):
            for entry in self.manifest["outputs"][group]:
                target = other.run.root / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.run.root / entry["path"], target)
        for key in ("inputs", "stages", "outputs"):
            other.manifest[key] = copy.deepcopy(self.manifest[key])
        other.manifest["outputs"]["data"] = []
        other._input_fingerprints = self._input_fingerprints
        other.manifest["parent"] = {"run": self.run.location, "branch_after": self.manifest["stages"][-1]["name"]}
        return other

    def ingest_streaming(self, specs: list[str], options: IngestOptions, progress: bool = True) -> None:
        """Ingest straight into shards, never holding the corpus in memory."""
        ingest = Ingest(specs, options)
        if self.up_to_date(lambda: _input_hashes(ingest)):
            raise UpToDate(self.run)
        self.run.prepare()
        shards = ShardWriter(self.run.data_dir, self.export_options.max_shard_rows, self.export_options.max_shard_bytes)
        self._ingest(ingest, shards.write, progress)
        self.manifest["outputs"]["data"] = shards.publish(RECORD_SCHEMA)
        self._commit()

    def _stage_name(self, name: str) -> str:
        taken = {s["name"] for s in self.manifest["stages"]}
        if name not in taken:
            return name
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        return f"{name}-{n}"

    def _add_stage(
        self, record: dict[str, Any], rejects_path: Path | None = None, annotations_path: Path | None = None
    ) -> None:
        outputs = self.manifest["outputs"]
        if rejects_path is not None:
            entry = self.run.output_record(rejects_path, rows=record["rejected"])
            outputs["rejects"] = [e for e in outputs["rejects"] if e["path"] != entry["path"]] + [entry]
            record["rejects"] = entry["path"]
        if annotations_path is not None:
            entry = self.run.output_record(annotations_path, rows=record["in"])
            outputs["annotations"] = [e for e in outputs["annotations"] if e["path"] != entry["path"]] + [entry]
            record["annotations"] = entry["path"]
        self.manifest["stages"].append(record)

    def add(self, result: StageResult) -> pl.DataFrame:
        """Record a stage: write its rejects and annotations; return what it kept."""
        result.check()
        name = self._stage_name(result.name)
        result.name = name
        rejects_path = self.run.rejects_path(name)
        write_parquet(conform(result.rejects, REJECT_SCHEMA), rejects_path)
        annotations_path = None
        if result.annotations is not None:
            annotations_path = self.run.annotations_path(name)
            write_parquet(result.annotations, annotations_path)
        self._add_stage(result.record(), rejects_path, annotations_path)
        self._checkpoint(result.kept)
        return result.kept

    def finish(self, kept: pl.DataFrame | Iterable[pl.DataFrame]) -> dict[str, Any]:
        """Export the kept records as shards and commit the manifest."""
        shards = ShardWriter(self.run.data_dir, self.export_options.max_shard_rows, self.export_options.max_shard_bytes)
        for frame in [kept] if isinstance(kept, pl.DataFrame) else kept:
            shards.write(conform(frame, RECORD_SCHEMA))
        self.manifest["outputs"]["data"] = shards.publish(RECORD_SCHEMA)
        return self._commit()

    def _commit(self) -> dict[str, Any]:
        stages = self.manifest["stages"]
        first, last = stages[0], stages[-1]
        self.manifest["records"] = {
            "in": first["in"],
            "kept": last["kept"],
            "rejected": sum(s["rejected"] for s in stages),
        }
        inputs = self._input_fingerprints or [entry["sha256"] for entry in self.manifest["inputs"]]
        self._set_fingerprint(inputs)
        self.manifest["status"] = "complete"
        keep = {e["path"] for group in ("rejects", "annotations") for e in self.manifest["outputs"][group]}
        self.run.remove_stale(keep)
        self.run.commit(self.manifest, publish=self.publish_on_commit)
        if self._checkpoint_dir.exists():
            shutil.rmtree(self._checkpoint_dir)
        return self.manifest

    # Hooks for a run whose records stay in shards between stages (curate.run.sharded).

    def fingerprint(self, input_fingerprints: list[str]) -> str:
        """This command's fingerprint over inputs with these sha256s (what a resume must match)."""
        return self._set_fingerprint(input_fingerprints)

    def plan_fingerprint(self) -> str:
        """This command's fingerprint without its inputs (what a file-by-file resume of ingest must match)."""
        plan = {
            "plan": self.plan,
            "curate": self.manifest["versions"].get("curate"),
            "commit": self.manifest["git_commit"],
        }
        return _fingerprint(plan)

    def ingested(self, ingest: Ingest, rejects_path: Path) -> None:
        """Book a finished ingest whose rejects are in ``rejects_path`` (the sharded run writes them file by file)."""
        self.manifest["inputs"] = ingest.inputs
        self._add_stage(ingest.stage_record(), rejects_path=rejects_path)
        self._input_fingerprints = [entry["sha256"] for entry in self.manifest["inputs"]]

    def book(self, record: dict[str, Any], rejects_path: Path, annotations_path: Path | None = None) -> None:
        """Record a stage whose rejects (and annotations) files are already written."""
        self._add_stage(record, rejects_path, annotations_path)

    def restore(self, state: dict[str, Any]) -> None:
        """Take the books (inputs, stages, outputs) a killed run saved, to carry on after them."""
        for key in ("inputs", "stages", "outputs"):
            self.manifest[key] = state[key]
        self._input_fingerprints = [entry["sha256"] for entry in state["inputs"]]


class UpToDate(Exception):
    """The output run already holds this command's result."""

    def __init__(self, run: RunDir) -> None:
        super().__init__(str(run.root))
        self.run = run


def _input_hashes(ingest: Ingest) -> list[str]:
    from curate.io.atomic import sha256_file

    return [sha256_file(p) for s in ingest.sources for p in s.files]


def _parent_hashes(manifest: dict[str, Any]) -> list[str]:
    return [f["sha256"] for f in manifest["outputs"]["data"]] + [manifest.get("fingerprint") or ""]
