"""The PII filter: patterns and their near misses, fields and chats, redaction, real posts and Alpaca."""

from __future__ import annotations

import time

import polars as pl
import pytest

from curate.errors import CurateError
from curate.records.schema import KIND_INSTRUCTION, KIND_TEXT, MESSAGE_DTYPE, conform
from curate.stages.filter import run_filter
from curate.stages.registry import available, get
from filters.pii import Pii, redact
from tests.conftest import ingested

FOUND = [
    ("Contact john.doe@example.com or jane_smith+news@mail.co.uk.", "Contact <EMAIL> or <EMAIL>.", (2, 0, 0)),
    ("Call (123) 456-7890, 123-456-7890 or 123.456.7890!", "Call <PHONE>, <PHONE> or <PHONE>!", (0, 3, 0)),
    ("Hotline 1-800-799-7233; London +44 20 7946 0958", "Hotline <PHONE>; London <PHONE>", (0, 2, 0)),
    ("US +1 (555) 123-4567 or +12145558444.", "US <PHONE> or <PHONE>.", (0, 2, 0)),
    ("Server 192.168.1.1 and gateway 10.0.0.1.", "Server <IP_ADDRESS> and gateway <IP_ADDRESS>.", (0, 0, 2)),
    (
        "IPv6 2001:db8::1, ::1 and fe80::1ff:fe23:4567:890a",
        "IPv6 <IP_ADDRESS>, <IP_ADDRESS> and <IP_ADDRESS>",
        (0, 0, 3),
    ),
    ("mapped ::ffff:192.0.2.1 here", "mapped <IP_ADDRESS> here", (0, 0, 1)),
    ("mail a@b.io from 8.8.8.8 or 555-123-4567", "mail <EMAIL> from <IP_ADDRESS> or <PHONE>", (1, 1, 1)),
]
NOT_FOUND = [
    "@karpathy and @rasbt wrote this; see https://github.com/Lightning-AI/lit-gpt/pull/472",
    "In 2023, between 1999-2023, version 1.2.3 and Chrome 86.0.4240.111",
    "arXiv 2211.04325, status 1679680423671001090, ISBN 978-1-5247-3855-7, DOI 41587-022-01618-2",
    "Dates 2021-02-25, id 9508735610, code 123-456-789, scores 10 20 30 40 50 60 70",
    "Octets 255.256.12.1, dotted 1.2.3.4.5, std::vector, 10:30:45, MAC 00:1A:2B:3C:4D:5E, ::",
    "Plus +1000000 and user@localhost and foo@bar",
]


@pytest.mark.parametrize(("text", "redacted", "counts"), FOUND)
def test_patterns_found_and_redacted(text: str, redacted: str, counts: tuple[int, int, int]) -> None:
    assert redact(text) == (redacted, *counts)


@pytest.mark.parametrize("text", NOT_FOUND)
def test_near_misses_are_left_alone(text: str) -> None:
    assert redact(text) == (text, 0, 0, 0)


def instruction_records(rows: list[tuple[str | None, str | None, str | None]]) -> pl.DataFrame:
    derived = ["\n\n".join(p for p in (i, x or None, o) if p is not None) for i, x, o in rows]
    frame = pl.DataFrame(
        {
            "id": [f"r{n}" for n in range(len(rows))],
            "kind": [KIND_INSTRUCTION] * len(rows),
            "instruction": [r[0] for r in rows],
            "input": [r[1] for r in rows],
            "output": [r[2] for r in rows],
            "text": derived,
        },
        schema={k: pl.String for k in ("id", "kind", "instruction", "input", "output", "text")},
    )
    return conform(frame)


