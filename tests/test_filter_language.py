"""The language filter: real posts and Alpaca, hand-built cases, bad input, processes."""

from __future__ import annotations

import json
import re
import time

import polars as pl
import pytest

from curate.errors import CurateError
from curate.stages.filter import run_filter
from curate.stages.registry import available, get
from filters.language import Language, detect_languages
from tests.conftest import ingested, text_records

CASES = {
    "en": "The committee will publish its final report on the new transport policy next week.",
    "de": "Der Ausschuss wird seinen Abschlussbericht über die neue Verkehrspolitik nächste Woche veröffentlichen.",
    "fr": "Le comité publiera son rapport final sur la nouvelle politique des transports la semaine prochaine.",
    "zh": "委员会将于下周发布关于新交通政策的最终报告。",
    "ru": "Комитет опубликует свой окончательный доклад на следующей неделе.",
    "short": "ok thx",
    "empty": "",
    "blank": "  \n\t ",
    "null": None,
    "emoji": "12345 !!! 😀😀 🎉",
    "url": "https://example.com/averyveryverylongpathname/andmore",
    "mixed": "Hello world, this is English text. 这是中文句子，我们在测试语言检测。",
    "unsure": "Someone just made my day ",  # a real post; langdetect says fr with p=0.43
}


@pytest.fixture(scope="module")
def cases() -> pl.DataFrame:
    return text_records(list(CASES.values()))


def test_hand_built_languages_and_statuses(cases: pl.DataFrame) -> None:
    result = run_filter(cases, Language())
    result.check()
    assert result.rejects.height == 0
    annotations = dict(zip(CASES, result.annotations.select("language", "language_status").rows(), strict=True))
    assert annotations == {
        "en": ("en", "ok"),
        "de": ("de", "ok"),
        "fr": ("fr", "ok"),
        "zh": ("zh-cn", "ok"),
        "ru": ("ru", "ok"),
        "short": ("und", "too_short"),
        "empty": ("und", "no_letters"),
        "blank": ("und", "no_letters"),
        "null": ("und", "no_letters"),
        "emoji": ("und", "no_letters"),
        "url": ("und", "no_letters"),
        "mixed": ("en", "ok"),
        "unsure": ("fr", "ok"),
    }
    probs = dict(zip(CASES, result.annotations["language_prob"], strict=True))
    assert probs["en"] > 0.99 and probs["zh"] > 0.99
    assert probs["short"] == probs["empty"] == 0.0
    assert probs["unsure"] == pytest.approx(0.4265, abs=1e-3)


def test_keep_list_min_prob_and_undetermined_reasons(cases: pl.DataFrame) -> None:
    kept_en = run_filter(cases, Language(keep=["en"]))
    kept_en.check()
    rejects = dict(zip(kept_en.rejects["id"], kept_en.rejects["detail"], strict=True))
    by_name = {name: rejects.get(f"r{i}") for i, name in enumerate(CASES)}
    assert set(kept_en.rejects["reason"]) == {"language"}
    assert by_name["de"] == "detected de (p=1.00), keep-list en"
    assert by_name["zh"] == "detected zh-cn (p=1.00), keep-list en"
    assert by_name["unsure"] == "detected fr (p=0.43), keep-list en"
    assert by_name["short"] is None and by_name["null"] is None  # undetermined is not rejected by default

    chinese = run_filter(cases, Language(keep=["zh", "ru"]))  # "zh" keeps zh-cn and zh-tw
    kept = {name for i, name in enumerate(CASES) if f"r{i}" in set(chinese.kept["id"])}
    assert kept == {"zh", "ru", "short", "empty", "blank", "null", "emoji", "url"}

    confident = run_filter(cases, Language(min_prob=0.9))
    assert confident.rejects["reason"].to_list() == ["language_low_confidence"]
    assert confident.rejects["detail"].to_list() == ["detected fr (p=0.43) < min_prob 0.9"]

    strict = run_filter(cases, Language(keep=["en"], reject_undetermined=True))
    strict.check()
    reasons = dict(zip(strict.rejects["id"], strict.rejects["reason"], strict=True))
    details = dict(zip(strict.rejects["id"], strict.rejects["detail"], strict=True))
    names = {f"r{i}": name for i, name in enumerate(CASES)}
    undetermined = {names[i] for i, reason in reasons.items() if reason == "language_undetermined"}
    assert undetermined == {"short", "empty", "blank", "null", "emoji", "url"}
    assert details[next(i for i, n in names.items() if n == "short")] == "language undetermined (too_short)"
    assert set(strict.kept["id"].map_elements(names.get, return_dtype=pl.String)) == {"en", "mixed"}


