"""Gopher and C4 quality filters: measured values, reasons per rule, bad input, real text, processes."""

from __future__ import annotations

import re
import time

import polars as pl
import pytest

from curate.errors import CurateError
from curate.stages.filter import run_filter
from curate.stages.registry import available, get
from filters import quality
from filters.quality import C4_MEASURES, GOPHER_MEASURES, C4Quality, GopherQuality
from tests.conftest import ingested, text_records

NGRAMS = "alpha beta gamma delta epsilon zeta eta theta iota kappa alpha beta gamma delta epsilon"
PROSE = (
    "The history of the town begins with a small market that grew along the river. Farmers brought "
    "their grain to trade with merchants, and over the years the market became a place where people "
    "met to share news. By the end of the century the town had a school, a library and a hospital "
    "that served the whole valley with care."
)
NO_RULES = {
    name: None
    for name, info in GopherQuality.Params.model_fields.items()
    if name.startswith(("min_", "max_")) and info.default is not None
}


def measured(text: str) -> dict[str, float]:
    return GopherQuality(**NO_RULES).apply(text_records([text])).drop("id", "reject", "detail").row(0, named=True)


def test_gopher_measures_by_hand() -> None:
    short = measured("The cat sat on the mat.")
    assert short["gopher_word_count"] == 6 and short["gopher_stop_words"] == 2
    assert short["gopher_mean_word_length"] == pytest.approx(17 / 6)
    assert short["gopher_top_2gram"] == 0.0  # no 2-gram repeats: not repetitive, however short

    repeated = measured(NGRAMS)  # 73 word characters; "alpha beta gamma delta epsilon" (26) repeats
    assert repeated["gopher_top_2gram"] == pytest.approx(2 * 9 / 73)
    assert repeated["gopher_top_3gram"] == pytest.approx(2 * 14 / 73)
    assert repeated["gopher_top_4gram"] == pytest.approx(2 * 19 / 73)
    assert repeated["gopher_dup_5gram"] == pytest.approx(26 / 73)
    assert repeated["gopher_dup_6gram"] == repeated["gopher_dup_10gram"] == 0.0

    overlapping = measured("a b a b a b a b a b a b")  # every 5-gram from the third word on repeats
    assert overlapping["gopher_dup_5gram"] == pytest.approx(10 / 12)
    assert overlapping["gopher_top_2gram"] == pytest.approx(12 / 12)  # "a b" covers every word once

    lines = measured("x\nx\ny\n\nx")
    assert (lines["gopher_dup_lines"], lines["gopher_dup_line_chars"]) == (0.5, 0.5)
    assert lines["gopher_dup_paragraphs"] == 0.0  # "x\nx\ny" and "x" differ

    paragraphs = measured("Hello there.\n\nHello there.\n\nSomething else entirely here.")
    assert paragraphs["gopher_dup_paragraphs"] == pytest.approx(1 / 3)
    assert paragraphs["gopher_dup_paragraph_chars"] == pytest.approx(12 / 53)

    bullets = measured("- one\n- two\n• three\nfour...\nfive…")
    assert bullets["gopher_bullet_lines"] == pytest.approx(0.6)
    assert bullets["gopher_ellipsis_lines"] == pytest.approx(0.4)
    assert bullets["gopher_ellipsis_ratio"] == pytest.approx(2 / 5)
    assert bullets["gopher_alpha_words"] == pytest.approx(5 / 8)  # "-", "-", "•" are tokens without a letter
    assert bullets["gopher_word_count"] == 5

    hashes = measured("#ai #ml #llm are tags")
    assert hashes["gopher_hash_ratio"] == pytest.approx(3 / 5)


