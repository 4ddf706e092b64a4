"""Object storage: sources and run directories at fsspec URLs (``s3://``, ``gs://``, ``file://``, ...).

Sources. A URL names one object, a prefix (read like a folder: every data file under it) or a
glob pattern such as ``s3://bucket/corpus/*.jsonl.gz``. A prefix or a pattern reads like a local
folder of shards: the source is named after its last fixed part (``corpus``) and rows without an
id get ``part-00000.jsonl.gz:N``, so a run over ``s3://bucket/corpus/*.jsonl.gz`` equals a run
over a local ``corpus/`` holding the same files. Objects are streamed through fsspec (gzip and
zstd decoded on the fly, Parquet read by row group), never downloaded whole first.

Run directories. An object store has no rename, so a run at a URL is staged in a local folder,
``$CURATE_CACHE/remote-runs/<hash of the URL>/run`` (the local rules hold there: write, then
rename), and published by uploading the ``.curate-run`` marker, then the shards, rejects,
annotations and dataset card, then the manifests of the runs nested in it (curate-alpaca's
``selections/NAME``), and its own ``manifest.json`` last. The manifest is the commit marker: a
prefix without it holds no committed run. Only files curate itself uploaded, or the previous manifest listed, are
ever replaced or deleted; a prefix that holds other objects is refused.

Settings come from the standard environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ...) and from fsspec storage options set with
:func:`configure` (the CLI's ``--storage-option key=value``) or ``$CURATE_STORAGE_OPTIONS`` (JSON).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from curate.errors import CurateError

STAGED_DIR = "remote-runs"
MANIFEST = "manifest.json"
MARKER = ".curate-run"
_GLOB_CHARS = ("*", "?", "[")
_options: dict[str, Any] = {}


def is_url(spec: object) -> bool:
    """True for ``scheme://...`` strings (a local path, even one with a colon, is not)."""
    return isinstance(spec, str) and "://" in spec and spec.split("://", 1)[0].isidentifier()


def is_remote(spec: object) -> bool:
    """A URL whose run directory must be staged: any but ``file://``, which is a local folder."""
    return is_url(spec) and not str(spec).startswith("file://")


def as_path(spec: Path | str) -> Path:
    """A local path, or the folder a ``file://`` URL names."""
    if isinstance(spec, str) and spec.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(spec).path))
    return Path(spec)


def configure(pairs: list[str] | dict[str, Any]) -> None:
    """Set fsspec storage options for this process from ``key=value`` pairs (or a dict).

    Values are JSON when they parse as JSON (``anon=true``, ``retries=2``), else strings; a dotted
    key nests (``client_kwargs.region_name=eu-west-1``).
    """
    items = pairs.items() if isinstance(pairs, dict) else (_split_pair(p) for p in pairs)
    for key, value in items:
        *parents, leaf = key.split(".")
        target = _options
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value


