"""Atomic writes: everything goes to a temporary name in the target folder, then ``os.replace``.

A run killed mid-write leaves at most a ``.tmp-*`` file, which :func:`clean_partial` removes
on the next start; a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    return path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it goes away.

    ``durable`` also fsyncs before the rename. The manifest is written durably; data files
    are not, because the manifest records their sha256 and a run whose files do not match
    is found broken (``RunDir.verify``) and redone rather than trusted.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, value: Any, durable: bool = True) -> None:
    write_bytes(path, (json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode(), durable)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) so one run reads each input once."""
    if not isinstance(path, str | os.PathLike):
        return path.sha256()  # an object at a URL (curate.io.storage.ObjectPath) hashes itself
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = _sha256(path)
    return _SHA_CACHE[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def clean_partial(folder: Path) -> list[Path]:
    """Remove what a killed run left behind: temp files and unfinished staging folders."""
    removed = []
    if not folder.exists():
        return removed
    for path in sorted(folder.rglob(f"*{TMP_MARK}*")):
        if not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed
