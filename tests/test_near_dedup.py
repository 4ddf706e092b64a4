"""Near-duplicate detection: datasketch equality, clusters, chains, bad input, incremental mode."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH
from datasketch.lsh import _optimal_param

from curate.dedup.index import open_index
from curate.dedup.lsh import optimal_params
from curate.dedup.minhash import (
    ShingleHash,
    ShingleParams,
    normalize_for_shingles,
    permutations,
    shingle,
    signatures,
    text_token_hashes,
    token_hash32,
)
from curate.dedup.near import NearDedupParams, near_duplicates
from curate.dedup.planted import planted_records, score
from curate.records.schema import KIND_TEXT, conform
from tests.conftest import run_cli


def records(texts: list[str], ids: list[str] | None = None) -> pl.DataFrame:
    ids = ids or [f"d{i:04d}" for i in range(len(texts))]
    return conform(pl.DataFrame({"id": ids, "source_id": ids, "kind": [KIND_TEXT] * len(texts), "text": texts}))


def python_shingles(text: str, params: ShingleParams) -> list[bytes]:
    norm = unicodedata.normalize("NFKC", text).lower()
    if params.mode == "word":
        tokens, sep = norm.split(), " "
    else:
        tokens, sep = list(" ".join(norm.split())), ""
    tokens = tokens[: params.max_shingles + params.ngram - 1]
    n = params.ngram
    if not tokens:
        return []
    if len(tokens) < n:
        return [sep.join(tokens).encode()]
    return [sep.join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)]


EDGE_TEXTS = [
    "",
    "   \n\t ",
    "word",
    "two words",
    "Ａｂｃ ＤＥＦ full-width and ﬁ ligatures here now",
    "Mixed 漢字 script ТЕКСТ text ütf-8 — dashes",
    "The quick brown fox jumps over the lazy dog " * 3,
]


@pytest.mark.parametrize("mode", ["word", "char"])
def test_signatures_equal_datasketch(mode: str, data_dir: Path) -> None:
    seeds = [json.loads(line)["instruction"] for line in (data_dir / "alpaca_seed_tasks.jsonl").open()]
    texts = seeds[:60] + EDGE_TEXTS
    params = ShingleParams(ngram=5 if mode == "word" else 4, mode=mode)
    a, b = permutations(128, 1)
    ours = signatures(shingle(pl.Series(texts), params), a, b)
    hashfunc = ShingleHash(mode)
    for text, signature in zip(texts, ours, strict=True):
        theirs = MinHash(num_perm=128, seed=1, hashfunc=hashfunc)
        theirs.update_batch(python_shingles(text, params))
        assert theirs.hashvalues.dtype == signature.dtype
        assert np.array_equal(theirs.hashvalues, signature), text


def reference_tokens(texts: list[str | None], params: ShingleParams) -> list[list[str]]:
    """Tokens as polars' regex sees them (whitespace: Unicode White_Space), the kernel's definition."""
    normalized = normalize_for_shingles(pl.Series(texts, dtype=pl.String))
    limit = params.max_shingles + params.ngram - 1
    if params.mode == "word":
        return [t[:limit] for t in normalized.str.extract_all(r"\S+").to_list()]
    collapsed = normalized.str.replace_all(r"\s+", " ").str.strip_chars().to_list()
    return [list(t[:limit]) for t in collapsed]


KERNEL_TEXTS = [
    None,
    "",
    " \u3000 ",
    "a",
    "a\u00a0b\u2003c\u3000d\u0085e\u1680f\u2028g\u2029h\u202fi\u205fj\x0bk\x0cl\rm\x1cn\x1fo \u200bp\ufeffq",
    "  lead and   trail  ",
    "x" * 70 + " " + "y" * 119 + " z",  # tokens of 2 and 3 SHA-1 blocks
    "日本語のテキスト\u3000です 😀 emoji 🎉🎉 ütf-8 — ok",
    "one two three four five six seven eight nine ten eleven twelve",
]


@pytest.mark.parametrize(
    "params",
    [
        ShingleParams(),
        ShingleParams(ngram=4, mode="char"),
        ShingleParams(ngram=3, max_shingles=2),
        ShingleParams(ngram=2, mode="char", max_shingles=3),
        ShingleParams(ngram=1),
    ],
)
def test_token_kernel_matches_reference(params: ShingleParams) -> None:
    # 6,000 distinct words: the kernel's token table (4,096 slots at first) has to grow
    rng = random.Random(3)
    words = [f"w{i}" + "é" * (i % 3) for i in range(6000)]
    texts = KERNEL_TEXTS + [" ".join(rng.choice(words) for _ in range(rng.randrange(0, 40))) for _ in range(500)]
    th, counts = text_token_hashes(pl.Series(texts, dtype=pl.String), params, workers=2)
    tokens = reference_tokens(texts, params)
    assert counts.tolist() == [len(t) for t in tokens]
    assert th.tolist() == [token_hash32(tok.encode()) for text in tokens for tok in text]
    # and the signatures, shingle by shingle, equal datasketch's
    a, b = permutations(64, 5)
    ours = signatures(shingle(pl.Series(texts, dtype=pl.String), params, workers=2), a, b, workers=2)
    sep = " " if params.mode == "word" else ""
    hashfunc = ShingleHash(params.mode)
    for text_tokens, signature in zip(tokens, ours, strict=True):
        n = params.ngram
        if len(text_tokens) < n:
            grams = [text_tokens] if text_tokens else []
        else:
            grams = [text_tokens[i : i + n] for i in range(len(text_tokens) - n + 1)][: params.max_shingles]
        theirs = MinHash(num_perm=64, seed=5, hashfunc=hashfunc)
        theirs.update_batch([sep.join(g).encode() for g in grams])
        assert np.array_equal(theirs.hashvalues, signature), text_tokens


def test_signatures_interoperate_with_lean_minhash_and_lsh() -> None:
    texts = [
        "the cat sat on the mat and looked around the room quietly",
        "the cat sat on the mat and looked around the room quietly today",
    ]
    a, b = permutations(128, 7)
    ours = signatures(shingle(pl.Series(texts), ShingleParams()), a, b)
    lean = LeanMinHash(MinHash(seed=7, hashvalues=ours[0], scheme="affine32"))
    theirs = MinHash(num_perm=128, seed=7, hashfunc=ShingleHash())
    theirs.update_batch(python_shingles(texts[1], ShingleParams()))
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    lsh.insert("ours", lean)
    assert lsh.query(theirs) == ["ours"]
    assert abs(lean.jaccard(theirs) - (ours[0] == ours[1]).mean()) < 1e-12


@pytest.mark.parametrize(
    ("threshold", "num_perm", "weights"), [(0.8, 128, (0.5, 0.5)), (0.7, 64, (0.05, 0.95)), (0.9, 256, (0.3, 0.7))]
)
def test_optimal_params_match_datasketch(threshold: float, num_perm: int, weights: tuple[float, float]) -> None:
    assert optimal_params(threshold, num_perm, *weights) == _optimal_param(threshold, num_perm, *weights)


BASE = (
    "Large language models are trained on web text that contains many copies of the same "
    "documents and removing them makes training cheaper and the resulting models better at recall "
    "because the model sees more distinct examples per step while duplicated passages are memorised "
    "instead of generalised which wastes compute and leaks evaluation data into the training mix"
)


def test_clusters_on_hand_built_cases() -> None:
    texts = [
        BASE,
        BASE.replace("cheaper", "less costly"),
        "A completely different sentence about cooking pasta with garlic olive oil and fresh basil leaves",
        BASE + " indeed",
        "",
    ]
    result = near_duplicates(records(texts))
    result.check()
    ann = result.annotations
    assert ann.columns == ["id", "source_id", "cluster_id", "cluster_size", "duplicate_of", "similarity"]
    assert ann["cluster_id"].to_list() == ["d0000", "d0000", "d0002", "d0000", "d0004"]
    assert ann["cluster_size"].to_list() == [3, 3, 1, 3, 1]
    assert ann["duplicate_of"].to_list() == [None, "d0000", None, "d0000", None]
    assert all(s >= 0.8 for s in ann["similarity"].drop_nulls())
    assert result.rejects["reason"].to_list() == ["near_duplicate"] * 2
    assert result.stats["no_shingles"] == 1


def test_keep_longest_and_by_score() -> None:
    texts = [BASE, BASE + " and more", BASE + " and more words at the end"]
    longest = near_duplicates(records(texts), NearDedupParams(threshold=0.7, keep="longest"))
    assert longest.kept["id"].to_list() == ["d0002"]
    scores = pl.DataFrame({"id": ["d0000", "d0001", "d0002"], "quality": [0.1, 0.9, 0.5]})
    best = near_duplicates(records(texts), NearDedupParams(threshold=0.7, keep="score:quality"), scores=scores)
    assert best.kept["id"].to_list() == ["d0001"]


def test_a_chain_of_weak_edges_does_not_make_a_giant_cluster() -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(5000)]
    words = [rng.choice(vocab) for _ in range(40)]
    chain = []
    for _ in range(300):  # slide by one word: J(i, i+k) = (36-k)/(36+k), 0.76 at k=5, 0.06 at k=30
        chain.append(" ".join(words))
        words = [*words[1:], rng.choice(vocab)]
    result = near_duplicates(records(chain), NearDedupParams(threshold=0.75))
    result.check()
    # The edges connect the whole chain (union-find would make one cluster of 300) ...
    assert result.stats["verified_edges"] >= 299
    # ... but every cluster is a leader and the documents within 0.75 of it.
    sizes = result.annotations["cluster_size"]
    assert sizes.max() <= 6
    assert all(s >= 0.75 for s in result.annotations["similarity"].drop_nulls())


def test_bad_input_is_handled_by_rule() -> None:
    huge = " ".join(f"token{i}" for i in range(300_000))
    texts = ["", "  ", "one", "漢字のテキストです", huge, huge + " tail", "a b c"]
    result = near_duplicates(records(texts), NearDedupParams(shingles=ShingleParams(max_shingles=1000)))
    result.check()
    assert result.stats["no_shingles"] == 2
    assert result.stats["truncated"] == 2
    assert result.annotations.filter(pl.col("id") == "d0005")["duplicate_of"].item() == "d0004"
    char = near_duplicates(
        records(["漢字のテキストです", "漢字のテキストでした", ""]),
        NearDedupParams(threshold=0.5, shingles=ShingleParams(ngram=2, mode="char")),
    )
    char.check()
    assert char.kept.height == 2


def test_planted_dev_quality(data_dir: Path) -> None:
    frame = pl.read_parquet(data_dir / "dedup" / "planted_dev.parquet")
    params = NearDedupParams()
    result = near_duplicates(planted_records(frame), params)
    found = score(frame, result.annotations, *params.banding())
    assert found["recall_j08"] >= 0.95
    assert found["false_merge_rate"] <= 0.01


def test_deterministic(data_dir: Path) -> None:
    frame = planted_records(pl.read_parquet(data_dir / "dedup" / "planted_dev.parquet")).head(600)
    first, second = near_duplicates(frame), near_duplicates(frame)
    assert first.annotations.equals(second.annotations)
    assert np.array_equal(first.signatures, second.signatures)


def test_folder_index_incremental(tmp_path: Path, data_dir: Path) -> None:
    frame = planted_records(pl.read_parquet(data_dir / "dedup" / "planted_dev.parquet"))
    params = NearDedupParams()
    index = open_index(str(tmp_path / "index"), params)
    first = near_duplicates(frame.head(1000), params, index=index)
    keep = first.annotations["duplicate_of"].is_null().to_numpy()
    index.add(first.annotations["id"].filter(keep.tolist()).to_list(), first.signatures[keep])
    second = near_duplicates(frame.tail(1000), params, index=open_index(str(tmp_path / "index"), params))
    second.check()
    from_index = second.annotations.filter(pl.col("duplicate_of").is_in(first.kept["id"].to_list()))
    assert from_index.height > 0
    again = near_duplicates(frame.head(1000), params, index=open_index(str(tmp_path / "index"), params))
    assert again.annotations.equals(first.annotations)
    with pytest.raises(Exception, match="index was built with"):
        open_index(str(tmp_path / "index"), NearDedupParams(num_perm=64))


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server on a free port of 127.0.0.1."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("redis-server is not installed (make install sets it up)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0?basename=curate-test"
    proc.terminate()
    proc.wait()


def test_redis_index_is_a_shared_datasketch_lsh(redis_url: str) -> None:
    texts = [BASE, "An unrelated text about gardening tomatoes in small pots on a sunny balcony every summer"]
    params = NearDedupParams()
    index = open_index(redis_url, params)
    first = near_duplicates(records(texts, ["a1", "a2"]), params, index=index)
    index.add(first.kept["id"].to_list(), first.signatures)
    later = near_duplicates(
        records([BASE + " indeed", "something else entirely, nothing like the rest"], ["b1", "b2"]),
        params,
        index=open_index(redis_url, params),
    )
    assert later.annotations["duplicate_of"].to_list() == ["a1", None]
    assert later.annotations["cluster_size"].to_list() == [2, 1]
    # A plain datasketch user reaches the same index.
    bands, rows = params.banding()
    port = int(redis_url.split(":")[2].split("/")[0])
    lsh = MinHashLSH(
        num_perm=128,
        params=(bands, rows),
        storage_config={"type": "redis", "basename": b"curate-test", "redis": {"host": "127.0.0.1", "port": port}},
    )
    probe = MinHash(num_perm=128, seed=1, hashfunc=ShingleHash())
    probe.update_batch(python_shingles(BASE, ShingleParams()))
    assert lsh.query(probe) == ["a1"]


def test_cli_near_and_recipe(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    done = run_cli("dedup", "--exact", "--near", "social-posts", "--out", str(out), "--threshold", "0.7")
    assert "near_dup" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    near = manifest["stages"][-1]
    assert near["name"] == "near_dup" and near["in"] == near["kept"] + near["rejected"]
    assert near["params"]["threshold"] == 0.7 and {"bands", "rows", "giant_clusters"} <= set(near["stats"])
    ann = pl.read_parquet(out / "annotations" / "near_dup.parquet")
    assert ann.height == near["in"] and ann["id"].n_unique() == ann.height
    recipe = tmp_path / "dedup.yaml"
    recipe.write_text("dedup:\n  exact: {}\n  near: {threshold: 0.7, ngram: 5}\n")
    via_recipe = tmp_path / "recipe-run"
    run_cli("dedup", "--recipe", str(recipe), "social-posts", "--out", str(via_recipe))
    assert (via_recipe / "data").exists()
    assert pl.read_parquet(via_recipe / "annotations" / "near_dup.parquet").equals(ann)
    bad = tmp_path / "bad.yaml"
    bad.write_text("dedup:\n  near: {treshold: 0.7}\n")
    failed = run_cli("dedup", "--recipe", str(bad), "social-posts", "--out", str(tmp_path / "x"), check=False)
    assert failed.returncode == 2 and "dedup.near.treshold" in failed.stderr