def test_min_chars_counts_letters_outside_urls() -> None:
    texts = ["Short text here", "Short text here, and a few more letters", "see https://example.com/longlonglong x"]
    languages, probs, statuses = detect_languages(texts, workers=1, min_chars=20)
    assert statuses == ["too_short", "ok", "too_short"]
    assert languages[0] == "und" and probs[0] == 0.0
    assert detect_languages(texts[:1], workers=1, min_chars=5)[2] == ["ok"]


def test_social_posts(data_dir: object) -> None:
    records = ingested("social-posts")
    result = run_filter(records, Language(keep=["en"]))
    result.check()
    annotations = result.annotations
    assert annotations.height == records.height and annotations["id"].equals(records["id"])
    counts = dict(annotations.group_by("language").len().iter_rows())
    assert counts["en"] > 0.98 * records.height
    assert set(annotations["language_status"]) <= {"ok", "too_short", "no_letters", "error"}
    undetermined = annotations.filter(pl.col("language") == "und")
    assert undetermined.height > 0 and (undetermined["language_prob"] == 0.0).all()
    assert not result.rejects["id"].is_in(undetermined["id"].implode()).any()
    assert set(result.rejects["reason"]) == {"language"}
    for detail in result.rejects["detail"]:
        assert re.fullmatch(r"detected [a-z]{2}(-[a-z]{2})? \(p=[01]\.\d\d\), keep-list en", detail), detail
    assert set(result.rejects["stage"]) == {"language"}


def test_deterministic_and_single_equals_multi_process(data_dir: object) -> None:
    texts = ingested("alpaca").head(1500)["text"].to_list()
    single = detect_languages(texts, workers=1, min_chars=20)
    multi = detect_languages(texts, workers=2, min_chars=20, chunk_size=400)
    assert multi == single
    assert detect_languages(texts[:200], workers=1, min_chars=20) == tuple(column[:200] for column in single)
    assert single[0].count("en") > 0.98 * len(texts)


def test_huge_text_is_quick() -> None:
    records = text_records(["The weather is lovely today and we walk to the park. " * 40_000])
    started = time.perf_counter()
    annotations = Language().apply(records)
    assert time.perf_counter() - started < 5
    assert annotations.row(0, named=True)["language"] == "en"


def test_registry_params_and_listing() -> None:
    assert "language" in available("filter") and get("filter", "language") is Language
    assert Language.__doc__ and len(Language.__doc__.strip().splitlines()) == 1
    with pytest.raises(CurateError, match="min_prob"):
        Language(min_prob=2)
    with pytest.raises(CurateError, match="keeplist"):
        Language(keeplist=["en"])
    assert Language().apply(text_records([])).columns == [
        "id",
        "language",
        "language_prob",
        "language_status",
        "reject",
        "detail",
    ]


def test_threads_detecting_at_first_use_agree_with_one_thread(data_dir: object) -> None:
    """Shards filtered side by side in threads (the flows' default) must not see a half-loaded
    langdetect factory; this only shows in a fresh process, at the first detection."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = f"""
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from filters.language import detect_languages
posts = sorted(set(Path({str(data_dir)!r}, "corpora", "social_posts.txt").read_text().split("------")))[:400]
parts = [posts[i::4] for i in range(4)]
with ThreadPoolExecutor(4) as pool:
    threaded = list(pool.map(lambda part: detect_languages(part, workers=1)[0], parts))
print(json.dumps([threaded, [detect_languages(part, workers=1)[0] for part in parts]]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    threaded, sequential = json.loads(done.stdout.strip().splitlines()[-1])
    assert threaded == sequential
