"""The run directory: the contract every stage writes to.

::

    RUN/manifest.json                      inputs, stages with params and counts, outputs with sha256
    RUN/data/train-00000-of-0000N.parquet  kept records (zstd, bounded shards, input order)
    RUN/rejects/<stage>.parquet            rejected records with stage, reason, detail, location
    RUN/annotations/<stage>.parquet        id plus the signals a stage computed

The manifest is written last and atomically: it is the commit point. A run killed before
that leaves only temp files, which the next open removes, and the rerun starts the command
again from its inputs.

curate writes only into folders it owns: a new or empty folder (which it marks with
``RUN/.curate-run`` before writing anything) or an earlier curate run. Any other folder is
refused, and files curate did not write are never deleted.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.io import storage
from curate.io.atomic import TMP_MARK, clean_partial, sha256_file, write_json
from curate.io.shards import file_record, foreign_files, read_parquet_files

MANIFEST = "manifest.json"
MARKER = ".curate-run"
FORMAT = "curate-run/1"
_PACKAGES = (
    "curate",
    "polars",
    "pyarrow",
    "datasketch",
    "langdetect",
    "sentence-transformers",
    "faiss-cpu",
    "faiss-gpu",
    "torch",
    "prefect",
)


class AccountingError(CurateError):
    """A stage's counts do not add up: records in != kept + rejected."""