GOPHER_CASES = [
    ("The cat sat on the mat.", {}, "gopher_word_count", "words 6 < 50"),
    (PROSE, {"max_words": 20}, "gopher_word_count", "words 61 > 20"),
    ("a b c d e f g h " * 10, {"min_words": None}, "gopher_mean_word_length", "mean word length 1.0 < 3"),
    (
        "#research #models #language are tags " * 10,
        {"min_words": None},
        "gopher_symbol_ratio",
        "'#' per word 0.6 > 0.1",
    ),
    ("Wait... what... " * 30, {"min_words": None}, "gopher_symbol_ratio", "ellipses per word 1.0 > 0.1"),
    (PROSE + "\nand then...\nso...", {}, "gopher_ellipsis_lines", "lines ending in ellipsis 0.667 > 0.3"),
    ("\n".join(f"- item {w} is here" for w in PROSE.split()), {}, "gopher_bullet_lines", "bullet lines 1.0 > 0.9"),
    (NGRAMS, {"min_words": None}, "gopher_stop_words", "stop words 0 < 2"),
    (PROSE + " 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", {}, "gopher_alpha_words", "words with a letter 0.792 < 0.8"),
    (PROSE + "\nHi.\nHi.\nHi.", {}, "gopher_dup_lines", "duplicate lines 0.5 > 0.3"),
    (PROSE + "\n\n" + PROSE, {}, "gopher_dup_lines", "duplicate lines 0.5 > 0.3"),
    (PROSE + "\n\n" + PROSE, {"max_dup_lines": None}, "gopher_dup_line_chars", "duplicate line chars 0.5 > 0.2"),
    (
        PROSE + "\n\n" + PROSE,
        {"max_dup_lines": None, "max_dup_line_chars": None},
        "gopher_dup_paragraphs",
        "duplicate paragraphs 0.5 > 0.3",
    ),
    (NGRAMS, {"min_words": None, "min_stop_words": None}, "gopher_top_2gram", "top 2-gram chars 0.247 > 0.2"),
    (
        NGRAMS,
        {
            "min_words": None,
            "min_stop_words": None,
            "max_top_2gram": None,
            "max_top_3gram": None,
            "max_top_4gram": None,
        },
        "gopher_dup_5gram",
        "duplicate 5-gram chars 0.356 > 0.15",
    ),
    (PROSE, {}, None, None),
]


@pytest.mark.parametrize(("text", "params", "reason", "detail"), GOPHER_CASES)
def test_gopher_reasons_and_details(text: str, params: dict, reason: str | None, detail: str | None) -> None:
    result = run_filter(text_records([text]), GopherQuality(**params))
    result.check()
    if reason is None:
        assert result.kept.height == 1
    else:
        assert result.rejects.select("reason", "detail").row(0) == (reason, detail)


GOOD_PAGE = (
    "This is the first sentence of a page. It has a second sentence too!\n"
    "Another line here with enough words ends well.\nShort line.\nA line without terminal punctuation at all here"
)
COOKIES = "Please enable JavaScript in your browser to continue.\nWe use cookies; see our privacy policy for details."


def test_c4_measures_and_reasons() -> None:
    frame = C4Quality().apply(
        text_records([GOOD_PAGE, "Lorem ipsum dolor sit amet.", "def f() { return 1; }", COOKIES])
    )
    rows = frame.rows(named=True)
    assert {key: rows[0][key] for key in C4_MEASURES} == {
        "c4_lorem_ipsum": False,
        "c4_curly_bracket": 0,
        "c4_javascript_lines": 0,
        "c4_policy_lines": 0,
        "c4_short_line_frac": 0.25,
        "c4_terminal_punct_frac": 0.75,
        "c4_sentences": 3,
    }
    assert rows[0]["reject"] is None
    assert (rows[1]["reject"], rows[1]["detail"]) == ("c4_lorem_ipsum", 'contains "lorem ipsum"')
    assert (rows[2]["reject"], rows[2]["detail"]) == ("c4_curly_bracket", "1 curly brackets")
    assert (rows[3]["c4_javascript_lines"], rows[3]["c4_policy_lines"], rows[3]["c4_sentences"]) == (1, 1, 0)
    assert (rows[3]["reject"], rows[3]["detail"]) == ("c4_too_few_sentences", "sentences in kept lines 0 < 3")

    def decide(text: str, **params: object) -> tuple[str | None, str | None]:
        return C4Quality(**params).apply(text_records([text])).select("reject", "detail").row(0)

    assert decide(COOKIES, javascript=True) == ("c4_javascript", "1 lines mention javascript")
    assert decide(COOKIES, policy=True) == ("c4_policy", "1 policy lines")
    assert decide(GOOD_PAGE, max_short_line_frac=0.2) == ("c4_short_lines", "lines under 5 words 0.25 > 0.2")
    assert decide(GOOD_PAGE, min_terminal_punct_frac=0.8) == ("c4_terminal_punct", "lines ending a sentence 0.75 < 0.8")
    assert decide(GOOD_PAGE, min_words_per_line=20) == ("c4_too_few_sentences", "sentences in kept lines 0 < 3")
    assert decide("Lorem ipsum { x }.", lorem_ipsum=False, curly_bracket=False, min_sentences=None) == (None, None)