def _split_pair(pair: str) -> tuple[str, Any]:
    key, sep, raw = pair.partition("=")
    if not sep or not key:
        raise CurateError(f"--storage-option {pair!r}: expected KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def storage_options() -> dict[str, Any]:
    """The options every filesystem is opened with: ``$CURATE_STORAGE_OPTIONS``, then :func:`configure`."""
    found: dict[str, Any] = {}
    env = os.environ.get("CURATE_STORAGE_OPTIONS")
    if env:
        try:
            found.update(json.loads(env))
        except json.JSONDecodeError as exc:
            raise CurateError(f"CURATE_STORAGE_OPTIONS is not JSON: {exc.msg}") from None
    found.update(_options)
    return found


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path inside it."""
    with failures(url):
        from fsspec.core import url_to_fs

        return url_to_fs(url, **storage_options())


@contextlib.contextmanager
def failures(url: str) -> Iterator[None]:
    """Storage errors as one line naming ``url``: unreachable endpoint, credentials, missing bucket."""
    try:
        yield
    except CurateError:
        raise
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        extra = " (pip install 'curate[s3]')" if scheme in ("s3", "s3a") else ""
        raise CurateError(f"{url}: reading {scheme}:// needs a package that is not installed{extra}: {exc}") from None
    except FileNotFoundError as exc:
        raise CurateError(f"{url}: not found ({_message(exc)})") from None
    except PermissionError as exc:
        raise CurateError(
            f"{url}: access denied ({_message(exc)}); check the credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or --storage-option key=... secret=...)"
        ) from None
    except TypeError as exc:
        if "keyword argument" not in str(exc):
            raise
        raise CurateError(f"{url}: a storage option is not one this filesystem takes ({exc})") from None
    except Exception as exc:
        if _is_connection_error(exc):
            raise CurateError(
                f"{url}: cannot reach the storage endpoint ({_message(exc)}); check AWS_ENDPOINT_URL "
                "or --storage-option endpoint_url=..."
            ) from None
        if isinstance(exc, OSError | ValueError) or type(exc).__module__.startswith(("botocore", "aiobotocore")):
            raise CurateError(f"{url}: {type(exc).__name__}: {_message(exc)}") from None
        raise


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_connection_error(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ConnectionError"})


def reading(rows: Iterator[Any], url: str) -> Iterator[Any]:
    """``rows`` of an object, with a storage error mid-stream named by the object's URL."""
    with failures(url):
        yield from rows


class ObjectPath:
    """An object (or, with ``prefix``, a folder-like prefix) at a URL, with the parts of
    :class:`pathlib.Path` the readers use: ``name``, ``suffixes``, ``open``, ``relative_to``."""

    def __init__(self, fs: Any, path: str, prefix: bool = False) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.url = fs.unstrip_protocol(self.path)
        self._prefix = prefix
        self._info: dict[str, Any] | None = None

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def suffixes(self) -> list[str]:
        return PurePosixPath(self.path).suffixes

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.path).suffix

    def is_dir(self) -> bool:
        return self._prefix

    def relative_to(self, base: ObjectPath) -> PurePosixPath:
        return PurePosixPath(self.path).relative_to(base.path)

    def info(self) -> dict[str, Any]:
        if self._info is None:
            with failures(self.url):
                self._info = self.fs.info(self.path)
        return self._info

    def size(self) -> int:
        return int(self.info()["size"])

    def open(self) -> IO[bytes]:
        """The object's bytes as a buffered, read-ahead stream."""
        with failures(self.url):
            return self.fs.open(self.path, "rb", block_size=8 << 20, cache_type="readahead")

    def sha256(self) -> str:
        """SHA-256 of the object's bytes, read once per (URL, size, ETag or mtime) in a process."""
        info = self.info()
        key = (self.url, self.size(), str(info.get("ETag") or info.get("mtime") or info.get("LastModified")))
        if key not in _SHA_CACHE:
            digest = hashlib.sha256()
            with self.open() as stream, failures(self.url):
                for block in iter(lambda: stream.read(8 << 20), b""):
                    digest.update(block)
            _SHA_CACHE[key] = digest.hexdigest()
        return _SHA_CACHE[key]


_SHA_CACHE: dict[tuple[str, int, str], str] = {}


def open_gzip(path: ObjectPath) -> IO[bytes]:
    """A gzip stream over an object that closes the object's stream with it."""
    import gzip

    raw = path.open()

    class _OwningGzip(gzip.GzipFile):
        def close(self) -> None:
            try:
                super().close()
            finally:
                raw.close()

    return _OwningGzip(fileobj=raw, mode="rb")


def resolve(spec: str, known_kind: Callable[[ObjectPath], bool]) -> tuple[ObjectPath, list[ObjectPath], str]:
    """A source URL to (base, data files in the order of a local folder's, source name).

    ``known_kind(path)`` says whether a file's name is one the readers take; a prefix or a
    pattern keeps only those, like a local folder.
    """
    fs, path = filesystem(spec)
    with failures(spec):
        pattern = any(c in path for c in _GLOB_CHARS)
        if pattern:
            fixed = PurePosixPath(path.split("*")[0].split("?")[0].split("[")[0] + "_")
            base = ObjectPath(fs, str(fixed.parent), prefix=True)
            found = [p for p in sorted(fs.glob(path), key=_path_order) if fs.isfile(p)]
            files = [ObjectPath(fs, p) for p in found if known_kind(ObjectPath(fs, p))]
            if not files:
                _require_bucket(fs, path, spec)
                raise CurateError(f"{spec}: no object matches the pattern")
            return base, files, base.name
        if fs.isfile(path):
            single = ObjectPath(fs, path)
            return single, [single], single.name.split(".")[0]
        found = sorted((p for p in fs.find(path) if not PurePosixPath(p).name.startswith((".", "_"))), key=_path_order)
        files = [ObjectPath(fs, p) for p in found if known_kind(ObjectPath(fs, p))]
        if not files:
            _require_bucket(fs, path, spec)
            raise CurateError(f"{spec}: no such object, and no data files under that prefix")
        base = ObjectPath(fs, path, prefix=True)
        return base, files, base.name


