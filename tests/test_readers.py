"""Each reader on real files, and every kind of bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
import zstandard

from curate.errors import InputError
from curate.io.ingest import Ingest, IngestOptions

ALPACA_ROWS = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well."},
    {"instruction": "Translate to French.", "input": "Hello", "output": "Bonjour"},
]


def ingest(*sources: str | Path, **options: object) -> tuple[pl.DataFrame, pl.DataFrame, Ingest]:
    job = Ingest([str(s) for s in sources], IngestOptions(**options))
    batches = list(job.batches())
    records = pl.concat([b[0] for b in batches])
    rejects = pl.concat([b[1] for b in batches])
    assert job.n_in == records.height + rejects.height
    return records, rejects, job


def test_json_array_alpaca(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ALPACA_ROWS, indent=4))
    records, rejects, job = ingest(path)
    assert records["instruction"].to_list() == [r["instruction"] for r in ALPACA_ROWS]
    assert records["source_id"].to_list() == ["0", "1"]
    assert records["text"][1] == "Translate to French.\n\nHello\n\nBonjour"
    assert records["text"][0] == "Give three tips for staying healthy.\n\nEat well."
    assert rejects.height == 0 and job.inputs[0]["format"] == "alpaca"


def test_jsonl_plain_gzip_and_zstd_agree(tmp_path: Path) -> None:
    lines = "\n".join(json.dumps(r) for r in ALPACA_ROWS) + "\n"
    (tmp_path / "a.jsonl").write_text(lines)
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as handle:
        handle.write(lines)
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    frames = [ingest(tmp_path / name)[0] for name in ("a.jsonl", "b.jsonl.gz", "c.jsonl.zst")]
    assert frames[0]["id"].to_list() == frames[1]["id"].to_list() == frames[2]["id"].to_list()


def test_parquet_and_csv(tmp_path: Path) -> None:
    pl.DataFrame(ALPACA_ROWS).write_parquet(tmp_path / "a.parquet")
    pl.DataFrame(ALPACA_ROWS).write_csv(tmp_path / "a.csv")
    pl.DataFrame(ALPACA_ROWS).write_csv(tmp_path / "a.tsv", separator="\t")
    ids = [ingest(tmp_path / n)[0]["id"].to_list() for n in ("a.parquet", "a.csv", "a.tsv")]
    assert ids[0] == ids[1] == ids[2]


def test_text_directory_and_delimiter(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("second document")
    (folder / "a.txt").write_text("first document")
    records, _, _ = ingest(folder)
    assert records["text"].to_list() == ["first document", "second document"]
    assert records["source_id"].to_list() == ["a.txt:0", "b.txt:0"]
    assert records["kind"].unique().to_list() == ["text"]

    split = tmp_path / "posts.txt"
    split.write_text("one\n------\ntwo\nlines\n------\n------\nthree\n")
    records, rejects, _ = ingest(split, delimiter="------")
    assert records["text"].to_list() == ["one", "two\nlines", "three"]
    assert rejects["reason"].to_list() == ["empty"]
    assert rejects["location"].to_list() == [f"{split}:6"]


def test_text_field_and_id_field(tmp_path: Path) -> None:
    path = tmp_path / "web.jsonl"
    path.write_text('{"doc": "hello world", "url": "u1", "key": "k1"}\n{"doc": "bye", "key": "k2"}\n')
    records, _, _ = ingest(path, text_field="doc", id_field="key")
    assert records["source_id"].to_list() == ["k1", "k2"]
    assert json.loads(records["meta"][0]) == {"url": "u1"}


def test_bad_rows_become_rejects_with_location(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        b'{"instruction": "ok", "input": "", "output": "fine"}\n'
        b'{"instruction": "broken", \n'
        b'{"instruction": 5, "output": "x"}\n'
        b'{"output": "no instruction"}\n'
        b'{"instruction": "caf\xe9", "output": "latin-1 bytes"}\n'
        b'{"instruction": " ", "output": ""}\n'
        b"[1, 2]\n"
        b'{"instruction": "big", "output": "' + b"x" * 200 + b'"}\n'
    )
    records, rejects, job = ingest(path, max_chars=100)
    assert records.height == 1
    got = dict(zip(rejects["location"].to_list(), rejects["reason"].to_list(), strict=True))
    assert got == {
        f"{path}:2": "malformed_json",
        f"{path}:3": "wrong_type",
        f"{path}:4": "missing_field",
        f"{path}:5": "invalid_utf8",
        f"{path}:6": "empty",
        f"{path}:7": "not_an_object",
        f"{path}:8": "too_large",
    }
    assert rejects.filter(pl.col("reason") == "malformed_json")["text"][0] == '{"instruction": "broken", '
    assert all(rejects["stage"] == "ingest") and rejects["detail"].null_count() == 0
    assert job.stage_record()["rejected_by_reason"]["wrong_type"] == 1


def test_json_array_bad_element_is_located(tmp_path: Path) -> None:
    rows = [*ALPACA_ROWS, {"instruction": ["not", "text"], "output": "x"}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(rows, indent=2))
    records, rejects, _ = ingest(path)
    assert records.height == 2
    assert rejects["reason"].to_list() == ["wrong_type"]
    assert rejects["location"][0] == f"{path}:12"


def test_strict_stops_at_first_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"instruction": "a", "output": "b"}\nnot json\n')
    with pytest.raises(InputError, match=rf"{path}:2: malformed_json"):
        ingest(path, strict=True)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.parquet", b'{"a": 1}\n', "not a Parquet file"),
        ("x.jsonl.gz", b'{"a": 1}\n', "not a gzip file"),
        ("x.json", b"hello there", "not JSON"),
        ("x.json", b'[{"instruction": "a", "output": "b"},\n {"instruction": ', "malformed JSON"),
        ("x.jsonl", b"\x1f\x8b\x08\x00binary", "looks compressed"),
        ("x.docx", b"PK\x03\x04", "unknown file type"),
        ("x.jsonl", b"", "file is empty"),
    ],
)
def test_file_that_is_not_what_it_says(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as info:
        ingest(path)
    assert str(path) in str(info.value)


def test_unknown_source(tmp_path: Path) -> None:
    from curate.errors import CurateError

    with pytest.raises(CurateError, match="neither a file nor a registered dataset"):
        ingest("no-such-dataset")