def test_counts_per_record_fields_chats_and_text() -> None:
    instructions = instruction_records(
        [
            ("Email bob@example.com a note.", "His phone is (555) 123-4567.", "Sent to bob@example.com."),
            ("Say hi.", "", "Hi!"),
            (None, None, None),
        ]
    )
    chat = conform(
        pl.DataFrame(
            {
                "id": ["chat"],
                "kind": [KIND_INSTRUCTION],
                "instruction": ["Hello"],
                "input": [""],
                "output": ["Hi, how can I help?"],
                "messages": [
                    [
                        {"role": "user", "content": "Hello"},
                        {"role": "assistant", "content": "Hi, how can I help?"},
                        {"role": "user", "content": "Ping 10.1.2.3 for me"},
                    ]
                ],
                "text": ["Hello\n\nHi, how can I help?\n\nPing 10.1.2.3 for me"],
            },
            schema_overrides={"messages": pl.List(MESSAGE_DTYPE)},
        )
    )
    text = conform(pl.DataFrame({"id": ["t"], "kind": [KIND_TEXT], "text": ["Write to x@y.org or 192.168.0.1"]}))
    records = pl.concat([instructions, chat, text])
    result = run_filter(records, Pii())
    result.check()
    assert result.rejects.height == 0
    counts = result.annotations.select("id", "pii_emails", "pii_phones", "pii_ips", "pii_found").rows()
    assert counts == [
        ("r0", 2, 1, 0, True),  # instruction + input + output, not the derived text again
        ("r1", 0, 0, 0, False),
        ("r2", 0, 0, 0, False),
        ("chat", 0, 0, 1, True),  # found in a later turn
        ("t", 1, 0, 1, True),
    ]
    assert "pii_redacted" not in result.annotations.columns

    rejecting = run_filter(records, Pii(reject_if_found=True))
    rejecting.check()
    assert rejecting.kept["id"].to_list() == ["r1", "r2"]
    assert rejecting.rejects["reason"].unique().to_list() == ["pii"]
    assert rejecting.rejects["detail"].to_list()[0] == "found 2 e-mail(s), 1 phone number(s), 0 IP address(es)"


def test_redaction_rewrites_every_field_and_keeps_text_consistent() -> None:
    records = instruction_records(
        [
            ("Email bob@example.com a note.", "His phone is (555) 123-4567.", "Sent to bob@example.com."),
            ("Say hi.", "", "Hi!"),
            ("Ping 10.1.2.3", "", "Pinged 10.1.2.3"),
        ]
    )
    records = records.with_columns(
        pl.when(pl.col("id") == "r2").then(pl.lit("custom text 10.1.2.3")).otherwise(pl.col("text")).alias("text")
    )
    stage = Pii(redact=True)
    result = run_filter(records, stage)
    result.check()
    assert result.annotations["pii_redacted"].to_list() == [3, 0, 2]
    out = stage.rewrite(result.kept, result.annotations)
    assert out["id"].to_list() == records["id"].to_list() and out.schema == records.schema
    first = out.row(0, named=True)
    assert first["instruction"] == "Email <EMAIL> a note."
    assert first["input"] == "His phone is <PHONE>."
    assert first["output"] == "Sent to <EMAIL>."
    assert first["text"] == "Email <EMAIL> a note.\n\nHis phone is <PHONE>.\n\nSent to <EMAIL>."
    assert out.row(1) == records.row(1)
    assert out.row(2, named=True)["text"] == "custom text <IP_ADDRESS>"  # not derived: redacted in place
    assert stage.rewrite(result.kept, result.annotations.drop("pii_found")).equals(out)
    assert Pii().rewrite(result.kept, result.annotations).equals(result.kept)  # redact off: untouched

    both = Pii(redact=True, reject_if_found=True)
    rejecting = run_filter(records, both)
    assert rejecting.annotations["pii_redacted"].to_list() == [0, 0, 0]
    assert both.rewrite(rejecting.kept, rejecting.annotations).equals(rejecting.kept)


def test_chat_redaction_rebuilds_text_from_turns() -> None:
    turns = [{"role": "user", "content": "Mail me at a@b.com"}, {"role": "assistant", "content": "Noted a@b.com."}]
    chat = conform(
        pl.DataFrame(
            {
                "id": ["c"],
                "kind": [KIND_INSTRUCTION],
                "instruction": [turns[0]["content"]],
                "input": [""],
                "output": [turns[1]["content"]],
                "messages": [turns],
                "text": ["Mail me at a@b.com\n\nNoted a@b.com."],
            },
            schema_overrides={"messages": pl.List(MESSAGE_DTYPE)},
        )
    )
    stage = Pii(redact=True)
    result = run_filter(chat, stage)
    out = stage.rewrite(result.kept, result.annotations).row(0, named=True)
    assert [t["content"] for t in out["messages"]] == ["Mail me at <EMAIL>", "Noted <EMAIL>."]
    assert out["text"] == "Mail me at <EMAIL>\n\nNoted <EMAIL>."
    assert out["instruction"] == "Mail me at <EMAIL>" and out["output"] == "Noted <EMAIL>."