BAD_INPUT = ["", "   \n\t  ", None, "😀😀😀 🎉", "Hello 你好 Привет مرحبا 😀", "\x00\x01 \ufffd", "...", "- \n- \n-"]


@pytest.mark.parametrize("stage", [GopherQuality(), C4Quality()], ids=["gopher", "c4"])
def test_bad_input_is_measured_and_rejected_by_rule(stage: GopherQuality | C4Quality) -> None:
    huge = "The weather is lovely today and we walk to the park. " * 4000
    records = text_records([*BAD_INPUT, huge])
    started = time.perf_counter()
    result = run_filter(records, stage)
    assert time.perf_counter() - started < 5
    result.check()
    annotations = result.annotations
    measures = GOPHER_MEASURES if isinstance(stage, GopherQuality) else C4_MEASURES
    assert annotations.columns == ["id", *measures, "reject"]
    assert annotations.select(pl.all().exclude("reject").null_count()).sum_horizontal().item() == 0
    bad_ids = {f"r{i}" for i in range(len(BAD_INPUT))}
    assert bad_ids <= set(result.rejects["id"])  # none of these is a page, and every reject names its rule
    prefix = "gopher_" if isinstance(stage, GopherQuality) else "c4_"
    assert all(reason.startswith(prefix) for reason in result.rejects["reason"])
    if isinstance(stage, GopherQuality):
        empty = annotations.row(0, named=True)
        assert empty["gopher_word_count"] == 0 and empty["gopher_mean_word_length"] == 0.0
        assert result.rejects["reason"][-1] == "gopher_top_2gram"  # the huge text repeats one sentence
        assert annotations["gopher_dup_10gram"][-1] > 0.99
    else:
        assert result.kept["id"].to_list() == [f"r{len(BAD_INPUT)}"]  # C4 has no repetition rule


def test_social_posts_and_alpaca(data_dir: object) -> None:
    posts = ingested("social-posts")
    alpaca = ingested("alpaca").head(5000)
    for records in (posts, alpaca):
        for stage in (GopherQuality(), C4Quality()):
            result = run_filter(records, stage)
            result.check()
            assert result.annotations.height == records.height
            assert result.annotations["id"].equals(records["id"])
            for detail in result.rejects["detail"]:
                assert re.search(r"\d", detail) or detail == 'contains "lorem ipsum"', detail
    gopher = run_filter(posts, GopherQuality())
    # Posts are short: most fail Gopher's 50-word minimum; every fraction stays within [0, 1].
    assert gopher.record()["rejected_by_reason"]["gopher_word_count"] > 0.9 * posts.height
    fractions = [name for name, dtype in GOPHER_MEASURES.items() if dtype == pl.Float64 and "length" not in name]
    fractions = [name for name in fractions if "ratio" not in name]
    values = gopher.annotations.select(fractions)
    assert values.min().min_horizontal().item() >= 0 and values.max().max_horizontal().item() <= 1
    relaxed = run_filter(alpaca, GopherQuality(min_words=None, min_stop_words=None))
    reasons = set(relaxed.rejects["reason"])
    assert {"gopher_dup_5gram", "gopher_top_4gram"} <= reasons and "gopher_word_count" not in reasons


def test_deterministic_and_single_equals_multi_process(data_dir: object, monkeypatch: pytest.MonkeyPatch) -> None:
    records = ingested("alpaca").head(2000)
    single = GopherQuality(workers=1).apply(records)
    assert single.equals(GopherQuality(workers=1).apply(records))
    monkeypatch.setattr(quality, "PARALLEL_MIN", 1000)
    monkeypatch.setattr(quality, "CHUNK_SIZE", 500)
    assert GopherQuality(workers=2).apply(records).equals(single)


def test_registry_params_and_listing() -> None:
    assert {"gopher_quality", "c4_quality"} <= set(available("filter"))
    assert get("filter", "gopher_quality") is GopherQuality and get("filter", "c4_quality") is C4Quality
    for cls in (GopherQuality, C4Quality):
        assert cls.__doc__ and len(cls.__doc__.strip().splitlines()) == 1
    with pytest.raises(CurateError, match="max_top_2gram"):
        GopherQuality(max_top_2gram="high")
    with pytest.raises(CurateError, match="min_sentence"):
        C4Quality(min_sentence=3)
    empty = text_records([])
    assert run_filter(empty, GopherQuality()).annotations.columns == ["id", *GOPHER_MEASURES, "reject"]
    assert run_filter(empty, C4Quality()).kept.height == 0
