"""No user file is ever lost: curate writes only into folders it owns and deletes only its own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli


def _user_folder(root: Path) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "data" / "mine.parquet").write_bytes(b"the user's own shard")
    (root / "README.md").write_text("# my notes\n")
    return root


def test_a_folder_that_is_not_a_run_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = _user_folder(tmp_path / "mine")
    done = run_cli("ingest", "alpaca-seed-tasks", "--out", str(folder), "--quiet", check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"curate: error: {folder} exists, is not empty and is not a curate run directory; "
        "curate writes only into a new or empty folder or an earlier run (choose another --out)"
    ]
    assert (folder / "data" / "mine.parquet").read_bytes() == b"the user's own shard"
    assert (folder / "README.md").read_text() == "# my notes\n"
    assert sorted(p.name for p in folder.rglob("*")) == ["README.md", "data", "mine.parquet"]


def test_an_empty_folder_is_fine(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(folder), "--quiet")
    assert (folder / "manifest.json").is_file() and (folder / ".curate-run").is_file()


def test_replacing_a_run_needs_overwrite_and_a_rerun_stays_up_to_date(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--quiet")
    first = (run / "manifest.json").read_text()
    assert "up to date" in run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--quiet").stdout
    refused = run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--max-chars", "400", "--quiet", check=False)
    assert refused.returncode == 2
    assert "pass --overwrite to replace it" in refused.stderr and "Traceback" not in refused.stderr
    assert (run / "manifest.json").read_text() == first
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--max-chars", "400", "--overwrite", "--quiet")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"][0]["rejected_by_reason"].get("too_large", 0) > 0


def test_a_users_file_inside_a_run_is_never_deleted(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_cli("dedup", "--exact", "alpaca-seed-tasks", "--out", str(run), "--quiet")
    (run / "rejects" / "notes.parquet").write_bytes(b"mine")
    # A rerun without the dedup stage drops exact_dedup's rejects, which curate wrote, and nothing else.
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--overwrite", "--quiet")
    assert not (run / "rejects" / "exact_dedup.parquet").exists()
    assert (run / "rejects" / "notes.parquet").read_bytes() == b"mine"
    (run / "data" / "mine.parquet").write_bytes(b"mine too")
    refused = run_cli(
        "ingest", "alpaca-seed-tasks", "--out", str(run), "--max-chars", "500", "--overwrite", check=False
    )
    assert refused.returncode == 2 and "mine.parquet was not written by curate" in refused.stderr
    assert (run / "data" / "mine.parquet").read_bytes() == b"mine too"


def test_a_killed_run_is_still_ours(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / ".curate-run").write_text('{"format": "curate-run/1"}')
    (run / "rejects").mkdir()
    (run / "rejects" / ".tmp-ingest.parquet").write_bytes(b"half-written")
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--quiet")
    assert (run / "manifest.json").is_file() and not (run / "rejects" / ".tmp-ingest.parquet").exists()


def test_the_python_api_refuses_a_users_folder(tmp_path: Path) -> None:
    import curate
    from curate.errors import CurateError

    folder = _user_folder(tmp_path / "mine")
    with pytest.raises(CurateError, match="is not a curate run directory"):
        curate.Pipeline("p").filter("length", min_words={"output": 1}).run("alpaca-seed-tasks", out=folder)
    assert (folder / "data" / "mine.parquet").read_bytes() == b"the user's own shard"


def test_a_delimiter_that_starts_with_dashes(tmp_path: Path, data_dir: Path) -> None:
    posts = data_dir / "corpora" / "social_posts.txt"
    done = run_cli("ingest", str(posts), "--delimiter", "------", "--out", str(tmp_path / "posts"), "--quiet")
    assert "5,928 records in" in done.stdout


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (["train", "RUN", "--max-steps", "1", "--eval-n", "1"], "training run"),
        (["ablate", "--preset", "ci"], "ablation"),
    ],
)
def test_training_and_ablation_outputs_refuse_a_users_folder(tmp_path: Path, command: list[str], kind: str) -> None:
    run = tmp_path / "run"
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(run), "--quiet")
    folder = _user_folder(tmp_path / "mine")
    args = [str(run) if part == "RUN" else part for part in command]
    done = run_cli(*args, "--out", str(folder), "--quiet", check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"curate: error: {folder} exists, is not empty and is not a curate {kind} directory; "
        f"curate writes only into a new or empty folder or an earlier {kind} (choose another --out)"
    ]
    assert sorted(p.name for p in folder.rglob("*")) == ["README.md", "data", "mine.parquet"]
