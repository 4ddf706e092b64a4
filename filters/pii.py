"""PII filter: e-mail addresses, phone numbers and IP addresses, counted, redacted or rejected.

Patterns lean towards precision: a phone number needs a leading ``+`` or the US shape with
separators (``(555) 123-4567``, ``555-123-4567``, ``1-800-799-7233``), so years, version
numbers, arXiv ids, ISBNs and long digit ids are left alone; an IPv4 address needs four valid
octets not embedded in a longer dotted number; an IPv6 candidate must parse as one
(:mod:`ipaddress`) and contain a digit, so ``std::vector`` and clock times are not addresses.

Matches are counted in the record's own fields: the text of text records, the turns of chats,
instruction, input and output otherwise (``text`` is derived from them and would count twice).
Kinds are replaced in order (e-mail, IP, phone), each on the text left by the previous one, so
one span is never counted twice; counts and redaction use the same pass and always agree.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import polars as pl

from curate.records.schema import ID, INPUT, INSTRUCTION, KIND, KIND_TEXT, MESSAGES, OUTPUT, TEXT
from curate.stages.filter import DETAIL, REJECT, Filter, FilterParams
from curate.stages.registry import register

EMAIL_TOKEN, PHONE_TOKEN, IP_TOKEN = "<EMAIL>", "<PHONE>", "<IP_ADDRESS>"

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\d)(?!\w)")
IPV6_CANDIDATE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:])"
)
PHONE = re.compile(
    r"(?<![\w+])(?:"
    # international: +country code, then groups of digits with optional separators
    r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,4}){2,5}"
    r"|"
    # US: optional 1-, then (555) 123-4567, 555-123-4567 or 555.123.4567
    r"(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[.-]\d{4}"
    r")(?![\w-]|\.\d)"
)
_MAYBE_PII = r"[\d@:]"


def _phone_digits_ok(number: str) -> bool:
    digits = sum(ch.isdigit() for ch in number)
    return 8 <= digits <= 15 if number.startswith("+") else digits in (10, 11)


def redact(text: str) -> tuple[str, int, int, int]:
    """The text with PII replaced by tokens, and how many e-mails, phones and IP addresses it had."""
    if not re.search(_MAYBE_PII, text):
        return text, 0, 0, 0
    text, emails = EMAIL.subn(EMAIL_TOKEN, text)
    ips = phones = 0

    def ipv6(match: re.Match[str]) -> str:
        nonlocal ips
        candidate = match.group(0)
        if not any(ch.isdigit() for ch in candidate):
            return candidate
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            return candidate
        ips += 1
        return IP_TOKEN

    def phone(match: re.Match[str]) -> str:
        nonlocal phones
        if not _phone_digits_ok(match.group(0)):
            return match.group(0)
        phones += 1
        return PHONE_TOKEN

    if ":" in text:
        text = IPV6_CANDIDATE.sub(ipv6, text)
    text, ipv4s = IPV4.subn(IP_TOKEN, text)
    text = PHONE.sub(phone, text)
    return text, emails, phones, ips + ipv4s


def _derived_text(row: dict[str, Any]) -> str:
    """The text ingest derives for an instruction record: its turns, or its non-empty parts, blank-line separated."""
    if row[MESSAGES] is not None:
        return "\n\n".join(turn["content"] or "" for turn in row[MESSAGES])
    parts = (row[INSTRUCTION], row[INPUT] or None, row[OUTPUT])
    return "\n\n".join(part for part in parts if part is not None)


def _own_fields(row: dict[str, Any]) -> list[str]:
    """The strings a record consists of (see the module docstring)."""
    if row[KIND] == KIND_TEXT:
        return [row[TEXT] or ""]
    if row[MESSAGES] is not None:
        return [turn["content"] or "" for turn in row[MESSAGES]]
    return [row[INSTRUCTION] or "", row[INPUT] or "", row[OUTPUT] or ""]


def _candidates(records: pl.DataFrame) -> pl.Series:
    """Rows that could hold PII at all (a digit, an @ or a colon somewhere); the rest are skipped."""
    if records.height == 0:
        return pl.Series([], dtype=pl.Boolean)
    text_columns = [pl.col(c).fill_null("").str.contains(_MAYBE_PII) for c in (INSTRUCTION, INPUT, OUTPUT, TEXT)]
    return records.select(pl.any_horizontal(*text_columns, pl.col(MESSAGES).is_not_null())).to_series()


class PiiParams(FilterParams):
    """What to do with PII: nothing (annotate only), redact it, or reject the record.

    Attributes:
        redact: replace matches with ``<EMAIL>``, ``<PHONE>``, ``<IP_ADDRESS>`` in every text
            field of kept records (``text`` is rebuilt from the redacted fields).
        reject_if_found: reject records with any match (reason ``pii``); they are not redacted.
    """

    redact: bool = False
    reject_if_found: bool = False


@register("filter", "pii")
class Pii(Filter):
    """E-mail addresses, phone numbers and IP addresses: count, redact or reject."""

    Params = PiiParams

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        p = self.params
        counts = [(0, 0, 0)] * records.height
        candidates = _candidates(records)
        rows = records.filter(candidates).select(KIND, INSTRUCTION, INPUT, OUTPUT, TEXT, MESSAGES)
        for index, row in zip(candidates.arg_true().to_list(), rows.iter_rows(named=True), strict=True):
            found = [redact(text)[1:] for text in _own_fields(row)]
            counts[index] = tuple(sum(kind) for kind in zip(*found, strict=True))
        emails, phones, ips = (list(kind) for kind in zip(*counts, strict=True)) if counts else ([], [], [])
        frame = pl.DataFrame(
            {
                ID: records[ID],
                "pii_emails": pl.Series(emails, dtype=pl.Int64),
                "pii_phones": pl.Series(phones, dtype=pl.Int64),
                "pii_ips": pl.Series(ips, dtype=pl.Int64),
            }
        )
        total = pl.col("pii_emails") + pl.col("pii_phones") + pl.col("pii_ips")
        frame = frame.with_columns((total > 0).alias("pii_found"))
        rejected = pl.col("pii_found") & pl.lit(p.reject_if_found)
        if p.redact:
            frame = frame.with_columns(pl.when(rejected).then(0).otherwise(total).alias("pii_redacted"))
        detail = pl.format(
            "found {} e-mail(s), {} phone number(s), {} IP address(es)",
            pl.col("pii_emails"),
            pl.col("pii_phones"),
            pl.col("pii_ips"),
        )
        return frame.with_columns(
            pl.when(rejected).then(pl.lit("pii")).alias(REJECT),
            pl.when(rejected).then(detail).alias(DETAIL),
        )

    def rewrite(self, records: pl.DataFrame, annotations: pl.DataFrame) -> pl.DataFrame:
        """Kept records with PII redacted in every text field; ids stay those of the original content.

        Only records whose annotation says ``pii_found`` are touched (every record that could hold
        PII when the annotations lack it). ``text`` is rebuilt from the redacted fields when it was
        derived from them, and redacted in place otherwise.
        """
        if not self.params.redact or records.height == 0:
            return records
        if "pii_found" in annotations.columns:
            targets = records[ID].is_in(annotations.filter(pl.col("pii_found"))[ID].implode())
        else:
            targets = _candidates(records)
        if not targets.any():
            return records
        numbered = records.with_row_index("_row")
        changed = [_redacted_row(row) for row in numbered.filter(targets).iter_rows(named=True)]
        redacted = pl.DataFrame(changed, schema=numbered.schema, orient="row")
        return pl.concat([numbered.filter(~targets), redacted]).sort("_row").drop("_row")


def _redacted_row(row: dict[str, Any]) -> dict[str, Any]:
    """One record with every text field redacted, ``text`` rebuilt if it was derived from the others."""

    def clean(value: str | None) -> str | None:
        return None if value is None else redact(value)[0]

    out = dict(row)
    for field in (INSTRUCTION, INPUT, OUTPUT):
        out[field] = clean(row[field])
    if row[MESSAGES] is not None:
        out[MESSAGES] = [{**turn, "content": clean(turn["content"])} for turn in row[MESSAGES]]
    derived = row[KIND] != KIND_TEXT and row[TEXT] == _derived_text(row)
    out[TEXT] = _derived_text(out) if derived else clean(row[TEXT])
    return out
