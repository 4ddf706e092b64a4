"""The catalogue of bad inputs a user can reach: each one is a reason-coded reject with file:line,
or one clear error naming the file; never a traceback, and in = kept + rejected."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from curate.cli import main

GOOD = {"instruction": "Say hi", "input": "", "output": "Hi"}
LINE = json.dumps(GOOD)


def _gzip_truncated() -> bytes:
    packed = gzip.compress(("\n".join(json.dumps({**GOOD, "output": f"Hi {i}"}) for i in range(400)) + "\n").encode())
    return packed[: len(packed) // 2]


# name -> (bytes, lenient outcome, strict outcome); an outcome is "error" or {reason: count} with the kept count
CASES: dict[str, tuple[bytes, object, object]] = {
    "empty.jsonl": (b"", "error", "error"),
    "blank_lines.jsonl": (b"\n\n   \n\n", "error", "error"),
    "only_spaces.json": (b"   \n", "error", "error"),
    "bom.jsonl": (("\ufeff" + LINE + "\n").encode(), {"kept": 1}, {"kept": 1}),
    "crlf.jsonl": ((LINE + "\r\n" + LINE.replace("Hi", "Yo") + "\r\n").encode(), {"kept": 2}, {"kept": 2}),
    "nul.jsonl": (
        (LINE + "\n").encode() + b'{"instruction": "a\x00b", "input": "", "output": "c"}\n',
        {"kept": 1, "malformed_json": 1},
        "error",
    ),
    "surrogate.jsonl": (
        b'{"instruction": "x \\ud800 y", "input": "", "output": "z"}\n' + (LINE + "\n").encode(),
        {"kept": 1, "malformed_json": 1},
        "error",
    ),
    "wrong_types.jsonl": (
        b'{"instruction": 5, "input": "", "output": "a"}\n{"instruction": ["a"], "input": "", "output": "a"}\n'
        b'{"instruction": {"a": 1}, "input": "", "output": "a"}\n{"instruction": null, "input": "", "output": "a"}\n'
        b"42\n[1,2]\nnull\n" + (LINE + "\n").encode(),
        {"kept": 1, "wrong_type": 3, "missing_field": 1, "not_an_object": 3},
        "error",
    ),
    "trailing_garbage.json": ((json.dumps([GOOD]) + " garbage").encode(), "error", "error"),
    "trailing_garbage_line.jsonl": (
        (LINE + " garbage\n" + LINE + "\n").encode(),
        {"kept": 1, "malformed_json": 1},
        "error",
    ),
    "truncated_array.json": (json.dumps([GOOD, GOOD])[:-20].encode(), "error", "error"),
    "truncated.jsonl.gz": (_gzip_truncated(), "error", "error"),
    "big_line.jsonl": (
        json.dumps({**GOOD, "instruction": "x " * 5_000_000}).encode() + b"\n" + (LINE + "\n").encode(),
        {"kept": 1, "too_large": 1},
        "error",
    ),
    "deep.jsonl": (
        ("[" * 100_000 + "]" * 100_000 + "\n" + LINE + "\n").encode(),
        {"kept": 1, "malformed_json": 1},
        "error",
    ),
    "latin1.jsonl": (
        '{"instruction": "caf\xe9", "input": "", "output": "b"}\n'.encode("latin-1") + (LINE + "\n").encode(),
        {"kept": 1, "invalid_utf8": 1},
        "error",
    ),
    "ragged.csv": (
        b"instruction,input,output\na,b,c\nd,e\nf,g,h,i\n",
        {"kept": 1, "malformed_csv": 1, "missing_field": 1},
        "error",
    ),
    "not_gzip.jsonl.gz": (b"not gzip at all\n", "error", "error"),
    "json_named_parquet.parquet": ((LINE + "\n").encode(), "error", "error"),
    "no_extension": ((LINE + "\n").encode(), "error", "error"),
    "duplicate_ids.jsonl": (
        (json.dumps({"id": "1", **GOOD}) + "\n" + json.dumps({"id": "1", **GOOD}) + "\n").encode(),
        {"kept": 2},
        {"kept": 2},
    ),
}


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, strict: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, lenient, strict_outcome = CASES[name]
    expected = strict_outcome if strict else lenient
    source = tmp_path / name
    source.write_bytes(data)
    out = tmp_path / "run"
    code = main(["ingest", str(source), "--out", str(out), "--quiet", *(["--strict"] if strict else [])])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if expected == "error":
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("curate: error: ") and str(source) in lines[0], err
        assert not (out / "manifest.json").exists()
        return
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    stage = manifest["stages"][0]
    assert stage["in"] == stage["kept"] + stage["rejected"]
    assert stage["kept"] == expected["kept"]
    assert stage["rejected_by_reason"] == {k: v for k, v in expected.items() if k != "kept"}
    if stage["rejected"]:
        import polars as pl

        rejects = pl.read_parquet(out / "rejects" / "ingest.parquet")
        assert rejects.height == stage["rejected"]
        assert all(loc.startswith(f"{source}:") for loc in rejects["location"].to_list())


def test_duplicate_content_gets_distinct_ids(tmp_path: Path) -> None:
    source = tmp_path / "dups.jsonl"
    source.write_text(LINE + "\n" + LINE + "\n")
    assert main(["ingest", str(source), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    import polars as pl

    ids = pl.read_parquet(next((tmp_path / "run" / "data").glob("*.parquet")))["id"].to_list()
    assert len(ids) == 2 and len(set(ids)) == 2 and ids[1] == f"{ids[0]}-2"