def test_bad_input() -> None:
    huge = ("Plain words without anything personal. " * 20_000) + "Reach me at huge@example.com."
    texts = ["", "   \n", None, "😀🎉", "Привет 你好 a@b.co 😀", "\x00\x01", huge]
    records = conform(
        pl.DataFrame({"id": [f"b{i}" for i in range(len(texts))], "kind": [KIND_TEXT] * len(texts), "text": texts})
    )
    stage = Pii(redact=True)
    started = time.perf_counter()
    result = run_filter(records, stage)
    out = stage.rewrite(result.kept, result.annotations)
    assert time.perf_counter() - started < 5
    result.check()
    assert result.annotations["pii_emails"].to_list() == [0, 0, 0, 0, 1, 0, 1]
    assert out["text"].to_list()[:4] == texts[:4] and out["text"][4] == "Привет 你好 <EMAIL> 😀"
    assert out["text"][6].endswith("Reach me at <EMAIL>.")
    empty = Pii().apply(conform(pl.DataFrame({"id": []}, schema={"id": pl.String})))
    assert empty.height == 0 and "pii_found" in empty.columns


def test_social_posts_have_no_pii_and_survive_redaction(data_dir: object) -> None:
    posts = ingested("social-posts")
    text = posts["text"]
    # The corpus is full of near misses: handles, URLs, arXiv ids, long status ids.
    assert text.str.contains("@").sum() > 500 and text.str.contains("https://").sum() > 1000
    assert text.str.contains(r"\d{4}\.\d{5}").sum() > 100 and text.str.contains(r"\d{19}").sum() > 0
    stage = Pii(redact=True)
    result = run_filter(posts, stage)
    result.check()
    assert result.annotations.select(pl.col("pii_emails", "pii_phones", "pii_ips").sum()).row(0) == (0, 0, 0)
    assert not result.annotations["pii_found"].any()
    assert stage.rewrite(result.kept, result.annotations).equals(posts)


def test_alpaca_redaction(data_dir: object) -> None:
    alpaca = ingested("alpaca")
    stage = Pii(redact=True)
    result = run_filter(alpaca, stage)
    result.check()
    annotations = result.annotations
    totals = annotations.select(pl.col("pii_emails", "pii_phones", "pii_ips").sum()).row(0)
    assert totals == (96, 51, 22) and annotations["pii_found"].sum() == 71
    assert annotations["pii_redacted"].sum() == sum(totals)
    out = stage.rewrite(result.kept, annotations)
    assert out["id"].equals(alpaca["id"])
    changed = out.filter(pl.col("text") != alpaca["text"])
    assert set(changed["id"]) == set(annotations.filter(pl.col("pii_found"))["id"])
    again = Pii().apply(changed)
    assert not again["pii_found"].any()  # nothing left to find
    derived = pl.concat_str(
        [pl.col("instruction"), pl.when(pl.col("input") != "").then(pl.col("input")), pl.col("output")],
        separator="\n\n",
        ignore_nulls=True,
    )
    assert changed.select((pl.col("text") == derived).all()).item()
    assert changed["text"].str.contains("<EMAIL>").sum() > 0 and changed["text"].str.contains("<PHONE>").sum() > 0
    assert Pii().apply(alpaca.head(3000)).equals(Pii().apply(alpaca.head(3000)))  # deterministic


def test_registry_params_and_listing() -> None:
    assert "pii" in available("filter") and get("filter", "pii") is Pii
    assert Pii.__doc__ and len(Pii.__doc__.strip().splitlines()) == 1
    with pytest.raises(CurateError, match="redacted"):
        Pii(redacted=True)
    with pytest.raises(CurateError, match="reject_if_found"):
        Pii(reject_if_found="maybe")
