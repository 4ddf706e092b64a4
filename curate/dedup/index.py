"""Incremental near-dedup: an index of the signatures of records kept by earlier runs.

Two stores, one interface (:class:`NearDupIndex`):

* a folder (``--index DIR``): ``index.json`` (the MinHash settings every part must share)
  and ``part-NNNNN.parquet`` files of ``id`` + ``signature`` (uint32 x num_perm), one part
  per run, each written atomically before ``index.json`` names it;
* Redis (``--index redis://HOST:PORT/DB?basename=NAME``): a datasketch ``MinHashLSH`` with its
  Redis storage, so other datasketch users can query the same shared index, plus a Redis
  hash ``NAME:signatures`` (id -> signature bytes) and ``NAME:settings``.

Records whose id the index already holds are not compared with their own entry, so
rerunning a batch gives the same result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import numpy as np
import polars as pl

from curate.dedup.lsh import band_keys
from curate.errors import CurateError
from curate.io.atomic import write_json
from curate.io.shards import frame_vectors, vectors_frame, write_parquet

FORMAT = "curate-minhash-index/1"


class NearDupIndex(Protocol):
    def candidates(self, signatures: np.ndarray, exclude: set[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Index entries that may be near-duplicates of ``signatures``.

        Returns (ids, their signatures, pairs) where each pair row is (row in ``signatures``,
        position in ids).
        """

    def add(self, ids: list[str], signatures: np.ndarray) -> None: ...


def settings_of(params: Any) -> dict[str, Any]:
    """What must match between an index and a run for signatures to be comparable."""
    bands, rows = params.banding()
    return {
        "num_perm": params.num_perm,
        "seed": params.seed,
        "scheme": "affine32",
        "shingles": {
            "ngram": params.shingles.ngram,
            "mode": params.shingles.mode,
            "max_shingles": params.shingles.max_shingles,
        },
        "bands": bands,
        "rows": rows,
    }


def _check(found: dict[str, Any], wanted: dict[str, Any], where: str) -> None:
    keys = ("num_perm", "seed", "scheme", "shingles")
    if any(found.get(k) != wanted[k] for k in keys):
        theirs = {k: found.get(k) for k in keys}
        ours = {k: wanted[k] for k in keys}
        raise CurateError(f"{where}: index was built with {theirs}, this run uses {ours}")


def _pairs_by_band(new: np.ndarray, old: np.ndarray, bands: int, rows: int) -> np.ndarray:
    if new.shape[0] == 0 or old.shape[0] == 0:
        return np.zeros((0, 2), dtype=np.int64)
    new_keys = band_keys(new, bands, rows)
    old_keys = band_keys(old, bands, rows)

    def frame(keys: np.ndarray, name: str) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "band": np.tile(np.arange(bands, dtype=np.int32), keys.shape[0]),
                "key": keys.ravel(),
                name: np.repeat(np.arange(keys.shape[0], dtype=np.int64), bands),
            }
        )

    joined = frame(new_keys, "new").join(frame(old_keys, "old"), on=["band", "key"])
    return joined.select("new", "old").unique().sort("new", "old").to_numpy().astype(np.int64)


