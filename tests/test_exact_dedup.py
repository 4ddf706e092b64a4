"""Exact dedup on the real posts corpus and on constructed cases."""

from __future__ import annotations

import polars as pl

from curate.dedup.exact import ExactDedupParams, exact_duplicates
from curate.io.ingest import Ingest, IngestOptions
from curate.records.normalize import TextNormalization
from curate.records.schema import conform, empty_records
from tests.conftest import text_records


def test_social_posts_exact_duplicates(data_dir: object) -> None:
    job = Ingest(["social-posts"], IngestOptions())
    records = pl.concat([b[0] for b in job.batches()])
    assert job.n_in == 5928 and job.reasons == {"empty": 7}
    result = exact_duplicates(records)
    result.check()
    assert result.kept.height == 824
    assert result.rejects.height == 5097
    kept_ids = set(result.kept["id"])
    assert set(result.rejects["duplicate_of"]) <= kept_ids
    assert result.annotations is not None and result.annotations.height == records.height


def test_normalization_makes_duplicates() -> None:
    records = text_records(["Hello  World", "hello world", "ＨＥＬＬＯ\u00a0world\n", "hello, world"])
    result = exact_duplicates(records)
    assert result.kept["id"].to_list() == ["r0", "r3"]
    assert result.rejects["duplicate_of"].to_list() == ["r0", "r0"]
    assert result.rejects["reason"].to_list() == ["exact_duplicate"] * 2
    strict = exact_duplicates(records, ExactDedupParams(TextNormalization("none", False, False)))
    assert strict.kept.height == 4


def test_instruction_fields_do_not_merge_across_boundaries() -> None:
    frame = conform(
        pl.DataFrame(
            {
                "id": ["a", "b"],
                "kind": ["instruction"] * 2,
                "instruction": ["Say hi", "Say"],
                "input": ["", "hi"],
                "output": ["hi", "hi"],
            }
        )
    )
    assert exact_duplicates(frame).kept.height == 2


def test_empty_input() -> None:
    result = exact_duplicates(empty_records())
    result.check()
    assert result.kept.height == 0


def test_vectorized_normalization_equals_python() -> None:
    texts = ["A\tb\u2003 c", "ﬁ  Ω\r\nx", "plain", "", "  lead\x0btrail  ", "É\u0301 Ａ"]
    norm = TextNormalization()
    assert norm.series(pl.Series(texts)).to_list() == [norm.apply(t) for t in texts]


def test_instruction_duplicates_need_all_three_fields() -> None:
    frame = conform(
        pl.DataFrame(
            {
                "id": ["a", "b", "c", "d"],
                "kind": ["instruction"] * 4,
                "instruction": ["Name a color.", "name  a COLOR.", "Name a color.", "Name a fruit."],
                "input": ["", "", "", ""],
                "output": ["Blue.", "blue.\n", "Red.", "Blue."],
            }
        )
    )
    result = exact_duplicates(frame)
    assert result.kept["id"].to_list() == ["a", "c", "d"]
    assert result.rejects["duplicate_of"].to_list() == ["a"]
    assert result.annotations["exact_copies"].to_list() == [2, 2, 1, 1]
