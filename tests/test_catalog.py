"""The dataset registry: resolution order, download with checksum, mismatch errors."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from curate.io import catalog


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 standing in for the upstream host."""
    root = tmp_path / "upstream"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_registry_names_upstream_license_and_checksum() -> None:
    alpaca = catalog.lookup("alpaca")
    assert alpaca and alpaca.records == 52002 and alpaca.license == "cc-by-nc-4.0"
    assert alpaca.url and "tatsu-lab/stanford_alpaca" in alpaca.url and len(alpaca.sha256) == 64
    for name in ("alpaca-seed-tasks", "alpaca-eval", "dolly", "lima"):
        entry = catalog.lookup(name)
        assert entry and entry.license and (entry.sha256 or entry.git_blob)


def test_data_dir_comes_before_cache(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    (cache).mkdir()
    shutil.copy(data_dir / "alpaca_seed_tasks.jsonl", cache / "alpaca_seed_tasks.jsonl")
    monkeypatch.setenv("CURATE_CACHE", str(cache))
    seeds = catalog.lookup("alpaca-seed-tasks")
    assert catalog.resolve(seeds) == data_dir / "alpaca_seed_tasks.jsonl"
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "empty"))
    assert catalog.resolve(seeds) == cache / "alpaca_seed_tasks.jsonl"


def test_download_verifies_and_caches(
    local_server: tuple[str, Path], data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = local_server
    shutil.copy(data_dir / "alpaca_seed_tasks.jsonl", root / "seed_tasks.jsonl")
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    seeds = replace(catalog.lookup("alpaca-seed-tasks"), url=f"{url}/seed_tasks.jsonl")
    path = catalog.resolve(seeds)
    assert path == tmp_path / "cache" / "alpaca_seed_tasks.jsonl"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == seeds.sha256
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_download_with_wrong_checksum_leaves_nothing(
    local_server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = local_server
    (root / "seed_tasks.jsonl").write_text('{"tampered": true}\n')
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    seeds = replace(catalog.lookup("alpaca-seed-tasks"), url=f"{url}/seed_tasks.jsonl")
    with pytest.raises(catalog.ChecksumError, match="checksum mismatch"):
        catalog.resolve(seeds)
    assert not any((tmp_path / "cache").iterdir())


def test_corrupt_local_copy_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "alpaca_seed_tasks.jsonl").write_text("{}\n")
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path))
    with pytest.raises(catalog.ChecksumError, match=str(tmp_path)):
        catalog.resolve(catalog.lookup("alpaca-seed-tasks"))


def test_dead_endpoint_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path))
    dead = replace(catalog.lookup("alpaca-seed-tasks"), url="http://127.0.0.1:9/seed_tasks.jsonl")
    with pytest.raises(catalog.CurateError, match="cannot download dataset 'alpaca-seed-tasks'"):
        catalog.resolve(dead)


def test_git_blob_checksum(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"hello\n")
    assert catalog.git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_ingest_refuses_a_tampered_registry_file(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curate.io.ingest import Ingest

    tampered = (data_dir / "alpaca_seed_tasks.jsonl").read_text().replace("breakfast", "lunch", 1)
    (tmp_path / "alpaca_seed_tasks.jsonl").write_text(tampered)
    monkeypatch.setenv("CURATE_DATA_DIR", str(tmp_path))
    with pytest.raises(catalog.ChecksumError, match="checksum mismatch"):
        list(Ingest(["alpaca-seed-tasks"]).batches())
