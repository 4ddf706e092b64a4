"""Sources and run directories on s3://, against moto's S3 server on 127.0.0.1 (a real HTTP server).

The server checks credentials: an IAM user's key is made while authentication is off, then it is
turned on (moto's ``/moto-api/reset-auth``), so an unknown key or a wrong secret is refused as AWS
would refuse it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

BUCKET = "bucket"
SHARDS = 3
POSTS_PER_SHARD = 1000
TEXT = ("--text-field", "text")


@dataclass
class S3:
    endpoint: str
    key: str
    secret: str
    client: object
    corpus: Path
    no_commit: dict[str, str]  # credentials refused only for PUT runs/{cut,alpaca}/manifest.json

    def env(self, **changes: str) -> dict[str, str]:
        """What a user sets to reach this server (no ~/.aws files are read)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            **changes,
        }

    def keys(self, prefix: str) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[S3]:
    import boto3
    import httpx
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
            region_name="us-east-1",
        )
        iam.create_user(UserName="curate")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="curate", PolicyName="all", PolicyDocument=json.dumps(policy))
        access = iam.create_access_key(UserName="curate")["AccessKey"]
        # A second key that may write everything but one manifest: a publish that stops before its commit.
        iam.create_user(UserName="no-commit")
        cut = [f"arn:aws:s3:::{BUCKET}/runs/{name}/manifest.json" for name in ("cut", "alpaca")]
        deny = {"Effect": "Deny", "Action": "s3:PutObject", "Resource": cut}
        policy["Statement"].append(deny)
        iam.put_user_policy(UserName="no-commit", PolicyName="all-but", PolicyDocument=json.dumps(policy))
        no_commit = iam.create_access_key(UserName="no-commit")["AccessKey"]
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()  # credentials checked from now
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access["AccessKeyId"],
            aws_secret_access_key=access["SecretAccessKey"],
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        # Real text: the shared social posts, as gzip JSONL shards (the local copies are the same bytes).
        posts = (data_dir / "corpora" / "social_posts.txt").read_text().split("\n------\n")
        corpus = tmp_path_factory.mktemp("s3-local") / "corpus"
        corpus.mkdir()
        for n in range(SHARDS):
            part = posts[n * POSTS_PER_SHARD : (n + 1) * POSTS_PER_SHARD]
            lines = "".join(json.dumps({"text": t, "url": f"post/{n}/{i}"}) + "\n" for i, t in enumerate(part))
            body = gzip.compress(lines.encode(), mtime=0)
            (corpus / f"part-{n:05d}.jsonl.gz").write_bytes(body)
            client.put_object(Bucket=BUCKET, Key=f"corpus/part-{n:05d}.jsonl.gz", Body=body)
        client.put_object(Bucket=BUCKET, Key="corpus/README.txt", Body=b"not a data file: skipped by the pattern")
        client.put_object(Bucket=BUCKET, Key="notes/mine.txt", Body=b"a user's object")
        yield S3(
            endpoint,
            access["AccessKeyId"],
            access["SecretAccessKey"],
            client,
            corpus,
            {"AWS_ACCESS_KEY_ID": no_commit["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": no_commit["SecretAccessKey"]},
        )
    finally:
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"inf")
        server.stop()


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    """One Prefect server for the CLI runs of this module (each `curate run` would otherwise start its own)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_curate_pretrain_from_s3_to_s3_equals_the_local_run(
    s3: S3, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env(PREFECT_API_URL=prefect_api)
    pattern = f"s3://{BUCKET}/corpus/*.jsonl.gz"
    done = run_cli("run", "curate-pretrain", pattern, "--out", f"s3://{BUCKET}/runs/x", env=env)
    assert f"run directory: s3://{BUCKET}/runs/x" in done.stdout

    keys = s3.keys("runs/x/")
    assert {"runs/x/manifest.json", "runs/x/.curate-run", "runs/x/README.md"} <= set(keys)
    manifest = json.loads(s3.read("runs/x/manifest.json"))
    assert [i["path"] for i in manifest["inputs"]] == [f"s3://{BUCKET}/corpus/part-{n:05d}.jsonl.gz" for n in range(3)]
    assert manifest["records"]["in"] == SHARDS * POSTS_PER_SHARD
    assert manifest["records"]["in"] == manifest["records"]["kept"] + manifest["records"]["rejected"]
    assert all(s["in"] == s["kept"] + s["rejected"] for s in manifest["stages"])
    assert manifest["stages"][1]["rejected"] > 0  # the posts repeat: exact dedup removed some
    for group in ("data", "rejects", "annotations"):
        for entry in manifest["outputs"][group]:
            assert _sha256(s3.read(f"runs/x/{entry['path']}")) == entry["sha256"]

    # The same files read from a local folder give the same shards, byte for byte.
    local = tmp_path / "local"
    run_cli("run", "curate-pretrain", str(s3.corpus), "--out", str(local), env=env)
    local_manifest = json.loads((local / "manifest.json").read_text())
    assert [e["path"] for e in local_manifest["outputs"]["data"]] == [e["path"] for e in manifest["outputs"]["data"]]
    for entry in local_manifest["outputs"]["data"]:
        assert _sha256((local / entry["path"]).read_bytes()) == _sha256(s3.read(f"runs/x/{entry['path']}"))
    assert [s["rejected_by_reason"] for s in local_manifest["stages"]] == [
        s["rejected_by_reason"] for s in manifest["stages"]
    ]

    # A rerun from another machine (no staged copy) finds the remote run up to date and uploads nothing.
    before = s3.client.head_object(Bucket=BUCKET, Key="runs/x/manifest.json")["LastModified"]
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "another-machine"))
    again = run_cli("run", "curate-pretrain", pattern, "--out", f"s3://{BUCKET}/runs/x", env=env)
    assert "up to date" in again.stdout + again.stderr
    assert s3.client.head_object(Bucket=BUCKET, Key="runs/x/manifest.json")["LastModified"] == before
    assert s3.keys("runs/x/") == keys


def _alpaca_args(tmp_path: Path) -> tuple[str, ...]:
    """curate-alpaca over the 175 Alpaca seed tasks, keeping 100 and a LIMA-style 40 (the shipped probes: seconds)."""
    recipe = tmp_path / "recipe.yaml"
    default = (Path(__file__).parents[1] / "curate" / "recipes" / "curate-alpaca.yaml").read_text()
    recipe.write_text(default.replace("n: 1000", "n: 40"))
    return ("run", "curate-alpaca", "alpaca-seed-tasks", "--recipe", str(recipe), "--keep", "100")


def _check_outputs(s3: S3, prefix: str, manifest: dict) -> None:
    for group in ("data", "rejects", "annotations"):
        for entry in manifest["outputs"][group]:
            assert _sha256(s3.read(f"{prefix}/{entry['path']}")) == entry["sha256"]


def test_curate_alpaca_to_s3_equals_the_local_run_with_its_selections_and_card(
    s3: S3, prefect_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3.env(PREFECT_API_URL=prefect_api)
    out = f"s3://{BUCKET}/runs/alpaca"
    args = _alpaca_args(tmp_path)
    # First with a key that may not write this run's manifest: the publish stops just before its commit,
    # with everything else (the selection, its manifest after its files, and the card) already up.
    cut = run_cli(*args, "--out", out, check=False, env={**env, **s3.no_commit})
    assert cut.returncode == 2 and f"curate: error: {out}/manifest.json: access denied" in cut.stderr
    uploaded = set(s3.keys("runs/alpaca/"))
    expected = {"runs/alpaca/README.md", "runs/alpaca/selections/lima-1k/manifest.json"}
    assert expected <= uploaded and "runs/alpaca/manifest.json" not in uploaded
    assert run_cli("inspect", out, check=False, env=env).returncode == 2  # no manifest: no run there yet

    # The rerun (same machine, so the same staged run) computes nothing: it finishes the upload.
    done = run_cli(*args, "--out", out, env=env)
    assert "is up to date; nothing to do" in done.stdout + done.stderr
    assert f"run directory: {out}" in done.stdout and f"card: {out}/README.md" in done.stdout
    assert f"selection lima-1k: 40 records in {out}/selections/lima-1k/data/" in done.stdout
    keys = s3.keys("runs/alpaca/")
    manifest = json.loads(s3.read("runs/alpaca/manifest.json"))
    assert manifest["records"] == {"in": 175, "kept": 100, "rejected": 75}
    assert manifest["selections"] == {"lima-1k": "selections/lima-1k"}
    side = json.loads(s3.read("runs/alpaca/selections/lima-1k/manifest.json"))
    assert side["records"] == {"in": 175, "kept": 40, "rejected": 135}
    assert side["parent"]["run"] == out  # the URL, not the staged copy's folder
    _check_outputs(s3, "runs/alpaca", manifest)
    _check_outputs(s3, "runs/alpaca/selections/lima-1k", side)
    assert {"runs/alpaca/README.md", "runs/alpaca/selections/lima-1k/README.md"} <= set(keys)
    assert not any(".checkpoints" in key for key in keys)

    # The same run into a local folder: the same shards, byte for byte, the selection's too, and the same card
    # but for the run's location.
    local = tmp_path / "alpaca"
    run_cli(*args, "--out", str(local), env=env)
    local_manifest = json.loads((local / "manifest.json").read_text())
    local_side = json.loads((local / "selections" / "lima-1k" / "manifest.json").read_text())
    for mine, theirs, prefix in ((local_manifest, manifest, ""), (local_side, side, "selections/lima-1k/")):
        assert [e["path"] for e in mine["outputs"]["data"]] == [e["path"] for e in theirs["outputs"]["data"]]
        for entry in mine["outputs"]["data"]:
            remote = s3.read(f"runs/alpaca/{prefix}{entry['path']}")
            assert _sha256((local / prefix / entry["path"]).read_bytes()) == _sha256(remote)
    card = s3.read("runs/alpaca/README.md").decode()
    assert card.startswith("---\n") and card.replace(out, str(local)) == (local / "README.md").read_text()

    # A rerun from another machine (an empty cache) is up to date: no stage runs, nothing but the card (rewritten,
    # as every run rewrites it) is uploaded again.
    books = [k for k in keys if not k.endswith("README.md") and "/figures/" not in k]
    stamps = {k: s3.client.head_object(Bucket=BUCKET, Key=k)["LastModified"] for k in books}
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "another-machine"))
    again = run_cli(*args, "--out", out, env=env)
    assert "is up to date; nothing to do" in again.stdout + again.stderr
    assert f"selection lima-1k: 40 records in {out}/selections/lima-1k/data/" in again.stdout
    assert s3.keys("runs/alpaca/") == keys
    assert {k: s3.client.head_object(Bucket=BUCKET, Key=k)["LastModified"] for k in stamps} == stamps

    # Other parameters into it need --overwrite; a prefix of a user's objects is refused before any work.
    other = run_cli(*args[:-1], "90", "--out", out, check=False, env=env)
    assert other.returncode == 2 and f"curate: error: {out} already holds a curate run of other inputs" in other.stderr
    assert json.loads(s3.read("runs/alpaca/manifest.json")) == manifest
    refused = run_cli(*args, "--out", f"s3://{BUCKET}/notes", check=False, env=env)
    assert _one_line_error(refused) == (
        f"curate: error: s3://{BUCKET}/notes exists, is not empty and is not a curate run directory; "
        "curate writes only into a new or empty prefix or an earlier run (choose another --out)"
    )
    assert s3.keys("notes/") == ["notes/mine.txt"]


def test_a_stage_command_reads_and_writes_runs_at_urls_and_keeps_its_work_folder_local(s3: S3) -> None:
    from tests.conftest import ROOT

    source, out = f"s3://{BUCKET}/runs/posts", f"s3://{BUCKET}/runs/posts-dedup"
    run_cli("ingest", f"s3://{BUCKET}/corpus/part-00000.jsonl.gz", "--out", source, *TEXT, "--quiet", env=s3.env())
    done = run_cli("dedup", source, "--exact", "--near", "--out-of-core", "--out", out, "--quiet", env=s3.env())
    assert f"run directory: {out}" in done.stdout and f"card: {out}/README.md" in done.stdout
    manifest = json.loads(s3.read("runs/posts-dedup/manifest.json"))
    assert [s["name"] for s in manifest["stages"]] == ["ingest", "exact_dedup", "near_dup"]
    assert manifest["stages"][1]["rejected"] > 0 and manifest["parent"]["run"] == source
    _check_outputs(s3, "runs/posts-dedup", manifest)
    # The out-of-core work folder is in the staged copy: never uploaded, and never a local "s3:/..." folder.
    assert not any(".checkpoints" in key for key in s3.keys("runs/posts-dedup/"))
    assert not (ROOT / "s3:").exists()


def test_manifest_is_the_commit_marker_and_only_curates_objects_are_replaced(s3: S3, tmp_path: Path) -> None:
    env = s3.env()
    out = f"s3://{BUCKET}/runs/i"
    run_cli("ingest", f"s3://{BUCKET}/corpus/part-00000.jsonl.gz", "--out", out, *TEXT, env=env)
    first = json.loads(s3.read("runs/i/manifest.json"))
    assert first["records"]["in"] == POSTS_PER_SHARD
    s3.client.put_object(Bucket=BUCKET, Key="runs/i/mine.txt", Body=b"the user's, inside curate's run")

    # A different run over it (two shards now, --overwrite): old shards replaced, the user's object kept.
    two = [f"s3://{BUCKET}/corpus/part-0000{n}.jsonl.gz" for n in (0, 1)]
    run_cli("ingest", *two, "--out", out, *TEXT, "--max-shard-rows", "700", "--overwrite", env=env)
    second = json.loads(s3.read("runs/i/manifest.json"))
    assert second["records"]["in"] == 2 * POSTS_PER_SHARD
    data = {f"runs/i/{e['path']}" for e in second["outputs"]["data"]}
    assert len(data) > 1 and {k for k in s3.keys("runs/i/data/")} == data
    assert s3.read("runs/i/mine.txt") == b"the user's, inside curate's run"

    # Without its manifest a prefix holds no committed run, whatever else is there.
    s3.client.delete_object(Bucket=BUCKET, Key="runs/i/manifest.json")
    looked = run_cli("inspect", out, check=False, env=s3.env())
    assert looked.returncode == 2
    assert looked.stderr.strip() == f"curate: error: {out} is not a run directory (no manifest.json)"


def test_a_publish_cut_short_is_no_run_and_the_rerun_commits_it(s3: S3, tmp_path: Path) -> None:
    out = f"s3://{BUCKET}/runs/cut"
    source = f"s3://{BUCKET}/corpus/part-00000.jsonl.gz"
    cut = run_cli("ingest", source, "--out", out, *TEXT, "--quiet", check=False, env=s3.env(**s3.no_commit))
    assert _one_line_error(cut).startswith(f"curate: error: {out}/manifest.json: access denied")
    uploaded = s3.keys("runs/cut/")
    assert "runs/cut/data/train-00000-of-00001.parquet" in uploaded and "runs/cut/manifest.json" not in uploaded
    looked = run_cli("inspect", out, check=False, env=s3.env())
    assert looked.stderr.strip() == f"curate: error: {out} is not a run directory (no manifest.json)"

    # The rerun (same machine, so the same staged run) does no work again: it finishes the upload.
    again = run_cli("ingest", source, "--out", out, *TEXT, "--quiet", env=s3.env())
    assert again.stdout.startswith(f"{out} is up to date")
    manifest = json.loads(s3.read("runs/cut/manifest.json"))
    assert manifest["records"]["in"] == POSTS_PER_SHARD
    for entry in manifest["outputs"]["data"] + manifest["outputs"]["rejects"]:
        assert _sha256(s3.read(f"runs/cut/{entry['path']}")) == entry["sha256"]


def _one_line_error(done) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_bad_storage_input_is_one_line_naming_the_url(s3: S3, tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    pattern = f"s3://{BUCKET}/corpus/*.jsonl.gz"

    def ingest(*args: str, **env: str) -> str:
        return _one_line_error(run_cli("ingest", *args, *TEXT, check=False, env=s3.env(**env)))

    line = ingest(
        pattern, "--out", out, "--storage-option", f"endpoint_url=http://127.0.0.1:{_free_port()}", AWS_MAX_ATTEMPTS="1"
    )
    assert line.startswith(f"curate: error: {pattern}: cannot reach the storage endpoint")
    line = ingest(pattern, "--out", out, AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000")
    assert line.startswith(f"curate: error: {pattern}: access denied") and "credentials" in line
    line = ingest(pattern, "--out", out, AWS_SECRET_ACCESS_KEY="not-the-secret")
    assert line.startswith(f"curate: error: {pattern}: access denied")
    assert ingest("s3://no-such-bucket/corpus/*.jsonl.gz", "--out", out) == (
        "curate: error: s3://no-such-bucket/corpus/*.jsonl.gz: bucket 'no-such-bucket' does not exist "
        "(or these credentials cannot see it)"
    )
    assert ingest(f"s3://{BUCKET}/corpus/*.parquet", "--out", out) == (
        f"curate: error: s3://{BUCKET}/corpus/*.parquet: no object matches the pattern"
    )
    # A prefix that holds a user's objects is refused, and they stay.
    assert ingest(pattern, "--out", f"s3://{BUCKET}/notes") == (
        f"curate: error: s3://{BUCKET}/notes exists, is not empty and is not a curate run directory; "
        "curate writes only into a new or empty prefix or an earlier run (choose another --out)"
    )
    assert s3.keys("notes/") == ["notes/mine.txt"] and s3.read("notes/mine.txt") == b"a user's object"
    assert not Path(out).exists()


def test_file_urls_read_and_write_like_local_paths(s3: S3, tmp_path: Path) -> None:
    by_url = run_cli("ingest", f"file://{s3.corpus}/*.jsonl.gz", "--out", f"file://{tmp_path}/by-url", *TEXT)
    assert f"run directory: file://{tmp_path}/by-url" in by_url.stdout
    run_cli("ingest", str(s3.corpus), "--out", str(tmp_path / "by-path"), *TEXT)
    shards = sorted((tmp_path / "by-path" / "data").glob("*.parquet"))
    assert shards and [p.name for p in shards] == sorted(p.name for p in (tmp_path / "by-url" / "data").iterdir())
    for shard in shards:
        assert _sha256(shard.read_bytes()) == _sha256((tmp_path / "by-url" / "data" / shard.name).read_bytes())
    manifest = json.loads((tmp_path / "by-url" / "manifest.json").read_text())
    assert [i["path"] for i in manifest["inputs"]] == [f"file://{s3.corpus}/part-{n:05d}.jsonl.gz" for n in range(3)]


def test_parquet_zstd_and_text_objects_read_like_local_files(s3: S3, tmp_path: Path) -> None:
    import polars as pl
    import zstandard

    folder = tmp_path / "mixed"
    folder.mkdir()
    texts = gzip.decompress((s3.corpus / "part-00002.jsonl.gz").read_bytes()).decode().splitlines()
    rows = [json.loads(line) for line in texts[:300]]
    pl.DataFrame(rows[:100]).write_parquet(folder / "a.parquet")
    lines = "".join(json.dumps(r) + "\n" for r in rows[100:200]).encode()
    (folder / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines))
    (folder / "c.txt").write_text("\n------\n".join(r["text"] for r in rows[200:]))
    for path in sorted(folder.iterdir()):
        s3.client.put_object(Bucket=BUCKET, Key=f"mixed/{path.name}", Body=path.read_bytes())

    args = ("--text-field", "text", "--delimiter", "------")
    run_cli("ingest", f"s3://{BUCKET}/mixed/", "--out", str(tmp_path / "from-s3"), *args, env=s3.env())
    run_cli("ingest", str(folder), "--out", str(tmp_path / "from-folder"), *args)
    remote = json.loads((tmp_path / "from-s3" / "manifest.json").read_text())
    local = json.loads((tmp_path / "from-folder" / "manifest.json").read_text())
    assert [i["count"] for i in remote["inputs"]] == [100, 100, 100]
    assert [i["sha256"] for i in remote["inputs"]] == [i["sha256"] for i in local["inputs"]]
    assert [e["sha256"] for e in remote["outputs"]["data"]] == [e["sha256"] for e in local["outputs"]["data"]]

    # A shard cut short mid-corpus: an error naming the object and line, never a smaller output.
    whole = (s3.corpus / "part-00001.jsonl.gz").read_bytes()
    s3.client.put_object(
        Bucket=BUCKET, Key="cut/part-00000.jsonl.gz", Body=(s3.corpus / "part-00000.jsonl.gz").read_bytes()
    )
    s3.client.put_object(Bucket=BUCKET, Key="cut/part-00001.jsonl.gz", Body=whole[: len(whole) // 2])
    done = run_cli(
        "ingest", f"s3://{BUCKET}/cut/*.jsonl.gz", "--out", str(tmp_path / "cut"), *TEXT, check=False, env=s3.env()
    )
    line = _one_line_error(done)
    assert line.startswith(f"curate: error: s3://{BUCKET}/cut/part-00001.jsonl.gz:")
    assert "truncated or corrupt" in line
    assert not (tmp_path / "cut" / "manifest.json").exists()