def _path_order(path: str) -> tuple[str, ...]:
    """Sort keys as ``sorted()`` sorts local paths: part by part (``a/b`` before ``a-c``)."""
    return PurePosixPath(path).parts


def _require_bucket(fs: Any, path: str, url: str) -> None:
    """On an object store, a missing bucket is its own error (a listing of one is just empty)."""
    bucket = path.split("/", 1)[0]
    if getattr(fs, "root_marker", None) == "" and "/" in path.strip("/") and not fs.exists(bucket):
        raise CurateError(f"{url}: bucket {bucket!r} does not exist (or these credentials cannot see it)")


def staging_root() -> Path:
    base = os.environ.get("CURATE_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "curate") / STAGED_DIR


class RemoteRun:
    """A run directory at a URL, staged in a local folder and published manifest-last.

    ``state.json`` beside the staged run remembers which manifest the remote held when the two
    last agreed, and the sha256 of every file curate put there. When the remote still holds that
    manifest, the staged folder is the same run or newer (a publish that was cut short, a run
    that was killed and resumes); when the remote changed, the staged folder is rebuilt from it.
    """

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.path = filesystem(self.url)
        key = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.home = staging_root() / key
        self.local = self.home / "run"
        self.foreign: str | None = None
        self.sizes: dict[str, int] = {}  # what the prefix holds: relative name -> bytes
        self._state_path = self.home / "state.json"
        self.state: dict[str, Any] = {"url": self.url, "manifest": None, "files": {}}
        self._sync()

    def _remote(self, relative: str) -> str:
        return f"{self.path}/{relative}"

    def _sync(self) -> None:
        with failures(self.url):
            self.fs.invalidate_cache()
            if self.fs.isfile(self.path):
                self.foreign = f"{self.url} is an object, not a prefix (choose another --out)"
                found: dict[str, Any] = {}
            else:
                found = self.fs.find(self.path, detail=True)
                _require_bucket(self.fs, self.path, self.url)
            listing = {PurePosixPath(p).relative_to(self.path).as_posix(): info["size"] for p, info in found.items()}
            self.sizes = listing
            remote_manifest = self.fs.cat_file(self._remote(MANIFEST)) if MANIFEST in listing else None
        if listing and MANIFEST not in listing and MARKER not in listing:
            self.foreign = (
                f"{self.url} exists, is not empty and is not a curate run directory; curate writes only "
                "into a new or empty prefix or an earlier run (choose another --out)"
            )
        remote_sha = hashlib.sha256(remote_manifest).hexdigest() if remote_manifest is not None else None
        saved = self._saved_state()
        if saved is not None and saved.get("url") == self.url and saved.get("manifest") == remote_sha:
            self.state = saved
            return
        self._rebuild(remote_manifest, remote_sha)

    def _saved_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _rebuild(self, remote_manifest: bytes | None, remote_sha: str | None) -> None:
        """Stage the remote run afresh (the staged folder is curate's own cache)."""
        from curate.io.atomic import write_bytes

        if self.home.exists():
            shutil.rmtree(self.home)
        self.local.mkdir(parents=True)
        files: dict[str, str] = {}
        if remote_manifest is not None:
            try:
                manifest = json.loads(remote_manifest)
            except json.JSONDecodeError as exc:
                raise CurateError(f"{self._remote_url(MANIFEST)}:{exc.lineno}: broken manifest: {exc.msg}") from None
            self._fetch_outputs("", manifest, files)
            if MARKER in self.sizes:
                with failures(self._remote_url(MARKER)):
                    marker = self.fs.cat_file(self._remote(MARKER))
                write_bytes(self.local / MARKER, marker)
                files[MARKER] = hashlib.sha256(marker).hexdigest()
            write_bytes(self.local / MANIFEST, remote_manifest, durable=True)
            files[MANIFEST] = remote_sha or ""
        self.state = {"url": self.url, "manifest": remote_sha, "files": files}
        self._save_state()

    def _fetch_outputs(self, folder: str, manifest: dict[str, Any], files: dict[str, str]) -> None:
        """Download the files ``manifest`` lists, and the runs nested in it (curate-alpaca's
        ``selections/NAME``, each with its own manifest), into the staged folder."""
        from curate.io.atomic import write_bytes

        for group in ("data", "rejects", "annotations"):
            for entry in manifest.get("outputs", {}).get(group, []):
                name = _inside(folder, entry["path"], self.url)
                target = self.local / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with failures(self._remote_url(name)):
                    self.fs.get_file(self._remote(name), str(target))
                files[name] = entry["sha256"]
        for nested in (manifest.get("selections") or {}).values():
            name = _inside(folder, f"{nested}/{MANIFEST}", self.url)
            if name not in self.sizes:
                continue  # gone from the prefix: the run no longer verifies, and a rerun redoes it
            with failures(self._remote_url(name)):
                body = self.fs.cat_file(self._remote(name))
            try:
                inner = json.loads(body)
            except json.JSONDecodeError as exc:
                raise CurateError(f"{self._remote_url(name)}:{exc.lineno}: broken manifest: {exc.msg}") from None
            self._fetch_outputs(str(PurePosixPath(name).parent), inner, files)
            write_bytes(self.local / name, body)
            files[name] = hashlib.sha256(body).hexdigest()

    def _remote_url(self, relative: str) -> str:
        return f"{self.url}/{relative}"

    def _save_state(self) -> None:
        from curate.io.atomic import write_json

        write_json(self._state_path, self.state)

    def claim(self) -> None:
        if self.foreign:
            raise CurateError(self.foreign)

    def committed(self) -> bool:
        """True when the staged manifest is the one the remote holds (not one still to upload)."""
        from curate.io.atomic import sha256_file

        staged = self.local / MANIFEST
        return self.state["manifest"] is not None and staged.is_file() and sha256_file(staged) == self.state["manifest"]

    def publish(self) -> None:
        """Upload what changed in the staged run: marker, then the other files, manifest last.

        Objects the previous publish (or the previous manifest) put there and the staged run no
        longer has are deleted after the new manifest is in place; nothing else is touched.
        """
        from curate.io.atomic import TMP_MARK, sha256_file

        self.claim()
        staged = {
            p.relative_to(self.local).as_posix(): p
            for p in sorted(self.local.rglob("*"))
            if p.is_file() and TMP_MARK not in p.as_posix() and ".checkpoints" not in p.parts
        }
        if MANIFEST not in staged:
            return
        hashes = {name: sha256_file(path) for name, path in staged.items()}
        before = dict(self.state["files"])
        # The marker first; every manifest after the files it lists (a nested run's too); the run's own last.
        order = sorted(staged, key=lambda name: (name != MARKER, name == MANIFEST, name.endswith(f"/{MANIFEST}"), name))
        for name in order:
            size = staged[name].stat().st_size
            if before.get(name) == hashes[name] and self.sizes.get(name) == size:
                continue  # already there, as curate put it
            with failures(self._remote_url(name)):
                self.fs.put_file(str(staged[name]), self._remote(name))
            self.sizes[name] = size
            self.state["files"][name] = hashes[name]
            if name == MANIFEST:
                self.state["manifest"] = hashes[name]
            self._save_state()
        for name in sorted(set(before) - set(staged)):
            with failures(self._remote_url(name)), contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._remote(name))
            self.sizes.pop(name, None)
            del self.state["files"][name]
        self._save_state()


def _inside(folder: str, relative: str, url: str) -> str:
    """``folder/relative`` as a name inside the run, refusing a manifest entry that points outside it."""
    name = PurePosixPath(folder, relative)
    if name.is_absolute() or ".." in name.parts:
        raise CurateError(f"{url}/{MANIFEST}: lists {relative!r}, which is outside the run directory")
    return name.as_posix()


def holds_run(url: str) -> bool:
    """True when ``url`` is a prefix with a committed curate run (its ``manifest.json``)."""
    fs, path = filesystem(url)
    if any(c in path for c in _GLOB_CHARS):
        return False
    with failures(url):
        return bool(fs.isfile(f"{path.rstrip('/')}/{MANIFEST}"))


_RUNS: dict[str, RemoteRun] = {}


def remote_run(url: str) -> RemoteRun:
    """The staged copy of the run at ``url``, synced with the remote once per process."""
    key = url.rstrip("/")
    if key not in _RUNS:
        _RUNS[key] = RemoteRun(key)
    return _RUNS[key]