class FolderIndex:
    """Signatures in Parquet parts under a folder."""

    def __init__(self, folder: Path | str, settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.settings = settings
        self.meta_path = self.folder / "index.json"
        if self.meta_path.exists():
            self.meta = json.loads(self.meta_path.read_text())
            if self.meta.get("format") != FORMAT:
                raise CurateError(f"{self.meta_path}: not a curate MinHash index")
            _check(self.meta["settings"], settings, str(self.meta_path))
        else:
            self.meta = {"format": FORMAT, "settings": settings, "parts": [], "count": 0}

    def load(self) -> tuple[list[str], np.ndarray]:
        if not self.meta["parts"]:
            return [], np.zeros((0, self.settings["num_perm"]), dtype=np.uint32)
        frame = pl.concat([pl.read_parquet(self.folder / part) for part in self.meta["parts"]])
        sigs = frame_vectors(frame, "signature", np.uint32)
        return frame["id"].to_list(), sigs

    def candidates(self, signatures: np.ndarray, exclude: set[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        ids, sigs = self.load()
        if exclude and ids:
            keep = np.array([i not in exclude for i in ids], dtype=bool)
            ids = [i for i, k in zip(ids, keep, strict=True) if k]
            sigs = sigs[keep]
        pairs = _pairs_by_band(signatures, sigs, self.settings["bands"], self.settings["rows"])
        return ids, sigs, pairs

    def add(self, ids: list[str], signatures: np.ndarray) -> None:
        if not ids:
            return
        name = f"part-{len(self.meta['parts']):05d}.parquet"
        frame = vectors_frame(ids, "signature", signatures, pl.UInt32)
        write_parquet(frame, self.folder / name)
        self.meta["parts"].append(name)
        self.meta["count"] += len(ids)
        write_json(self.meta_path, self.meta)


class RedisIndex:
    """A datasketch MinHashLSH in Redis, plus the signatures for verification."""

    def __init__(self, url: str, settings: dict[str, Any]) -> None:
        import redis
        from datasketch import MinHashLSH

        parsed = urlparse(url)
        self.basename = parse_qs(parsed.query).get("basename", ["curate"])[0]
        db = int(parsed.path.lstrip("/") or 0)
        config = {"host": parsed.hostname or "127.0.0.1", "port": parsed.port or 6379, "db": db}
        self.client = redis.Redis(**config)
        self.settings = settings
        self.where = f"redis://{config['host']}:{config['port']}/{db} basename={self.basename}"
        try:
            stored = self.client.get(f"{self.basename}:settings")
        except redis.exceptions.ConnectionError as exc:
            raise CurateError(f"cannot reach the Redis index at {self.where}: {exc}") from None
        if stored is not None:
            _check(json.loads(stored), settings, self.where)
        self.lsh = MinHashLSH(
            num_perm=settings["num_perm"],
            params=(settings["bands"], settings["rows"]),
            storage_config={"type": "redis", "basename": self.basename.encode(), "redis": config},
        )

    def _minhash(self, signature: np.ndarray) -> Any:
        from datasketch import LeanMinHash, MinHash

        return LeanMinHash(MinHash(seed=self.settings["seed"], hashvalues=signature, scheme="affine32"))

    def candidates(self, signatures: np.ndarray, exclude: set[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        found: dict[str, int] = {}
        pairs = []
        for row, signature in enumerate(signatures):
            for key in self.lsh.query(self._minhash(signature)):
                if key in exclude:
                    continue
                pairs.append((row, found.setdefault(key, len(found))))
        ids = list(found)
        raw = self.client.hmget(f"{self.basename}:signatures", ids) if ids else []
        if any(r is None for r in raw):
            raise CurateError(f"{self.where}: index lists records whose signatures are missing")
        num_perm = self.settings["num_perm"]
        sigs = (
            np.frombuffer(b"".join(raw), dtype="<u4").reshape(len(ids), num_perm)
            if ids
            else np.zeros((0, num_perm), np.uint32)
        )
        return ids, sigs.astype(np.uint32), np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)

    def add(self, ids: list[str], signatures: np.ndarray) -> None:
        if not ids:
            return
        self.client.set(f"{self.basename}:settings", json.dumps(self.settings, sort_keys=True))
        with self.lsh.insertion_session() as session:
            for key, signature in zip(ids, signatures, strict=True):
                if key not in self.lsh:
                    session.insert(key, self._minhash(signature))
        mapping = {key: signature.astype("<u4").tobytes() for key, signature in zip(ids, signatures, strict=True)}
        self.client.hset(f"{self.basename}:signatures", mapping=mapping)


def open_index(location: str, params: Any) -> NearDupIndex:
    settings = settings_of(params)
    if location.startswith("redis://"):
        return RedisIndex(location, settings)
    return FolderIndex(location, settings)