class RunDir:
    def __init__(self, root: Path | str, writer: bool = False) -> None:
        # A run at a URL (s3://...) lives in a local staged copy, published manifest-last (curate.io.storage).
        # Its writer may see a staged manifest not yet uploaded (to finish the upload); readers see only a
        # committed one.
        self.writer = writer
        self.remote = storage.remote_run(root) if storage.is_remote(root) else None
        self.root = self.remote.local if self.remote else storage.as_path(root)
        self.location = self.remote.url if self.remote else str(self.root)  # what messages name

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def rejects_path(self, stage: str) -> Path:
        return self.root / "rejects" / f"{stage}.parquet"

    def annotations_path(self, stage: str) -> Path:
        return self.root / "annotations" / f"{stage}.parquet"

    @staticmethod
    def is_run(path: Path | str) -> bool:
        if storage.is_remote(path):
            return storage.holds_run(path)
        return (storage.as_path(path) / MANIFEST).is_file()

    @staticmethod
    def owned(path: Path | str) -> bool:
        """True for a folder curate wrote: a committed run, or one it marked before a kill."""
        return (Path(path) / MANIFEST).is_file() or (Path(path) / MARKER).is_file()

    def claim(self) -> None:
        """Make the folder ours, or refuse it: curate never writes into a user's folder."""
        if self.remote:
            self.remote.claim()
        claim_folder(self.root, "run", signs=(MANIFEST,))
        foreign = foreign_files(self.data_dir)
        if foreign:
            raise CurateError(
                f"{foreign[0]} was not written by curate; move it out of {self.root} (curate deletes only its own)"
            )

    def prepare(self) -> None:
        """Claim the folder and clear what a killed run left, restoring data swapped out mid-way."""
        self.claim()
        old = self.root / f"{TMP_MARK}old-data"
        if old.exists() and not self.data_dir.exists():
            old.rename(self.data_dir)
        clean_partial(self.root)

    def manifest(self) -> dict[str, Any]:
        uploaded = self.remote is None or self.writer or self.remote.committed()
        if not self.manifest_path.exists() or not uploaded:
            raise CurateError(f"{self.location} is not a run directory (no {MANIFEST})")
        try:
            return json.loads(self.manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise CurateError(f"{self.manifest_path}:{exc.lineno}: broken manifest: {exc.msg}") from None

    def data_files(self) -> list[Path]:
        files = [self.root / f["path"] for f in self.manifest()["outputs"]["data"]]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise CurateError(f"{self.root}: shards listed in the manifest are missing: {', '.join(missing)}")
        return files

    def records(self) -> pl.DataFrame:
        from curate.records.schema import RECORD_SCHEMA, conform

        return conform(read_parquet_files(self.data_files()), RECORD_SCHEMA)

    def annotation_column(self, column: str) -> pl.DataFrame | None:
        """``id`` and ``column`` from whichever annotation file of this run holds it."""
        import pyarrow.parquet as pq

        for path in sorted((self.root / "annotations").glob("*.parquet")):
            if column in pq.read_schema(path).names:
                return pl.read_parquet(path, columns=["id", column])
        return None

    def verify(self) -> list[str]:
        """Problems with the run's files against the manifest (empty when all is well), the runs
        nested in it (curate-alpaca's ``selections/NAME``) included."""
        problems = []
        manifest = self.manifest()
        outputs = manifest["outputs"]
        for group in ("data", "rejects", "annotations"):
            for entry in outputs.get(group, []):
                path = self.root / entry["path"]
                if not path.exists():
                    problems.append(f"{entry['path']}: missing")
                elif sha256_file(path) != entry["sha256"]:
                    problems.append(f"{entry['path']}: sha256 differs from the manifest")
        for nested in (manifest.get("selections") or {}).values():
            if not (self.root / nested / MANIFEST).is_file():
                problems.append(f"{nested}: missing")
            else:
                problems += [f"{nested}/{problem}" for problem in RunDir(self.root / nested).verify()]
        return problems

    def commit(self, manifest: dict[str, Any], publish: bool = True) -> None:
        """Write the manifest; ``publish=False`` leaves a run staged for a URL to :meth:`publish` later
        (after its dataset card is written, so that the manifest still goes up last)."""
        check_accounting(manifest)
        write_json(self.manifest_path, manifest)
        if publish:
            self.publish()

    def publish(self) -> None:
        """Upload a run staged for a URL (its files, then the manifest); a local run is already in place."""
        if self.remote:
            self.remote.publish()

    def output_record(self, path: Path, rows: int | None = None) -> dict[str, object]:
        return file_record(path, self.root, rows=rows)

    def remove_stale(self, keep: set[str]) -> None:
        """Drop the reject/annotation files the previous manifest listed and this one does not.

        Only files curate itself listed are removed; anything else in the folder stays.
        """
        if not self.manifest_path.exists():
            return
        try:
            previous = self.manifest()["outputs"]
        except CurateError:
            return
        for group in ("rejects", "annotations"):
            for entry in previous.get(group, []):
                path = self.root / entry["path"]
                if entry["path"] not in keep and path.is_file():
                    path.unlink()

    def copy_history_from(self, other: RunDir) -> dict[str, Any]:
        """Start this run from another run's stages: copy its rejects and annotations."""
        manifest = other.manifest()
        for group in ("rejects", "annotations"):
            for entry in manifest["outputs"].get(group, []):
                target = self.root / entry["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(other.root / entry["path"], target)
        return manifest


def claim_folder(root: Path | str, kind: str, signs: tuple[str, ...] = ()) -> Path:
    """Own ``root`` (a run, a training run, an ablation) or refuse it with one line.

    A folder is curate's when it holds the marker or one of ``signs`` (files only curate writes
    there, for folders from before the marker); a new or empty folder is marked first, so a
    later run knows what it wrote. Any other folder belongs to the user and is left alone.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise CurateError(f"{root} exists and is not a directory")
    ours = (root / MARKER).is_file() or any((root / sign).exists() for sign in signs)
    # A kill while the marker was being written leaves only curate's temp file: still an empty folder.
    if root.exists() and not ours and any(TMP_MARK not in child.name for child in root.iterdir()):
        raise CurateError(
            f"{root} exists, is not empty and is not a curate {kind} directory; "
            f"curate writes only into a new or empty folder or an earlier {kind} (choose another --out)"
        )
    root.mkdir(parents=True, exist_ok=True)
    if not (root / MARKER).exists():
        write_json(root / MARKER, {"format": FORMAT, "kind": kind}, durable=False)
    return root


def check_accounting(manifest: dict[str, Any]) -> None:
    previous_kept = None
    for stage in manifest["stages"]:
        if stage["in"] != stage["kept"] + stage["rejected"]:
            raise AccountingError(
                f"stage {stage['name']}: {stage['in']} in != {stage['kept']} kept + {stage['rejected']} rejected"
            )
        if sum(stage["rejected_by_reason"].values()) != stage["rejected"]:
            raise AccountingError(f"stage {stage['name']}: rejects by reason do not sum to {stage['rejected']}")
        if previous_kept is not None and stage["in"] != previous_kept:
            raise AccountingError(
                f"stage {stage['name']} read {stage['in']} records but the stage before kept {previous_kept}"
            )
        previous_kept = stage["kept"]
    data_rows = sum(f.get("rows", 0) for f in manifest["outputs"]["data"])
    if previous_kept is not None and data_rows != previous_kept:
        raise AccountingError(f"data shards hold {data_rows} records but the last stage kept {previous_kept}")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@functools.cache
def git_commit() -> str | None:
    """The commit of the curate checkout that ran this (with ``-dirty`` for local edits); asked once per
    process with a generous timeout, since it enters the run's fingerprint (a timeout under load made a
    rerun look like a different run)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha
