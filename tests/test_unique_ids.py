"""Ingest's unique ids: repeats get -2, -3, ... in input order across batches, whatever mix of
content ids (kept as numbers) and other strings the batches hold.
And a journal replayed into a new instance (a resumed ingest) carries on with the same suffixes."""

from __future__ import annotations

import random

import polars as pl

from curate.records.ids import UniqueIds


def suffixed(batches: list[list[str]]) -> list[list[str]]:
    """The rule written out plainly: the k-th time a value appears (k > 1) it becomes value-k."""
    seen: dict[str, int] = {}
    out = []
    for batch in batches:
        row = []
        for value in batch:
            seen[value] = seen.get(value, 0) + 1
            row.append(value if seen[value] == 1 else f"{value}-{seen[value]}")
        out.append(row)
    return out


def test_repeats_are_suffixed_in_input_order_across_batches() -> None:
    rng = random.Random(5)
    for trial in range(300):
        pool = [f"{rng.getrandbits(64):016x}" for _ in range(rng.randint(1, 40))]
        if trial % 3 == 0:  # not content ids: an upper-case twin, short and suffixed-looking strings
            pool += [pool[0].upper(), "abc", f"{pool[0]}-2", "zzzzzzzzzzzzzzzz"]
        batches = [[rng.choice(pool) for _ in range(rng.randint(0, 40))] for _ in range(rng.randint(1, 12))]
        unique = UniqueIds()
        got = [unique(pl.Series("id", batch, dtype=pl.String)).to_list() for batch in batches]
        assert got == suffixed(batches), batches


def test_many_batches_keep_few_sorted_runs() -> None:
    rng = random.Random(9)
    unique = UniqueIds()
    values = [f"{rng.getrandbits(64):016x}" for _ in range(64_000)]
    for start in range(0, len(values), 1000):
        unique(pl.Series("id", values[start : start + 1000], dtype=pl.String))
    again = unique(pl.Series("id", values[:3], dtype=pl.String)).to_list()
    assert again == [f"{v}-2" for v in values[:3]]
    assert len(unique._runs) <= 8 and sum(r.size for r in unique._runs) == len(set(values))


def test_a_journal_replayed_into_a_new_instance_carries_on_the_same() -> None:
    # A resumed ingest: the ids learned file by file are saved, replayed into a new instance, and the
    # files after them get the suffixes an uninterrupted ingest gives.
    rng = random.Random(13)
    for trial in range(200):
        pool = [f"{rng.getrandbits(64):016x}" for _ in range(rng.randint(1, 30))]
        if trial % 3 == 0:
            pool += ["abc", pool[0].upper()]
        batches = [[rng.choice(pool) for _ in range(rng.randint(0, 30))] for _ in range(rng.randint(2, 10))]
        cut = rng.randint(1, len(batches) - 1)
        first = UniqueIds(journal=True)
        journals = []
        for batch in batches[:cut]:
            first(pl.Series("id", batch, dtype=pl.String))
            journals.append(first.take_journal())
        resumed = UniqueIds(journal=True)
        for journal in journals:
            resumed.replay(*journal)
        got = [resumed(pl.Series("id", batch, dtype=pl.String)).to_list() for batch in batches[cut:]]
        assert got == suffixed(batches)[cut:], (batches, cut)
