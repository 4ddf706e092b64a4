"""The dataset registry: short names for the corpora curate knows, with licence and checksum.

Resolution order for a name: ``$CURATE_DATA_DIR/<file>``, then the user cache
(``$CURATE_CACHE`` or ``~/.cache/curate/datasets``), then a download from the upstream URL
into the cache. Every resolved file is checked against the registry's sha256 (or git blob
id where upstream publishes only that); a mismatch is an error, never a silent use.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from curate.errors import CurateError
from curate.io.atomic import atomic_path, sha256_file

REGISTRY_FILE = Path(__file__).parent / "datasets.yaml"


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str
    license: str
    records: int | None = None
    sha256: str | None = None
    git_blob: str | None = None
    url: str | None = None
    homepage: str | None = None
    format: str | None = None
    delimiter: str | None = None
    citation: str | None = None
    note: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class ChecksumError(CurateError):
    """A dataset file whose bytes are not the registered ones."""


@cache
def registry() -> dict[str, Dataset]:
    raw = yaml.safe_load(REGISTRY_FILE.read_text())
    return {name: Dataset(name=name, **entry) for name, entry in raw.items()}


def lookup(name: str) -> Dataset | None:
    return registry().get(name)


def cache_dir() -> Path:
    return Path(os.environ.get("CURATE_CACHE", Path.home() / ".cache" / "curate" / "datasets"))


def git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(dataset: Dataset, path: Path, sha256: str | None = None) -> str:
    """Check a file against the registry; return its sha256."""
    actual = sha256 or sha256_file(path)
    if dataset.sha256 and actual != dataset.sha256:
        raise ChecksumError(
            f"{path}: checksum mismatch for dataset {dataset.name!r}: expected sha256 {dataset.sha256}, "
            f"got {actual}. The file is corrupt or a different version; remove it to fetch it again."
        )
    if dataset.git_blob and not dataset.sha256 and git_blob_id(path) != dataset.git_blob:
        raise ChecksumError(f"{path}: git blob id of dataset {dataset.name!r} is not {dataset.git_blob}")
    return actual


def resolve(dataset: Dataset, download: bool = True, check: bool = True) -> Path:
    """Find a registered dataset's file locally, or fetch it; verified (downloads always).

    ``check=False`` leaves the local file's checksum to the caller, who must then call
    :func:`verify` (ingest does, hashing while it parses).
    """
    candidates = []
    if os.environ.get("CURATE_DATA_DIR"):
        candidates.append(Path(os.environ["CURATE_DATA_DIR"]) / dataset.file)
    candidates.append(cache_dir() / dataset.file)
    for path in candidates:
        if path.is_file():
            if check:
                verify(dataset, path)
            return path
    if not download or not dataset.url:
        where = " or ".join(str(p.parent) for p in candidates)
        raise CurateError(
            f"dataset {dataset.name!r} ({dataset.file}) not found in {where}"
            + ("" if dataset.url else "; it has no public download URL, set CURATE_DATA_DIR")
        )
    return fetch(dataset, cache_dir() / dataset.file)


def fetch(dataset: Dataset, target: Path) -> Path:
    """Download with a progress line, verify, then move into place."""
    assert dataset.url
    try:
        with urllib.request.urlopen(dataset.url, timeout=60) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            with open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    done += len(block)
                    pct = f" {100 * done / total:5.1f}%" if total else ""
                    print(f"\rdownloading {dataset.name}: {done / 1e6:8.1f} MB{pct}", end="", file=sys.stderr)
            print(file=sys.stderr)
            verify(dataset, tmp)
    except OSError as exc:
        raise CurateError(f"cannot download dataset {dataset.name!r} from {dataset.url}: {exc}") from None
    return target
